//! The SDK mapping (`stackpilot::aws::sdk`) over HTTP: against LocalStack and
//! moto from the test bed, and against a tiny in-process HTTP server with
//! canned answers for what no emulator does (paging, throttling, dead ends).
//!
//! Needs `testbed/up.sh` (it writes `$STACKPILOT_TESTBED_DIR/env`, default
//! `/tmp/stackpilot-testbed/env`). Endpoints come from
//! `STACKPILOT_TEST_AWS_ENDPOINT` (LocalStack) and
//! `STACKPILOT_TEST_MOTO_ENDPOINT` (moto), or from that file when the variables
//! are not set; when neither has them the emulator tests fail, never skip.
//! Credentials are the fixed `test`/`test`, region `us-east-1`.
//!
//! Emulator behaviour that differs from AWS (LocalStack 2026.3.0, moto 5.2.5),
//! or from TESTBED.md, as measured while writing these tests:
//!
//! LocalStack
//! - Account id is `000000000000`; change set ids end in a short 8-hex suffix.
//! - A failing resource (`AWS::SSM::Parameter` with an invalid `Type`) ends the
//!   stack in `ROLLBACK_COMPLETE`, contrary to TESTBED.md ("no rollback
//!   states"); the events go `CREATE_FAILED` (resource, with the reason),
//!   `CREATE_FAILED` (stack), `ROLLBACK_COMPLETE`, with no `ROLLBACK_IN_PROGRESS`
//!   in between and no reason on the stack events.
//! - Output `Description`s are not returned by DescribeStacks.
//! - Property values are not validated: `AWS::SQS::Queue` with
//!   `DelaySeconds: 100000` is created fine. `Resources: {}` is accepted.
//! - Parameters the template does not declare are accepted (AWS: "Parameters:
//!   [X] do not exist in the template").
//! - No `ClientToken` idempotency: CreateChangeSet with an existing name
//!   (same token or not) silently makes a new change set instead of returning
//!   the existing one / `AlreadyExistsException`. A second ExecuteChangeSet
//!   with the same `ClientRequestToken` fails `InvalidChangeSetStatus` instead
//!   of succeeding.
//! - An executed change set stays `CREATE_COMPLETE`/`EXECUTE_COMPLETE`, and the
//!   stack's other change sets are kept.
//! - Change sets are `CREATE_COMPLETE` by the first describe (no
//!   `CREATE_PENDING` observed); stack operations do show `*_IN_PROGRESS`.
//! - "Does not exist" messages vary: `Stack 'x' does not exist.` (CreateChangeSet
//!   of type Update), `Stack [x] does not exist` (events, change sets),
//!   `Stack with id x does not exist` (DescribeStacks). All map to NotFound.
//! - DescribeStackEvents returns every event in one page (no `NextToken`), so
//!   paging is tested with canned answers below.
//! - CreateChangeSet of type Create for an existing stack: `ValidationError`
//!   "Stack [x] already exists and cannot be created again with the changeSet
//!   [y]." (stackpilot maps it to AlreadyExists).
//! - Not emulated (HTTP 501, code `InternalFailure`, "... has not yet been
//!   emulated by LocalStack"; mapped to `Other`, not `Transient`, so nothing
//!   retries it forever): SetStackPolicy, GetStackPolicy, DetectStackDrift,
//!   DescribeStackDriftDetectionStatus, DescribeStackResourceDrifts,
//!   ContinueUpdateRollback. These are covered by the fake (`aws::fake`) and
//!   the canned answers below.
//! - UpdateTerminationProtection works and DescribeStacks reflects it, but it
//!   is not enforced: DeleteStack of a protected stack deletes it.
//! - GetTemplate (stage `Original`, by name or id) returns the body as
//!   submitted, byte for byte.
//! - DescribeStacks without a name returns every stack in one page (no
//!   `NextToken`), including `DELETE_COMPLETE` ones (AWS leaves those out;
//!   stackpilot filters them). Paging is tested with canned answers and moto.
//! - An inline `TemplateBody` over 51,200 bytes is refused as AWS does
//!   ("Member must have length less than or equal to 51200", echoing the
//!   whole body). S3 works path-style on the emulator endpoint, and a
//!   `TemplateURL` of the form `http://127.0.0.1:<port>/<bucket>/<key>`
//!   (key percent-encoded) is read by CreateChangeSet.
//! - `DeploymentMode=REVERT_DRIFT` is accepted on CreateChangeSet and makes an
//!   ordinary change set (there is no drift to revert).
//!
//! moto
//! - Account id is `123456789012`. Everything is synchronous: the change set is
//!   complete at once and ExecuteChangeSet returns with the stack already
//!   `CREATE_COMPLETE`.
//! - Stacks created through a change set have no `Outputs` (CreateStack's do).
//! - CreateChangeSet of type Create with an existing stack name creates a
//!   second stack with a new id instead of failing.
//! - An update change set with only a parameter change lists no `Modify`
//!   changes; an identical one makes CreateChangeSet itself fail
//!   "No updates are to be performed." instead of a FAILED change set.
//! - A second ExecuteChangeSet of the same change set runs it again (duplicate
//!   events) instead of failing or being idempotent.
//! - DescribeChangeSet for a missing change set says "Stack with id <change set
//!   name> does not exist" (AWS: `ChangeSetNotFound`); ExecuteChangeSet and
//!   DeleteChangeSet for a missing one answer HTTP 500 with an HTML page.
//! - `AWS::SSM::Parameter` without `Name` crashes ExecuteChangeSet (HTTP 500)
//!   and leaves the stack in `REVIEW_IN_PROGRESS` with a `CREATE_IN_PROGRESS`
//!   event; a malformed template also answers HTTP 500.
//! - Undeclared parameters are accepted.
//! - SetStackPolicy / GetStackPolicy work (no policy: no `StackPolicyBody`),
//!   not enforced. GetTemplate returns the body as submitted.
//! - Not implemented (HTTP 500 with an HTML page, which the SDK retries, so
//!   the tests use one attempt): UpdateTerminationProtection, DetectStackDrift,
//!   DescribeStackDriftDetectionStatus, DescribeStackResourceDrifts,
//!   ContinueUpdateRollback.
//! - DescribeStacks without a name pages by 50 (AWS: 100) with the last
//!   stack's id as `NextToken`, looked up again in the live list, so a stack
//!   deleted between pages breaks the read; the paging test uses a region of
//!   its own.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_cloudformation::config::Credentials;
use futures::FutureExt;
use stackpilot::aws::budget::{BudgetProvider, BudgetSettings, MAX_ATTEMPTS};
use stackpilot::aws::instrumented::InstrumentedProvider;
use stackpilot::aws::sdk::{SdkLimits, SdkProvider};
use stackpilot::aws::{
    AwsError, AwsErrorKind, AwsTarget, ChangeSetDescription, ChangeSetRequest, ChangeSetStatus, ChangeSetType,
    CloudFormation, CloudFormationProvider, DeploymentMode, DifferenceKind, DriftDetectionStatus, ExecutionStatus,
    MAX_TEMPLATE_BODY_BYTES, Parameter, ResourceDriftStatus, StackDescription, StackDriftStatus, StackOptions,
    StackState, TemplateSource,
};
use stackpilot::runtime::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REGION: &str = "us-east-1";

