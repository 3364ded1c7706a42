//! `onCreateFailure: Recreate`: the backoff counts failed creates, new inputs
//! skip it, and the waiting message keeps the failed resource and reason.

use super::*;

/// A create of ours that just failed, as CloudFormation reports it: the
/// resource's event and the stack's own (here with no reason, as LocalStack
/// writes it).
fn just_failed(now: i64) -> Case {
    let mut case = Case::new();
    case.spec.failure_policy.on_create_failure = CreateFailureAction::Recreate;
    case.stack = Some(stack(Cfn::RollbackComplete));
    case.now = now;
    case.previous.operation = Some(operation(
        OperationAction::ExecuteChangeSet,
        Some(&wanted()),
        &fingerprint(),
        now - 60,
    ));
    let mut stack_level = failure_event("s", now - 20, "team-a-web", "CREATE_FAILED", "");
    stack_level.resource_type = "AWS::CloudFormation::Stack".into();
    case.events = vec![
        stack_level,
        failure_event("q", now - 30, "Q", "CREATE_FAILED", "bad property"),
    ];
    case
}

const WHY: &str = "Q (AWS::SQS::Queue) CREATE_FAILED: bad property";

#[test]
fn the_waiting_message_keeps_the_failed_resource_and_its_reason() {
    let case = just_failed(NOW);
    let plan = case.decide();
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    let (_, reason, message) = condition(&plan, READY).unwrap();
    assert_eq!(reason, "CreateFailed");
    assert!(message.contains(WHY), "{message}");
    // The stack's own row with no reason is not kept.
    assert_eq!(
        plan.status.recent_failures.len(),
        1,
        "{:?}",
        plan.status.recent_failures
    );
    assert_eq!(plan.status.recent_failures[0].logical_id, "Q");

    // The next look, with no new events, still says what failed.
    let mut later = Case::new();
    later.spec = case.spec.clone();
    later.stack = case.stack.clone();
    later.previous = plan.status.clone();
    later.now = NOW + 10;
    let plan = later.decide();
    assert!(plan.steps.is_empty(), "still in backoff");
    let (_, _, message) = condition(&plan, READY).unwrap();
    assert!(message.contains(WHY), "{message}");
}

#[test]
fn new_inputs_are_tried_at_once_without_waiting_out_the_backoff() {
    let failed = just_failed(NOW).decide().status;
    let waiting = |change: &dyn Fn(&mut Case)| {
        let mut case = Case::new();
        case.spec.failure_policy.on_create_failure = CreateFailureAction::Recreate;
        case.stack = Some(stack(Cfn::RollbackComplete));
        case.previous = failed.clone();
        case.now = NOW + 5;
        change(&mut case);
        case.decide()
    };
    assert!(waiting(&|_| {}).steps.is_empty(), "the same inputs wait");
    // A fixed template is a new generation.
    let plan = waiting(&|case| case.generation = 2);
    assert!(
        matches!(plan.steps.as_slice(), [Step::DeleteStack { .. }]),
        "{:?}",
        plan.steps
    );
    // So is a requested reconcile.
    let plan = waiting(&|case| case.requested = Some("now".into()));
    assert!(
        matches!(plan.steps.as_slice(), [Step::DeleteStack { .. }]),
        "{:?}",
        plan.steps
    );
}

#[test]
fn the_backoff_doubles_per_failed_create_not_per_event() {
    // First failure: 30 s.
    let first = just_failed(NOW).decide();
    assert_eq!(first.requeue.as_secs(), 30);
    // The second failed create (two events again): 60 s, not 4 rows' 240 s.
    let mut second = just_failed(NOW + 100);
    second.previous.recent_failures = first.status.recent_failures.clone();
    second.previous.create_failures = first.status.create_failures.clone();
    let plan = second.decide();
    assert_eq!(plan.status.create_failures.as_ref().unwrap().count, 2);
    assert_eq!(plan.requeue.as_secs(), 60, "{:?}", plan.requeue);
    // A created stack clears the count.
    let mut created = Case::new();
    created.previous = plan.status.clone();
    created.stack = Some(stack(Cfn::CreateComplete));
    assert!(created.decide().status.create_failures.is_none());
}
