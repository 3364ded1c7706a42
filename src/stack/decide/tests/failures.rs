//! failures.

use super::*;

#[test]
fn a_rolled_back_update_stalls_once_and_does_not_retry() {
    let mut case = Case::new();
    case.previous.applied = Some(AppliedRevision {
        generation: 0,
        fingerprint: "old".into(),
        revision: None,
    });
    case.previous.change_set = Some(pending(&wanted(), ChangeSetKind::Update));
    case.previous.operation = Some(operation(
        OperationAction::ExecuteChangeSet,
        Some(&wanted()),
        &fingerprint(),
        NOW - 60,
    ));
    case.stack = Some(stack(Cfn::UpdateRollbackComplete));
    case.events = vec![failure_event(
        "e1",
        NOW - 20,
        "Q",
        "UPDATE_FAILED",
        "VisibilityTimeout out of range",
    )];
    let plan = case.decide();
    let (status, reason, message) = condition(&plan, STALLED).unwrap();
    assert_eq!((status, reason), ("True", "UpdateFailed"));
    assert!(
        message.contains("Q (AWS::SQS::Queue) UPDATE_FAILED: VisibilityTimeout out of range"),
        "{message}"
    );
    assert_eq!(plan.status.recent_failures.len(), 1);
    assert_eq!(plan.status.last_event_id.as_deref(), Some("e1"));

    // The next reconcile, with nothing new, stays put.
    let mut again = Case::new();
    again.previous = plan.status.clone();
    again.stack = Some(stack(Cfn::UpdateRollbackComplete));
    let plan = again.decide();
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    assert_eq!(condition(&plan, STALLED).unwrap().1, "UpdateFailed");
}

#[test]
fn an_update_that_fails_after_the_spec_moved_on_is_told_and_the_new_spec_goes_on() {
    // A StackDeployment rolls a target back while its bad update still runs:
    // generation 2 (other inputs) must not read as Stalled by that failure.
    let mut case = Case::new();
    case.generation = 2;
    case.previous.applied = Some(AppliedRevision {
        generation: 0,
        fingerprint: "stable".into(),
        revision: None,
    });
    case.previous.change_set = Some(pending("stackpilot-g1-bad", ChangeSetKind::Update));
    case.previous.operation = Some(operation(
        OperationAction::ExecuteChangeSet,
        Some("stackpilot-g1-bad"),
        "bad",
        NOW - 60,
    ));
    case.stack = Some(stack(Cfn::UpdateRollbackComplete));
    case.events = vec![failure_event("e1", NOW - 20, "Q", "UPDATE_FAILED", "boom")];
    let plan = case.decide();
    assert!(
        condition(&plan, STALLED).is_none_or(|c| c.0 != "True"),
        "{:?}",
        plan.status.conditions
    );
    assert!(
        matches!(plan.steps.as_slice(), [Step::CreateChangeSet(_)]),
        "{:?}",
        plan.steps
    );
    let told = plan
        .notes
        .iter()
        .find(|n| n.reason == "UpdateFailed")
        .expect("an UpdateFailed Event");
    assert!(
        told.warning && told.message.contains("generation 1") && told.message.contains("boom"),
        "{told:?}"
    );
    assert_eq!(plan.status.recent_failures.len(), 1);

    // The same inputs under a newer generation would only fail again: Stalled.
    case.previous.operation.as_mut().unwrap().fingerprint = Some(fingerprint());
    let plan = case.decide();
    assert_eq!(condition(&plan, STALLED).unwrap().1, "UpdateFailed");
}

#[test]
fn a_failed_update_reported_as_complete_is_still_a_failure() {
    // LocalStack reports some failed updates as UPDATE_COMPLETE; the events tell.
    let mut case = Case::new();
    case.previous.change_set = Some(pending(&wanted(), ChangeSetKind::Update));
    case.previous.operation = Some(operation(
        OperationAction::ExecuteChangeSet,
        Some(&wanted()),
        &fingerprint(),
        NOW - 60,
    ));
    case.stack = Some(stack(Cfn::UpdateComplete));
    case.events = vec![failure_event("e1", NOW - 10, "Q", "UPDATE_FAILED", "boom")];
    let plan = case.decide();
    assert_eq!(condition(&plan, READY).unwrap().1, "UpdateFailed");
    assert!(plan.status.applied.is_none());
}