/// An endpoint from the environment, else from the test bed's env file.
fn endpoint(var: &str) -> String {
    if let Ok(value) = std::env::var(var)
        && !value.is_empty()
    {
        return value;
    }
    let dir = std::env::var("STACKPILOT_TESTBED_DIR").unwrap_or_else(|_| "/tmp/stackpilot-testbed".to_string());
    let file = format!("{dir}/env");
    if let Ok(text) = std::fs::read_to_string(&file) {
        for line in text.lines() {
            let line = line.trim().trim_start_matches("export ").trim();
            for assignment in line.split_whitespace() {
                if let Some(value) = assignment.strip_prefix(&format!("{var}=")) {
                    return value.trim_matches(|c| c == '\'' || c == '"').to_string();
                }
            }
        }
    }
    panic!(
        "{var} is not set and {file} does not name it: run testbed/up.sh first \
         (and `source {file}`)"
    );
}

async fn provider(endpoint: &str) -> SdkProvider {
    provider_with(endpoint, SdkLimits::default()).await
}

async fn provider_with(endpoint: &str, limits: SdkLimits) -> SdkProvider {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .credentials_provider(Credentials::new("test", "test", None, None, "stackpilot-tests"))
        .region(Region::new(REGION))
        .load()
        .await;
    SdkProvider::with_limits(config, Some(endpoint.to_string()), limits)
}

fn target() -> AwsTarget {
    AwsTarget {
        region: REGION.into(),
        role_arn: None,
        external_id: None,
        session_name: None,
        session_tags: Vec::new(),
    }
}

async fn client(endpoint: &str) -> Arc<dyn CloudFormation> {
    provider(endpoint).await.client(&target())
}

/// A stack name no other run uses.
fn unique(label: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("sp-{label}-{:x}{n}", (nanos as u64) ^ u64::from(std::process::id()))
}

