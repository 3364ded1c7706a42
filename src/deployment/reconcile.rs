//! One StackDeployment reconcile, one path: finalizer -> grants (tenancy,
//! no AWS call when refused) -> observe -> decide -> act.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use crate::api::{Stack, StackDeployment};
use crate::runtime::error::{Error, Result};
use crate::runtime::{finalizer, reconciler};
use tracing::debug;

use super::act::{FINALIZER, act};
use super::context::DeploymentContext;
use super::decide::{artifact_hash, decide, refused};
use super::observe::{self, Observations};
use super::plan::{
    ABORT_ANNOTATION, Observed, ObservedChild, PROMOTE_ANNOTATION, PROMOTE_FULL_ANNOTATION, RETRY_ANNOTATION,
    ROLLBACK_TO_ANNOTATION, child_name,
};

pub async fn reconcile(deployment: Arc<StackDeployment>, ctx: Arc<DeploymentContext>) -> Result<Action> {
    reconciler::instrumented(&ctx.shared, deployment.as_ref(), reconcile_current(&deployment, &ctx)).await
}

/// From the deployment as it is now when the cache has not caught up with
/// our last write of it (our status writes do not wake it, so there is no
/// event to wait for); a conflict on our own write decides again at once.
async fn reconcile_current(deployment: &StackDeployment, ctx: &DeploymentContext) -> Result<Action> {
    let namespace = deployment
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<StackDeployment> = Api::namespaced(ctx.shared.client.clone(), &namespace);
    let read_first = ctx.superseded(deployment);
    reconciler::from_current(&api, deployment, read_first, ctx, |current, ctx| {
        Box::pin(reconcile_inner(current, ctx))
    })
    .await
}

pub fn error_policy(deployment: Arc<StackDeployment>, error: &Error, ctx: Arc<DeploymentContext>) -> Action {
    reconciler::error_policy(&ctx.shared, deployment.as_ref(), error)
}

async fn reconcile_inner(deployment: &StackDeployment, ctx: &DeploymentContext) -> Result<Action> {
    let namespace = deployment
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<StackDeployment> = Api::namespaced(ctx.shared.client.clone(), &namespace);
    if deployment.meta().deletion_timestamp.is_some() {
        return delete_children(deployment, &api, ctx, &namespace).await;
    }
    if !finalizer::has(deployment, FINALIZER) {
        let patched = finalizer::add(&api, deployment, FINALIZER).await?;
        ctx.wrote(&patched, patched.resource_version(), false);
        return Box::pin(reconcile_inner(&patched, ctx)).await;
    }

    // A `template.sourceRef` is read once here and the deployment goes on
    // with the template inline and the Flux revision as its label, so
    // every later step (revisions, children) sees a plain artifact.
    let source = ctx
        .shared
        .sources
        .resolve_artifact(&ctx.shared.client, &deployment.spec.artifact, &namespace)
        .await;
    let resolved;
    let deployment = match &source {
        Ok(artifact) if artifact != &deployment.spec.artifact => {
            let mut copy = deployment.clone();
            copy.spec.artifact = artifact.clone();
            resolved = copy;
            &resolved
        }
        _ => deployment,
    };
    let started = std::time::Instant::now();
    let (revisions, artifacts) = observe::revisions(ctx, deployment, &namespace).await?;
    let child_objects = observe::children(ctx, deployment, &namespace);
    let children: BTreeMap<String, ObservedChild> = child_objects
        .iter()
        .map(|(t, s)| (t.clone(), ObservedChild::from_stack(s)))
        .collect();
    let grants = observe::grants(ctx, deployment, &namespace).await?;
    let mut seen = Observations {
        revisions,
        artifacts,
        children,
        child_objects,
        alarms: BTreeMap::new(),
        account_ids: BTreeMap::new(),
    };
    if let Ok(grants) = &grants {
        seen.account_ids = observe::account_ids(ctx, grants).await;
        if alarms_matter(deployment) {
            seen.alarms = observe::alarms(ctx, deployment, grants).await;
        }
    }
    debug!(deployment = %deployment.name_any(), observe_ms = started.elapsed().as_millis(), "observed");
    let previous = deployment.status.clone().unwrap_or_default();
    let empty = BTreeMap::new();
    let o = Observed {
        namespace: &namespace,
        name: &deployment.name_any(),
        generation: deployment.meta().generation.unwrap_or(0),
        spec: &deployment.spec,
        annotations: deployment.meta().annotations.as_ref().unwrap_or(&empty),
        previous: &previous,
        revisions: &seen.revisions,
        children: &seen.children,
        alarms: &seen.alarms,
        account_ids: &seen.account_ids,
        now: Timestamp::now(),
        timing: ctx.settings.timing,
    };
    let plan = match (&grants, &source) {
        (Err(problem), _) | (Ok(_), Err(problem)) => refused(&o, problem.reason, &problem.message, problem.transient),
        (Ok(_), Ok(_)) => decide(&o),
    };
    act(deployment, ctx, &seen, plan).await
}

