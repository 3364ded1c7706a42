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

mod drift;
mod failures;
mod protection;
mod status;
#[path = "../support/mod.rs"]
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