/// Runs `body`, then deletes `stacks` whether it passed or not.
async fn cleanup_after(cf: &Arc<dyn CloudFormation>, stacks: &[&str], body: impl Future<Output = ()>) {
    let result = AssertUnwindSafe(body).catch_unwind().await;
    for stack in stacks {
        if let Err(err) = cf.delete_stack(stack, "", &[]).await {
            eprintln!("cleanup of {stack}: {err}");
        }
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn request(stack: &str, change_set: &str, kind: ChangeSetType, body: &str) -> ChangeSetRequest {
    ChangeSetRequest {
        stack_name: stack.into(),
        change_set_name: change_set.into(),
        change_set_type: kind,
        template: TemplateSource::Body(body.into()),
        parameters: vec![Parameter {
            key: "Env".into(),
            value: "one".into(),
        }],
        options: StackOptions {
            tags: BTreeMap::from([
                ("stackpilot.dev/owner".into(), "test".into()),
                ("team".into(), "platform".into()),
            ]),
            ..StackOptions::default()
        },
        client_token: format!("{change_set}-token"),
        description: Some("stackpilot integration test".into()),
        deployment_mode: None,
    }
}

async fn settled_change_set(cf: &Arc<dyn CloudFormation>, stack: &str, name: &str) -> ChangeSetDescription {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let cs = cf
            .describe_change_set(stack, name)
            .await
            .expect("describe_change_set")
            .expect("change set exists");
        if !matches!(
            cs.status,
            ChangeSetStatus::CreatePending | ChangeSetStatus::CreateInProgress
        ) {
            return cs;
        }
        assert!(Instant::now() < deadline, "change set {name} still {:?}", cs.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls until the stack leaves `*_IN_PROGRESS`; returns the statuses seen.
async fn settled_stack(cf: &Arc<dyn CloudFormation>, stack: &str) -> (StackDescription, Vec<StackState>) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    loop {
        let described = cf
            .describe_stack(stack)
            .await
            .expect("describe_stack")
            .expect("stack exists");
        if seen.last() != Some(&described.status) {
            seen.push(described.status.clone());
        }
        if !described.status.is_in_progress() || described.status == StackState::ReviewInProgress {
            return (described, seen);
        }
        assert!(Instant::now() < deadline, "stack {stack} still {}", described.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn gone(cf: &Arc<dyn CloudFormation>, stack: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while cf.describe_stack(stack).await.expect("describe_stack").is_some() {
        assert!(Instant::now() < deadline, "stack {stack} not deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const LOCALSTACK_TEMPLATE: &str = r#"
Parameters:
  Env:
    Type: String
Resources:
  Topic:
    Type: AWS::SNS::Topic
  Setting:
    Type: AWS::SSM::Parameter
    Properties:
      Type: String
      Value: !Ref Env
Outputs:
  TopicArn:
    Value: !Ref Topic
    Description: the topic
  SettingName:
    Value: !Ref Setting
"#;

#[tokio::test]
async fn localstack_create_update_empty_and_delete() {
    let cf = client(&endpoint("STACKPILOT_TEST_AWS_ENDPOINT")).await;
    let stack = unique("life");
    cleanup_after(&cf, &[&stack], async {
        // Create through a change set: the stack waits in REVIEW_IN_PROGRESS.
        let id = cf
            .create_change_set(&request(&stack, "create-1", ChangeSetType::Create, LOCALSTACK_TEMPLATE))
            .await
            .expect("create_change_set");
        assert!(id.contains(":changeSet/create-1/"), "{id}");
        let review = cf.describe_stack(&stack).await.unwrap().unwrap();
        assert_eq!(review.status, StackState::ReviewInProgress);

        let cs = settled_change_set(&cf, &stack, "create-1").await;
        assert_eq!(cs.status, ChangeSetStatus::CreateComplete);
        assert_eq!(cs.execution_status, ExecutionStatus::Available);
        assert_eq!(cs.change_set_id, id);
        assert_eq!(cs.stack_id.as_deref(), Some(review.stack_id.as_str()));
        let mut adds: Vec<(&str, &str, &str)> = cs
            .changes
            .iter()
            .map(|c| (c.action.as_str(), c.logical_id.as_str(), c.resource_type.as_str()))
            .collect();
        adds.sort();
        assert_eq!(
            adds,
            [
                ("Add", "Setting", "AWS::SSM::Parameter"),
                ("Add", "Topic", "AWS::SNS::Topic")
            ]
        );

        cf.execute_change_set(&stack, "create-1", &unique("exec"))
            .await
            .expect("execute_change_set");
        let (created, seen) = settled_stack(&cf, &stack).await;
        assert_eq!(created.status, StackState::CreateComplete, "seen {seen:?}");
        // LocalStack usually shows CREATE_IN_PROGRESS first, but a quick create
        // can finish before the first describe; only the states seen are checked.
        assert!(
            seen.iter()
                .all(|s| matches!(s, StackState::CreateInProgress | StackState::CreateComplete)),
            "unexpected states during create: {seen:?}"
        );
        assert_eq!(created.stack_name, stack);
        assert_eq!(created.tags.get("team").map(String::as_str), Some("platform"));
        assert_eq!(
            created.parameters,
            [Parameter {
                key: "Env".into(),
                value: "one".into()
            }]
        );
        let mut outputs: Vec<&str> = created.outputs.iter().map(|o| o.key.as_str()).collect();
        outputs.sort();
        assert_eq!(outputs, ["SettingName", "TopicArn"]);
        let topic = created.outputs.iter().find(|o| o.key == "TopicArn").unwrap();
        assert!(topic.value.starts_with("arn:aws:sns:us-east-1:"), "{topic:?}");
        // LocalStack drops output descriptions (AWS returns them).
        assert!(created.creation_time.is_some());
        let by_id = cf.describe_stack(&created.stack_id).await.unwrap().unwrap();
        assert_eq!(by_id.stack_name, stack);

        // Events: newest first, the stack's own CREATE_COMPLETE on top.
        let events = cf.stack_events(&stack, None, 100).await.expect("stack_events");
        assert_eq!(events[0].logical_id, stack);
        assert_eq!(events[0].status, "CREATE_COMPLETE");
        assert!(
            events
                .iter()
                .any(|e| e.logical_id == "Topic" && e.status == "CREATE_COMPLETE")
        );
        assert_eq!(cf.stack_events(&stack, None, 2).await.unwrap().len(), 2);
        let cursor = events[0].event_id.clone();
        assert_eq!(cf.stack_events(&stack, Some(&cursor), 100).await.unwrap(), []);

        // Update with a changed parameter: the parameter resource is modified.
        let mut update = request(&stack, "update-1", ChangeSetType::Update, LOCALSTACK_TEMPLATE);
        update.parameters[0].value = "two".into();
        cf.create_change_set(&update).await.expect("update change set");
        let cs = settled_change_set(&cf, &stack, "update-1").await;
        assert_eq!(cs.status, ChangeSetStatus::CreateComplete, "{cs:?}");
        let modify = cs
            .changes
            .iter()
            .find(|c| c.logical_id == "Setting")
            .expect("Setting changes");
        assert_eq!(modify.action, "Modify");
        assert!(modify.physical_id.is_some());
        assert!(modify.replacement.is_some(), "{modify:?}");
        assert!(!cs.changes.iter().any(|c| c.logical_id == "Topic"), "{cs:?}");

        cf.execute_change_set(&stack, "update-1", &unique("exec"))
            .await
            .unwrap();
        let (updated, seen) = settled_stack(&cf, &stack).await;
        assert_eq!(updated.status, StackState::UpdateComplete, "seen {seen:?}");
        assert_eq!(updated.parameters[0].value, "two");

        // Only events after the cursor, newest first.
        let newer = cf.stack_events(&stack, Some(&cursor), 100).await.unwrap();
        assert!(!newer.is_empty());
        assert!(
            newer
                .iter()
                .all(|e| events.iter().all(|old| old.event_id != e.event_id))
        );
        assert_eq!(newer[0].status, "UPDATE_COMPLETE");
        assert!(
            newer
                .iter()
                .any(|e| e.logical_id == "Setting" && e.status == "UPDATE_COMPLETE")
        );
        assert!(newer.windows(2).all(|w| w[0].timestamp >= w[1].timestamp));

        // Nothing changed: an empty change set, which stackpilot treats as success.
        update.change_set_name = "update-2".into();
        update.client_token = "update-2-token".into();
        cf.create_change_set(&update).await.expect("empty change set");
        let empty = settled_change_set(&cf, &stack, "update-2").await;
        assert!(empty.is_empty_failure(), "{empty:?}");
        assert!(empty.changes.is_empty());
        cf.delete_change_set(&stack, "update-2")
            .await
            .expect("delete_change_set");
        assert_eq!(cf.describe_change_set(&stack, "update-2").await.unwrap(), None);
        cf.delete_change_set(&stack, "never-existed")
            .await
            .expect("missing change set");

        // A Create change set for an existing stack.
        let again = cf
            .create_change_set(&request(&stack, "create-2", ChangeSetType::Create, LOCALSTACK_TEMPLATE))
            .await
            .unwrap_err();
        assert_eq!(again.kind, AwsErrorKind::AlreadyExists, "{again}");

        // Delete: gone by name, DELETE_COMPLETE by id.
        cf.delete_stack(&stack, &unique("delete"), &[])
            .await
            .expect("delete_stack");
        gone(&cf, &stack).await;
        let deleted = cf.describe_stack(&created.stack_id).await.unwrap().unwrap();
        assert_eq!(deleted.status, StackState::DeleteComplete);
    })
    .await;
}

#[tokio::test]
async fn localstack_failed_resource_shows_in_events() {
    let cf = client(&endpoint("STACKPILOT_TEST_AWS_ENDPOINT")).await;
    let stack = unique("fail");
    let template = r#"
Resources:
  Topic:
    Type: AWS::SNS::Topic
  Broken:
    Type: AWS::SSM::Parameter
    Properties:
      Type: NotAType
      Value: x
"#;
    cleanup_after(&cf, &[&stack], async {
        let mut create = request(&stack, "create-1", ChangeSetType::Create, template);
        create.parameters.clear();
        cf.create_change_set(&create).await.expect("create_change_set");
        settled_change_set(&cf, &stack, "create-1").await;
        cf.execute_change_set(&stack, "create-1", "").await.unwrap();
        let (failed, seen) = settled_stack(&cf, &stack).await;
        assert!(
            matches!(
                failed.status,
                StackState::RollbackComplete | StackState::CreateFailed | StackState::RollbackFailed
            ),
            "seen {seen:?}"
        );
        let events = cf.stack_events(&stack, None, 100).await.unwrap();
        let first_failure = events.iter().rev().find(|e| e.is_failure()).expect("a failed event");
        assert_eq!(first_failure.logical_id, "Broken");
        assert_eq!(first_failure.status, "CREATE_FAILED");
        assert_eq!(first_failure.resource_type, "AWS::SSM::Parameter");
        let reason = first_failure.reason.as_deref().unwrap_or_default();
        assert!(reason.contains("NotAType"), "{reason}");
        // A stack in ROLLBACK_COMPLETE cannot take an update change set.
        if failed.status == StackState::RollbackComplete {
            let mut update = request(&stack, "update-1", ChangeSetType::Update, template);
            update.parameters.clear();
            if let Err(err) = cf.create_change_set(&update).await {
                assert_eq!(err.kind, AwsErrorKind::Validation, "{err}");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn localstack_missing_things_and_validation_errors() {
    let cf = client(&endpoint("STACKPILOT_TEST_AWS_ENDPOINT")).await;
    let missing = unique("missing");
    assert_eq!(cf.describe_stack(&missing).await.unwrap(), None);
    assert_eq!(cf.describe_change_set(&missing, "cs").await.unwrap(), None);
    cf.delete_change_set(&missing, "cs").await.expect("missing is success");
    cf.delete_stack(&missing, "", &[])
        .await
        .expect("deleting a missing stack succeeds");
    let err = cf.stack_events(&missing, None, 10).await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::NotFound, "{err}");
    let err = cf.execute_change_set(&missing, "cs", "").await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::NotFound, "{err}");
    let err = cf
        .create_change_set(&request(&missing, "cs", ChangeSetType::Update, LOCALSTACK_TEMPLATE))
        .await
        .unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::NotFound, "{err}");

    let stack = unique("invalid");
    cleanup_after(&cf, &[&stack], async {
        let err = cf
            .create_change_set(&request(&stack, "cs", ChangeSetType::Create, "Resources: [unclosed"))
            .await
            .unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::Validation, "{err}");
        assert_eq!(err.code, "ValidationError");
        assert!(err.message.starts_with("Template format error"), "{err}");

        cf.create_change_set(&request(&stack, "cs", ChangeSetType::Create, LOCALSTACK_TEMPLATE))
            .await
            .unwrap();
        assert_eq!(cf.describe_change_set(&stack, "other").await.unwrap(), None);
        let err = cf.execute_change_set(&stack, "other", "").await.unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::NotFound, "{err}");
        assert_eq!(err.code, "ChangeSetNotFound");
    })
    .await;
}

#[tokio::test]
async fn localstack_assumes_the_target_role() {
    let endpoint = endpoint("STACKPILOT_TEST_AWS_ENDPOINT");
    let provider = provider(&endpoint).await;
    let target = AwsTarget {
        region: REGION.into(),
        role_arn: Some("arn:aws:iam::000000000000:role/stackpilot-test".into()),
        external_id: Some("external".into()),
        session_name: Some("team-a/my stack (needs sanitizing)".into()),
        session_tags: Vec::new(),
    };
    let cf = provider.client(&target);
    assert!(
        Arc::ptr_eq(&cf, &provider.client(&target)),
        "one cached client per target"
    );
    assert!(!Arc::ptr_eq(&cf, &provider.client(&self::target())));
    // The call goes through STS AssumeRole (on the emulator) first.
    assert_eq!(cf.describe_stack(&unique("role")).await.unwrap(), None);
}

const MOTO_TEMPLATE: &str = r#"
Parameters:
  Env:
    Type: String
Resources:
  Topic:
    Type: AWS::SNS::Topic
    Properties:
      DisplayName: !Ref Env
  Queue:
    Type: AWS::SQS::Queue
Outputs:
  TopicArn:
    Value: !Ref Topic
"#;

#[tokio::test]
async fn moto_create_describe_delete() {
    let cf = client(&endpoint("STACKPILOT_TEST_MOTO_ENDPOINT")).await;
    let stack = unique("moto");
    assert_eq!(cf.describe_stack(&stack).await.unwrap(), None);
    cleanup_after(&cf, &[&stack], async {
        cf.create_change_set(&request(&stack, "create-1", ChangeSetType::Create, MOTO_TEMPLATE))
            .await
            .expect("create_change_set");
        assert_eq!(
            cf.describe_stack(&stack).await.unwrap().unwrap().status,
            StackState::ReviewInProgress
        );
        let cs = settled_change_set(&cf, &stack, "create-1").await;
        assert_eq!(cs.execution_status, ExecutionStatus::Available);
        let mut adds: Vec<(&str, &str)> = cs
            .changes
            .iter()
            .map(|c| (c.action.as_str(), c.logical_id.as_str()))
            .collect();
        adds.sort();
        assert_eq!(adds, [("Add", "Queue"), ("Add", "Topic")]);

        cf.execute_change_set(&stack, "create-1", "exec-1")
            .await
            .expect("execute");
        let (created, _) = settled_stack(&cf, &stack).await;
        assert_eq!(created.status, StackState::CreateComplete);
        assert!(created.stack_id.contains(":123456789012:stack/"));
        assert_eq!(created.tags.get("team").map(String::as_str), Some("platform"));
        assert_eq!(
            created.parameters,
            [Parameter {
                key: "Env".into(),
                value: "one".into()
            }]
        );
        let events = cf.stack_events(&stack, None, 100).await.unwrap();
        assert!(
            events
                .iter()
                .any(|e| e.logical_id == stack && e.status == "CREATE_COMPLETE")
        );

        cf.delete_stack(&stack, "delete-1", &[]).await.expect("delete");
        gone(&cf, &stack).await;
    })
    .await;
}

/// Client for the emulator at `endpoint` in `region`, for tests that keep to
/// a region of their own.
async fn client_in(endpoint: &str, region: &str, limits: SdkLimits) -> Arc<dyn CloudFormation> {
    provider_with(endpoint, limits).await.client(&AwsTarget {
        region: region.into(),
        ..target()
    })
}

/// One attempt per call: for operations an emulator does not implement.
fn one_attempt() -> SdkLimits {
    SdkLimits {
        max_attempts: 1,
        ..SdkLimits::default()
    }
}

/// Creates `stack` from `body` through a Create change set and waits for it.
async fn create_stack(cf: &Arc<dyn CloudFormation>, stack: &str, body: &str) -> StackDescription {
    cf.create_change_set(&request(stack, "create-1", ChangeSetType::Create, body))
        .await
        .expect("create_change_set");
    settled_change_set(cf, stack, "create-1").await;
    cf.execute_change_set(stack, "create-1", "").await.expect("execute");
    let (created, seen) = settled_stack(cf, stack).await;
    assert_eq!(created.status, StackState::CreateComplete, "seen {seen:?}");
    created
}

/// What the emulators answer for operations they lack.
fn assert_unimplemented(err: &AwsError, emulator: &str) {
    match emulator {
        // HTTP 501 with code InternalFailure: "... not yet been emulated".
        "localstack" => assert_eq!(
            (err.kind, err.code.as_str()),
            (AwsErrorKind::Unsupported, "InternalFailure"),
            "{err}"
        ),
        // HTTP 500 with an HTML page.
        _ => assert_eq!(err.kind, AwsErrorKind::Transient, "{err}"),
    }
}

#[tokio::test]
async fn localstack_template_protection_bulk_read_and_missing_operations() {
    let endpoint = endpoint("STACKPILOT_TEST_AWS_ENDPOINT");
    let cf = client(&endpoint).await;
    let stack = unique("ops");
    cleanup_after(&cf, &[&stack], async {
        let created = create_stack(&cf, &stack, LOCALSTACK_TEMPLATE).await;
        assert!(!created.termination_protection);
        assert_eq!(
            cf.get_template(&stack).await.unwrap(),
            LOCALSTACK_TEMPLATE,
            "as submitted"
        );
        assert_eq!(cf.get_template(&created.stack_id).await.unwrap(), LOCALSTACK_TEMPLATE);
        let err = cf.get_template(&unique("missing")).await.unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::NotFound, "{err}");

        cf.update_termination_protection(&stack, true).await.expect("protect");
        let protected = cf.describe_stack(&stack).await.unwrap().unwrap();
        assert!(protected.termination_protection);

        // The bulk read has the stack, described as fully as by name.
        let listing = cf.describe_all_stacks().await.expect("describe_all_stacks");
        assert!(listing.pages >= 1);
        let listed = listing
            .stacks
            .iter()
            .find(|s| s.stack_name == stack)
            .expect("stack listed");
        assert_eq!(listed, &protected);
        assert_eq!(listed.outputs.len(), 2);
        assert!(listing.stacks.iter().all(|s| s.status != StackState::DeleteComplete));
        cf.update_termination_protection(&stack, false)
            .await
            .expect("unprotect");

        // Not emulated: stack policies, drift detection, ContinueUpdateRollback.
        let cf1 = client_in(&endpoint, REGION, one_attempt()).await;
        let policy = r#"{"Statement":[{"Effect":"Allow","Action":"Update:*","Principal":"*","Resource":"*"}]}"#;
        assert_unimplemented(&cf1.set_stack_policy(&stack, policy).await.unwrap_err(), "localstack");
        assert_unimplemented(&cf1.get_stack_policy(&stack).await.unwrap_err(), "localstack");
        assert_unimplemented(&cf1.detect_stack_drift(&stack).await.unwrap_err(), "localstack");
        assert_unimplemented(&cf1.drift_detection_status("x").await.unwrap_err(), "localstack");
        assert_unimplemented(&cf1.resource_drifts(&stack).await.unwrap_err(), "localstack");
        assert_unimplemented(
            &cf1.continue_update_rollback(&stack, &[], "t").await.unwrap_err(),
            "localstack",
        );

        // DeploymentMode=REVERT_DRIFT is accepted (and, with no drift
        // detection, makes an ordinary change set).
        let mut revert = request(&stack, "revert-1", ChangeSetType::Update, LOCALSTACK_TEMPLATE);
        revert.parameters[0].value = "two".into();
        revert.deployment_mode = Some(DeploymentMode::RevertDrift);
        cf.create_change_set(&revert).await.expect("revert drift change set");
        let cs = settled_change_set(&cf, &stack, "revert-1").await;
        assert_eq!(cs.status, ChangeSetStatus::CreateComplete, "{cs:?}");

        cf.delete_stack(&stack, "", &[]).await.unwrap();
        gone(&cf, &stack).await;
        let listing = cf.describe_all_stacks().await.unwrap();
        assert!(!listing.stacks.iter().any(|s| s.stack_name == stack));
    })
    .await;
}

#[tokio::test]
async fn localstack_large_template_goes_through_s3() {
    let endpoint = endpoint("STACKPILOT_TEST_AWS_ENDPOINT");
    let provider = provider(&endpoint).await;
    let cf = provider.client(&target());
    let store = provider.template_store(&target());
    // A bucket of its own (S3 test set-up, outside stackpilot's trait).
    let config = aws_config::defaults(BehaviorVersion::latest())
        .credentials_provider(Credentials::new("test", "test", None, None, "stackpilot-tests"))
        .region(Region::new(REGION))
        .endpoint_url(&endpoint)
        .load()
        .await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let bucket = unique("templates").to_lowercase();
    s3.create_bucket().bucket(&bucket).send().await.expect("create bucket");
    let stack = unique("big");
    let key = format!("stacks/{stack}/template v1.yaml");
    // Comments count towards the size and change nothing else.
    let body = format!(
        "{LOCALSTACK_TEMPLATE}# {}\n",
        "padding ".repeat(MAX_TEMPLATE_BODY_BYTES / 8 + 100)
    );
    assert!(body.len() > MAX_TEMPLATE_BODY_BYTES);
    cleanup_after(&cf, &[&stack], async {
        // Inline, LocalStack enforces the limit as AWS does.
        let inline = cf
            .create_change_set(&request(&stack, "inline", ChangeSetType::Create, &body))
            .await
            .unwrap_err();
        assert_eq!(inline.kind, AwsErrorKind::Validation);
        assert!(
            inline.message.contains("less than or equal to 51200"),
            "{}",
            &inline.message[inline.message.len().saturating_sub(200)..]
        );

        let url = store.put_template(&bucket, &key, &body).await.expect("put_template");
        assert_eq!(
            url,
            format!(
                "{}/{bucket}/stacks/{stack}/template%20v1.yaml",
                endpoint.trim_end_matches('/')
            )
        );
        let stored = s3
            .get_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .expect("get_object");
        let bytes = stored.body.collect().await.unwrap().into_bytes();
        assert_eq!(bytes.len(), body.len());

        let mut create = request(&stack, "create-url", ChangeSetType::Create, "");
        create.template = TemplateSource::Url(url);
        cf.create_change_set(&create)
            .await
            .expect("create_change_set with TemplateURL");
        let cs = settled_change_set(&cf, &stack, "create-url").await;
        assert_eq!(cs.status, ChangeSetStatus::CreateComplete, "{cs:?}");
        cf.execute_change_set(&stack, "create-url", "").await.unwrap();
        let (created, seen) = settled_stack(&cf, &stack).await;
        assert_eq!(created.status, StackState::CreateComplete, "seen {seen:?}");
        assert_eq!(cf.get_template(&stack).await.unwrap().len(), body.len());

        let err = store
            .put_template(&unique("no-such-bucket").to_lowercase(), "k", "x")
            .await
            .unwrap_err();
        assert_eq!(err.code, "NoSuchBucket", "{err}");
    })
    .await;
    let _ = s3.delete_object().bucket(&bucket).key(&key).send().await;
    let _ = s3.delete_bucket().bucket(&bucket).send().await;
}

#[tokio::test]
async fn moto_policy_template_and_missing_operations() {
    let endpoint = endpoint("STACKPILOT_TEST_MOTO_ENDPOINT");
    let cf = client(&endpoint).await;
    let stack = unique("moto-ops");
    cleanup_after(&cf, &[&stack], async {
        create_stack(&cf, &stack, MOTO_TEMPLATE).await;
        assert_eq!(cf.get_template(&stack).await.unwrap(), MOTO_TEMPLATE);
        assert_eq!(cf.get_stack_policy(&stack).await.unwrap(), None);
        let policy = r#"{"Statement":[{"Effect":"Deny","Action":"Update:Replace","Principal":"*","Resource":"*"}]}"#;
        cf.set_stack_policy(&stack, policy).await.expect("set_stack_policy");
        assert_eq!(cf.get_stack_policy(&stack).await.unwrap().as_deref(), Some(policy));
        let err = cf.get_stack_policy(&unique("missing")).await.unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::NotFound, "{err}");

        let cf1 = client_in(&endpoint, REGION, one_attempt()).await;
        assert_unimplemented(
            &cf1.update_termination_protection(&stack, true).await.unwrap_err(),
            "moto",
        );
        assert_unimplemented(&cf1.detect_stack_drift(&stack).await.unwrap_err(), "moto");
        assert_unimplemented(&cf1.drift_detection_status("x").await.unwrap_err(), "moto");
        assert_unimplemented(&cf1.resource_drifts(&stack).await.unwrap_err(), "moto");
        assert_unimplemented(
            &cf1.continue_update_rollback(&stack, &[], "t").await.unwrap_err(),
            "moto",
        );
    })
    .await;
}

#[tokio::test]
async fn moto_bulk_read_follows_every_page() {
    // A region of its own, so other tests' stacks do not shift moto's pages
    // (its NextToken is a stack id, looked up in the live list).
    let cf = client_in(
        &endpoint("STACKPILOT_TEST_MOTO_ENDPOINT"),
        "ap-northeast-3",
        SdkLimits::default(),
    )
    .await;
    let prefix = unique("bulk");
    let names: Vec<String> = (0..55).map(|i| format!("{prefix}-{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    cleanup_after(&cf, &refs, async {
        for name in &names {
            cf.create_change_set(&request(name, "create-1", ChangeSetType::Create, MOTO_TEMPLATE))
                .await
                .expect("create_change_set");
            cf.execute_change_set(name, "create-1", "").await.expect("execute");
        }
        let listing = cf.describe_all_stacks().await.expect("describe_all_stacks");
        assert!(listing.pages >= 2, "moto pages by 50: {} pages", listing.pages);
        let listed: Vec<&StackDescription> = listing
            .stacks
            .iter()
            .filter(|s| s.stack_name.starts_with(&prefix))
            .collect();
        assert_eq!(listed.len(), names.len());
        let one = cf.describe_stack(&names[7]).await.unwrap().unwrap();
        assert_eq!(listed.iter().find(|s| s.stack_name == names[7]), Some(&&one));
        assert_eq!(one.tags.get("team").map(String::as_str), Some("platform"));
        assert_eq!(one.parameters[0].value, "one");
    })
    .await;
}

// ---- canned HTTP answers (no emulator needed)

/// Decodes a form value (`%XX` escapes, `+` as space).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => out.push(b),
                    Err(_) => out.extend_from_slice(&bytes[i..i + 3]),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

type Handler = Box<dyn Fn(&BTreeMap<String, String>) -> (u16, String) + Send + Sync>;

/// An HTTP server on loopback answering each request (one per connection)
/// with `handler(form fields)`. Returns its URL and the requests seen.
async fn canned(handler: Handler) -> (String, Arc<Mutex<Vec<BTreeMap<String, String>>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = Arc::new(handler);
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let handler = handler.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, length) = loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    if let Some(pos) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buffer[..pos]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (pos + 4, length);
                    }
                };
                while buffer.len() < head_end + length {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                }
                let body = String::from_utf8_lossy(&buffer[head_end..]).to_string();
                let form: BTreeMap<String, String> = body
                    .split('&')
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(k, v)| (k.to_string(), percent_decode(v)))
                    .collect();
                log.lock().unwrap().push(form.clone());
                let (status, text) = handler(&form);
                let response = format!(
                    "HTTP/1.1 {status} Canned\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (url, seen)
}

const NS: &str = "http://cloudformation.amazonaws.com/doc/2010-05-15/";

fn event_xml(id: u32) -> String {
    format!(
        "<member><EventId>e{id}</EventId><StackId>arn:aws:cloudformation:us-east-1:1:stack/s/x</StackId>\
         <StackName>s</StackName><LogicalResourceId>R{id}</LogicalResourceId>\
         <ResourceType>AWS::SNS::Topic</ResourceType><Timestamp>2024-01-01T00:00:{id:02}Z</Timestamp>\
         <ResourceStatus>CREATE_COMPLETE</ResourceStatus></member>"
    )
}

/// Nine events e9..e1, three per page, newest first.
fn events_page(form: &BTreeMap<String, String>) -> (u16, String) {
    let (ids, next) = match form.get("NextToken").map(String::as_str) {
        None => ([9, 8, 7], Some("p2")),
        Some("p2") => ([6, 5, 4], Some("p3")),
        _ => ([3, 2, 1], None),
    };
    let events: String = ids.iter().map(|id| event_xml(*id)).collect();
    let next = next.map(|t| format!("<NextToken>{t}</NextToken>")).unwrap_or_default();
    let body = format!(
        "<DescribeStackEventsResponse xmlns=\"{NS}\"><DescribeStackEventsResult>\
         <StackEvents>{events}</StackEvents>{next}</DescribeStackEventsResult>\
         <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeStackEventsResponse>"
    );
    (200, body)
}

fn change_xml(id: &str) -> String {
    format!(
        "<member><Type>Resource</Type><ResourceChange><Action>Add</Action>\
         <LogicalResourceId>{id}</LogicalResourceId><ResourceType>AWS::SNS::Topic</ResourceType>\
         </ResourceChange></member>"
    )
}

fn change_set_page(form: &BTreeMap<String, String>) -> (u16, String) {
    let (changes, next) = match form.get("NextToken").map(String::as_str) {
        None => (change_xml("A") + &change_xml("B"), "<NextToken>more</NextToken>"),
        _ => (change_xml("C"), ""),
    };
    let body = format!(
        "<DescribeChangeSetResponse xmlns=\"{NS}\"><DescribeChangeSetResult>\
         <ChangeSetName>cs</ChangeSetName><ChangeSetId>arn:cs</ChangeSetId><StackId>arn:stack</StackId>\
         <Status>CREATE_COMPLETE</Status><ExecutionStatus>AVAILABLE</ExecutionStatus>\
         <Changes>{changes}</Changes>{next}</DescribeChangeSetResult>\
         <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeChangeSetResponse>"
    );
    (200, body)
}

fn error_xml(code: &str, message: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"{NS}\"><Error><Type>Sender</Type><Code>{code}</Code>\
         <Message>{message}</Message></Error><RequestId>r</RequestId></ErrorResponse>"
    )
}

#[tokio::test]
async fn change_set_changes_are_read_from_every_page() {
    let (url, seen) = canned(Box::new(change_set_page)).await;
    let cf = client(&url).await;
    let cs = cf.describe_change_set("s", "cs").await.unwrap().unwrap();
    let ids: Vec<&str> = cs.changes.iter().map(|c| c.logical_id.as_str()).collect();
    assert_eq!(ids, ["A", "B", "C"]);
    assert_eq!(cs.status, ChangeSetStatus::CreateComplete);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].get("NextToken").map(String::as_str), Some("more"));
}

#[tokio::test]
async fn stack_events_page_only_until_the_cursor() {
    let (url, seen) = canned(Box::new(events_page)).await;
    let cf = client(&url).await;

    let newer = cf.stack_events("s", Some("e5"), 100).await.unwrap();
    let ids: Vec<&str> = newer.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["e9", "e8", "e7", "e6"]);
    assert_eq!(seen.lock().unwrap().len(), 2, "stopped on the page holding the cursor");

    seen.lock().unwrap().clear();
    let newest = cf.stack_events("s", None, 2).await.unwrap();
    assert_eq!(newest.len(), 2);
    assert_eq!(newest[0].timestamp.to_rfc3339(), "2024-01-01T00:00:09+00:00");
    assert_eq!(seen.lock().unwrap().len(), 1);

    seen.lock().unwrap().clear();
    let all = cf.stack_events("s", None, 100).await.unwrap();
    assert_eq!(all.len(), 9);
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn the_sdk_client_makes_one_attempt_and_leaves_retries_to_the_budget() {
    let (url, seen) = canned(Box::new(|_: &BTreeMap<String, String>| {
        (400, error_xml("Throttling", "Rate exceeded"))
    }))
    .await;
    let cf = client(&url).await;
    let err = cf.describe_stack("s").await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::Throttled, "{err}");
    assert_eq!(err.code, "Throttling");
    assert_eq!(err.message, "Rate exceeded");
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "one request: the call budget decides retries"
    );
}

