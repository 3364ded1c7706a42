//! The Stack controller: the only caller of CloudFormation.

mod act;
mod cache;
mod context;
mod decide;
pub(crate) mod desired;
mod directory;
mod inputs;
mod lifecycle;
mod names;
pub(crate) mod observe;
mod outputs;
pub(crate) mod plan;
mod reconcile;
mod regions;
mod template;
mod triggers;
mod unsupported;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::ResourceExt;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Config, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Predicate, WatchStreamExt, predicates, watcher};

use crate::account::TenancyWriters;
use crate::api::{AwsAccount, OperationAction, Stack};
use crate::runtime::slots::Priority;
use crate::runtime::watch::{ConstantBackoff, changed_only, scoped};
use triggers::{Readers, Source};

pub use act::FINALIZER;
pub use cache::{CACHE, SharedStacks};
pub use context::{StackContext, StackSettings};
pub use decide::drift::DEFAULT_INTERVAL as DEFAULT_DRIFT_INTERVAL;
pub use desired::{DesiredStack, ResolvedParameter};
pub use directory::Directory;
pub use names::{TAG_NAME, TAG_NAMESPACE, TAG_UID};
pub use plan::{
    APPROVE_ANNOTATION, DriftObservation, Observed, Plan, RECONCILE_REQUESTED_AT, REVISION_ANNOTATION, Step, Timing,
};

/// Maps a change of a ConfigMap, Secret or AwsAccount to the Stacks that read it.
fn mapper<K: kube::Resource>(
    store: Store<Stack>,
    readers: Readers,
    source: Source,
) -> impl Fn(PartialObjectMeta<K>) -> Vec<ObjectRef<Stack>> {
    move |object| readers.readers(&store, source, object.metadata.namespace.as_deref(), &object.name_any())
}

/// Runs the Stack controller on the shared Stack cache until `shutdown`
/// resolves. `stacks` must not be running yet: this subscribes to it first.
pub async fn run(
    ctx: Arc<StackContext>,
    stacks: SharedStacks,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let store = stacks.store.clone();
    // Our own status writes do not change generation, annotations or
    // finalizers, so they do not wake the controller again.
    let trigger = changed_only(
        stacks.subscribe(),
        predicates::generation
            .combine(predicates::annotations)
            .combine(predicates::finalizers),
    );
    let dependents = stacks.subscribe();
    let cache = tokio::spawn(stacks.run(ctx.shared.readiness.register(cache::CACHE)));
    // The objects-by-condition gauge, counted from the cache.
    let count_store = store.clone();
    let count_ctx = ctx.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(10));
        loop {
            every.tick().await;
            let stacks = count_store.state();
            let conditions = stacks
                .iter()
                .map(|s| s.status.as_ref().map(|st| st.conditions.as_slice()).unwrap_or_default());
            count_ctx.shared.metrics.count_conditions("Stack", conditions);
        }
    });
    let client = ctx.shared.client.clone();
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
    // The watches of AwsAccounts and namespaces fill the grants' cache
    // before they wake a Stack, so its reconcile reads what woke it.
    let writers = ctx.tenancy.take_writers().unwrap_or_else(TenancyWriters::unread);
    let accounts = watcher(Api::<AwsAccount>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writers.accounts);
    // Relabelling a namespace grants or revokes AwsAccounts: only label changes matter.
    let namespace_config = match ns {
        Some(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
        None => watcher::Config::default(),
    };
    let namespaces = watcher(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        namespace_config,
    )
    .default_backoff()
    .reflect(writers.namespaces)
    .touched_objects()
    .predicate_filter(predicates::labels, Default::default());
    let namespace_store = store.clone();
    let readers = Readers::default();
    let (account_store, account_readers) = (store.clone(), readers.clone());
    let flux_sources = crate::source::watch::changes(client.clone(), ns);
    let (flux_store, flux_readers) = (store.clone(), readers.clone());
    let dependents_store = store.clone();
    let dependents_readers = readers.clone();
    let slots_ctx = ctx.clone();
    let results = Controller::for_shared_stream(trigger, store.clone())
        .watches_stream(
            config_maps.touched_objects(),
            mapper(store.clone(), readers.clone(), Source::ConfigMap),
        )
        .watches_stream(
            secrets.touched_objects(),
            mapper(store.clone(), readers.clone(), Source::Secret),
        )
        .watches_stream(accounts.touched_objects(), move |account: AwsAccount| {
            account_readers.readers(&account_store, Source::AwsAccount, None, &account.name_any())
        })
        // Every Stack change keeps the readers index current and wakes the
        // Stacks that depend on the changed one.
        .watches_stream(namespaces, move |namespace: PartialObjectMeta<Namespace>| {
            let name = namespace.name_any();
            namespace_store
                .state()
                .iter()
                .filter(|stack| stack.namespace().as_deref() == Some(name.as_str()))
                .map(|stack| ObjectRef::from_obj(stack.as_ref()))
                .collect::<Vec<_>>()
        })
        // A new artifact of a Flux source updates the Stacks reading it at once.
        .reconcile_on(flux_sources.flat_map(move |key| {
            futures::stream::iter(flux_readers.readers(
                &flux_store,
                Source::Flux(key.kind),
                Some(&key.namespace),
                &key.name,
            ))
        }))
        .watches_shared_stream(dependents, move |changed: Arc<Stack>| {
            dependents_readers.update(&changed);
            dependents_readers.readers(
                &dependents_store,
                Source::Stack,
                changed.namespace().as_deref(),
                &changed.name_any(),
            )
        })
        // Every due reconcile may start (0: no limit) and wait for a slot;
        // `concurrency` of them run at once, changes first.
        .with_config(Config::default().concurrency(0))
        .trigger_backoff(ConstantBackoff(Duration::from_millis(100)))
        .graceful_shutdown_on(shutdown)
        .run(
            move |stack, ctx| {
                let slots_ctx = slots_ctx.clone();
                async move {
                    let _slot = slots_ctx.slots.take(priority(&stack)).await;
                    // Boxed once it runs: a waiting reconcile then holds a
                    // few words, not the whole reconcile's state.
                    Box::pin(reconcile::reconcile(stack, ctx)).await
                }
            },
            reconcile::error_policy,
            ctx,
        );
    crate::runtime::reconciler::drain(results, "stack").await;
    cache.abort();
}

/// Someone waits for a Stack that is new, edited, being deleted or approved;
/// anything else is a scheduled look.
fn priority(stack: &Stack) -> Priority {
    let Some(status) = stack.status.as_ref() else {
        return Priority::Change;
    };
    let edited = status.observed_generation != stack.metadata.generation;
    let deleting = stack.metadata.deletion_timestamp.is_some()
        && status
            .operation
            .as_ref()
            .is_none_or(|op| op.action != OperationAction::DeleteStack);
    let approved = stack.annotations().contains_key(APPROVE_ANNOTATION);
    if edited || deleting || approved || !stack.finalizers().iter().any(|f| f == FINALIZER) {
        Priority::Change
    } else {
        Priority::Poll
    }
}
