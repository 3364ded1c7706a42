//! change sets.

use super::*;

#[test]
fn no_stack_starts_a_create_change_set_and_records_the_intent() {
    let plan = Case::new().decide();
    let [Step::CreateChangeSet(request)] = plan.steps.as_slice() else {
        panic!("{:?}", plan.steps)
    };
    assert_eq!(request.change_set_name, wanted());
    assert_eq!(request.change_set_type, crate::aws::ChangeSetType::Create);
    assert_eq!(request.parameters[0].value, "s3cret");
    let op = plan.status.operation.as_ref().expect("intent recorded before the call");
    assert_eq!(op.action, OperationAction::CreateChangeSet);
    assert_eq!(op.client_token, request.client_token);
    assert_eq!(condition(&plan, READY).unwrap().0, "Unknown");
    assert_eq!(condition(&plan, RECONCILING).unwrap().0, "True");
}

#[test]
fn repeating_a_decision_repeats_the_same_names_and_tokens() {
    let first = Case::new().decide();
    let second = Case::new().decide();
    assert_eq!(
        first.steps, second.steps,
        "a retried reconcile must send the identical request"
    );
}

#[test]
fn an_available_change_set_runs_at_once_with_automatic_approval() {
    let mut case = Case::new();
    case.previous.change_set = Some(pending(&wanted(), ChangeSetKind::Create));
    case.previous.operation = Some(operation(
        OperationAction::CreateChangeSet,
        Some(&wanted()),
        &fingerprint(),
        NOW - 5,
    ));
    case.stack = Some(stack(Cfn::ReviewInProgress));
    case.change_set = Some(change_set(
        &wanted(),
        ChangeSetStatus::CreateComplete,
        ExecutionStatus::Available,
    ));
    let plan = case.decide();
    assert!(matches!(plan.steps.as_slice(), [Step::ExecuteChangeSet { name, .. }] if *name == wanted()));
    assert_eq!(
        plan.status.operation.as_ref().unwrap().action,
        OperationAction::ExecuteChangeSet
    );
    let shown = plan.status.change_set.as_ref().unwrap();
    assert_eq!(shown.changes[0].logical_id, "Q");
    assert_eq!(shown.execution_status, Some(ExecutionState::Available));
    assert!(
        plan.notes
            .iter()
            .any(|n| n.reason == "ChangeSetExecuting" && n.message.contains("1 Add"))
    );
}

#[test]
fn manual_approval_waits_for_the_exact_change_set() {
    let mut case = Case::new();
    case.spec.changes.approval = Approval::Manual;
    case.previous.change_set = Some(pending(&wanted(), ChangeSetKind::Create));
    case.stack = Some(stack(Cfn::ReviewInProgress));
    case.change_set = Some(change_set(
        &wanted(),
        ChangeSetStatus::CreateComplete,
        ExecutionStatus::Available,
    ));

    let plan = case.decide();
    assert!(plan.steps.is_empty());
    let (status, _, message) = condition(&plan, APPROVAL_REQUIRED).unwrap();
    assert_eq!(status, "True");
    assert!(
        message.contains(&format!("stackpilot.dev/approve={}", wanted())),
        "{message}"
    );
    assert_eq!(condition(&plan, READY).unwrap().0, "False");
    assert!(plan.notes.iter().any(|n| n.reason == "ApprovalRequired"));

    case.approval = Some("stackpilot-g0-0123456789abcdef".into());
    let plan = case.decide();
    assert!(
        plan.steps.is_empty(),
        "an approval of another change set must not run this one"
    );
    let hint = condition(&plan, APPROVAL_REQUIRED).unwrap().2;
    assert!(hint.contains("not this change set"), "{hint}");
    assert!(
        hint.contains("stackpilot approve web -n team-a --change-set") && hint.contains("kubectl annotate -n team-a"),
        "the hint works from any namespace: {hint}"
    );

    case.approval = Some(wanted());
    let plan = case.decide();
    assert!(matches!(plan.steps.as_slice(), [Step::ExecuteChangeSet { .. }]));
    assert!(plan.approval_used);
    assert!(condition(&plan, APPROVAL_REQUIRED).is_none());
}