/// The call budget is the one place that retries: against an endpoint that
/// throttles every request, each call goes on the wire `MAX_ATTEMPTS` times
/// (not that times the SDK's own attempts), and in no window of time do the
/// requests exceed what the budget allows (burst + rate x window).
#[tokio::test]
async fn requests_on_the_wire_stay_within_the_budget_under_throttling() {
    const CALLS: usize = 3;
    let settings = BudgetSettings {
        calls_per_second: 20.0,
        burst: 5.0,
    };
    let sent = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let log = sent.clone();
    let (url, _) = canned(Box::new(move |_: &BTreeMap<String, String>| {
        log.lock().unwrap().push(Instant::now());
        (400, error_xml("Throttling", "Rate exceeded"))
    }))
    .await;
    let metrics = Arc::new(Metrics::default());
    let sdk: Arc<dyn CloudFormationProvider> = Arc::new(provider(&url).await);
    let counted = Arc::new(InstrumentedProvider {
        inner: sdk,
        metrics: metrics.clone(),
    });
    let cf = BudgetProvider::new(counted, settings, metrics).client(&target());
    let calls = (0..CALLS).map(|i| {
        let cf = cf.clone();
        async move { cf.describe_stack(&format!("s{i}")).await }
    });
    let results = futures::future::join_all(calls).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_err_and(|e| e.kind == AwsErrorKind::Throttled)),
        "{results:?}"
    );
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent.len(), CALLS * MAX_ATTEMPTS as usize, "requests on the wire");
    for (i, first) in sent.iter().enumerate() {
        for (j, last) in sent.iter().enumerate().skip(i) {
            let window = last.duration_since(*first).as_secs_f64();
            let allowed = settings.burst + settings.calls_per_second * window;
            // +1: a request landing exactly on a window's edge.
            assert!(
                (j - i + 1) as f64 <= allowed + 1.0,
                "{} requests in {window:.3} s, the budget allows {allowed:.1}",
                j - i + 1
            );
        }
    }
}

