//! The Stack controller in-process against the real kube-apiserver of the
//! test bed, with the in-memory fake ([`FakeProvider`]) standing in for AWS.
//!
//! Why a fake and not an emulator: no emulator implements the CloudFormation
//! APIs these tests need. LocalStack answers 501 (not implemented) for
//! ContinueUpdateRollback, drift detection and stack policies, and does not
//! enforce termination protection; moto answers 500 for termination
//! protection, drift detection and ContinueUpdateRollback. Kubernetes is
//! real: Stacks, status, conditions, finalizers, annotations, Secrets and
//! Events all go through the kube-apiserver, so what these tests assert is
//! what `kubectl` shows. The fake's own model is documented in
//! `src/aws/fake/`; its call log shows which AWS calls the operator made.
//!
//! Each test runs its own controller (watching only its own namespace) with
//! its own fake, and deletes its namespace at the end.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use stackpilot::api::{Stack, StackStatus};
use stackpilot::aws::fake::{Action, Call, FakeCloudFormation, FakeProvider};
use stackpilot::aws::{DifferenceKind, PropertyDifference, ResourceDrift, ResourceDriftStatus};
use stackpilot::runtime::context::Shared;
use stackpilot::runtime::metrics::{ErrorLabels, Metrics, OutcomeLabels};
use stackpilot::stack::{
    APPROVE_ANNOTATION, RECONCILE_REQUESTED_AT, SharedStacks, StackContext, StackSettings, Timing,
};
use support::fixture::condition;
use support::{TestBed, TestNamespace, eventually, install_crds};
use tokio::sync::watch;

const TIMEOUT: Duration = Duration::from_secs(60);
const REGION: &str = "us-east-1";

/// Two resources: `Queue` reads the parameter (so changing it modifies
/// Queue); `Topic` sorts last, so it is the one the fake fails to delete.
const TEMPLATE: &str = r#"
Parameters:
  Visibility:
    Type: Number
    Default: 30
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: !Ref Visibility
  Topic:
    Type: AWS::SNS::Topic
"#;

/// Short intervals so a test sees many reconciles in a few seconds.
fn timing() -> Timing {
    Timing {
        in_flight: Duration::from_millis(300),
        change_set: Duration::from_millis(200),
        resync: Duration::from_secs(3),
        recreate_backoff: Duration::from_secs(1),
    }
}

/// The controllers' logs go to `$STACKPILOT_TEST_LOG_DIR/stack_fake.log`
/// (one file for all tests of this binary; lines name the Stack).
fn init_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dir =
            std::env::var("STACKPILOT_TEST_LOG_DIR").unwrap_or_else(|_| std::env::temp_dir().display().to_string());
        let Ok(file) = std::fs::File::create(std::path::Path::new(&dir).join("stack_fake.log")) else {
            return;
        };
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info,stackpilot=debug")
            .with_ansi(false)
            .with_writer(Mutex::new(file))
            .try_init();
    });
}

