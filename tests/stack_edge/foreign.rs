//! Stacks someone else made or deleted: adoption, refusal, recreation.

use super::*;

#[tokio::test]
async fn a_foreign_stack_is_refused_untouched_until_adopted() {
    let f = Fixture::new("edge-adopt").await;
    let raw = raw_cloudformation(&f.bed.aws_endpoint).await;
    let stack_name = format!("{}-legacy", f.ns.name);
    let stack_id = create_foreign(&raw, &stack_name, &[("team", "legacy")]).await;
    let before = raw_stack(&raw, &stack_name).await.unwrap();

    // Without `adoption` the same-named stack is refused, with a way out.
    let spec = json!({"region": "us-east-1", "template": {"body": QUEUE},
        "parameters": [{"name": "Visibility", "value": "45"}]});
    f.apply("legacy", spec.clone()).await;
    let stack = f.wait_condition("legacy", "Stalled", "True").await;
    let refused = ready(&stack);
    assert_eq!(
        (refused.status.as_str(), refused.reason.as_str()),
        ("False", "StackNotOwned")
    );
    assert!(
        refused.message.contains("was not created by stackpilot") && refused.message.contains("adoption: Adopt"),
        "{}",
        refused.message
    );
    wait_event(&f, "legacy", "Warning", "StackNotOwned", "adoption: Adopt").await;

    // It stays refused over three 2 s polls (6 s): nothing is written to the stack.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let stack = f.stacks().get("legacy").await.unwrap();
    assert_eq!(ready(&stack).reason, "StackNotOwned", "{:?}", ready(&stack));
    assert_eq!(aws_writes(&f).await, 0.0, "a refused stack gets no AWS writes");
    let after = raw_stack(&raw, &stack_name).await.unwrap();
    assert_eq!(status_of(&after), "CREATE_COMPLETE");
    assert_eq!(after.last_updated_time(), before.last_updated_time(), "not updated");
    assert_eq!(tags_of(&after), tags_of(&before), "tags untouched");
    assert_eq!(
        stack.status.as_ref().unwrap().stack_id,
        None,
        "status must not claim the foreign stack"
    );

    // Adopt: the same stack (same id) is updated in place and tagged.
    let mut adopt = spec.clone();
    adopt["adoption"] = json!("Adopt");
    f.apply("legacy", adopt).await;
    let stack = f.wait_condition("legacy", "Ready", "True").await;
    let status = stack.status.clone().unwrap();
    assert_eq!(status.stack_id.as_deref(), Some(stack_id.as_str()));
    wait_event(&f, "legacy", "Normal", "Adopting", &stack_name).await;
    let adopted = raw_stack(&raw, &stack_name).await.unwrap();
    assert_eq!(adopted.stack_id(), Some(stack_id.as_str()), "not recreated");
    assert_eq!(status_of(&adopted), "UPDATE_COMPLETE");
    let tags = tags_of(&adopted);
    assert_eq!(tags.get(TAG_UID), stack.uid().as_ref(), "{tags:?}");
    assert_eq!(tags.get(TAG_NAMESPACE), Some(&f.ns.name));
    assert_eq!(tags.get(TAG_NAME).map(String::as_str), Some("legacy"));
    let visibility = adopted
        .parameters()
        .iter()
        .find(|p| p.parameter_key() == Some("Visibility"));
    assert_eq!(visibility.and_then(|p| p.parameter_value()), Some("45"));
    assert_eq!(calls(&f, &["DeleteStack"]).await, 0.0, "adoption never deletes");

    // Once adopted it is ours: deleting the object deletes the stack.
    delete_stack_object(&f, "legacy").await;
    wait_raw_status(&raw, &stack_id, "DELETE_COMPLETE").await;
    f.finish().await;
}