#[tokio::test]
async fn service_errors_keep_code_and_message() {
    let (url, _) = canned(Box::new(|form: &BTreeMap<String, String>| {
        match form.get("Action").map(String::as_str) {
            Some("DescribeStacks") => (400, error_xml("ValidationError", "Stack with id s does not exist")),
            Some("CreateChangeSet") => (
                400,
                error_xml(
                    "InsufficientCapabilitiesException",
                    "Requires capabilities : [CAPABILITY_IAM]",
                ),
            ),
            Some("ExecuteChangeSet") => (
                400,
                error_xml(
                    "ValidationError",
                    "Stack:arn is in UPDATE_IN_PROGRESS state and can not be updated.",
                ),
            ),
            Some("DeleteStack") => (403, error_xml("AccessDenied", "not authorized")),
            _ => (500, "<html>oops</html>".to_string()),
        }
    }))
    .await;
    let cf = client(&url).await;
    assert_eq!(cf.describe_stack("s").await.unwrap(), None);
    let err = cf
        .create_change_set(&request("s", "cs", ChangeSetType::Create, "{}"))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind, err.code.as_str()),
        (AwsErrorKind::Validation, "InsufficientCapabilitiesException")
    );
    let err = cf.execute_change_set("s", "cs", "t").await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::InProgress, "{err}");
    let err = cf.delete_stack("s", "t", &[]).await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::AccessDenied, "{err}");
    let err = cf.stack_events("s", None, 10).await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::Transient, "HTML 500: {err}");
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let cf = client(&format!("http://127.0.0.1:{port}")).await;
    let started = Instant::now();
    let err = cf.describe_stack("s").await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::Transient, "{err}");
    assert!(
        started.elapsed() < SdkLimits::default().operation_timeout,
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_silent_endpoint_times_out() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    // The default bounds (30 s per call) with shorter numbers, same mechanism.
    let limits = SdkLimits {
        attempt_timeout: Duration::from_millis(500),
        operation_timeout: Duration::from_secs(2),
        ..SdkLimits::default()
    };
    let cf = provider_with(&url, limits).await.client(&target());
    let started = Instant::now();
    let err = cf.describe_stack("s").await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::Transient, "{err}");
    assert_eq!(err.code, "Timeout", "{err}");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