#[test]
fn a_finished_execution_is_recorded_as_applied_and_ready() {
    let mut case = Case::new();
    case.previous.change_set = Some(pending(&wanted(), ChangeSetKind::Create));
    case.previous.operation = Some(operation(
        OperationAction::ExecuteChangeSet,
        Some(&wanted()),
        &fingerprint(),
        NOW - 30,
    ));
    case.stack = Some(stack(Cfn::CreateComplete));
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    assert!(plan.status.operation.is_none());
    assert_eq!(plan.status.applied.as_ref().unwrap().fingerprint, fingerprint());
    assert_eq!(condition(&plan, READY).unwrap().0, "True");
    let told: Vec<&str> = plan.notes.iter().map(|n| n.reason.as_str()).collect();
    assert_eq!(told, ["Succeeded"], "one Event for the one transition");
}

#[test]
fn an_execution_not_yet_started_is_sent_again_with_the_same_token() {
    let mut case = Case::new();
    case.previous.change_set = Some(pending(&wanted(), ChangeSetKind::Update));
    case.previous.operation = Some(operation(
        OperationAction::ExecuteChangeSet,
        Some(&wanted()),
        &fingerprint(),
        NOW - 30,
    ));
    case.stack = Some(stack(Cfn::UpdateComplete));
    case.change_set = Some(change_set(
        &wanted(),
        ChangeSetStatus::CreateComplete,
        ExecutionStatus::Available,
    ));
    let plan = case.decide();
    assert!(matches!(plan.steps.as_slice(), [Step::ExecuteChangeSet { token, .. }] if token == "token"));
}

#[test]
fn a_settled_stack_with_the_spec_applied_is_ready_without_calls() {
    let mut case = Case::new();
    case.previous.applied = Some(AppliedRevision {
        generation: 1,
        fingerprint: fingerprint(),
        revision: None,
    });
    case.stack = Some(stack(Cfn::UpdateComplete));
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    assert_eq!(condition(&plan, READY).unwrap().0, "True");
    assert_eq!(plan.requeue, Timing::default().resync);
}

#[test]
fn a_new_spec_supersedes_an_unexecuted_change_set() {
    let mut case = Case::new();
    case.previous.applied = Some(AppliedRevision {
        generation: 0,
        fingerprint: "old".into(),
        revision: None,
    });
    case.previous.change_set = Some(pending("stackpilot-g0-aaaaaaaaaaaaaaaa", ChangeSetKind::Update));
    case.stack = Some(stack(Cfn::UpdateComplete));
    let plan = case.decide();
    match plan.steps.as_slice() {
        [Step::DeleteChangeSet { name }, Step::CreateChangeSet(request)] => {
            assert_eq!(name, "stackpilot-g0-aaaaaaaaaaaaaaaa");
            assert_eq!(request.change_set_type, crate::aws::ChangeSetType::Update);
        }
        other => panic!("{other:?}"),
    }
    assert!(plan.notes.iter().any(|n| n.reason == "ChangeSetSuperseded"));
}

