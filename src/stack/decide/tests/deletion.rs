//! deletion.

use super::*;

#[test]
fn deletion_follows_the_policy_and_waits_for_aws() {
    let mut case = Case::new();
    case.deleting = true;
    case.spec.deletion_policy = DeletionPolicy::Retain;
    case.stack = Some(stack(Cfn::CreateComplete));
    let plan = case.decide();
    assert!(plan.release && plan.steps.is_empty());

    case.spec.deletion_policy = DeletionPolicy::Delete;
    let plan = case.decide();
    assert!(!plan.release);
    assert!(matches!(plan.steps.as_slice(), [Step::DeleteStack { retain, .. }] if retain.is_empty()));

    case.stack = Some(stack(Cfn::DeleteInProgress));
    let plan = case.decide();
    assert!(plan.steps.is_empty() && !plan.release);

    case.stack = Some(stack(Cfn::UpdateInProgress));
    let plan = case.decide();
    assert!(plan.steps.is_empty(), "never delete while an update runs");

    case.stack = None;
    let plan = case.decide();
    assert!(plan.release);

    let mut foreign = stack(Cfn::CreateComplete);
    foreign.tags.clear();
    case.stack = Some(foreign);
    let plan = case.decide();
    assert!(
        plan.release && plan.steps.is_empty(),
        "a stack we never owned is not deleted"
    );
}

#[test]
fn a_failed_delete_stalls_or_retains_the_failed_resources() {
    let mut case = Case::new();
    case.deleting = true;
    case.stack = Some(stack(Cfn::DeleteFailed));
    case.events = vec![failure_event(
        "e1",
        NOW - 5,
        "Bucket",
        "DELETE_FAILED",
        "bucket not empty",
    )];
    let plan = case.decide();
    assert!(plan.steps.is_empty() && !plan.release);
    let (_, reason, message) = condition(&plan, STALLED).unwrap();
    assert_eq!(reason, "DeleteFailed");
    assert!(message.contains("bucket not empty"));

    case.spec.failure_policy.on_delete_failure = DeleteFailureAction::RetainFailedResources;
    let plan = case.decide();
    assert!(
        matches!(plan.steps.as_slice(), [Step::DeleteStack { retain, .. }] if retain == &vec!["Bucket".to_string()])
    );
    // A read right after the call may still show the old failure: sent again (same token).
    case.previous = plan.status.clone();
    let again = case.decide();
    assert_eq!(again.steps.len(), 1);
    // It ran (DELETE_IN_PROGRESS seen) and failed again: reported, not resent every poll.
    case.previous.stack_status = Some("DELETE_IN_PROGRESS".into());
    let plan = case.decide();
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    let (_, reason, message) = condition(&plan, STALLED).unwrap();
    assert_eq!(reason, "DeleteFailed");
    assert!(
        message.contains("failed too") && message.contains("reconcile-requested-at"),
        "{message}"
    );
    case.previous = plan.status.clone();
    assert!(case.decide().steps.is_empty(), "still held");
    case.requested = Some("retry".into());
    assert_eq!(case.decide().steps.len(), 1, "a new request tries again");
}

#[test]
fn a_retained_failed_delete_is_tried_again_once_per_request() {
    let mut case = Case::new();
    case.deleting = true;
    case.stack = Some(stack(Cfn::DeleteFailed));
    case.previous.operation = Some(operation(OperationAction::DeleteStack, None, "", NOW - 30));
    assert!(case.decide().steps.is_empty(), "no request, no retry");
    case.requested = Some("r1".into());
    let plan = case.decide();
    assert!(matches!(plan.steps.as_slice(), [Step::DeleteStack { retain, .. }] if retain.is_empty()));
    case.previous = plan.status.clone();
    let plan = case.decide();
    assert!(plan.steps.is_empty(), "the same request is not retried twice");
    assert_eq!(condition(&plan, STALLED).unwrap().1, "DeleteFailed");
    assert!(plan.status.operation.is_some());
    case.previous = plan.status.clone();
    assert!(case.decide().steps.is_empty());
    case.requested = Some("r2".into());
    assert_eq!(case.decide().steps.len(), 1);
}