fn stack_xml(name: &str, status: &str) -> String {
    format!(
        "<member><StackId>arn:aws:cloudformation:us-east-1:1:stack/{name}/x</StackId><StackName>{name}</StackName>\
         <StackStatus>{status}</StackStatus><CreationTime>2024-01-01T00:00:00Z</CreationTime>\
         <Parameters><member><ParameterKey>Env</ParameterKey><ParameterValue>prod</ParameterValue></member></Parameters>\
         <Tags><member><Key>team</Key><Value>a</Value></member></Tags>\
         <Outputs><member><OutputKey>Url</OutputKey><OutputValue>https://{name}</OutputValue>\
         <Description>the url</Description><ExportName>{name}-url</ExportName></member></Outputs>\
         <EnableTerminationProtection>true</EnableTerminationProtection></member>"
    )
}

fn response(action: &str, result: &str) -> (u16, String) {
    (
        200,
        format!(
            "<{action}Response xmlns=\"{NS}\"><{action}Result>{result}</{action}Result>\
             <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></{action}Response>"
        ),
    )
}

#[tokio::test]
async fn bulk_describe_reads_every_page_without_a_stack_name() {
    let (url, seen) = canned(Box::new(|form: &BTreeMap<String, String>| {
        let (stacks, next) = match form.get("NextToken").map(String::as_str) {
            None => (
                stack_xml("a", "CREATE_COMPLETE") + &stack_xml("b", "UPDATE_IN_PROGRESS"),
                "<NextToken>p2</NextToken>",
            ),
            Some("p2") => (
                stack_xml("gone", "DELETE_COMPLETE") + &stack_xml("c", "ROLLBACK_COMPLETE"),
                "<NextToken>p3</NextToken>",
            ),
            _ => (String::new(), ""),
        };
        response("DescribeStacks", &format!("<Stacks>{stacks}</Stacks>{next}"))
    }))
    .await;
    let cf = client(&url).await;
    let listing = cf.describe_all_stacks().await.unwrap();
    assert_eq!(listing.pages, 3);
    let names: Vec<&str> = listing.stacks.iter().map(|s| s.stack_name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"], "DELETE_COMPLETE left out");
    let a = &listing.stacks[0];
    assert_eq!(a.status, StackState::CreateComplete);
    assert_eq!(
        a.parameters,
        [Parameter {
            key: "Env".into(),
            value: "prod".into()
        }]
    );
    assert_eq!(a.tags.get("team").map(String::as_str), Some("a"));
    assert_eq!(a.outputs[0].value, "https://a");
    assert_eq!(a.outputs[0].export_name.as_deref(), Some("a-url"));
    assert!(a.termination_protection);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|form| !form.contains_key("StackName")), "{seen:?}");
    assert_eq!(seen[2].get("NextToken").map(String::as_str), Some("p3"));
}

