//! The Pipeline controller: stages of deploy, approval, wait and test
//! actions run per source revision. `decide` is the pure heart; the wiring
//! (watches, applying children, creating Jobs, reading the source) calls it.

mod act;
mod context;
mod decide;
mod observe;
pub mod plan;
mod reconcile;
mod s3_source;

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Config, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Predicate, WatchStreamExt, predicates, reflector, watcher};

use crate::api::{Pipeline, Stack, StackDeployment};
use crate::runtime::context::Shared;
use crate::runtime::watch::{ConstantBackoff, scoped};
use crate::source::watch::SourceKey;

pub use act::{FIELD_MANAGER, FINALIZER};
pub use context::{PipelineContext, Sources};
pub use decide::{decide, deploy_revision, environment, upper_snake};
pub use observe::{PARAMETERS_KEY, TEMPLATE_KEY};
pub use plan::{
    APPROVE_ANNOTATION, ApprovalRequest, ChildFailure, ChildKind, ChildObserved, ChildWrite, JobObserved, Observed,
    Plan, PlannedChanges, REJECT_ANNOTATION, RETRY_ANNOTATION, REVISION_ANNOTATION, RetryRequest, STOP_ANNOTATION,
    Snapshot, SourceObserved, StopRequest, Timing, child_name, execution_id, job_name,
};

/// The caches of the Pipeline controller, in `/readyz`.
pub const CACHES: [&str; 3] = ["pipelines", "stackdeployments", "jobs"];

/// The pipelines whose source is this ConfigMap.
fn reading(
    pipelines: &reflector::Store<Pipeline>,
    config_map: &PartialObjectMeta<ConfigMap>,
) -> Vec<ObjectRef<Pipeline>> {
    let namespace = config_map.namespace();
    let name = config_map.name_any();
    pipelines
        .state()
        .iter()
        .filter(|p| p.namespace() == namespace)
        .filter(|p| {
            p.spec
                .source
                .artifact_ref
                .as_ref()
                .is_some_and(|r| r.config_map == name)
        })
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

/// The pipelines whose source is this Flux source object.
fn reading_flux(pipelines: &reflector::Store<Pipeline>, key: &SourceKey) -> Vec<ObjectRef<Pipeline>> {
    pipelines
        .state()
        .iter()
        .filter(|p| {
            let own = p.namespace().unwrap_or_default();
            let source = &p.spec.source;
            let inline = source.artifact.as_ref().and_then(|a| a.template.source_ref.as_ref());
            source
                .source_ref
                .iter()
                .chain(inline)
                .any(|r| crate::source::watch::names(r, &own, key))
        })
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

/// Runs the Pipeline controller until `shutdown` resolves. `stacks` is a
/// subscription to the shared Stack cache (`store` its reader), taken
/// before that cache runs.
pub async fn run(
    shared: Arc<Shared>,
    stacks: impl Stream<Item = Arc<Stack>> + Send + 'static,
    stack_store: reflector::Store<Stack>,
    namespace: Option<String>,
    timing: Timing,
    sources: Sources,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = shared.client.clone();
    let ns = namespace.as_deref();
    let readiness = &shared.readiness;
    let [pipelines_cache, deployments_cache, jobs_cache] = CACHES;

    let (pipelines, pipelines_writer) = reflector::store();
    // Our own status writes change neither generation nor annotations nor
    // finalizers, so they do not wake the pipeline again.
    let pipeline_stream = watcher(
        scoped::<Pipeline>(&client, ns),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .reflect(pipelines_writer)
    .inspect(readiness.register(pipelines_cache).on_init_done(pipelines_cache))
    .applied_objects()
    .predicate_filter(
        predicates::generation
            .combine(predicates::annotations)
            .combine(predicates::finalizers),
        Default::default(),
    );

    let (deployments, deployments_writer) = reflector::store();
    let deployment_stream = watcher(
        scoped::<StackDeployment>(&client, ns),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .reflect(deployments_writer)
    .inspect(readiness.register(deployments_cache).on_init_done(deployments_cache))
    .applied_objects();

    // Only the Jobs a pipeline created: a Job finishing wakes its pipeline at once.
    let (jobs, jobs_writer) = reflector::store();
    let job_stream = watcher(
        scoped::<Job>(&client, ns),
        watcher::Config::default().labels(plan::LABEL_PIPELINE).any_semantic(),
    )
    .default_backoff()
    .reflect(jobs_writer)
    .inspect(readiness.register(jobs_cache).on_init_done(jobs_cache))
    .applied_objects();

    let ctx = Arc::new(PipelineContext::new(
        shared.clone(),
        stack_store.clone(),
        deployments,
        jobs,
        timing,
        sources,
    ));
    // Only metadata of ConfigMaps: a source ConfigMap created or changed
    // wakes the pipelines that read it; its content is read when they reconcile.
    let config_maps = watcher(
        scoped::<PartialObjectMeta<ConfigMap>>(&client, ns),
        watcher::Config::default(),
    )
    .default_backoff()
    .touched_objects();
    let readers = pipelines.clone();
    // A new artifact of a Flux source starts an execution at once.
    let flux_readers = pipelines.clone();
    let flux_sources = crate::source::watch::changes(client.clone(), ns)
        .flat_map(move |key| futures::stream::iter(reading_flux(&flux_readers, &key)));
    let results = Controller::for_stream(pipeline_stream, pipelines)
        .watches_stream(config_maps, move |config_map| reading(&readers, &config_map))
        .reconcile_on(flux_sources)
        .owns_shared_stream(stacks)
        .owns_stream(deployment_stream)
        .owns_stream(job_stream)
        .with_config(Config::default().concurrency(16))
        .trigger_backoff(ConstantBackoff(Duration::from_millis(100)))
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, ctx);
    crate::runtime::reconciler::drain(results, "pipeline").await;
}