/// One namespace, one in-process Stack controller watching it, one fake AWS.
struct Harness {
    client: Client,
    ns: TestNamespace,
    fake: Arc<FakeCloudFormation>,
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Harness {
    async fn start(prefix: &str) -> Harness {
        init_logs();
        let client = TestBed::get().client().await;
        install_crds(&client).await;
        let ns = TestNamespace::new(&client, prefix).await;
        let provider = Arc::new(FakeProvider::new());
        let fake = provider.region(REGION);
        let settings = StackSettings {
            allow_operator_credentials: true,
            timing: timing(),
            concurrency: 4,
        };
        let metrics = Arc::new(Metrics::default());
        let shared = Arc::new(Shared::new(client.clone(), metrics.clone()));
        let stacks = SharedStacks::new(client.clone(), Some(&ns.name));
        let ctx = Arc::new(StackContext::new(shared, provider, settings, stacks.store.clone()));
        let (stop, mut stopped) = watch::channel(false);
        let namespace = ns.name.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            stackpilot::stack::run(ctx, stacks, Some(namespace), shutdown).await;
        });
        Harness {
            client,
            ns,
            fake,
            metrics,
            stop,
            task,
        }
    }

    fn stacks(&self) -> Api<Stack> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    /// The CloudFormation name the operator gives Stack `name` (the default).
    fn stack_name(&self, name: &str) -> String {
        format!("{}-{name}", self.ns.name)
    }

    async fn apply(&self, name: &str, spec: Value) {
        let object =
            json!({"apiVersion": "stackpilot.dev/v1alpha1", "kind": "Stack", "metadata": {"name": name}, "spec": spec});
        self.stacks()
            .patch(
                name,
                &PatchParams::apply("stack-fake-test").force(),
                &Patch::Apply(&object),
            )
            .await
            .expect("apply Stack");
    }

    async fn annotate(&self, name: &str, key: &str, value: &str) {
        let patch = json!({"metadata": {"annotations": {key: value}}});
        self.stacks()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("annotate Stack");
    }

    async fn delete(&self, name: &str) {
        self.stacks()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete Stack");
    }

    /// Waits until the Stack, its status written for the current
    /// generation, satisfies `check`.
    async fn wait_for(&self, name: &str, what: &str, check: impl Fn(&Stack, &StackStatus) -> bool) -> Stack {
        let api = self.stacks();
        let check = &check;
        eventually(TIMEOUT, &format!("Stack {name}: {what}"), || {
            let api = api.clone();
            async move {
                let stack = api.get(name).await.ok()?;
                let status = stack.status.as_ref()?;
                let current = status.observed_generation == stack.metadata.generation;
                (current && check(&stack, status)).then_some(stack)
            }
        })
        .await
    }

    /// Waits for condition `type_` with `status` and `reason`.
    async fn wait_condition(&self, name: &str, type_: &str, status: &str, reason: &str) -> Stack {
        self.wait_for(name, &format!("{type_}={status} ({reason})"), |stack, _| {
            condition(stack, type_).is_some_and(|c| c.status == status && c.reason == reason)
        })
        .await
    }

    async fn wait_ready(&self, name: &str) -> Stack {
        self.wait_condition(name, "Ready", "True", "Succeeded").await
    }

    async fn wait_gone(&self, name: &str) {
        let api = self.stacks();
        eventually(TIMEOUT, &format!("Stack {name} deleted"), || {
            let api = api.clone();
            async move { api.get_opt(name).await.ok()?.is_none().then_some(()) }
        })
        .await;
    }

    /// Waits for an Event with `reason` about Stack `name` (Events are
    /// published in the background, after the status write); returns its
    /// type and note.
    async fn event(&self, name: &str, reason: &str) -> (String, String) {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.ns.name);
        eventually(TIMEOUT, &format!("Event {reason} about Stack {name}"), || {
            let api = api.clone();
            async move {
                let list = api.list(&ListParams::default()).await.ok()?;
                list.items
                    .into_iter()
                    .find(|e| {
                        e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                            && e.reason.as_deref() == Some(reason)
                    })
                    .map(|e| (e.type_.unwrap_or_default(), e.note.unwrap_or_default()))
            }
        })
        .await
    }

    /// Waits until the fake's state satisfies `check` (AWS steps run after
    /// the status write that announces them).
    async fn wait_fake(&self, what: &str, check: impl Fn(&FakeCloudFormation) -> bool) {
        let check = &check;
        eventually(TIMEOUT, what, || async move { check(&self.fake).then_some(()) }).await;
    }

    /// Calls of `operation` on CloudFormation stack `stack`, from the fake's log.
    fn calls(&self, operation: Action, stack: &str) -> usize {
        self.fake
            .calls()
            .iter()
            .filter(|c| c.operation == operation && c.stack == stack)
            .count()
    }

    /// Waits until the controller has read stack `stack` `more` more times,
    /// so an assertion that something did NOT happen covers several
    /// reconciles rather than a guessed sleep.
    async fn wait_reconciles(&self, stack: &str, more: usize) {
        // A settled stack is read through the bulk read (no stack name);
        // this fake serves this test's stacks only.
        let reads = || {
            let calls = self.fake.calls();
            let read = |c: &&Call| c.operation == Action::DescribeStacks && (c.stack == stack || c.stack.is_empty());
            calls.iter().filter(read).count()
        };
        let before = reads();
        eventually(TIMEOUT, &format!("{more} more reads of {stack}"), || async move {
            (reads() >= before + more).then_some(())
        })
        .await;
    }

    /// Stops the controller and deletes the namespace. Stacks left stuck on
    /// purpose keep their finalizer, which nobody would remove now: drop it.
    async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        let api: Api<Stack> = Api::namespaced(self.client.clone(), &self.ns.name);
        let left = api
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let patch = json!({"metadata": {"finalizers": null}});
        for stack in left {
            let _ = api
                .patch(&stack.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                .await;
        }
        self.ns.cleanup().await;
    }
}

fn spec(visibility: &str, extra: Value) -> Value {
    let mut spec = json!({
        "region": REGION,
        "template": {"body": TEMPLATE},
        "parameters": [{"name": "Visibility", "value": visibility}],
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    spec
}

/// Every status the API server held for the Stacks of a namespace while it
/// ran, to check states that pass too quickly to poll for.
struct History {
    seen: Arc<Mutex<Vec<StackStatus>>>,
    task: tokio::task::JoinHandle<()>,
}

impl History {
    fn record(api: Api<Stack>) -> History {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            let mut stream = watcher(api, watcher::Config::default()).applied_objects().boxed();
            // Errors (a watch restarting) are retried by the watcher itself.
            while let Some(item) = stream.next().await {
                if let Ok(stack) = item {
                    sink.lock().unwrap().extend(stack.status);
                }
            }
        });
        History { seen, task }
    }

    fn stop(self) -> Vec<StackStatus> {
        self.task.abort();
        self.seen.lock().unwrap().clone()
    }
}

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