#[test]
fn an_empty_change_set_is_applied_with_update_stack_and_then_is_success() {
    let mut case = Case::new();
    case.previous.applied = Some(AppliedRevision {
        generation: 0,
        fingerprint: "old".into(),
        revision: None,
    });
    case.previous.change_set = Some(pending(&wanted(), ChangeSetKind::Update));
    case.stack = Some(stack(Cfn::UpdateComplete));
    let mut empty = change_set(&wanted(), ChangeSetStatus::Failed, ExecutionStatus::Unavailable);
    empty.status_reason = Some(
        "The submitted information didn't contain changes. Submit different information to create a change set.".into(),
    );
    empty.changes.clear();
    case.change_set = Some(empty);
    // What the change set cannot carry (settings, unused parameters,
    // outputs) goes with UpdateStack; the empty change set is deleted.
    let plan = case.decide();
    let [Step::UpdateStack(request), Step::DeleteChangeSet { name }] = plan.steps.as_slice() else {
        panic!("{:?}", plan.steps)
    };
    assert_eq!(name, &wanted());
    assert!(request.client_token.contains("update"), "{}", request.client_token);
    let op = plan.status.operation.as_ref().unwrap();
    assert_eq!(op.action, OperationAction::UpdateStack);
    assert_eq!(plan.status.applied.as_ref().unwrap().fingerprint, "old", "not yet");
    assert_eq!(condition(&plan, READY).unwrap().0, "Unknown");
    assert_eq!(case.decide().steps.len(), 2, "the same token when repeated");

    // Settled (or nothing to update): applied and Ready, no more calls.
    let mut done = Case::new();
    done.previous = plan.status.clone();
    done.stack = Some(stack(Cfn::UpdateComplete));
    let plan = done.decide();
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    assert_eq!(plan.status.applied.as_ref().unwrap().fingerprint, fingerprint());
    assert!(plan.status.operation.is_none());
    assert_eq!(condition(&plan, READY).unwrap().0, "True");

    // The stack already has every setting and parameter value (a requested
    // reconcile, say): plain success, no UpdateStack.
    let mut same = stack(Cfn::UpdateComplete);
    same.parameters = vec![crate::aws::Parameter {
        key: "Password".into(),
        value: "****".into(),
    }];
    let mut noop = Case::new();
    noop.previous = case.previous.clone();
    noop.stack = Some(same);
    noop.change_set = case.change_set.clone();
    let plan = noop.decide();
    assert!(
        matches!(plan.steps.as_slice(), [Step::DeleteChangeSet { .. }]),
        "{:?}",
        plan.steps
    );
    assert_eq!(plan.status.applied.as_ref().unwrap().fingerprint, fingerprint());
    let (status, _, message) = condition(&plan, READY).unwrap();
    assert_eq!(status, "True");
    assert!(message.contains("no changes"), "{message}");
    // A new notification topic is something the stack does not have.
    let mut topic = desired();
    topic.options.notification_arns = vec!["arn:aws:sns:us-east-1:123456789012:ops".into()];
    let topic = topic.seal("");
    let name = change_set_name(1, &topic.fingerprint);
    noop.desired = Ok(topic);
    noop.previous.change_set = Some(pending(&name, ChangeSetKind::Update));
    if let Some(cs) = noop.change_set.as_mut() {
        cs.change_set_name = name;
    }
    assert!(matches!(noop.decide().steps.first(), Some(Step::UpdateStack(_))));

    // Under Manual approval the update waits for an approval of that change set.
    case.previous.applied = None;
    case.spec.changes.approval = Approval::Manual;
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    assert!(condition(&plan, APPROVAL_REQUIRED).unwrap().2.contains(&wanted()));
    case.approval = Some(wanted());
    let plan = case.decide();
    assert!(matches!(plan.steps.first(), Some(Step::UpdateStack(_))));
    assert!(plan.approval_used);
}

#[test]
fn a_rejected_change_set_stalls_with_the_reason() {
    let mut case = Case::new();
    case.previous.change_set = Some(pending(&wanted(), ChangeSetKind::Create));
    case.stack = Some(stack(Cfn::ReviewInProgress));
    let mut failed = change_set(&wanted(), ChangeSetStatus::Failed, ExecutionStatus::Unavailable);
    failed.status_reason = Some("Template format error: Unresolved resource dependencies [X]".into());
    case.change_set = Some(failed);
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    let (status, reason, message) = condition(&plan, STALLED).unwrap();
    assert_eq!((status, reason), ("True", "ChangeSetFailed"));
    assert!(message.contains("Unresolved resource dependencies"));
}

#[test]
fn an_executed_change_set_without_its_intent_counts_as_applied() {
    // The intent was lost (a crash, or a stale write); AWS shows the change
    // set executed on a settled stack.
    let mut case = Case::new();
    case.previous.change_set = Some(pending(&wanted(), ChangeSetKind::Update));
    case.previous.applied = Some(AppliedRevision {
        generation: 0,
        fingerprint: "old".into(),
        revision: None,
    });
    case.stack = Some(stack(Cfn::UpdateComplete));
    case.change_set = Some(change_set(
        &wanted(),
        ChangeSetStatus::CreateComplete,
        ExecutionStatus::ExecuteComplete,
    ));
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    assert_eq!(plan.status.applied.as_ref().unwrap().fingerprint, fingerprint());
    assert_eq!(condition(&plan, READY).unwrap().0, "True");
    // While the stack still runs it, it is in progress.
    case.stack = Some(stack(Cfn::UpdateInProgress));
    assert_eq!(condition(&case.decide(), READY).unwrap().0, "Unknown");
}

