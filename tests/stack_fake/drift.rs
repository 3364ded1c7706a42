//! Resource drift: reported with secrets masked, cleared, reverted after approval.

use super::*;

const SECRET_VALUE: &str = "hunter2-do-not-show";

/// Queue drifted: a plain property and one holding the Secret-backed value.
fn queue_drift() -> ResourceDrift {
    let difference = |path: &str, expected: &str, actual: &str| PropertyDifference {
        path: path.into(),
        expected: expected.into(),
        actual: actual.into(),
        kind: DifferenceKind::NotEqual,
    };
    ResourceDrift {
        logical_id: "Queue".into(),
        physical_id: None,
        resource_type: String::new(),
        drift: ResourceDriftStatus::Modified,
        differences: vec![
            difference("/VisibilityTimeout", "30", "45"),
            difference("/Tags/0/Value", SECRET_VALUE, "changed-by-hand"),
        ],
    }
}

#[tokio::test]
async fn resource_drift_is_reported_masked_and_cleared() {
    let h = Harness::start("fake-drift").await;
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), &h.ns.name);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "queue-token"}, "stringData": {"token": SECRET_VALUE}
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &secret).await.expect("Secret");
    let template = r#"
Parameters:
  Token:
    Type: String
    NoEcho: true
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 30
      Tags:
        - Key: token
          Value: !Ref Token
"#;
    h.apply(
        "app",
        json!({
            "region": REGION,
            "template": {"body": template},
            "parameters": [{"name": "Token", "valueFrom": {"secretKeyRef": {"name": "queue-token", "key": "token"}}}],
            "drift": {"interval": "2s"},
        }),
    )
    .await;
    h.wait_ready("app").await;
    let stack = h.stack_name("app");
    h.fake.set_resource_drift(&stack, queue_drift());

    let drifted = h.wait_condition("app", "Drifted", "True", "ResourceDrift").await;
    let report = drifted.status.as_ref().unwrap().drift.clone().expect("status.drift");
    assert_eq!(report.status, stackpilot::api::DriftState::Drifted);
    let [queue] = report.resources.as_slice() else {
        panic!("one drifted resource: {report:?}");
    };
    assert_eq!(
        (
            queue.logical_id.as_str(),
            queue.resource_type.as_str(),
            queue.drift.as_str()
        ),
        ("Queue", "AWS::SQS::Queue", "MODIFIED")
    );
    let visibility = queue
        .differences
        .iter()
        .find(|d| d.path == "/VisibilityTimeout")
        .unwrap();
    assert_eq!(
        (
            visibility.kind.as_str(),
            visibility.expected.as_str(),
            visibility.actual.as_str()
        ),
        ("NOT_EQUAL", "30", "45")
    );
    let tag = queue.differences.iter().find(|d| d.path == "/Tags/0/Value").unwrap();
    assert_eq!(
        (tag.expected.as_str(), tag.actual.as_str()),
        ("****", "changed-by-hand")
    );
    let everything = serde_json::to_string(&drifted).unwrap();
    assert!(
        !everything.contains(SECRET_VALUE),
        "the Secret value is nowhere in the object"
    );
    assert_eq!(
        condition(&drifted, "Ready").unwrap().status,
        "True",
        "drift alone is not a failure"
    );
    let (kind, note) = h.event("app", "ResourceDrift").await;
    assert_eq!(kind, "Warning");
    assert!(note.contains("Queue") && !note.contains(SECRET_VALUE), "{note}");

    h.fake.clear_resource_drift(&stack);
    let cleared = h.wait_condition("app", "Drifted", "False", "InSync").await;
    let report = cleared.status.as_ref().unwrap().drift.clone().unwrap();
    assert_eq!(report.status, stackpilot::api::DriftState::InSync);
    assert!(report.resources.is_empty(), "{report:?}");
    let (kind, _) = h.event("app", "DriftCleared").await;
    assert_eq!(kind, "Normal");
    assert!(h.calls(Action::DetectStackDrift, &stack) >= 2);
    h.finish().await;
}

/// Waits for a change set awaiting approval.
async fn awaiting_approval(h: &Harness, name: &str) -> Stack {
    h.wait_condition(name, "ApprovalRequired", "True", "ChangeSetPending")
        .await
}

#[tokio::test]
async fn resource_drift_is_reverted_after_approval() {
    let h = Harness::start("fake-revert").await;
    let extra = json!({"drift": {"interval": "2s", "remediation": "Revert"}, "changes": {"approval": "Manual"}});
    h.apply("app", spec("30", extra)).await;
    let stack = h.stack_name("app");
    // Manual approval holds the create too.
    let pending = awaiting_approval(&h, "app").await;
    let create = pending.status.unwrap().change_set.unwrap().name;
    h.annotate("app", APPROVE_ANNOTATION, &create).await;
    h.wait_ready("app").await;

    h.fake.set_resource_drift(&stack, queue_drift());
    let pending = h
        .wait_for("app", "a revert change set awaiting approval", |stack, s| {
            let waiting = condition(stack, "ApprovalRequired").is_some_and(|c| c.status == "True");
            let revert = s
                .drift
                .as_ref()
                .is_some_and(|d| d.revert_pending && d.status == stackpilot::api::DriftState::Drifted);
            waiting && revert
        })
        .await;
    let status = pending.status.clone().unwrap();
    let change_set = status.change_set.clone().expect("status.changeSet");
    assert_ne!(change_set.name, create);
    assert_eq!(change_set.change_type, stackpilot::api::ChangeSetKind::Update);
    // The spec did not change: only a drift-aware change set has Queue to modify.
    assert!(
        change_set
            .changes
            .iter()
            .any(|c| c.action == stackpilot::api::ChangeAction::Modify && c.logical_id == "Queue"),
        "{change_set:?}"
    );
    let message = &condition(&pending, "ApprovalRequired").unwrap().message;
    assert!(message.contains(&change_set.name), "{message}");
    h.event("app", "RevertingDrift").await;
    h.wait_reconciles(&stack, 2).await;
    assert_eq!(h.calls(Action::ExecuteChangeSet, &stack), 1, "nothing runs unapproved");

    h.annotate("app", APPROVE_ANNOTATION, &change_set.name).await;
    let cleared = h.wait_condition("app", "Drifted", "False", "InSync").await;
    let report = cleared.status.as_ref().unwrap().drift.clone().unwrap();
    assert!(!report.revert_pending && report.resources.is_empty(), "{report:?}");
    assert_eq!(h.calls(Action::ExecuteChangeSet, &stack), 2);
    assert!(
        !cleared.annotations().contains_key(APPROVE_ANNOTATION),
        "the approval is used up"
    );
    h.event("app", "DriftCleared").await;
    h.wait_ready("app").await;
    h.finish().await;
}
