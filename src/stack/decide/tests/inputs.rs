//! inputs.

use super::*;

#[test]
fn secret_values_never_reach_status_or_notes() {
    for plan in [Case::new().decide(), {
        let mut case = Case::new();
        case.spec.changes.approval = Approval::Manual;
        case.previous.change_set = Some(pending(&wanted(), ChangeSetKind::Create));
        case.stack = Some(stack(Cfn::ReviewInProgress));
        case.change_set = Some(change_set(
            &wanted(),
            ChangeSetStatus::CreateComplete,
            ExecutionStatus::Available,
        ));
        case.decide()
    }] {
        let status = serde_json::to_string(&plan.status).unwrap();
        assert!(!status.contains("s3cret"), "{status}");
        assert!(plan.notes.iter().all(|n| !n.message.contains("s3cret")));
    }
    assert!(
        !format!("{:?}", desired()).contains("s3cret"),
        "Debug redacts Secret values"
    );
}

#[test]
fn input_problems_make_no_calls_and_say_why() {
    let mut case = Case::new();
    case.desired = Err(Problem::stalled(
        "InvalidTemplate",
        "template is neither valid JSON nor valid YAML",
    ));
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    assert_eq!(condition(&plan, STALLED).unwrap().1, "InvalidTemplate");

    case.desired = Err(Problem::waiting("DependencyNotReady", "Stack db is not Ready yet"));
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    assert_eq!(condition(&plan, READY).unwrap().1, "DependencyNotReady");
    assert!(condition(&plan, STALLED).is_none());
    assert!(plan.requeue.as_secs() <= 30);
}

#[test]
fn suspend_does_nothing() {
    let mut case = Case::new();
    case.spec.suspend = true;
    case.desired = Err(Problem::stalled("NotApplicable", ""));
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    assert_eq!(condition(&plan, READY).unwrap().1, "Suspended");
}