#[test]
fn a_superseded_change_set_is_remembered_until_deleted() {
    // A change set waits for approval; the spec goes back to the applied revision.
    let mut case = Case::new();
    case.spec.changes.approval = Approval::Manual;
    case.previous.applied = Some(AppliedRevision {
        generation: 1,
        fingerprint: fingerprint(),
        revision: None,
    });
    case.previous.change_set = Some(pending("stackpilot-g2-aaaaaaaaaaaaaaaa", ChangeSetKind::Update));
    case.stack = Some(stack(Cfn::UpdateComplete));
    let plan = case.decide();
    assert_eq!(
        plan.steps,
        vec![Step::DeleteChangeSet {
            name: "stackpilot-g2-aaaaaaaaaaaaaaaa".into()
        }]
    );
    assert_eq!(
        plan.status.superseded_change_sets,
        vec!["stackpilot-g2-aaaaaaaaaaaaaaaa".to_string()]
    );
    assert!(plan.status.change_set.is_none());
    assert!(condition(&plan, APPROVAL_REQUIRED).is_none());

    // After a crash before the delete, the next reconcile deletes it again.
    let mut after_crash = Case::new();
    after_crash.previous = plan.status.clone();
    after_crash.stack = Some(stack(Cfn::UpdateComplete));
    let plan = after_crash.decide();
    assert_eq!(
        plan.steps,
        vec![Step::DeleteChangeSet {
            name: "stackpilot-g2-aaaaaaaaaaaaaaaa".into()
        }]
    );
}

/// The happy create, decision by decision as the reconciles would see it
/// (the production read choices included): one status write per real
/// transition, none while CloudFormation computes the change set, no stack
/// events read, and two Events: what is executed, and Ready.
#[test]
fn a_happy_create_writes_status_once_per_transition_and_reads_no_events() {
    let mut case = Case::new();
    case.events = vec![failure_event("e1", NOW - 100, "Q", "CREATE_FAILED", "old")];
    let mut writes = 0;
    let mut notes = Vec::new();
    let mut step = |case: &mut Case| {
        let mut plan = case.decide();
        assert!(case.reads().events.is_empty(), "no events read on the happy path");
        // What act does once ExecuteChangeSet has answered.
        if plan.steps.iter().any(|s| matches!(s, Step::ExecuteChangeSet { .. })) {
            execution_started(&mut plan.status);
        }
        if crate::runtime::status::changed(&case.previous, &plan.status) {
            writes += 1;
        }
        notes.extend(plan.notes.iter().map(|n| n.reason.clone()));
        case.previous = plan.status.clone();
        plan
    };
    let plan = step(&mut case);
    assert!(matches!(plan.steps.as_slice(), [Step::CreateChangeSet(_)]));
    // CloudFormation computes the change set: the stack is under review.
    case.stack = Some(stack(Cfn::ReviewInProgress));
    case.change_set = Some(change_set(
        &wanted(),
        ChangeSetStatus::CreatePending,
        ExecutionStatus::Unavailable,
    ));
    // Looking while it is computed writes nothing (REVIEW_IN_PROGRESS
    // alone is not worth a write; the execution's write records it).
    for _ in 0..2 {
        let plan = step(&mut case);
        assert!(plan.steps.is_empty());
        assert!(!crate::runtime::status::changed(&case.previous, &plan.status));
    }
    case.change_set = Some(change_set(
        &wanted(),
        ChangeSetStatus::CreateComplete,
        ExecutionStatus::Available,
    ));
    let plan = step(&mut case);
    assert!(matches!(plan.steps.as_slice(), [Step::ExecuteChangeSet { .. }]));
    // The write after the call shows CREATE_IN_PROGRESS; looking while
    // CloudFormation runs it writes nothing.
    assert_eq!(case.previous.stack_status.as_deref(), Some("CREATE_IN_PROGRESS"));
    case.change_set = Some(change_set(
        &wanted(),
        ChangeSetStatus::CreateComplete,
        ExecutionStatus::ExecuteInProgress,
    ));
    case.stack = Some(stack(Cfn::CreateInProgress));
    for _ in 0..2 {
        let plan = step(&mut case);
        assert!(plan.steps.is_empty());
        assert!(!crate::runtime::status::changed(&case.previous, &plan.status));
    }
    case.change_set = Some(change_set(
        &wanted(),
        ChangeSetStatus::CreateComplete,
        ExecutionStatus::ExecuteComplete,
    ));
    case.stack = Some(stack(Cfn::CreateComplete));
    let plan = step(&mut case);
    assert!(plan.steps.is_empty());
    assert_eq!(condition(&plan, READY).unwrap().0, "True");
    assert_eq!(
        writes, 3,
        "intent to plan, the execution (recorded after the call), Ready"
    );
    assert_eq!(
        notes,
        ["ChangeSetExecuting", "Succeeded"],
        "the planning of a new stack is told by its execution"
    );
}