#[test]
fn a_failed_create_is_kept_by_default_and_recreated_with_backoff_on_request() {
    let mut case = Case::new();
    case.stack = Some(stack(Cfn::RollbackComplete));
    case.previous.operation = Some(operation(
        OperationAction::ExecuteChangeSet,
        Some(&wanted()),
        &fingerprint(),
        NOW - 60,
    ));
    case.events = vec![failure_event("e1", NOW - 30, "Q", "CREATE_FAILED", "bad property")];
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    let (_, reason, message) = condition(&plan, STALLED).unwrap();
    assert_eq!(reason, "CreateFailed");
    assert!(
        message.contains("bad property") && message.contains("onCreateFailure: Recreate"),
        "{message}"
    );
    assert!(plan.notes.iter().any(|n| n.warning && n.reason == "CreateFailed"));

    // Recreate: wait out the backoff from the last failure, then delete.
    let mut recreate = Case::new();
    recreate.spec.failure_policy.on_create_failure = CreateFailureAction::Recreate;
    recreate.stack = Some(stack(Cfn::RollbackComplete));
    recreate.previous.create_failures = Some(CreateFailures {
        count: 1,
        last_failed_at: Time(Timestamp::from_second(NOW - 10).unwrap()),
        generation: 1,
        requested: None,
        reason: "Q (AWS::SQS::Queue) CREATE_FAILED: bad".into(),
    });
    let plan = recreate.decide();
    assert!(plan.steps.is_empty(), "still in backoff");
    assert!(
        plan.requeue.as_secs() <= 20 && plan.requeue.as_secs() >= 19,
        "{:?}",
        plan.requeue
    );
    recreate.now = NOW + 60;
    let plan = recreate.decide();
    assert!(matches!(plan.steps.as_slice(), [Step::DeleteStack { .. }]));
    assert_eq!(
        plan.status.operation.as_ref().unwrap().action,
        OperationAction::DeleteStack
    );

    // Once gone, the stack is created again without a "missing" warning.
    let mut gone = Case::new();
    gone.previous = plan.status.clone();
    gone.previous.applied = Some(AppliedRevision::default());
    let plan = gone.decide();
    assert!(matches!(plan.steps.as_slice(), [Step::CreateChangeSet(_)]));
    assert!(plan.notes.iter().all(|n| n.reason != "StackMissing"));
}

#[test]
fn every_stack_status_gives_a_ready_condition() {
    for status in crate::aws::StackState::ALL
        .iter()
        .cloned()
        .chain([Cfn::Unknown("NEW_STATUS".into())])
    {
        for deleting in [false, true] {
            let mut case = Case::new();
            case.deleting = deleting;
            case.previous.applied = Some(AppliedRevision {
                generation: 1,
                fingerprint: fingerprint(),
                revision: None,
            });
            case.stack = Some(stack(status.clone()));
            let plan = case.decide();
            assert!(
                plan.release || condition(&plan, READY).is_some(),
                "{status} (deleting: {deleting}) left no Ready condition"
            );
            if !deleting && status.is_in_progress() && status != Cfn::ReviewInProgress {
                assert!(
                    plan.steps.is_empty(),
                    "{status}: nothing may start while CloudFormation works"
                );
                assert_eq!(condition(&plan, RECONCILING).map(|c| c.0), Some("True"), "{status}");
            }
        }
    }
}

#[test]
fn a_failed_rollback_is_continued_when_the_policy_says_so() {
    let mut case = Case::new();
    case.stack = Some(stack(Cfn::UpdateRollbackFailed));
    case.events = vec![failure_event("e1", NOW - 5, "Q", "UPDATE_FAILED", "cannot roll back Q")];
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    let (_, reason, message) = condition(&plan, STALLED).unwrap();
    assert_eq!(reason, "UpdateRollbackFailed");
    assert!(
        message.contains("cannot roll back Q") && message.contains("continue-update-rollback"),
        "{message}"
    );

    case.spec.failure_policy.on_update_rollback_failure = crate::api::UpdateRollbackFailureAction::ContinueRollback;
    case.spec.failure_policy.skip_resources = vec!["Q".into()];
    let plan = case.decide();
    assert!(matches!(plan.steps.as_slice(), [Step::ContinueRollback { skip, .. }] if skip == &vec!["Q".to_string()]));
    assert_eq!(
        plan.status.operation.as_ref().unwrap().action,
        OperationAction::ContinueUpdateRollback
    );
    assert!(plan.notes.iter().any(|n| n.reason == "ContinuingRollback"));

    // When the rollback has finished, the operation is closed.
    let mut done = Case::new();
    done.previous = plan.status.clone();
    done.stack = Some(stack(Cfn::UpdateRollbackComplete));
    let plan = done.decide();
    assert!(
        plan.status
            .operation
            .as_ref()
            .is_none_or(|op| op.action != OperationAction::ContinueUpdateRollback)
    );
    assert!(plan.notes.iter().any(|n| n.reason == "RollbackContinued"));
}

