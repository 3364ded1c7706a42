//! The Stack slice end to end: the operator binary against the real
//! kube-apiserver and LocalStack (asynchronous stack states, change sets,
//! per-resource failure events). Each test runs its own operator watching
//! its own namespace, so metrics and events belong to that test alone.

mod support;

use std::time::Duration;

use kube::ResourceExt;
use kube::api::DeleteParams;
use serde_json::json;
use support::eventually;
use support::fixture::{Fixture, TIMEOUT, ready};

const QUEUE_TEMPLATE: &str = r#"
Parameters:
  Visibility:
    Type: Number
    Default: 30
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: !Ref Visibility
Outputs:
  QueueUrl:
    Value: !Ref Queue
  QueueArn:
    Value: !GetAtt Queue.Arn
  Visibility:
    Value: !Ref Visibility
"#;

#[tokio::test]
async fn create_update_noop_and_delete() {
    let f = Fixture::new("e2e-life").await;
    let spec = json!({"region": "us-east-1", "template": {"body": QUEUE_TEMPLATE},
        "parameters": [{"name": "Visibility", "value": "40"}], "tags": {"team": "payments"}});
    f.apply("queue", spec.clone()).await;
    let stack = f.wait_condition("queue", "Ready", "True").await;
    let status = stack.status.clone().unwrap();
    let stack_name = format!("{}-queue", f.ns.name);
    assert_eq!(status.stack_name.as_deref(), Some(stack_name.as_str()));
    assert_eq!(status.stack_status.as_deref(), Some("CREATE_COMPLETE"));
    assert!(
        status
            .stack_id
            .as_deref()
            .unwrap()
            .starts_with("arn:aws:cloudformation:us-east-1:")
    );
    assert_eq!(status.outputs.get("Visibility").map(String::as_str), Some("40"));
    assert!(status.outputs.contains_key("QueueUrl"));
    assert!(stack.finalizers().contains(&stackpilot::stack::FINALIZER.to_string()));
    let change_set = status.change_set.clone().expect("change set shown in status");
    assert_eq!(change_set.change_type, stackpilot::api::ChangeSetKind::Create);
    assert!(
        change_set
            .changes
            .iter()
            .any(|c| c.action == stackpilot::api::ChangeAction::Add && c.logical_id == "Queue"),
        "{change_set:?}"
    );
    let first_change_set = change_set.name.clone();

    // The stack in AWS carries the user's tags and the ownership tags.
    let described = f
        .aws
        .describe_stack(&stack_name)
        .await
        .unwrap()
        .expect("stack exists in AWS");
    assert_eq!(described.tags.get("team").map(String::as_str), Some("payments"));
    assert_eq!(described.tags.get(stackpilot::stack::TAG_UID), stack.uid().as_ref());
    assert_eq!(described.tags.get(stackpilot::stack::TAG_NAMESPACE), Some(&f.ns.name));

    // Changing a parameter updates the stack through a new change set.
    let mut updated = spec.clone();
    updated["parameters"][0]["value"] = json!("60");
    f.apply("queue", updated).await;
    let stack = f.wait_condition("queue", "Ready", "True").await;
    let status = stack.status.clone().unwrap();
    assert_eq!(status.outputs.get("Visibility").map(String::as_str), Some("60"));
    assert_eq!(status.stack_status.as_deref(), Some("UPDATE_COMPLETE"));
    let change_set = status.change_set.clone().unwrap();
    assert_eq!(change_set.change_type, stackpilot::api::ChangeSetKind::Update);
    assert_ne!(change_set.name, first_change_set);
    assert!(
        change_set
            .changes
            .iter()
            .any(|c| c.action == stackpilot::api::ChangeAction::Modify && c.logical_id == "Queue"),
        "{change_set:?}"
    );

    // A requested reconcile with nothing to change is success, not an error.
    let before = f
        .operator
        .metric("stackpilot_aws_calls_total", &["operation=\"ExecuteChangeSet\""])
        .await;
    f.annotate(
        "queue",
        stackpilot::stack::RECONCILE_REQUESTED_AT,
        "2026-11-21T00:00:00Z",
    )
    .await;
    let api = f.stacks();
    let stack = eventually(TIMEOUT, "no-op change set recorded", || {
        let api = api.clone();
        async move {
            let stack = api.get("queue").await.ok()?;
            let cs = stack.status.as_ref()?.change_set.clone()?;
            (cs.status == Some(stackpilot::api::ChangeSetState::Failed) && cs.changes.is_empty()).then_some(stack)
        }
    })
    .await;
    assert_eq!(ready(&stack).status, "True", "{:?}", ready(&stack));
    assert!(
        ready(&stack).message.contains("no changes"),
        "{}",
        ready(&stack).message
    );
    let after = f
        .operator
        .metric("stackpilot_aws_calls_total", &["operation=\"ExecuteChangeSet\""])
        .await;
    assert_eq!(before, after, "a no-op must not execute anything");

    // Deleting the object deletes the stack, behind the finalizer.
    f.stacks().delete("queue", &DeleteParams::default()).await.unwrap();
    f.wait_gone("queue").await;
    assert!(
        f.aws.describe_stack(&stack_name).await.unwrap().is_none(),
        "stack still in AWS"
    );
    // Events are published in the background; they arrive shortly after.
    eventually(TIMEOUT, "the lifecycle's events", || async {
        let reasons: Vec<String> = f.events("queue").await.into_iter().map(|e| e.1).collect();
        ["ChangeSetExecuting", "Succeeded", "Deleting", "StackDeleted"]
            .iter()
            .all(|reason| reasons.iter().any(|r| r == reason))
            .then_some(())
    })
    .await;
    f.finish().await;
}