/// An update whose ExecuteChangeSet AWS took but whose status write after it
/// was lost (a crash, a conflict): the status still holds the intent to plan.
fn lost_execution_record(stack_status: Cfn, execution: ExecutionStatus) -> Case {
    let mut case = Case::new();
    case.previous.applied = Some(AppliedRevision {
        generation: 0,
        fingerprint: "old".into(),
        revision: None,
    });
    case.previous.stack_status = Some("UPDATE_COMPLETE".into());
    case.previous.change_set = Some(pending(&wanted(), ChangeSetKind::Update));
    case.previous.operation = Some(operation(
        OperationAction::CreateChangeSet,
        Some(&wanted()),
        &fingerprint(),
        NOW - 60,
    ));
    case.stack = Some(stack(stack_status));
    case.change_set = Some(change_set(&wanted(), ChangeSetStatus::CreateComplete, execution));
    case
}

#[test]
fn an_execution_whose_record_was_lost_is_finished_from_its_change_set() {
    // Still running: reported as running, nothing executed again.
    let running = lost_execution_record(Cfn::UpdateInProgress, ExecutionStatus::ExecuteInProgress);
    let plan = running.decide();
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    assert_eq!(condition(&plan, READY).unwrap().0, "Unknown");

    // Done: the change set read says it ran, so its inputs are applied.
    let done = lost_execution_record(Cfn::UpdateComplete, ExecutionStatus::ExecuteComplete);
    assert!(done.reads().change_set.is_some(), "the change set is read to tell");
    let plan = done.decide();
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    assert_eq!(condition(&plan, READY).unwrap().0, "True");
    assert_eq!(plan.status.applied.as_ref().unwrap().fingerprint, fingerprint());
    assert!(plan.status.operation.is_none());
    assert_eq!(
        plan.status.change_set.as_ref().unwrap().execution_status,
        Some(ExecutionState::ExecuteComplete)
    );
}

#[test]
fn a_failed_execution_whose_record_was_lost_stalls_with_its_cause_and_is_not_run_again() {
    let mut failed = lost_execution_record(Cfn::UpdateRollbackComplete, ExecutionStatus::ExecuteFailed);
    failed.events = vec![failure_event(
        "e1",
        NOW - 20,
        "Q",
        "UPDATE_FAILED",
        "VisibilityTimeout out of range",
    )];
    let plan = failed.decide();
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    let (status, reason, message) = condition(&plan, STALLED).unwrap();
    assert_eq!((status, reason), ("True", "UpdateFailed"));
    assert!(message.contains("VisibilityTimeout out of range"), "{message}");
    assert_ne!(
        plan.status.applied.as_ref().unwrap().fingerprint,
        fingerprint(),
        "a rolled-back update is not applied"
    );
}

#[test]
fn an_approved_execution_whose_record_was_lost_is_explained_by_its_events() {
    // Under Manual approval no intent is left once the change set waits: a
    // status write lost after the execute (a 409 from the approval's own
    // annotation write) leaves only the pending change set to tell.
    let mut failed = lost_execution_record(Cfn::UpdateRollbackComplete, ExecutionStatus::ExecuteFailed);
    failed.previous.operation = None;
    failed.events = vec![failure_event(
        "e1",
        NOW - 20,
        "Broken",
        "CREATE_FAILED",
        "CreateQueue failed",
    )];
    assert!(
        !failed.reads().events.is_empty(),
        "the stack moved under our change set: read why"
    );
    let plan = failed.decide();
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    let (_, reason, message) = condition(&plan, STALLED).unwrap();
    assert_eq!(reason, "UpdateFailed");
    assert!(message.contains("Broken"), "{message}");
    assert_eq!(plan.status.recent_failures.len(), 1);
}
