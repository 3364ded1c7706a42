//! Termination protection and stack policies.

use super::*;

#[tokio::test]
async fn termination_protection_follows_the_spec_and_is_lifted_to_delete() {
    let h = Harness::start("fake-protect").await;
    let stack = h.stack_name("app");
    let protected = |want: bool| {
        let stack = stack.clone();
        move |fake: &FakeCloudFormation| fake.stack(&stack).is_some_and(|s| s.termination_protection == want)
    };
    h.apply("app", spec("30", json!({"terminationProtection": true}))).await;
    h.wait_ready("app").await;
    h.wait_fake("protection on", protected(true)).await;
    assert_eq!(h.calls(Action::UpdateTerminationProtection, &stack), 1);

    h.apply("app", spec("30", json!({"terminationProtection": false})))
        .await;
    h.wait_fake("protection off", protected(false)).await;
    h.apply("app", spec("30", json!({"terminationProtection": true}))).await;
    h.wait_fake("protection on", protected(true)).await;
    h.wait_ready("app").await;
    assert_eq!(h.calls(Action::UpdateTerminationProtection, &stack), 3);
    assert_eq!(
        h.calls(Action::ExecuteChangeSet, &stack),
        1,
        "protection is not a change set"
    );

    // The fake refuses DeleteStack under protection: the stack can only be
    // gone if the operator lifted it first.
    h.delete("app").await;
    h.wait_gone("app").await;
    assert!(!h.fake.stack_names().contains(&stack), "deleted in AWS");
    let writes: Vec<Action> = h
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.stack == stack)
        .map(|c| c.operation)
        .filter(|op| matches!(op, Action::UpdateTerminationProtection | Action::DeleteStack))
        .collect();
    assert_eq!(
        writes[writes.len() - 2..],
        [Action::UpdateTerminationProtection, Action::DeleteStack],
        "{writes:?}"
    );
    assert_eq!(h.calls(Action::DeleteStack, &stack), 1, "the first delete succeeded");
    h.finish().await;
}

#[tokio::test]
async fn stack_policy_is_set_after_create_and_updated_on_change() {
    let h = Harness::start("fake-policy").await;
    let stack = h.stack_name("app");
    let allow = r#"{"Statement":[{"Effect":"Allow","Action":"Update:*","Principal":"*","Resource":"*"}]}"#;
    let deny = r#"{"Statement":[{"Effect":"Deny","Action":"Update:Replace","Principal":"*","Resource":"LogicalResourceId/Queue"}]}"#;
    h.apply("app", spec("30", json!({"stackPolicy": allow}))).await;
    h.wait_ready("app").await;
    h.wait_fake("first stack policy", |fake| {
        fake.stack_policy(&stack).as_deref() == Some(allow)
    })
    .await;
    let order: Vec<Action> = h
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.stack == stack)
        .map(|c| c.operation)
        .filter(|op| matches!(op, Action::ExecuteChangeSet | Action::SetStackPolicy))
        .collect();
    assert_eq!(order, [Action::ExecuteChangeSet, Action::SetStackPolicy]);

    h.apply("app", spec("30", json!({"stackPolicy": deny}))).await;
    h.wait_fake("second stack policy", |fake| {
        fake.stack_policy(&stack).as_deref() == Some(deny)
    })
    .await;
    h.wait_ready("app").await;
    h.wait_reconciles(&stack, 2).await;
    assert_eq!(
        h.calls(Action::SetStackPolicy, &stack),
        2,
        "once per change, not per reconcile"
    );
    assert_eq!(
        h.calls(Action::ExecuteChangeSet, &stack),
        1,
        "a policy change alone changes no resources"
    );
    h.finish().await;
}
