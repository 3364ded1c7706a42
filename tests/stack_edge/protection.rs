//! Stack policy (moto) and termination protection (LocalStack).

use super::*;

#[tokio::test]
async fn stack_policy_is_set_after_create_and_follows_the_spec_on_moto() {
    let f = Fixture::on("edge-policy", &TestBed::get().moto_endpoint, &[]).await;
    let raw = raw_cloudformation(&f.bed.moto_endpoint).await;
    let policy = |action: &str| {
        json!({"Statement": [{"Effect": "Allow", "Action": action, "Principal": "*", "Resource": "*"}]}).to_string()
    };
    let stack_name = format!("{}-guarded", f.ns.name);
    let live_policy = || async {
        let out = raw.get_stack_policy().stack_name(&stack_name).send().await.unwrap();
        out.stack_policy_body().map(str::to_string)
    };

    let first = policy("Update:*");
    f.apply(
        "guarded",
        json!({"region": "us-east-1", "template": {"body": QUEUE}, "stackPolicy": first}),
    )
    .await;
    f.wait_condition("guarded", "Ready", "True").await;
    eventually(TIMEOUT, "the first policy is set", || async {
        (live_policy().await.as_deref() == Some(first.as_str())).then_some(())
    })
    .await;

    // A policy change that comes with an update is set after the update.
    let second = policy("Update:Modify");
    // No `parameters` in the spec: with them moto never sees a change set as empty.
    let updated = QUEUE.replace("Default: 30", "Default: 60");
    f.apply(
        "guarded",
        json!({"region": "us-east-1", "template": {"body": updated}, "stackPolicy": second}),
    )
    .await;
    eventually(TIMEOUT, "the second policy is set", || async {
        (live_policy().await.as_deref() == Some(second.as_str())).then_some(())
    })
    .await;
    let stack = f.wait_condition("guarded", "Ready", "True").await;
    assert_eq!(stack.status.unwrap().stack_status.as_deref(), Some("UPDATE_COMPLETE"));

    // A policy change alone (last: see the header): an empty change set
    // ("no changes"), nothing executed, then the new policy.
    let executed = calls(&f, &["ExecuteChangeSet"]).await;
    let third = policy("Update:Replace");
    f.apply(
        "guarded",
        json!({"region": "us-east-1", "template": {"body": updated}, "stackPolicy": third}),
    )
    .await;
    eventually(TIMEOUT, "the third policy is set", || async {
        (live_policy().await.as_deref() == Some(third.as_str())).then_some(())
    })
    .await;
    let stack = f.wait_condition("guarded", "Ready", "True").await;
    let change_set = stack.status.unwrap().change_set.expect("the empty change set");
    assert_eq!(
        change_set.status,
        Some(stackpilot::api::ChangeSetState::Failed),
        "{change_set:?}"
    );
    let reason = change_set.status_reason.unwrap_or_default();
    assert!(reason.contains("didn't contain changes"), "{reason}");
    assert_eq!(calls(&f, &["ExecuteChangeSet"]).await, executed, "nothing to execute");
    let set = f
        .operator
        .metric(
            "stackpilot_aws_calls_total",
            &["operation=\"SetStackPolicy\"", "outcome=\"ok\""],
        )
        .await;
    assert_eq!(set, 3.0, "one SetStackPolicy per applied revision");

    delete_stack_object(&f, "guarded").await;
    let left = raw_stack(&raw, &stack_name).await;
    assert!(left.is_none_or(|s| status_of(&s) == "DELETE_COMPLETE"), "stack deleted");
    f.finish().await;
}

#[tokio::test]
async fn termination_protection_follows_the_spec_and_is_lifted_for_delete() {
    let f = Fixture::new("edge-protect").await;
    let raw = raw_cloudformation(&f.bed.aws_endpoint).await;
    let stack_name = format!("{}-kept", f.ns.name);
    let spec =
        |protect: bool| json!({"region": "us-east-1", "template": {"body": QUEUE}, "terminationProtection": protect});
    let protection_becomes = |wanted: bool| {
        let raw = raw.clone();
        let stack_name = stack_name.clone();
        async move {
            let what = format!("EnableTerminationProtection={wanted}");
            eventually(TIMEOUT, &what, || async {
                let stack = raw_stack(&raw, &stack_name).await?;
                (stack.enable_termination_protection() == Some(wanted)).then_some(())
            })
            .await
        }
    };

    f.apply("kept", spec(true)).await;
    f.wait_condition("kept", "Ready", "True").await;
    protection_becomes(true).await;
    f.apply("kept", spec(false)).await;
    protection_becomes(false).await;
    f.apply("kept", spec(true)).await;
    protection_becomes(true).await;
    f.wait_condition("kept", "Ready", "True").await;
    let toggles = calls(&f, &["UpdateTerminationProtection"]).await;
    assert_eq!(toggles, 3.0, "one call per change");

    // Deleting the object lifts the protection first, then deletes.
    delete_stack_object(&f, "kept").await;
    assert!(raw_stack(&raw, &stack_name).await.is_none(), "stack deleted");
    assert_eq!(calls(&f, &["UpdateTerminationProtection"]).await, toggles + 1.0);
    let log = std::fs::read_to_string(&f.operator.log).unwrap();
    let lifted = log
        .rfind("UpdateTerminationProtection false")
        .expect("protection lifted");
    let deleted = log.rfind("DeleteStack (retaining").expect("stack deleted");
    assert!(lifted < deleted, "the protection is lifted before the delete");
    f.finish().await;
}
