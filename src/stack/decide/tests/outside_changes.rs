//! outside changes.

use super::*;

#[test]
fn a_stack_deleted_outside_kubernetes_is_recreated_with_a_warning() {
    let mut case = Case::new();
    case.previous.applied = Some(AppliedRevision {
        generation: 1,
        fingerprint: fingerprint(),
        revision: None,
    });
    case.previous.stack_id = Some("arn:old".into());
    let plan = case.decide();
    assert!(matches!(plan.steps.as_slice(), [Step::CreateChangeSet(_)]));
    assert!(plan.notes.iter().any(|n| n.warning && n.reason == "StackMissing"));
    assert!(plan.status.applied.is_none());
}

#[test]
fn a_stack_we_did_not_create_is_refused_unless_adopted() {
    let mut foreign = stack(Cfn::CreateComplete);
    foreign.tags.clear();
    let mut case = Case::new();
    case.stack = Some(foreign.clone());
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    let (_, reason, message) = condition(&plan, STALLED).unwrap();
    assert_eq!(reason, "StackNotOwned");
    assert!(message.contains("adoption: Adopt"));

    case.spec.adoption = Adoption::Adopt;
    let plan = case.decide();
    assert!(
        matches!(plan.steps.as_slice(), [Step::CreateChangeSet(r)] if r.change_set_type == crate::aws::ChangeSetType::Update)
    );
    assert!(plan.notes.iter().any(|n| n.reason == "Adopting"));

    // Another object's stack is never taken, even with Adopt.
    foreign.tags.insert(TAG_UID.into(), "someone-else".into());
    case.stack = Some(foreign);
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    assert!(
        condition(&plan, STALLED)
            .unwrap()
            .2
            .contains("managed by another Stack object")
    );
}

#[test]
fn a_refused_stack_stays_refused_on_the_next_reconcile_and_is_not_deleted() {
    for uid in [None, Some("someone-else")] {
        let mut foreign = stack(Cfn::CreateComplete);
        foreign.tags.clear();
        if let Some(uid) = uid {
            foreign.tags.insert(TAG_UID.into(), uid.into());
        }
        let mut case = Case::new();
        case.spec.adoption = if uid.is_some() {
            Adoption::Adopt
        } else {
            Adoption::Refuse
        };
        case.stack = Some(foreign);
        let first = case.decide();
        assert_eq!(first.status.stack_id, None, "a foreign stack id is not recorded");
        case.previous = first.status;
        let again = case.decide();
        assert!(again.steps.is_empty(), "{uid:?}: {:?}", again.steps);
        assert_eq!(condition(&again, STALLED).unwrap().1, "StackNotOwned");
        case.previous = again.status;
        case.deleting = true;
        let delete = case.decide();
        assert!(delete.release && delete.steps.is_empty(), "{uid:?}: {:?}", delete.steps);
    }
}

#[test]
fn an_out_of_band_change_is_repaired_once_then_reported() {
    let mut case = Case::new();
    case.desired = Ok(DesiredStack {
        parameters: vec![ResolvedParameter {
            name: "Size".into(),
            value: "3".into(),
            secret: false,
        }],
        ..desired()
    }
    .seal(""));
    let fp = case.desired.as_ref().unwrap().fingerprint.clone();
    case.previous.applied = Some(AppliedRevision {
        generation: 1,
        fingerprint: fp,
        revision: None,
    });
    let mut changed = stack(Cfn::UpdateComplete);
    changed.parameters = vec![crate::aws::Parameter {
        key: "Size".into(),
        value: "9".into(),
    }];
    changed.tags.insert("added-by-hand".into(), "x".into());
    case.stack = Some(changed.clone());
    let plan = case.decide();
    let (status, reason, message) = condition(&plan, conditions::DRIFTED).unwrap();
    assert_eq!((status, reason), ("True", "ConfigurationDrift"));
    assert!(
        message.contains("\"Size\"") && message.contains("\"added-by-hand\""),
        "{message}"
    );
    assert!(!message.contains('9'), "values are not shown: {message}");
    assert_eq!(plan.status.repairs, 1);
    assert!(plan.status.applied.is_none(), "forces a new change set");
    assert!(plan.notes.iter().any(|n| n.warning && n.reason == "ConfigurationDrift"));

    // If the re-applied stack still differs, it is reported, not fought.
    let mut again = Case::new();
    again.desired = case.desired.clone();
    again.previous = plan.status.clone();
    again.previous.applied = case.previous.applied.clone();
    again.stack = Some(changed);
    let plan = again.decide();
    assert_eq!(condition(&plan, conditions::DRIFTED).unwrap().1, "UnresolvedDrift");
    assert_eq!(plan.status.repairs, 1);
    assert_eq!(condition(&plan, READY).unwrap().0, "True");

    // Masked (NoEcho) values are never counted as drift.
    let mut masked = Case::new();
    masked.desired = case.desired.clone();
    masked.previous.applied = case.previous.applied.clone();
    let mut quiet = stack(Cfn::UpdateComplete);
    quiet.parameters = vec![crate::aws::Parameter {
        key: "Size".into(),
        value: "****".into(),
    }];
    masked.stack = Some(quiet);
    assert!(condition(&masked.decide(), conditions::DRIFTED).is_none());
}

#[test]
fn a_template_edited_outside_kubernetes_is_reapplied() {
    // The live template is read when a drift check starts (steady: one is due).
    let mut case = steady();
    case.live_template = Some("Resources:\n  Q: {Type: AWS::SQS::Queue}\n".into());
    assert_eq!(
        case.decide().steps,
        vec![Step::DetectDrift],
        "same template (trailing whitespace aside): only the drift check"
    );
    case.live_template = Some("Resources:\n  Other: {Type: AWS::SNS::Topic}\n".into());
    let plan = case.decide();
    let (status, reason, message) = condition(&plan, conditions::DRIFTED).unwrap();
    assert_eq!((status, reason), ("True", "ConfigurationDrift"));
    assert!(message.contains("the template"), "{message}");
    assert_eq!(plan.status.repairs, 1);
}