fn drift_member(id: &str, status: &str) -> String {
    format!(
        "<member><StackId>arn:stack</StackId><LogicalResourceId>{id}</LogicalResourceId>\
         <PhysicalResourceId>phys-{id}</PhysicalResourceId><ResourceType>AWS::SQS::Queue</ResourceType>\
         <StackResourceDriftStatus>{status}</StackResourceDriftStatus><Timestamp>2024-01-01T00:00:00Z</Timestamp>\
         <PropertyDifferences><member><PropertyPath>/DelaySeconds</PropertyPath><ExpectedValue>0</ExpectedValue>\
         <ActualValue>5</ActualValue><DifferenceType>NOT_EQUAL</DifferenceType></member></PropertyDifferences></member>"
    )
}

#[tokio::test]
async fn drift_detection_calls_send_and_read_the_right_fields() {
    let (url, seen) = canned(Box::new(|form: &BTreeMap<String, String>| {
        match form.get("Action").map(String::as_str) {
            Some("DetectStackDrift") => {
                response("DetectStackDrift", "<StackDriftDetectionId>d-1</StackDriftDetectionId>")
            }
            Some("DescribeStackDriftDetectionStatus") => response(
                "DescribeStackDriftDetectionStatus",
                "<StackId>arn:stack</StackId><StackDriftDetectionId>d-1</StackDriftDetectionId>\
                 <StackDriftStatus>DRIFTED</StackDriftStatus><DetectionStatus>DETECTION_COMPLETE</DetectionStatus>\
                 <DriftedStackResourceCount>3</DriftedStackResourceCount><Timestamp>2024-01-01T00:00:05Z</Timestamp>",
            ),
            Some("DescribeStackResourceDrifts") => {
                let (members, next) = match form.get("NextToken").map(String::as_str) {
                    None => (
                        drift_member("A", "MODIFIED") + &drift_member("B", "IN_SYNC"),
                        "<NextToken>n</NextToken>",
                    ),
                    _ => (drift_member("C", "DELETED"), ""),
                };
                response(
                    "DescribeStackResourceDrifts",
                    &format!("<StackResourceDrifts>{members}</StackResourceDrifts>{next}"),
                )
            }
            _ => (400, error_xml("ValidationError", "unexpected")),
        }
    }))
    .await;
    let cf = client(&url).await;
    let id = cf.detect_stack_drift("s").await.unwrap();
    assert_eq!(id, "d-1");
    let detection = cf.drift_detection_status(&id).await.unwrap();
    assert_eq!(detection.status, DriftDetectionStatus::Complete);
    assert_eq!(detection.stack_drift_status, StackDriftStatus::Drifted);
    assert_eq!(detection.drifted_resource_count, Some(3));
    assert_eq!(detection.timestamp.to_rfc3339(), "2024-01-01T00:00:05+00:00");
    let drifts = cf.resource_drifts("s").await.unwrap();
    let summary: Vec<(&str, &ResourceDriftStatus)> = drifts.iter().map(|d| (d.logical_id.as_str(), &d.drift)).collect();
    assert_eq!(
        summary,
        [
            ("A", &ResourceDriftStatus::Modified),
            ("C", &ResourceDriftStatus::Deleted)
        ],
        "IN_SYNC left out even when the filter is ignored"
    );
    assert_eq!(drifts[0].physical_id.as_deref(), Some("phys-A"));
    assert_eq!(drifts[0].differences[0].kind, DifferenceKind::NotEqual);
    assert_eq!(
        (
            drifts[0].differences[0].expected.as_str(),
            drifts[0].differences[0].actual.as_str()
        ),
        ("0", "5")
    );

    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].get("StackName").map(String::as_str), Some("s"));
    assert_eq!(seen[1].get("StackDriftDetectionId").map(String::as_str), Some("d-1"));
    let page = &seen[2];
    assert_eq!(
        page.get("StackResourceDriftStatusFilters.member.1").map(String::as_str),
        Some("MODIFIED")
    );
    assert_eq!(
        page.get("StackResourceDriftStatusFilters.member.2").map(String::as_str),
        Some("DELETED")
    );
    assert_eq!(page.get("MaxResults").map(String::as_str), Some("100"));
    assert_eq!(seen[3].get("NextToken").map(String::as_str), Some("n"));
    assert_eq!(seen.len(), 4);
}

