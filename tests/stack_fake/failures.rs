//! Stuck states: UPDATE_ROLLBACK_FAILED, DELETE_FAILED, a create past its timeout.

use super::*;

/// Makes the next update of `stack` fail, and its rollback fail too: the
/// stack ends UPDATE_ROLLBACK_FAILED with Queue (the changed resource) stuck.
async fn update_into_rollback_failed(h: &Harness, name: &str, extra: Value) {
    let stack = h.stack_name(name);
    h.fake.fail_update(&stack, "Queue update refused");
    h.fake.fail_update_rollback(&stack, "Queue cannot be rolled back");
    h.apply(name, spec("60", extra)).await;
}

#[tokio::test]
async fn update_rollback_failed_is_continued_skipping_resources() {
    let h = Harness::start("fake-continue").await;
    let policy = json!({"failurePolicy": {"onUpdateRollbackFailure": "ContinueRollback", "skipResources": ["Queue"]}});
    h.apply("app", spec("30", policy.clone())).await;
    h.wait_ready("app").await;
    let stack = h.stack_name("app");
    update_into_rollback_failed(&h, "app", policy).await;

    let done = h
        .wait_for("app", "UPDATE_ROLLBACK_COMPLETE, no operation left", |_, s| {
            s.stack_status.as_deref() == Some("UPDATE_ROLLBACK_COMPLETE") && s.operation.is_none()
        })
        .await;
    assert_eq!(h.calls(Action::ContinueUpdateRollback, &stack), 1);
    // The fake only completes the rollback when Queue is skipped: the skip
    // list reached the call.
    let skipped = h
        .fake
        .events(&stack)
        .into_iter()
        .any(|e| e.logical_id == "Queue" && e.reason.as_deref() == Some("Resource skipped during rollback"));
    assert!(skipped, "Queue was skipped: {:?}", h.fake.events(&stack));
    let described = h.fake.stack(&stack).expect("stack in the fake");
    assert_eq!(described.parameters[0].value, "30", "rolled back to the previous value");

    // kubectl shows why the spec is not applied: the change set ran and the
    // update failed (not "cannot be executed"), and how to go on.
    let ready = condition(&done, "Ready").expect("Ready");
    assert_eq!(ready.status, "False", "{ready:?}");
    let stalled = condition(&done, "Stalled").expect("Stalled");
    assert_eq!(stalled.reason, "UpdateFailed", "{stalled:?}");
    let change_set = done.status.as_ref().unwrap().change_set.clone().unwrap();
    assert_eq!(
        change_set.execution_status,
        Some(stackpilot::api::ExecutionState::ExecuteFailed)
    );
    for part in [
        &change_set.name,
        "Queue cannot be rolled back",
        "reconcile-requested-at",
    ] {
        assert!(stalled.message.contains(part), "{part:?} in {}", stalled.message);
    }

    let (kind, note) = h.event("app", "ContinuingRollback").await;
    assert_eq!(kind, "Warning");
    assert!(
        note.contains("UPDATE_ROLLBACK_FAILED") && note.contains("Queue"),
        "{note}"
    );
    let (kind, note) = h.event("app", "RollbackContinued").await;
    assert_eq!(kind, "Normal");
    assert!(note.contains("UPDATE_ROLLBACK_COMPLETE"), "{note}");
    h.finish().await;
}

#[tokio::test]
async fn update_rollback_failed_is_retained_by_default() {
    let h = Harness::start("fake-retain-rb").await;
    h.apply("app", spec("30", json!({}))).await;
    h.wait_ready("app").await;
    let stack = h.stack_name("app");
    update_into_rollback_failed(&h, "app", json!({})).await;

    let stuck = h.wait_condition("app", "Stalled", "True", "UpdateRollbackFailed").await;
    let status = stuck.status.clone().unwrap();
    assert_eq!(status.stack_status.as_deref(), Some("UPDATE_ROLLBACK_FAILED"));
    assert!(status.operation.is_none(), "{:?}", status.operation);
    let message = &condition(&stuck, "Stalled").unwrap().message;
    assert!(
        message.contains("Queue cannot be rolled back")
            && message.contains(&format!("continue-update-rollback --stack-name {stack}")),
        "says what failed and what to do: {message}"
    );
    assert_eq!(condition(&stuck, "Ready").unwrap().status, "False");
    let (kind, note) = h.event("app", "UpdateRollbackFailed").await;
    assert_eq!(kind, "Warning");
    assert!(note.contains("Queue cannot be rolled back"), "{note}");

    h.wait_reconciles(&stack, 2).await;
    assert_eq!(h.calls(Action::ContinueUpdateRollback, &stack), 0);
    assert_eq!(
        h.fake.stack(&stack).unwrap().status.to_string(),
        "UPDATE_ROLLBACK_FAILED"
    );
    h.finish().await;
}

