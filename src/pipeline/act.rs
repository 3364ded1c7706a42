//! The act step, in the plan's order: keep the snapshots, write the status,
//! apply the children (server-side apply, field manager
//! `stackpilot-pipeline`), create the Jobs, publish the Events.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::api::{Artifact, Pipeline, PipelineStatus, Stack, StackDeployment, StackParameter};
use crate::runtime::error::Result;
use crate::runtime::status;

use super::context::PipelineContext;
use super::observe::{SNAPSHOT_HASH_LABEL, Snapshot, Source};
use super::plan::{
    ChildKind, ChildWrite, LABEL_ACTION, LABEL_PIPELINE, LABEL_STAGE, Note, Plan, RECONCILE_REQUESTED_AT,
    REVISION_ANNOTATION,
};

pub const FINALIZER: &str = "stackpilot.dev/pipeline";
pub const FIELD_MANAGER: &str = "stackpilot-pipeline";

/// What the act step reads besides the plan.
pub struct Found<'a> {
    pub source: &'a Source,
    pub snapshots: &'a BTreeMap<String, Snapshot>,
    pub previous: &'a PipelineStatus,
}

pub async fn act(pipeline: &Pipeline, ctx: &PipelineContext, found: Found<'_>, plan: Plan) -> Result<Action> {
    let Plan {
        status: next,
        child_writes,
        job_creates,
        snapshots,
        keep_snapshots,
        withdrawn_approvals,
        mut notes,
        requeue,
    } = plan;
    let namespace = pipeline.namespace().unwrap_or_default();
    let name = pipeline.name_any();
    let client = &ctx.shared.client;
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), &namespace);
    for snapshot in &snapshots {
        let hash = &snapshot.revision.hash;
        if found.snapshots.contains_key(hash) {
            continue;
        }
        let Some(artifact) = current_artifact(found.source, hash) else {
            continue;
        };
        keep(&revisions, pipeline, hash, artifact).await?;
    }
    for (hash, kept) in found.snapshots {
        if !keep_snapshots.contains(hash) {
            ignore_missing(
                revisions
                    .delete(&kept.object, &DeleteParams::default())
                    .await
                    .map(|_| ()),
            )?;
        }
    }

    let api: Api<Pipeline> = Api::namespaced(client.clone(), &namespace);
    let mut version = pipeline.resource_version();
    status::write(
        &api,
        &ctx.shared.metrics,
        FIELD_MANAGER,
        &name,
        &mut version,
        found.previous,
        &next,
    )
    .await?;

    for write in &child_writes {
        let artifact = current_artifact(found.source, &write.revision.hash).or_else(|| {
            found
                .snapshots
                .get(&write.revision.hash)
                .and_then(|s| s.artifact.as_ref())
        });
        let Some(artifact) = artifact else {
            notes.push(Note::warning(
                "SnapshotMissing",
                format!(
                    "the artifact of revision {} is no longer kept: cannot deploy {}",
                    write.revision.revision, write.name
                ),
            ));
            continue;
        };
        let key = format!("{namespace}/{}", write.name);
        let what = format!("{}/{}", write.deploy_revision, write.retry_request);
        if ctx.just_applied(&key, &what) {
            continue;
        }
        apply_child(ctx, pipeline, &namespace, write, artifact).await?;
        ctx.record_applied(key, what);
        info!(pipeline = %name, child = %write.name, revision = %write.deploy_revision, "child applied");
    }

    let mut refused = false;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    for job in &job_creates {
        let job_name = job.name_any();
        match jobs.create(&PostParams::default(), job).await {
            Ok(_) => info!(pipeline = %name, job = %job_name, "job created"),
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(kube::Error::Api(status)) if status.code == 422 || status.code == 400 => {
                let message = format!("the API server refused the Job: {}", status.message);
                warn!(pipeline = %name, job = %job_name, %message, "job refused");
                notes.push(Note::warning("InvalidJobTemplate", message.clone()));
                let key = format!("{namespace}/{job_name}");
                ctx.refused_jobs.lock().expect("refused jobs lock").insert(key, message);
                refused = true;
            }
            Err(error) => return Err(error.into()),
        }
    }
    for withdrawn in &withdrawn_approvals {
        info!(pipeline = %name, approval = %withdrawn, "approval withdrawn");
    }
    for note in &notes {
        info!(pipeline = %name, reason = %note.reason, message = %note.message, "event");
    }
    ctx.shared.events.publish_later(pipeline.object_ref(&()), notes);
    if refused {
        // Look again at once: the refused Job now counts as failed.
        return Ok(Action::requeue(Duration::from_millis(10)));
    }
    Ok(Action::requeue(requeue.unwrap_or(ctx.timing.resync)))
}

fn current_artifact<'s>(source: &'s Source, hash: &str) -> Option<&'s Artifact> {
    match &source.observed {
        super::plan::SourceObserved::Found(revision) if revision.hash == hash => source.artifact.as_ref(),
        _ => None,
    }
}

fn ignore_missing(result: std::result::Result<(), kube::Error>) -> std::result::Result<(), kube::Error> {
    match result {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        other => other,
    }
}

/// Keeps the artifact under its hash as a ControllerRevision owned by the pipeline.
async fn keep(api: &Api<ControllerRevision>, pipeline: &Pipeline, hash: &str, artifact: &Artifact) -> Result<()> {
    let name = pipeline.name_any();
    let revision = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(super::plan::snapshot_name(&name, hash)),
            labels: Some(BTreeMap::from([
                (LABEL_PIPELINE.to_string(), name.clone()),
                (SNAPSHOT_HASH_LABEL.to_string(), hash.to_string()),
            ])),
            owner_references: pipeline.controller_owner_ref(&()).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(serde_json::to_value(artifact).unwrap_or(Value::Null))),
        revision: 1,
    };
    match api.create(&PostParams::default(), &revision).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// The artifact's parameters with the action's overrides (by name) on top.
