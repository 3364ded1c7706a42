//! One Pipeline reconcile, one path: finalizer -> observe (source,
//! children, Jobs, snapshots) -> decide -> act. Deleting the pipeline
//! deletes its children first (each honours its own deletionPolicy).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use crate::api::{Pipeline, Stack, StackDeployment};
use crate::runtime::error::{Error, Result};
use crate::runtime::{finalizer, reconciler};

use super::act::{FINALIZER, Found, act};
use super::context::PipelineContext;
use super::decide;
use super::observe;
use super::plan::Observed;

pub async fn reconcile(pipeline: Arc<Pipeline>, ctx: Arc<PipelineContext>) -> Result<Action> {
    reconciler::instrumented(&ctx.shared, pipeline.as_ref(), reconcile_inner(&pipeline, &ctx)).await
}

pub fn error_policy(pipeline: Arc<Pipeline>, error: &Error, ctx: Arc<PipelineContext>) -> Action {
    reconciler::error_policy(&ctx.shared, pipeline.as_ref(), error)
}

async fn reconcile_inner(pipeline: &Pipeline, ctx: &PipelineContext) -> Result<Action> {
    let namespace = pipeline.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let uid = pipeline.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let api: Api<Pipeline> = Api::namespaced(ctx.shared.client.clone(), &namespace);
    let deleting = pipeline.meta().deletion_timestamp.is_some();
    if !finalizer::has(pipeline, FINALIZER) {
        if deleting {
            return Ok(Action::await_change());
        }
        let patched = finalizer::add(&api, pipeline, FINALIZER).await?;
        return Box::pin(reconcile_inner(&patched, ctx)).await;
    }
    if deleting {
        return delete_children(pipeline, &api, ctx, &namespace, &uid).await;
    }

    let name = pipeline.name_any();
    let client = &ctx.shared.client;
    let source = observe::source(&ctx.shared, pipeline, &namespace).await?;
    let children = observe::children(ctx, &namespace, &uid);
    let jobs = observe::jobs(ctx, &namespace, &name, &uid);
    let snapshots = observe::snapshots(client, &namespace, &name).await?;
    let previous = pipeline.status.clone().unwrap_or_default();
    let annotations = pipeline.annotations().clone();
    let o = Observed {
        namespace: &namespace,
        name: &name,
        uid: &uid,
        generation: pipeline.meta().generation.unwrap_or(0),
        spec: &pipeline.spec,
        annotations: &annotations,
        previous: &previous,
        source: &source.observed,
        children: &children,
        jobs: &jobs,
        now: Timestamp::now(),
        timing: ctx.timing,
    };
    let plan = decide(&o);
    let found = Found {
        source: &source,
        snapshots: &snapshots,
        previous: &previous,
    };
    act(pipeline, ctx, found, plan).await
}

/// Deletes the owned Stacks and StackDeployments and waits until they are
/// gone (their own finalizers delete or retain the CloudFormation stacks);
/// Jobs and snapshots go with the pipeline (owner references).
async fn delete_children(
    pipeline: &Pipeline,
    api: &Api<Pipeline>,
    ctx: &PipelineContext,
    namespace: &str,
    uid: &str,
) -> Result<Action> {
    let children = observe::children(ctx, namespace, uid);
    if children.is_empty() {
        finalizer::remove(api, pipeline, FINALIZER).await?;
        return Ok(Action::await_change());
    }
    let client = ctx.shared.client.clone();
    let stacks: Api<Stack> = Api::namespaced(client.clone(), namespace);
    let deployments: Api<StackDeployment> = Api::namespaced(client, namespace);
    for name in children.keys() {
        let from_stacks = stacks.delete(name, &DeleteParams::background()).await;
        let result = match from_stacks {
            Err(kube::Error::Api(status)) if status.code == 404 => {
                deployments.delete(name, &DeleteParams::background()).await.map(|_| ())
            }
            other => other.map(|_| ()),
        };
        match result {
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            other => other?,
        }
    }
    // The children's removal wakes the pipeline; look again in any case.
    Ok(Action::requeue(Duration::from_secs(5)))
}