/// Under load the cache lags behind the API server, and a status write made
/// from an older copy gets 409 Conflict (the write is conditional on the
/// version decided from). Here a second writer relabels the Stack every 50
/// milliseconds, so the controller's copy is often stale: each conflict is
/// retried at once from a fresh copy, and none counts as a failed reconcile
/// (no error backoff, no Warning Event).
#[tokio::test]
async fn a_conflict_on_our_own_status_write_is_retried_at_once_not_a_failure() {
    let h = Harness::start("fake-conflict").await;
    h.apply("busy", spec("30", json!({}))).await;
    let api = h.stacks();
    let relabel = tokio::spawn(async move {
        for i in 0u64.. {
            let patch = json!({"metadata": {"labels": {"touched": i.to_string()}}});
            let _ = api.patch("busy", &PatchParams::default(), &Patch::Merge(&patch)).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    // Several versions of the spec, so there are many status writes.
    for visibility in ["31", "32", "33"] {
        h.wait_ready("busy").await;
        h.apply("busy", spec(visibility, json!({}))).await;
    }
    h.wait_for("busy", "Ready at the last spec", |stack, status| {
        status
            .applied
            .as_ref()
            .is_some_and(|a| Some(a.generation) == stack.metadata.generation)
            && condition(stack, "Ready").is_some_and(|c| c.status == "True")
    })
    .await;
    relabel.abort();
    let conflicts = h
        .metrics
        .status_writes
        .get_or_create(&OutcomeLabels {
            kind: "Stack",
            outcome: "conflict",
        })
        .get();
    let failed = h
        .metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            kind: "Stack",
            category: "conflict",
        })
        .get();
    let errors = h
        .metrics
        .reconciles
        .get_or_create(&OutcomeLabels {
            kind: "Stack",
            outcome: "error",
        })
        .get();
    assert!(
        conflicts > 0,
        "the relabelling made no status write conflict: the test proves nothing"
    );
    assert_eq!(
        (failed, errors),
        (0, 0),
        "{conflicts} conflicts; failed reconciles: {failed} conflicts, {errors} in all"
    );
    let events: Api<Event> = Api::namespaced(h.client.clone(), &h.ns.name);
    let conflict_events = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Conflict"))
        .count();
    assert_eq!(conflict_events, 0);
    h.finish().await;
}

/// The DRIFTED column of `kubectl get stack`, by Stack name.
fn drifted_column(h: &Harness) -> std::collections::BTreeMap<String, String> {
    let output = std::process::Command::new("kubectl")
        .args([
            "--kubeconfig",
            TestBed::get().kubeconfig.to_str().unwrap(),
            "get",
            "stacks",
            "-n",
            &h.ns.name,
        ])
        .output()
        .expect("kubectl");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let (start, end) = (
        header.find("DRIFTED").expect("a DRIFTED column"),
        header.find("MESSAGE").expect("a MESSAGE column"),
    );
    lines
        .map(|l| {
            let name = l.split_whitespace().next().unwrap_or_default().to_string();
            (name, l.get(start..end).unwrap_or_default().trim().to_string())
        })
        .collect()
}

/// One rule for the DRIFTED column: blank only when drift checks are off;
/// with checks on, `Unknown` from the first Ready until a check says
/// `False` (in sync) or `True`.
#[tokio::test]
async fn the_drifted_column_follows_one_rule_for_every_stack() {
    let h = Harness::start("fake-column").await;
    h.apply("on", spec("30", json!({"drift": {"interval": "1h"}}))).await;
    h.apply("off", spec("30", json!({"drift": {"interval": "0"}}))).await;
    h.wait_ready("on").await;
    h.wait_ready("off").await;
    let columns = drifted_column(&h);
    assert_eq!(columns.get("on").map(String::as_str), Some("Unknown"), "{columns:?}");
    assert_eq!(columns.get("off").map(String::as_str), Some(""), "{columns:?}");
    // A check asked for now finds the stack in sync.
    h.annotate("on", RECONCILE_REQUESTED_AT, "check").await;
    h.wait_condition("on", "Drifted", "False", "InSync").await;
    let columns = drifted_column(&h);
    assert_eq!(columns.get("on").map(String::as_str), Some("False"), "{columns:?}");
    assert_eq!(columns.get("off").map(String::as_str), Some(""), "{columns:?}");
    h.finish().await;
}