#[tokio::test]
async fn retain_leaves_the_stack_in_aws() {
    let f = Fixture::new("e2e-retain").await;
    f.apply(
        "kept",
        json!({"region": "us-east-1", "template": {"body": QUEUE_TEMPLATE}, "deletionPolicy": "Retain"}),
    )
    .await;
    f.wait_condition("kept", "Ready", "True").await;
    let stack_name = format!("{}-kept", f.ns.name);
    f.stacks().delete("kept", &DeleteParams::default()).await.unwrap();
    f.wait_gone("kept").await;
    let described = f.aws.describe_stack(&stack_name).await.unwrap();
    assert!(
        described.is_some_and(|s| s.status.as_str() == "CREATE_COMPLETE"),
        "retained stack should remain"
    );
    f.aws.delete_stack(&stack_name, "cleanup-retained", &[]).await.unwrap();
    f.finish().await;
}

#[tokio::test]
async fn bad_input_stalls_without_aws_calls_and_recovers() {
    let f = Fixture::new("e2e-bad").await;
    f.apply(
        "broken",
        json!({"region": "us-east-1", "template": {"body": "Resources: [unclosed"}}),
    )
    .await;
    let stack = f.wait_condition("broken", "Stalled", "True").await;
    assert_eq!(ready(&stack).status, "False");
    assert_eq!(ready(&stack).reason, "InvalidTemplate");
    assert!(
        ready(&stack).message.contains("neither valid JSON nor valid YAML"),
        "{}",
        ready(&stack).message
    );

    // Unknown parameter and missing Secret are explained too.
    f.apply(
        "unknown",
        json!({"region": "us-east-1", "template": {"body": QUEUE_TEMPLATE},
        "parameters": [{"name": "Nope", "value": "1"}]}),
    )
    .await;
    let stack = f.wait_condition("unknown", "Stalled", "True").await;
    assert_eq!(ready(&stack).reason, "InvalidParameters");
    assert!(ready(&stack).message.contains("\"Nope\""));
    f.apply(
        "nosecret",
        json!({"region": "us-east-1", "template": {"body": QUEUE_TEMPLATE},
        "parameters": [{"name": "Visibility", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]}),
    )
    .await;
    let stack = f.wait_condition("nosecret", "Ready", "False").await;
    assert_eq!(ready(&stack).reason, "SecretNotFound");

    // None of that reached AWS over 6 s: three 2 s polls of each object.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let calls = f.operator.metric("stackpilot_aws_calls_total", &[]).await;
    assert_eq!(calls, 0.0, "bad input must not call AWS");
    let events = f.events("broken").await;
    assert!(
        events
            .iter()
            .any(|(t, r, n)| t == "Warning" && r == "InvalidTemplate" && !n.is_empty()),
        "{events:?}"
    );

    // Fixing the template recovers.
    f.apply(
        "broken",
        json!({"region": "us-east-1", "template": {"body": QUEUE_TEMPLATE}}),
    )
    .await;
    let stack = f.wait_condition("broken", "Ready", "True").await;
    assert!(stack.status.unwrap().conditions.iter().all(|c| c.type_ != "Stalled"));
    for name in ["broken", "unknown", "nosecret"] {
        f.stacks().delete(name, &DeleteParams::default()).await.unwrap();
        f.wait_gone(name).await;
    }
    f.finish().await;
}

#[tokio::test]
async fn manual_approval_waits_for_that_change_set() {
    let f = Fixture::new("e2e-approve").await;
    f.apply(
        "gated",
        json!({"region": "us-east-1", "template": {"body": QUEUE_TEMPLATE}, "changes": {"approval": "Manual"}}),
    )
    .await;
    let stack = f.wait_condition("gated", "ApprovalRequired", "True").await;
    let change_set = stack.status.as_ref().unwrap().change_set.clone().unwrap();
    assert!(ready(&stack).message.contains(&change_set.name));
    assert!(
        f.aws
            .describe_stack(&format!("{}-gated", f.ns.name))
            .await
            .unwrap()
            .is_some_and(|s| s.status.as_str() == "REVIEW_IN_PROGRESS")
    );

    // An approval naming another change set does nothing.
    f.annotate(
        "gated",
        stackpilot::stack::APPROVE_ANNOTATION,
        "stackpilot-g0-0000000000000000",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stack = f.wait_condition("gated", "ApprovalRequired", "True").await;
    assert!(
        ready(&stack).message.contains("not this change set"),
        "{}",
        ready(&stack).message
    );

    // The CLI refuses a change set that is not the one waiting, then approves.
    let cli = |args: &[&str]| {
        std::process::Command::new(support::binary())
            .args(args)
            .env("KUBECONFIG", &f.bed.kubeconfig)
            .output()
            .expect("stackpilot approve")
    };
    let refused = cli(&[
        "approve",
        "gated",
        "-n",
        &f.ns.name,
        "--change-set",
        "stackpilot-g9-ffffffffffffffff",
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not stackpilot-g9-ffffffffffffffff"));
    let approved = cli(&["approve", "gated", "-n", &f.ns.name, "--change-set", &change_set.name]);
    assert!(
        approved.status.success(),
        "{}",
        String::from_utf8_lossy(&approved.stderr)
    );
    assert!(String::from_utf8_lossy(&approved.stdout).contains(&change_set.name));
    let stack = f.wait_condition("gated", "Ready", "True").await;
    assert!(
        !stack.annotations().contains_key(stackpilot::stack::APPROVE_ANNOTATION),
        "approval is cleared once used"
    );
    f.stacks().delete("gated", &DeleteParams::default()).await.unwrap();
    f.wait_gone("gated").await;
    f.finish().await;
}

const BAD_BUCKET_TEMPLATE: &str = r#"
Resources:
  Queue:
    Type: AWS::SQS::Queue
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: Invalid_Bucket_Name_UPPER
"#;

#[tokio::test]
async fn failed_create_names_the_resource_and_recreate_recovers() {
    let f = Fixture::new("e2e-fail").await;
    f.apply(
        "broken",
        json!({"region": "us-east-1", "template": {"body": BAD_BUCKET_TEMPLATE}}),
    )
    .await;
    let stack = f.wait_condition("broken", "Stalled", "True").await;
    let condition = ready(&stack);
    assert_eq!(condition.status, "False");
    assert_eq!(condition.reason, "CreateFailed");
    assert!(
        condition.message.contains("Bucket (AWS::S3::Bucket) CREATE_FAILED"),
        "{}",
        condition.message
    );
    assert!(condition.message.contains("InvalidBucketName"), "{}", condition.message);
    assert!(
        condition.message.contains("onCreateFailure: Recreate"),
        "tells the user what to do: {}",
        condition.message
    );
    let status = stack.status.clone().unwrap();
    assert!(
        status.recent_failures.iter().any(|r| r.logical_id == "Bucket"),
        "{:?}",
        status.recent_failures
    );
    // Events follow the status write.
    eventually(TIMEOUT, "a CreateFailed warning event", || async {
        let events = f.events("broken").await;
        events
            .iter()
            .any(|(t, r, n)| t == "Warning" && r == "CreateFailed" && n.contains("InvalidBucketName"))
            .then_some(())
    })
    .await;

    // Stalled means stalled: no further AWS writes while nothing changes,
    // over 6 s (three 2 s polls).
    let op = ["operation=\"CreateChangeSet\""];
    let before = f.operator.metric("stackpilot_aws_calls_total", &op).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(f.operator.metric("stackpilot_aws_calls_total", &op).await, before);

    // With Recreate and a fixed template the failed stack is replaced.
    let fixed = BAD_BUCKET_TEMPLATE.replace("Invalid_Bucket_Name_UPPER", &format!("{}-ok", f.ns.name));
    f.apply(
        "broken",
        json!({"region": "us-east-1", "template": {"body": fixed},
        "failurePolicy": {"onCreateFailure": "Recreate"}}),
    )
    .await;
    let stack = f.wait_condition("broken", "Ready", "True").await;
    assert_eq!(
        stack.status.as_ref().unwrap().stack_status.as_deref(),
        Some("CREATE_COMPLETE")
    );
    let reasons: Vec<String> = f.events("broken").await.into_iter().map(|e| e.1).collect();
    assert!(reasons.iter().any(|r| r == "Recreating"), "{reasons:?}");
    f.stacks().delete("broken", &DeleteParams::default()).await.unwrap();
    f.wait_gone("broken").await;
    f.finish().await;
}

#[tokio::test]
async fn a_template_over_the_inline_limit_goes_through_the_account_bucket() {
    let f = Fixture::with_env("e2e-large", &[]).await;
    let ns = f.ns.name.clone();
    // The bucket itself is a Stack (operator credentials, LocalStack account 000000000000).
    let bucket = format!("{ns}-templates");
    let bucket_template =
        format!("Resources:\n  B:\n    Type: AWS::S3::Bucket\n    Properties: {{BucketName: {bucket}}}\n");
    f.apply(
        "bucket",
        json!({"region": "us-east-1", "template": {"body": bucket_template}}),
    )
    .await;
    f.wait_condition("bucket", "Ready", "True").await;

    let accounts: kube::Api<stackpilot::api::AwsAccount> = kube::Api::all(f.client.clone());
    let account_name = format!("acct-{ns}");
    let account = json!({"apiVersion": "stackpilot.dev/v1alpha1", "kind": "AwsAccount",
        "metadata": {"name": account_name, "labels": {"stackpilot.dev/test-namespace": ns}},
        "spec": {"accountId": "000000000000", "roleArn": "arn:aws:iam::000000000000:role/deployer",
            "namespaceSelector": {}, "templateBucket": {"name": bucket, "prefix": "templates/"}}});
    accounts
        .patch(
            &account_name,
            &kube::api::PatchParams::apply("test"),
            &kube::api::Patch::Apply(&account),
        )
        .await
        .unwrap();

    let padding = "# padding to push the template over the 51,200-byte inline limit\n".repeat(900);
    let large =
        format!("{padding}Resources:\n  Q: {{Type: AWS::SQS::Queue}}\nOutputs:\n  Arn: {{Value: !GetAtt Q.Arn}}\n");
    assert!(large.len() > 51_200);
    // Without a bucket it is refused before any AWS call.
    f.apply(
        "large-direct",
        json!({"region": "us-east-1", "template": {"body": large}}),
    )
    .await;
    let stack = f.wait_condition("large-direct", "Stalled", "True").await;
    assert_eq!(ready(&stack).reason, "TemplateTooLarge");
    assert!(ready(&stack).message.contains("templateBucket"));
    // Through the account, it is uploaded and passed by URL.
    f.apply(
        "large",
        json!({"region": "us-east-1", "accountRef": {"name": account_name}, "template": {"body": large}}),
    )
    .await;
    let stack = f.wait_condition("large", "Ready", "True").await;
    assert!(stack.status.unwrap().outputs.contains_key("Arn"));
    let uploads = f
        .operator
        .metric(
            "stackpilot_aws_calls_total",
            &["operation=\"PutObject\"", "outcome=\"ok\""],
        )
        .await;
    assert!(uploads >= 1.0, "the template was uploaded");

    for name in ["large", "large-direct"] {
        f.stacks().delete(name, &DeleteParams::default()).await.unwrap();
        f.wait_gone(name).await;
    }
    accounts.delete(&account_name, &Default::default()).await.unwrap();
    f.stacks().delete("bucket", &DeleteParams::default()).await.unwrap();
    f.wait_gone("bucket").await;
    f.finish().await;
}

/// `suspend: true` pauses the object: nothing is created or changed in AWS
/// while it holds, and lifting it carries on where the spec says.
#[tokio::test]
async fn a_suspended_stack_makes_no_aws_calls_until_resumed() {
    let f = Fixture::new("e2e-suspend").await;
    let stack_name = format!("{}-paused", f.ns.name);
    let spec = |suspend: bool| {
        json!({"region": "us-east-1", "template": {"body": QUEUE_TEMPLATE}, "suspend": suspend,
            "parameters": [{"name": "Visibility", "value": "40"}]})
    };
    f.apply("paused", spec(true)).await;
    let stack = f.wait_condition("paused", "Ready", "False").await;
    assert_eq!(ready(&stack).reason, "Suspended", "{:?}", ready(&stack));
    // Three more 2 s polls' worth (6 s): still nothing in AWS.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let creates = f
        .operator
        .metric("stackpilot_aws_calls_total", &["operation=\"CreateChangeSet\""])
        .await;
    assert_eq!(creates, 0.0, "no change set while suspended");
    assert!(f.aws.describe_stack(&stack_name).await.unwrap().is_none());

    f.apply("paused", spec(false)).await;
    let stack = f.wait_condition("paused", "Ready", "True").await;
    assert_eq!(
        stack.status.as_ref().unwrap().stack_status.as_deref(),
        Some("CREATE_COMPLETE")
    );
    f.stacks().delete("paused", &DeleteParams::default()).await.unwrap();
    f.wait_gone("paused").await;
    assert!(f.aws.describe_stack(&stack_name).await.unwrap().is_none());
    f.finish().await;
}

/// LocalStack has no drift detection (DetectStackDrift answers HTTP 501).
/// Five new Stacks with drift on: their first checks come at spread times
/// within the interval (not all right after Ready), the first one finds
/// out, the account and region are told once (one Warning Event, not one
/// per stack), every stack notes why in status, and no further
/// DetectStackDrift is sent during the back-off.
#[tokio::test]
async fn missing_drift_detection_is_told_once_per_account_and_region() {
    let f = Fixture::new("e2e-nodrift").await;
    let names = ["d0", "d1", "d2", "d3", "d4"];
    for name in names {
        let spec = json!({"region": "us-east-1", "template": {"body": QUEUE_TEMPLATE}, "drift": {"interval": "20s"}});
        f.apply(name, spec).await;
    }
    let api = f.stacks();
    for name in names {
        let api = &api;
        eventually(TIMEOUT, &format!("{name}: drift not available"), || async move {
            let stack = api.get(name).await.ok()?;
            let drift = stack.status?.drift?;
            (drift.status == stackpilot::api::DriftState::Unknown
                && drift.reason.as_deref().is_some_and(|r| r.contains("not available")))
            .then_some(())
        })
        .await;
    }
    let detect = || {
        f.operator
            .metric("stackpilot_aws_calls_total", &["operation=\"DetectStackDrift\""])
    };
    let calls = detect().await;
    assert!(
        (1.0..=2.0).contains(&calls),
        "{calls} DetectStackDrift calls: one finds out (two if two were in flight together)"
    );
    let mut told = 0;
    for name in names {
        let events = f.events(name).await;
        told += events.iter().filter(|e| e.1 == "DriftDetectionUnavailable").count();
        assert!(
            !events.iter().any(|e| e.1 == "DriftDetectionFailed"),
            "{name}: {events:?}"
        );
    }
    assert_eq!(told, 1, "one Warning Event for the account and region");
    // A whole interval later, still no new call (backing off).
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(detect().await, calls);
    f.finish().await;
}
