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

mod localstack;
mod moto;
mod wire;

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