#[tokio::test]
async fn delete_failed_is_deleted_again_retaining_the_failed_resources() {
    let h = Harness::start("fake-del-retain").await;
    let policy = json!({"failurePolicy": {"onDeleteFailure": "RetainFailedResources"}});
    h.apply("app", spec("30", policy)).await;
    let ready = h.wait_ready("app").await;
    let stack = h.stack_name("app");
    // A deleted stack is found by its id only.
    let stack_id = ready.status.unwrap().stack_id.expect("status.stackId");
    h.fake.fail_delete(&stack, "topic has subscriptions");

    let history = History::record(h.stacks());
    h.delete("app").await;
    h.wait_gone("app").await;
    let statuses = history.stop();

    assert!(!h.fake.stack_names().contains(&stack), "deleted in AWS");
    assert_eq!(h.calls(Action::DeleteStack, &stack), 2, "once, then again retaining");
    let events = h.fake.events(&stack_id);
    let has = |status: &str| events.iter().any(|e| e.logical_id == "Topic" && e.status == status);
    assert!(has("DELETE_FAILED") && has("DELETE_SKIPPED"), "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| e.logical_id == "Queue" && e.status == "DELETE_COMPLETE"),
        "the rest was deleted: {events:?}"
    );
    // While it was deleted again, status named the resource kept.
    let reported = statuses.iter().any(|s| {
        s.recent_failures
            .iter()
            .any(|f| f.logical_id == "Topic" && f.status == "DELETE_FAILED" && f.reason == "topic has subscriptions")
    });
    assert!(reported, "status.recentFailures listed Topic: {statuses:?}");
    let (kind, note) = h.event("app", "DeleteRetainingResources").await;
    assert_eq!(kind, "Warning");
    assert!(note.contains("\"Topic\""), "{note}");
    h.event("app", "StackDeleted").await;
    h.finish().await;
}

#[tokio::test]
async fn delete_failed_is_retained_by_default_until_retried() {
    let h = Harness::start("fake-del-stall").await;
    h.apply("app", spec("30", json!({}))).await;
    h.wait_ready("app").await;
    let stack = h.stack_name("app");
    h.fake.fail_delete(&stack, "topic has subscriptions");
    h.delete("app").await;

    let stuck = h.wait_condition("app", "Stalled", "True", "DeleteFailed").await;
    assert!(stuck.metadata.deletion_timestamp.is_some());
    assert_eq!(
        stuck.status.as_ref().unwrap().stack_status.as_deref(),
        Some("DELETE_FAILED")
    );
    let message = &condition(&stuck, "Stalled").unwrap().message;
    assert!(
        message.contains("topic has subscriptions") && message.contains("RetainFailedResources"),
        "{message}"
    );
    h.wait_reconciles(&stack, 2).await;
    assert_eq!(h.calls(Action::DeleteStack, &stack), 1, "no second delete");
    assert!(h.stacks().get_opt("app").await.unwrap().is_some(), "the object stays");

    // What the message says to do: fix it in AWS, then ask for a retry.
    h.fake.clear_failures();
    h.annotate("app", RECONCILE_REQUESTED_AT, "retry-1").await;
    h.wait_gone("app").await;
    assert!(!h.fake.stack_names().contains(&stack));
    assert_eq!(h.calls(Action::DeleteStack, &stack), 2);
    h.event("app", "RetryingDelete").await;
    h.finish().await;
}

/// `timeoutInMinutes` is enforced by stackpilot (change sets take no
/// timeout): a create still running after it is cancelled by deleting the
/// partial stack, reported, and held (`onCreateFailure` defaults to Retain)
/// until a reconcile is requested. Takes a little over the 1-minute minimum.
#[tokio::test]
async fn a_create_past_its_timeout_is_cancelled_and_held_until_asked_again() {
    let h = Harness::start("fake-timeout").await;
    let stack = h.stack_name("slow");
    // About 250 reads at the 300 ms in-flight poll: well past one minute.
    h.fake.set_operation_steps(250);
    h.apply("slow", spec("30", json!({"timeoutInMinutes": 1}))).await;
    h.wait_fake("the create is running", |f| {
        f.stack(&stack)
            .is_some_and(|s| s.status == stackpilot::aws::StackState::CreateInProgress)
    })
    .await;
    // Later phases (the cancelling delete, the next create) are quick.
    h.fake.set_operation_steps(1);

    let late = Duration::from_secs(150);
    let api = h.stacks();
    let held = eventually(late, "Stalled CreateTimedOut", || {
        let api = api.clone();
        async move {
            let stack = api.get("slow").await.ok()?;
            condition(&stack, "Stalled")
                .is_some_and(|c| c.status == "True" && c.reason == "CreateTimedOut")
                .then_some(stack)
        }
    })
    .await;
    let status = held.status.as_ref().unwrap();
    let failure = &status.recent_failures[0];
    assert_eq!(failure.status, "CREATE_FAILED");
    assert!(failure.reason.contains("timeoutInMinutes (1)"), "{}", failure.reason);
    let message = &condition(&held, "Stalled").unwrap().message;
    assert!(message.contains("reconcile-requested-at"), "{message}");
    let (kind, note) = h.event("slow", "CreateTimedOut").await;
    assert_eq!(kind, "Warning");
    assert!(note.contains(&stack), "{note}");
    h.wait_fake("the partial stack is gone", |f| !f.stack_names().contains(&stack))
        .await;
    // Held: no new create while nothing changed.
    h.wait_reconciles(&stack, 2).await;
    assert_eq!(h.calls(Action::CreateChangeSet, &stack), 1);
    assert_eq!(h.calls(Action::DeleteStack, &stack), 1);

    // Asked again: created, and this time in time.
    h.annotate("slow", RECONCILE_REQUESTED_AT, "again").await;
    h.wait_ready("slow").await;
    assert_eq!(h.calls(Action::CreateChangeSet, &stack), 2);
    h.finish().await;
}