#[tokio::test]
async fn a_stack_of_another_stack_object_is_never_adopted_nor_deleted() {
    let f = Fixture::new("edge-owned").await;
    let raw = raw_cloudformation(&f.bed.aws_endpoint).await;
    let stack_name = format!("{}-shared", f.ns.name);
    f.apply(
        "owner",
        json!({"region": "us-east-1", "stackName": stack_name, "template": {"body": QUEUE}}),
    )
    .await;
    let owner = f.wait_condition("owner", "Ready", "True").await;
    let before = raw_stack(&raw, &stack_name).await.unwrap();
    let writes = aws_writes(&f).await;

    // Even with `adoption: Adopt`, another object's stack is not taken.
    f.apply(
        "intruder",
        json!({"region": "us-east-1", "stackName": stack_name, "template": {"body": QUEUE},
            "parameters": [{"name": "Visibility", "value": "99"}], "adoption": "Adopt"}),
    )
    .await;
    let stack = wait_ready_reason(&f, "intruder", "False", "StackNotOwned").await;
    let expected = format!("managed by another Stack object ({}/owner)", f.ns.name);
    assert!(ready(&stack).message.contains(&expected), "{}", ready(&stack).message);
    assert_eq!(condition(&stack, "Stalled").map(|c| c.status.as_str()), Some("True"));
    wait_event(
        &f,
        "intruder",
        "Warning",
        "StackNotOwned",
        "managed by another Stack object",
    )
    .await;

    // Three 2 s polls later (6 s): still refused, and the stack is as the owner left it.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let stack = f.stacks().get("intruder").await.unwrap();
    assert_eq!(ready(&stack).reason, "StackNotOwned", "{:?}", ready(&stack));
    assert_eq!(aws_writes(&f).await, writes, "no AWS writes for the intruder");
    let after = raw_stack(&raw, &stack_name).await.unwrap();
    assert_eq!(tags_of(&after).get(TAG_UID), owner.uid().as_ref());
    assert_eq!(after.last_updated_time(), before.last_updated_time(), "not updated");

    // Deleting the intruder leaves the owner's stack alone: it never owned
    // anything in AWS, so it goes at once, without a call.
    delete_stack_object(&f, "intruder").await;
    let after = raw_stack(&raw, &stack_name).await.expect("the owner's stack survives");
    assert_eq!(status_of(&after), status_of(&before));
    assert_eq!(calls(&f, &["DeleteStack"]).await, 0.0);
    f.wait_condition("owner", "Ready", "True").await;

    delete_stack_object(&f, "owner").await;
    assert!(raw_stack(&raw, &stack_name).await.is_none(), "owner deleted its stack");
    f.finish().await;
}

#[tokio::test]
async fn a_stack_deleted_outside_kubernetes_is_recreated() {
    let f = Fixture::new("edge-gone").await;
    let raw = raw_cloudformation(&f.bed.aws_endpoint).await;
    f.apply("gone", json!({"region": "us-east-1", "template": {"body": QUEUE}}))
        .await;
    let stack = f.wait_condition("gone", "Ready", "True").await;
    let first_id = stack.status.unwrap().stack_id.expect("a stack id");
    let stack_name = format!("{}-gone", f.ns.name);

    raw.delete_stack().stack_name(&stack_name).send().await.unwrap();
    wait_raw_status(&raw, &first_id, "DELETE_COMPLETE").await;

    // The next poll finds it missing, says so, and creates it again.
    wait_event(&f, "gone", "Warning", "StackMissing", "deleted outside Kubernetes").await;
    let api = f.stacks();
    let stack = eventually(TIMEOUT, "gone is Ready on a new stack", || {
        let api = api.clone();
        let first_id = first_id.clone();
        async move {
            let stack = api.get("gone").await.ok()?;
            let status = stack.status.as_ref()?;
            let renewed = status.stack_id.as_ref().is_some_and(|id| *id != first_id);
            let ok = condition(&stack, "Ready").is_some_and(|c| c.status == "True");
            (renewed && ok && status.operation.is_none()).then_some(stack)
        }
    })
    .await;
    let second_id = stack.status.as_ref().unwrap().stack_id.clone().unwrap();
    let live = raw_stack(&raw, &stack_name).await.expect("recreated in AWS");
    assert_eq!(live.stack_id(), Some(second_id.as_str()));
    assert_eq!(status_of(&live), "CREATE_COMPLETE");
    assert_eq!(tags_of(&live).get(TAG_UID), stack.uid().as_ref());
    assert!(stack.status.unwrap().outputs.contains_key("QueueArn"));

    delete_stack_object(&f, "gone").await;
    wait_raw_status(&raw, &second_id, "DELETE_COMPLETE").await;
    f.finish().await;
}
