//! The Stack controller: the only caller of CloudFormation.

mod change_sets;
mod decide;
#[cfg(test)]
mod decide_tests;
mod deletion;
mod desired;
mod directory;
mod drift;
mod inputs;
mod lifecycle;
mod names;
mod outputs;
mod reconcile;
mod regions;
mod report;
mod status;
mod template;
mod timeout;
mod triggers;
mod update_stack;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::{Predicate, WatchStreamExt, predicates, reflector, watcher};
use tracing::{info, warn};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::{AwsAccount, Stack};
use crate::context::Context;
use crate::slots::{Priority, Slots};
use triggers::{Source, readers};

pub use decide::{APPROVE_ANNOTATION, Observed, Plan, Step, Timing, decide};
pub use desired::{DesiredStack, InputProblem, ResolvedParameter};
pub use directory::Directory;
pub use drift::DriftObservation;
pub use inputs::RECONCILE_REQUESTED_AT;
pub use names::{TAG_NAME, TAG_NAMESPACE, TAG_UID};
pub use reconcile::FINALIZER;

/// Maps a change of a ConfigMap, Secret or AwsAccount to the Stacks that read it.
fn mapper<K: kube::Resource>(
    store: Store<Stack>,
    source: Source,
) -> impl Fn(PartialObjectMeta<K>) -> Vec<ObjectRef<Stack>> {
    move |object| {
        readers(
            &store.state(),
            source,
            object.metadata.namespace.as_deref(),
            &object.name_any(),
        )
    }
}

fn scoped<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the Stack controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<Stack> = match &namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let (reader, writer) = reflector::store();
    // Our own status writes do not change generation, annotations or
    // finalizers, so they do not wake the controller again.
    let stream = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation
                .combine(predicates::annotations)
                .combine(predicates::finalizers),
            Default::default(),
        );
    let ready_reader = reader.clone();
    let ready_ctx = ctx.clone();
    tokio::spawn(async move {
        // The store wakes only its most recent waiter (the controller), so
        // look again every second rather than wait once.
        loop {
            let wait = tokio::time::timeout(Duration::from_secs(1), ready_reader.wait_until_ready());
            if let Ok(result) = wait.await {
                if result.is_ok() {
                    info!("stack cache synced");
                    ready_ctx.ready.store(true, Ordering::Relaxed);
                }
                return;
            }
        }
    });
    // The objects-by-condition gauge, counted from the cache.
    let count_reader = reader.clone();
    let count_ctx = ctx.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(10));
        loop {
            every.tick().await;
            let stacks = count_reader.state();
            let conditions = stacks
                .iter()
                .map(|s| s.status.as_ref().map(|st| st.conditions.as_slice()).unwrap_or_default());
            count_ctx.metrics.count_conditions("Stack", conditions);
        }
    });
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    // Only metadata of ConfigMaps and Secrets is watched: their contents are
    // read when a Stack that uses them reconciles, never cached.
    let config_maps = watcher(
        scoped::<PartialObjectMeta<ConfigMap>>(&client, ns),
        watcher::Config::default(),
    )
    .default_backoff();
    let secrets = watcher(
        scoped::<PartialObjectMeta<Secret>>(&client, ns),
        watcher::Config::default(),
    )
    .default_backoff();
    let accounts = watcher(
        Api::<PartialObjectMeta<AwsAccount>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff();
    let stacks = watcher(scoped::<Stack>(&client, ns), watcher::Config::default()).default_backoff();
    let dependents = reader.clone();
    let slots = Arc::new(Slots::new(usize::from(concurrency)));
    Controller::for_stream(stream, reader.clone())
        .watches_stream(config_maps.touched_objects(), mapper(reader.clone(), Source::ConfigMap))
        .watches_stream(secrets.touched_objects(), mapper(reader.clone(), Source::Secret))
        .watches_stream(accounts.touched_objects(), mapper(reader.clone(), Source::AwsAccount))
        .watches_stream(stacks.touched_objects(), move |changed: Stack| {
            readers(
                &dependents.state(),
                Source::Stack,
                changed.namespace().as_deref(),
                &changed.name_any(),
            )
        })
        // Every due reconcile may start (0: no limit) and wait for a slot;
        // `concurrency` of them run at once, changes first.
        .with_config(kube::runtime::controller::Config::default().concurrency(0))
        // Each watch backs off on its own (above); the shared trigger backoff
        // would otherwise freeze every watch, the cache's included, after
        // one watch's errors (an API server restart).
        .trigger_backoff(ConstantBackoff(Duration::from_millis(100)))
        .graceful_shutdown_on(shutdown)
        .run(
            move |stack, ctx| {
                let slots = slots.clone();
                async move {
                    let _slot = slots.take(priority(&stack)).await;
                    // Boxed once it runs: a waiting reconcile then holds a
                    // few words, not the whole reconcile's state.
                    Box::pin(reconcile::reconcile(stack, ctx)).await
                }
            },
            reconcile::error_policy,
            ctx,
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                warn!(%error, "stack controller");
            }
        })
        .await;
}

/// What the cache never reads: field ownership, and kubectl's copy of the
/// whole last applied object (the template again).
fn slim(stack: &mut Stack) {
    stack.managed_fields_mut().clear();
    stack.annotations_mut().remove(LAST_APPLIED);
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Someone waits for a Stack that is new, edited, being deleted or approved;
/// anything else is a scheduled look.
fn priority(stack: &Stack) -> Priority {
    let Some(status) = stack.status.as_ref() else {
        return Priority::Change;
    };
    let edited = status.observed_generation != stack.metadata.generation;
    let deleting = stack.metadata.deletion_timestamp.is_some()
        && status.operation.as_ref().is_none_or(|op| op.action != "DeleteStack");
    let approved = stack.annotations().contains_key(APPROVE_ANNOTATION);
    if edited || deleting || approved || !stack.finalizers().iter().any(|f| f == FINALIZER) {
        Priority::Change
    } else {
        Priority::Poll
    }
}

/// A fixed delay, for the controller's shared trigger backoff.
struct ConstantBackoff(Duration);

impl Iterator for ConstantBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(self.0)
    }
}

impl kube::runtime::utils::Backoff for ConstantBackoff {
    fn reset(&mut self) {}
}