#[test]
fn a_create_past_its_timeout_is_cancelled_then_held_or_recreated() {
    let mut case = Case::new();
    case.spec.timeout_in_minutes = Some(10);
    case.stack = Some(stack(Cfn::CreateInProgress));
    case.previous.operation = Some(operation(
        OperationAction::ExecuteChangeSet,
        Some(&wanted()),
        &fingerprint(),
        NOW - 300,
    ));
    case.previous.change_set = Some(pending(&wanted(), ChangeSetKind::Create));
    // Before the deadline: wait, and look again no later than the deadline.
    let plan = case.decide();
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    assert!(plan.requeue.as_secs() <= 5, "{:?}", plan.requeue);
    case.spec.timeout_in_minutes = Some(2);
    let plan = case.decide();
    assert!(plan.requeue.as_secs() <= 5);

    // Past it: the partial stack is deleted, the failure recorded and told.
    case.previous.operation = Some(operation(
        OperationAction::ExecuteChangeSet,
        Some(&wanted()),
        &fingerprint(),
        NOW - 601,
    ));
    case.spec.timeout_in_minutes = Some(10);
    let cancelled = case.decide();
    let [Step::DeleteStack { token, retain }] = cancelled.steps.as_slice() else {
        panic!("{:?}", cancelled.steps)
    };
    assert!(token.contains("timeout") && retain.is_empty(), "{token}");
    assert_eq!(
        cancelled.status.operation.as_ref().unwrap().action,
        OperationAction::DeleteStack
    );
    assert_eq!(cancelled.status.recent_failures[0].status, "CREATE_FAILED");
    assert!(
        cancelled.status.recent_failures[0]
            .reason
            .contains("timeoutInMinutes (10)")
    );
    assert!(
        cancelled
            .notes
            .iter()
            .any(|n| n.warning && n.reason == "CreateTimedOut")
    );
    // An update has no timeout, as in CloudFormation.
    case.stack = Some(stack(Cfn::UpdateInProgress));
    assert!(case.decide().steps.is_empty());

    // Gone, under Retain (the default): Stalled, no new create, also the next time.
    let mut gone = Case::new();
    gone.spec.timeout_in_minutes = Some(10);
    gone.previous = cancelled.status.clone();
    let held = gone.decide();
    assert!(held.steps.is_empty(), "{:?}", held.steps);
    let (_, reason, message) = condition(&held, STALLED).unwrap();
    assert_eq!(reason, "CreateTimedOut");
    assert!(message.contains("reconcile-requested-at"), "{message}");
    gone.previous = held.status.clone();
    assert!(gone.decide().steps.is_empty(), "held until the inputs change");
    // New inputs (a spec change or a requested reconcile) try again.
    let mut iam = desired();
    iam.options.capabilities = vec!["CAPABILITY_IAM".into()];
    gone.desired = Ok(iam.seal(""));
    assert!(matches!(gone.decide().steps.as_slice(), [Step::CreateChangeSet(_)]));

    // Under Recreate: created again once the backoff from the timeout passed.
    let mut recreate = Case::new();
    recreate.spec.timeout_in_minutes = Some(10);
    recreate.spec.failure_policy.on_create_failure = CreateFailureAction::Recreate;
    recreate.previous = cancelled.status.clone();
    let waiting = recreate.decide();
    assert!(waiting.steps.is_empty());
    assert_eq!(condition(&waiting, READY).unwrap().1, "CreateTimedOut");
    recreate.now = NOW + 3600;
    assert!(matches!(recreate.decide().steps.as_slice(), [Step::CreateChangeSet(_)]));
}

#[test]
fn an_execution_ending_in_a_failed_rollback_marks_its_change_set_failed() {
    for continue_it in [false, true] {
        let mut case = Case::new();
        if continue_it {
            case.spec.failure_policy.on_update_rollback_failure =
                crate::api::UpdateRollbackFailureAction::ContinueRollback;
        }
        case.stack = Some(stack(Cfn::UpdateRollbackFailed));
        case.previous.change_set = Some(pending(&wanted(), ChangeSetKind::Update));
        case.previous.operation = Some(operation(
            OperationAction::ExecuteChangeSet,
            Some(&wanted()),
            &fingerprint(),
            NOW - 30,
        ));
        let plan = case.decide();
        let cs = plan.status.change_set.as_ref().unwrap();
        assert_eq!(cs.execution_status, Some(ExecutionState::ExecuteFailed));
        // Once rolled back: Stalled UpdateFailed, not a "cannot be executed" change set.
        let mut done = Case::new();
        done.previous = plan.status.clone();
        done.stack = Some(stack(Cfn::UpdateRollbackComplete));
        let plan = done.decide();
        assert_eq!(condition(&plan, STALLED).unwrap().1, "UpdateFailed", "{continue_it}");
    }
}