/// Alarms are read only while something may be rolling out: a finished
/// rollout of the spec's revision with no request pending needs none.
fn alarms_matter(deployment: &StackDeployment) -> bool {
    let spec_hash = artifact_hash(&deployment.spec.artifact);
    let settled = deployment
        .status
        .as_ref()
        .and_then(|s| s.rollout.as_ref())
        .is_some_and(|r| !r.phase.is_active() && r.revision.hash == spec_hash);
    let requests = [
        PROMOTE_ANNOTATION,
        PROMOTE_FULL_ANNOTATION,
        ABORT_ANNOTATION,
        RETRY_ANNOTATION,
        ROLLBACK_TO_ANNOTATION,
    ];
    let handled = deployment.status.as_ref().map(|s| &s.handled);
    let pending = requests.iter().any(|key| {
        let value = deployment.annotations().get(*key);
        value.is_some() && handled.is_none_or(|h| !handled_value(h, key, value))
    });
    !settled || deployment.spec.rollback_to.is_some() || pending
}

fn handled_value(handled: &crate::api::HandledRequests, key: &str, value: Option<&String>) -> bool {
    let seen = match key {
        PROMOTE_ANNOTATION => &handled.promote,
        PROMOTE_FULL_ANNOTATION => &handled.promote_full,
        ABORT_ANNOTATION => &handled.abort,
        RETRY_ANNOTATION => &handled.retry,
        _ => &handled.rollback_to,
    };
    seen.as_ref() == value
}

/// Deleting the deployment deletes every child Stack first (each honours
/// its own `deletionPolicy`), then lets the deployment go.
async fn delete_children(
    deployment: &StackDeployment,
    api: &Api<StackDeployment>,
    ctx: &DeploymentContext,
    namespace: &str,
) -> Result<Action> {
    if !finalizer::has(deployment, FINALIZER) {
        return Ok(Action::await_change());
    }
    let children = observe::children(ctx, deployment, namespace);
    let stacks: Api<Stack> = Api::namespaced(ctx.shared.client.clone(), namespace);
    for child in children.values().filter(|c| c.meta().deletion_timestamp.is_none()) {
        match stacks.delete(&child.name_any(), &DeleteParams::background()).await {
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            other => {
                other?;
            }
        }
    }
    if children.is_empty() {
        finalizer::remove(api, deployment, FINALIZER).await?;
        ctx.wrote(deployment, None, false);
        let names = deployment
            .spec
            .targets
            .iter()
            .map(|t| child_name(&deployment.name_any(), &t.name));
        ctx.child_writes.forget(namespace, names);
        ctx.revisions.forget(&deployment.uid().unwrap_or_default());
        return Ok(Action::await_change());
    }
    // Each child's deletion wakes the deployment; this is the safety net.
    Ok(Action::requeue(ctx.settings.timing.progressing))
}