fn merged(artifact: &[StackParameter], overrides: &[StackParameter]) -> Vec<StackParameter> {
    let mut out: Vec<StackParameter> = artifact
        .iter()
        .filter(|p| !overrides.iter().any(|o| o.name == p.name))
        .cloned()
        .collect();
    out.extend(overrides.iter().cloned());
    out
}

/// The child's body for server-side apply.
pub fn child_body(pipeline: &Pipeline, namespace: &str, write: &ChildWrite, artifact: &Artifact) -> Value {
    let parameters = merged(&artifact.parameters, &write.parameters);
    let (api_version, kind, spec) = match write.kind {
        ChildKind::Stack => {
            let target = write.deploy.stack.clone().unwrap_or_default();
            (
                Stack::api_version(&()),
                Stack::kind(&()),
                json!({
                    "region": target.region,
                    "accountRef": target.account_ref,
                    "stackName": target.stack_name,
                    "template": artifact.template,
                    "parameters": parameters,
                    "tags": artifact.tags,
                    "capabilities": artifact.capabilities,
                }),
            )
        }
        ChildKind::StackDeployment => {
            let targets = write.deploy.deployment.clone().unwrap_or_default();
            let mut artifact = artifact.clone();
            artifact.parameters = parameters;
            let list: Vec<crate::api::DeploymentTarget> = targets.targets.into_iter().map(Into::into).collect();
            (
                StackDeployment::api_version(&()),
                StackDeployment::kind(&()),
                json!({
                    "artifact": artifact,
                    "stackName": targets.stack_name,
                    "targets": list,
                    "strategy": targets.strategy,
                    "health": targets.health,
                    "rollback": targets.rollback,
                }),
            )
        }
    };
    let mut spec = spec;
    if let Some(object) = spec.as_object_mut() {
        object.retain(|_, v| !v.is_null());
    }
    let mut annotations = json!({
        REVISION_ANNOTATION: write.deploy_revision,
        RECONCILE_REQUESTED_AT: write.retry_request,
    });
    if let Some(retry) = deployment_retry(write, artifact) {
        annotations[crate::deployment::plan::RETRY_ANNOTATION] = json!(retry);
    }
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": write.name,
            "namespace": namespace,
            "labels": {
                LABEL_PIPELINE: pipeline.name_any(),
                LABEL_STAGE: write.stage,
                LABEL_ACTION: write.action,
            },
            "annotations": annotations,
            "ownerReferences": pipeline.controller_owner_ref(&()).map(|r| vec![r]),
        },
        "spec": spec,
    })
}

/// A StackDeployment never rolls a revision it rejected out again by itself:
/// a later attempt of the action asks it to, bound to the revision's hash
/// (`<hash>@<execution>/<attempt>`, once per attempt).
fn deployment_retry(write: &ChildWrite, artifact: &Artifact) -> Option<String> {
    if write.kind != ChildKind::StackDeployment {
        return None;
    }
    let attempt: i32 = write.retry_request.rsplit_once('/')?.1.parse().ok()?;
    if attempt < 2 {
        return None;
    }
    let mut deployed = artifact.clone();
    deployed.parameters = merged(&artifact.parameters, &write.parameters);
    let hash = crate::deployment::decide::artifact_hash(&deployed);
    Some(format!("{hash}@{}", write.retry_request))
}

async fn apply_child(
    ctx: &PipelineContext,
    pipeline: &Pipeline,
    namespace: &str,
    write: &ChildWrite,
    artifact: &Artifact,
) -> Result<()> {
    let body = child_body(pipeline, namespace, write, artifact);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let client = ctx.shared.client.clone();
    match write.kind {
        ChildKind::Stack => {
            let api: Api<Stack> = Api::namespaced(client, namespace);
            api.patch(&write.name, &params, &Patch::Apply(&body)).await?;
        }
        ChildKind::StackDeployment => {
            let api: Api<StackDeployment> = Api::namespaced(client, namespace);
            api.patch(&write.name, &params, &Patch::Apply(&body)).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DeployAction, DeploymentTargets, SourceRevision, StackTarget};

    fn write(kind: ChildKind, request: &str) -> ChildWrite {
        ChildWrite {
            stage: "prod".into(),
            action: "app".into(),
            name: "web-prod-app".into(),
            kind,
            revision: SourceRevision::default(),
            deploy_revision: "r".into(),
            deploy: DeployAction {
                stack: (kind == ChildKind::Stack).then(StackTarget::default),
                deployment: (kind == ChildKind::StackDeployment).then(DeploymentTargets::default),
            },
            parameters: vec![StackParameter {
                name: "Visibility".into(),
                value: Some("45".into()),
                ..StackParameter::default()
            }],
            retry_request: request.into(),
        }
    }

    #[test]
    fn a_later_attempt_asks_the_deployment_to_retry_the_revision_it_deploys() {
        let artifact = Artifact::default();
        let mut deployed = artifact.clone();
        deployed.parameters = write(ChildKind::StackDeployment, "e1/2").parameters;
        let hash = crate::deployment::decide::artifact_hash(&deployed);
        assert_eq!(
            deployment_retry(&write(ChildKind::StackDeployment, "e1/2"), &artifact),
            Some(format!("{hash}@e1/2"))
        );
        assert_eq!(
            deployment_retry(&write(ChildKind::StackDeployment, "e1/1"), &artifact),
            None
        );
        assert_eq!(
            deployment_retry(&write(ChildKind::StackDeployment, "e1/rollback"), &artifact),
            None
        );
        assert_eq!(deployment_retry(&write(ChildKind::Stack, "e1/2"), &artifact), None);
    }
}
