//! The StackDeployment controller: one template revision rolled out to many
//! targets through child `Stack`s. It never calls CloudFormation: it writes
//! child specs (server-side apply) and reads child status from the shared
//! Stack cache; the only AWS read is CloudWatch alarms for the health gates.
//! The decision is pure ([`decide`]); this module observes and applies it.

mod act;
mod context;
pub mod decide;
mod observe;
pub mod plan;
mod reconcile;

use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::{Predicate, WatchStreamExt, predicates, reflector, watcher};

use crate::api::{Stack, StackDeployment};

pub use act::{FIELD_MANAGER, FINALIZER};
pub use context::{DeploymentContext, DeploymentSettings};
pub use decide::decide;
pub use observe::{HASH_LABEL, REVISION_LABEL};
pub use plan::{Observed, Plan};

/// The StackDeployment cache, in `/readyz`.
pub const CACHE: &str = "stackdeployments";

/// Runs the StackDeployment controller until `shutdown` resolves. `stacks`
/// is a subscription to the shared Stack cache (taken before it runs):
/// every change of a child Stack wakes its owner.
pub async fn run(
    ctx: Arc<DeploymentContext>,
    stacks: impl Stream<Item = Arc<Stack>> + Send + 'static,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.shared.client.clone();
    let api: Api<StackDeployment> = crate::runtime::watch::scoped(&client, namespace.as_deref());
    let (store, writer) = reflector::store();
    let synced = ctx.shared.readiness.register(CACHE);
    // Our own status writes change none of these, so they do not wake us.
    let deployments = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .inspect(synced.on_init_done(CACHE))
        .applied_objects()
        .predicate_filter(
            predicates::generation
                .combine(predicates::annotations)
                .combine(predicates::finalizers),
            Default::default(),
        );
    // A new artifact of a Flux source starts a rollout at once.
    let flux_store = store.clone();
    let flux_sources = crate::source::watch::changes(client.clone(), namespace.as_deref()).flat_map(move |key| {
        let readers: Vec<_> = flux_store
            .state()
            .iter()
            .filter(|d| {
                let own = d.namespace().unwrap_or_default();
                d.spec
                    .artifact
                    .template
                    .source_ref
                    .as_ref()
                    .is_some_and(|r| crate::source::watch::names(r, &own, &key))
            })
            .map(|d| kube::runtime::reflector::ObjectRef::from_obj(d.as_ref()))
            .collect();
        futures::stream::iter(readers)
    });
    let results = Controller::for_stream(deployments, store)
        .owns_shared_stream(stacks)
        .reconcile_on(flux_sources)
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, ctx);
    crate::runtime::reconciler::drain(results, "stackdeployment").await;
}
