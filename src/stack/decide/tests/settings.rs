//! settings.

use super::*;

#[test]
fn termination_protection_is_kept_in_sync_and_lifted_for_deletion() {
    let mut case = Case::new();
    case.desired = Ok(DesiredStack {
        termination_protection: true,
        ..desired()
    });
    case.previous.applied = Some(AppliedRevision {
        generation: 1,
        fingerprint: fingerprint(),
        revision: None,
    });
    case.stack = Some(stack(Cfn::UpdateComplete));
    let plan = case.decide();
    assert_eq!(plan.steps, vec![Step::SetTerminationProtection { enabled: true }]);
    assert_eq!(condition(&plan, READY).unwrap().0, "True");

    let mut protected = stack(Cfn::UpdateComplete);
    protected.termination_protection = true;
    case.stack = Some(protected);
    assert!(case.decide().steps.is_empty(), "already in sync");

    case.deleting = true;
    let plan = case.decide();
    assert!(matches!(
        plan.steps.as_slice(),
        [
            Step::SetTerminationProtection { enabled: false },
            Step::DeleteStack { .. }
        ]
    ));
}

#[test]
fn a_stack_policy_is_set_after_the_change_it_came_with() {
    let mut case = Case::new();
    let with_policy = DesiredStack {
        stack_policy: Some(r#"{"Statement":[]}"#.into()),
        ..desired()
    }
    .seal("");
    assert_ne!(
        with_policy.fingerprint,
        fingerprint(),
        "a policy change is a new revision"
    );
    let fp = with_policy.fingerprint.clone();
    case.desired = Ok(with_policy);
    let name = change_set_name(1, &fp);
    case.previous.change_set = Some(pending(&name, ChangeSetKind::Update));
    case.previous.operation = Some(operation(OperationAction::ExecuteChangeSet, Some(&name), &fp, NOW - 30));
    case.stack = Some(stack(Cfn::UpdateComplete));
    let plan = case.decide();
    assert_eq!(
        plan.steps,
        vec![Step::SetStackPolicy {
            body: r#"{"Statement":[]}"#.into()
        }]
    );
    assert_eq!(condition(&plan, READY).unwrap().0, "True");
}

#[test]
fn a_large_template_is_uploaded_before_the_change_set() {
    let mut case = Case::new();
    case.desired = Ok(DesiredStack {
        upload: Some(crate::stack::desired::TemplateUpload {
            bucket: "templates".into(),
            key: "team-a/web/abc.template".into(),
            region: "us-east-1".into(),
        }),
        ..desired()
    });
    let plan = case.decide();
    match plan.steps.as_slice() {
        [Step::UploadTemplate { bucket, key, .. }, Step::CreateChangeSet(_)] => {
            assert_eq!(
                (bucket.as_str(), key.as_str()),
                ("templates", "team-a/web/abc.template")
            );
        }
        other => panic!("{other:?}"),
    }
}
