//! The StackDeployment controller: one template revision rolled out to many
//! targets through child `Stack`s. It never calls CloudFormation: it writes
//! child specs (server-side apply) and reads child status from the shared
//! Stack cache; the only AWS read is CloudWatch alarms for the health gates.
//! The decision is pure ([`decide`]); this module observes and applies it.

mod act;
mod child_writes;
mod context;
pub mod decide;
mod observe;
mod pacing;
pub mod plan;
mod reconcile;
mod revision_cache;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::{Predicate, WatchStreamExt, predicates, reflector, watcher};
use kube::{Resource, ResourceExt};

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
    let revisions = {
        let ctx = ctx.clone();
        let (client, namespace) = (client.clone(), namespace.clone());
        tokio::spawn(async move { ctx.revisions.watch(client, namespace.as_deref()).await })
    };
    let results = Controller::for_stream(deployments, store)
        .owns_shared_stream(children_changes(stacks))
        .reconcile_on(flux_sources)
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, ctx);
    crate::runtime::reconciler::drain(results, "stackdeployment").await;
    revisions.abort();
}

/// The child Stacks whose view as a child changed ([`plan::ObservedChild`],
/// owners, target): a Stack writes its status several times per change
/// (intents, event cursors, drift times) that the rollout does not read, and
/// each would otherwise cost its deployment a whole reconcile.
fn children_changes(stacks: impl Stream<Item = Arc<Stack>> + Send + 'static) -> impl Stream<Item = Arc<Stack>> + Send {
    let seen: Mutex<HashMap<String, u64>> = Mutex::new(HashMap::new());
    let owner_kind = StackDeployment::kind(&());
    stacks.filter(move |stack| {
        let owners = stack.owner_references();
        let changed = owners.iter().any(|o| o.kind == owner_kind) && {
            let owners: Vec<(&str, Option<bool>)> = owners.iter().map(|o| (o.uid.as_str(), o.controller)).collect();
            let view = (
                plan::ObservedChild::from_stack(stack),
                owners,
                stack.labels().get(plan::TARGET_LABEL),
            );
            let mut hasher = DefaultHasher::new();
            view.hash(&mut hasher);
            let hash = hasher.finish();
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.insert(stack.uid().unwrap_or_default(), hash) != Some(hash)
        };
        std::future::ready(changed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{StackSpec, StackStatus};
    use futures::stream;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};

    fn child(ready: &str, cursor: &str) -> Arc<Stack> {
        let mut stack = Stack::new("web-t1", StackSpec::default());
        stack.metadata.uid = Some("child-uid".into());
        stack.metadata.owner_references = Some(vec![OwnerReference {
            kind: "StackDeployment".into(),
            name: "web".into(),
            uid: "owner-uid".into(),
            controller: Some(true),
            ..Default::default()
        }]);
        stack.status = Some(StackStatus {
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: ready.into(),
                reason: "Succeeded".into(),
                message: "ok".into(),
                observed_generation: Some(1),
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
            }],
            last_event_id: Some(cursor.into()),
            ..Default::default()
        });
        Arc::new(stack)
    }

    #[tokio::test]
    async fn only_changes_a_deployment_reads_wake_it() {
        let mut unowned = child("True", "e1").as_ref().clone();
        unowned.metadata.owner_references = None;
        let seen: Vec<_> = children_changes(stream::iter(vec![
            child("Unknown", "e1"),
            child("Unknown", "e2"), // only the event cursor moved
            child("True", "e2"),
            child("True", "e2"), // a resync
            Arc::new(unowned),
        ]))
        .collect()
        .await;
        let ready: Vec<_> = seen
            .iter()
            .map(|s| s.status.as_ref().unwrap().conditions[0].status.clone())
            .collect();
        assert_eq!(ready, vec!["Unknown", "True"]);
    }
}