#[tokio::test]
async fn write_calls_send_their_parameters() {
    let (url, seen) = canned(Box::new(|form: &BTreeMap<String, String>| {
        match form.get("Action").map(String::as_str).unwrap_or_default() {
            "CreateChangeSet" => response("CreateChangeSet", "<Id>arn:cs</Id><StackId>arn:stack</StackId>"),
            "UpdateTerminationProtection" => response("UpdateTerminationProtection", "<StackId>arn:stack</StackId>"),
            "GetTemplate" => response("GetTemplate", "<TemplateBody>Resources: {}</TemplateBody>"),
            "GetStackPolicy" => response("GetStackPolicy", ""),
            action => response(action, ""),
        }
    }))
    .await;
    let cf = client(&url).await;
    let mut revert = request("s", "cs", ChangeSetType::Update, "Resources: {}");
    revert.deployment_mode = Some(DeploymentMode::RevertDrift);
    assert_eq!(cf.create_change_set(&revert).await.unwrap(), "arn:cs");
    cf.create_change_set(&request("s", "cs2", ChangeSetType::Update, "Resources: {}"))
        .await
        .unwrap();
    cf.update_termination_protection("s", true).await.unwrap();
    cf.set_stack_policy("s", r#"{"Statement":[]}"#).await.unwrap();
    assert_eq!(cf.get_stack_policy("s").await.unwrap(), None);
    assert_eq!(cf.get_template("s").await.unwrap(), "Resources: {}");
    cf.continue_update_rollback("s", &["A".into(), "Nested.B".into()], "tok")
        .await
        .unwrap();
    cf.continue_update_rollback("s", &[], "").await.unwrap();

    let seen = seen.lock().unwrap();
    let field = |i: usize, key: &str| seen[i].get(key).cloned();
    assert_eq!(field(0, "DeploymentMode").as_deref(), Some("REVERT_DRIFT"));
    assert_eq!(field(1, "DeploymentMode"), None);
    assert_eq!(field(2, "EnableTerminationProtection").as_deref(), Some("true"));
    assert_eq!(field(3, "StackPolicyBody").as_deref(), Some(r#"{"Statement":[]}"#));
    assert_eq!(field(5, "TemplateStage").as_deref(), Some("Original"));
    assert_eq!(field(6, "Action").as_deref(), Some("ContinueUpdateRollback"));
    assert_eq!(field(6, "ResourcesToSkip.member.1").as_deref(), Some("A"));
    assert_eq!(field(6, "ResourcesToSkip.member.2").as_deref(), Some("Nested.B"));
    assert_eq!(field(6, "ClientRequestToken").as_deref(), Some("tok"));
    assert_eq!(field(7, "ClientRequestToken"), None);
    assert!(
        !seen[7].keys().any(|k| k.starts_with("ResourcesToSkip")),
        "{:?}",
        seen[7]
    );
}
