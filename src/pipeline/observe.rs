//! The observe step: the source (inline artifact, ConfigMap or S3), the owned
//! children and Jobs from the caches, and the snapshots kept as
//! ControllerRevisions; everything the decision reads.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};

use crate::api::{Artifact, ChangeAction, Pipeline, Replacement, Stack, StackDeployment, StackParameter, TemplateSpec};
use crate::runtime::conditions::{self, READY, STALLED};
use crate::runtime::error::Result;

use super::context::PipelineContext;
use super::plan::{
    ChildFailure, ChildObserved, JobObserved, LABEL_PIPELINE, PlannedChanges, RECONCILE_REQUESTED_AT,
    REVISION_ANNOTATION, SourceObserved, SourceRevision, short_hash,
};

/// The ConfigMap key holding the template of an `artifactRef` source.
pub const TEMPLATE_KEY: &str = "template";
/// The ConfigMap key holding the parameters (a JSON list) of an `artifactRef` source.
pub const PARAMETERS_KEY: &str = "parameters.json";
/// On a snapshot: the artifact hash it keeps.
pub const SNAPSHOT_HASH_LABEL: &str = "stackpilot.dev/artifact-hash";

/// The source as read now, with its content when it could be read.
pub struct Source {
    pub observed: SourceObserved,
    pub artifact: Option<Artifact>,
}

/// The hash of an artifact's content (its label excluded: the same content
/// under a new label deploys nothing new to the children).
pub fn artifact_hash(artifact: &Artifact) -> String {
    let template = serde_json::to_string(&artifact.template).unwrap_or_default();
    let parameters = serde_json::to_string(&artifact.parameters).unwrap_or_default();
    let tags = serde_json::to_string(&artifact.tags).unwrap_or_default();
    let capabilities = serde_json::to_string(&artifact.capabilities).unwrap_or_default();
    short_hash(&[&template, &parameters, &tags, &capabilities], 16)
}

pub fn found(artifact: Artifact) -> Source {
    let revision = SourceRevision {
        revision: artifact.revision.clone(),
        hash: artifact_hash(&artifact),
    };
    Source {
        observed: SourceObserved::Found(revision),
        artifact: Some(artifact),
    }
}

pub fn problem(reason: &str, message: String) -> Source {
    Source {
        observed: SourceObserved::Problem {
            reason: reason.into(),
            message,
        },
        artifact: None,
    }
}

/// Reads the pipeline's source.
pub async fn source(ctx: &PipelineContext, pipeline: &Pipeline, namespace: &str) -> Result<Source> {
    let shared = &ctx.shared;
    let client = &shared.client;
    let spec = &pipeline.spec.source;
    // A Flux source, as `sourceRef` or as the inline artifact's template:
    // its artifact revision (`main@sha1:...`) labels the source revision.
    let flux = match (&spec.source_ref, &spec.artifact) {
        (Some(source_ref), _) => Some(Artifact {
            template: TemplateSpec {
                source_ref: Some(source_ref.clone()),
                ..TemplateSpec::default()
            },
            ..Artifact::default()
        }),
        (None, Some(artifact)) if artifact.template.source_ref.is_some() => Some(artifact.clone()),
        _ => None,
    };
    if let Some(artifact) = flux {
        return Ok(
            match shared.sources.resolve_artifact(client, &artifact, namespace).await {
                Ok(artifact) => found(artifact),
                Err(p) => problem(p.reason, p.message),
            },
        );
    }
    if let Some(artifact) = &spec.artifact {
        return Ok(found(artifact.clone()));
    }
    if let Some(reference) = &spec.artifact_ref {
        let api: Api<ConfigMap> = Api::namespaced(ctx.shared.client.clone(), namespace);
        let name = &reference.config_map;
        let Some(config_map) = api.get_opt(name).await? else {
            return Ok(problem(
                "SourceNotFound",
                format!("ConfigMap {name} (source.artifactRef) does not exist"),
            ));
        };
        return Ok(from_config_map(&config_map, spec.revision.as_deref()));
    }
    if let Some(s3) = &spec.s3 {
        return super::s3_source::read(ctx, pipeline, namespace, s3).await;
    }
    Ok(problem("SourceMissing", "the spec names no source".into()))
}

/// An artifact from a ConfigMap's `template` and `parameters.json`.
pub fn from_config_map(config_map: &ConfigMap, label: Option<&str>) -> Source {
    let name = config_map.name_any();
    let data = config_map.data.clone().unwrap_or_default();
    let Some(template) = data.get(TEMPLATE_KEY).filter(|t| !t.trim().is_empty()) else {
        return problem(
            "SourceInvalid",
            format!("ConfigMap {name} (source.artifactRef) has no key {TEMPLATE_KEY}"),
        );
    };
    let parameters: Vec<StackParameter> = match data.get(PARAMETERS_KEY) {
        None => Vec::new(),
        Some(text) => match serde_json::from_str(text) {
            Ok(parameters) => parameters,
            Err(error) => {
                return problem(
                    "SourceInvalid",
                    format!("ConfigMap {name} key {PARAMETERS_KEY} is not a JSON list of parameters: {error}"),
                );
            }
        },
    };
    let mut artifact = Artifact {
        revision: String::new(),
        template: TemplateSpec {
            body: Some(template.clone()),
            ..TemplateSpec::default()
        },
        parameters,
        ..Artifact::default()
    };
    artifact.revision = match label {
        Some(label) => label.to_string(),
        None => format!("cm-{}", &artifact_hash(&artifact)[..8]),
    };
    found(artifact)
}

fn owned_by<K: Resource>(object: &K, uid: &str) -> bool {
    object
        .owner_references()
        .iter()
        .any(|r| r.controller == Some(true) && r.uid == uid)
}

/// The child's Stalled condition, when its status describes its current
/// spec: a child that has not yet seen the spec just written (a rollback to
/// another revision) still shows the old spec's failure, which is not this
/// write's (condition times have whole seconds only, so the time alone
/// cannot tell them apart).
fn failure(list: &[Condition], observed: Option<i64>, generation: Option<i64>) -> Option<ChildFailure> {
    if observed != generation {
        return None;
    }
    conditions::find(list, STALLED)
        .filter(|c| c.status == "True")
        .map(|c| ChildFailure {
            reason: c.reason.clone(),
            message: c.message.clone(),
            since: c.last_transition_time.0,
        })
}

/// The owned Stacks and StackDeployments, by object name.
pub fn children(ctx: &PipelineContext, namespace: &str, uid: &str) -> BTreeMap<String, ChildObserved> {
    let mut children = BTreeMap::new();
    for stack in ctx.stacks.state() {
        if stack.namespace().as_deref() != Some(namespace) || !owned_by(stack.as_ref(), uid) {
            continue;
        }
        children.insert(stack.name_any(), stack_child(&stack));
    }
    for deployment in ctx.deployments.state() {
        if deployment.namespace().as_deref() != Some(namespace) || !owned_by(deployment.as_ref(), uid) {
            continue;
        }
        children.insert(deployment.name_any(), deployment_child(&deployment));
    }
    children
}

fn annotation<K: Resource>(object: &K, key: &str) -> Option<String> {
    object.annotations().get(key).cloned()
}

fn stack_child(stack: &Stack) -> ChildObserved {
    let status = stack.status.clone().unwrap_or_default();
    let planned = status.change_set.as_ref().map(|c| {
        let mut planned = PlannedChanges::default();
        for change in &c.changes {
            match change.action {
                ChangeAction::Add => planned.add += 1,
                ChangeAction::Remove => planned.remove += 1,
                _ if change.replacement == Some(Replacement::True) => planned.replace += 1,
                _ => planned.modify += 1,
            }
        }
        planned
    });
    ChildObserved {
        revision: annotation(stack, REVISION_ANNOTATION),
        retry_request: annotation(stack, RECONCILE_REQUESTED_AT),
        applied_revision: status.applied.as_ref().and_then(|a| a.revision.clone()),
        ready: conditions::is_true(&status.conditions, READY),
        failure: failure(
            &status.conditions,
            status.observed_generation,
            stack.metadata.generation,
        ),
        planned,
        outputs: status.outputs.clone(),
    }
}

/// A StackDeployment has applied its annotation's revision once it is Ready
/// at its own generation with the update revision's content stable and every
/// target's stack at it: going back to the stable revision (a rollback)
/// leaves the revisions as they were while the targets still run another
/// one. Content, not label: a `git revert` is a new label on the stable
/// content, which the deployment runs already and does not roll out again.
fn deployment_child(deployment: &StackDeployment) -> ChildObserved {
    let status = deployment.status.clone().unwrap_or_default();
    let ready = conditions::is_true(&status.conditions, READY);
    let update = status.update_revision.as_ref().map(|u| u.hash.as_str());
    let everywhere = update.is_some_and(|update| {
        status.targets.len() == deployment.spec.targets.len()
            && status.targets.iter().all(|t| t.revision.as_deref() == Some(update))
    });
    let stable = status.stable_revision.as_ref().map(|s| s.hash.as_str());
    let settled = ready
        && everywhere
        && status.observed_generation == deployment.metadata.generation
        && stable.is_some()
        && stable == update;
    ChildObserved {
        revision: annotation(deployment, REVISION_ANNOTATION),
        retry_request: annotation(deployment, RECONCILE_REQUESTED_AT),
        applied_revision: settled.then(|| annotation(deployment, REVISION_ANNOTATION)).flatten(),
        ready,
        failure: failure(
            &status.conditions,
            status.observed_generation,
            deployment.metadata.generation,
        ),
        planned: None,
        outputs: BTreeMap::new(),
    }
}

/// The pipeline's Jobs by name; a Job the API server refused counts as failed.
pub fn jobs(ctx: &PipelineContext, namespace: &str, name: &str, uid: &str) -> BTreeMap<String, JobObserved> {
    let mut jobs = BTreeMap::new();
    for job in ctx.jobs.state() {
        let ours = job.namespace().as_deref() == Some(namespace)
            && job.labels().get(LABEL_PIPELINE).map(String::as_str) == Some(name)
            && owned_by(job.as_ref(), uid);
        if ours {
            jobs.insert(job.name_any(), job_observed(&job));
        }
    }
    let prefix = format!("{namespace}/");
    let refused = ctx.refused_jobs.lock().expect("refused jobs lock");
    for (key, message) in refused.iter() {
        if let Some(job) = key.strip_prefix(&prefix) {
            jobs.entry(job.to_string()).or_insert_with(|| JobObserved {
                complete: false,
                failed: Some(("InvalidJobTemplate".into(), message.clone())),
            });
        }
    }
    jobs
}

fn job_observed(job: &Job) -> JobObserved {
    let list = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let is = |type_: &str| list.iter().find(|c| c.type_ == type_ && c.status == "True");
    JobObserved {
        complete: is("Complete").is_some(),
        failed: is("Failed").map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        }),
    }
}

/// The snapshots kept so far, by artifact hash.
pub async fn snapshots(client: &kube::Client, namespace: &str, name: &str) -> Result<BTreeMap<String, Snapshot>> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), namespace);
    let list = api
        .list(&ListParams::default().labels(&format!("{LABEL_PIPELINE}={name}")))
        .await?;
    let mut kept = BTreeMap::new();
    for revision in list.items {
        let Some(hash) = revision.labels().get(SNAPSHOT_HASH_LABEL).cloned() else {
            continue;
        };
        let artifact = revision
            .data
            .as_ref()
            .and_then(|RawExtension(value)| serde_json::from_value::<Artifact>(value.clone()).ok());
        kept.insert(
            hash,
            Snapshot {
                object: revision.name_any(),
                artifact,
            },
        );
    }
    Ok(kept)
}

/// One kept snapshot.
pub struct Snapshot {
    pub object: String,
    pub artifact: Option<Artifact>,
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use k8s_openapi::jiff::Timestamp;

    use super::{deployment_child, failure};
    use crate::api::{RevisionId, StackDeployment, StackDeploymentStatus, TargetStatus};

    fn stalled() -> Vec<Condition> {
        vec![Condition {
            type_: "Stalled".into(),
            status: "True".into(),
            reason: "RevisionRejected".into(),
            message: "revision v3 rejected".into(),
            observed_generation: Some(3),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
        }]
    }

    #[test]
    fn a_failure_counts_only_for_the_spec_the_child_has_seen() {
        assert!(failure(&stalled(), Some(3), Some(3)).is_some());
        // The pipeline just wrote generation 4 (a rollback): the failure is generation 3's.
        assert!(failure(&stalled(), Some(3), Some(4)).is_none());
        assert!(failure(&[], Some(4), Some(4)).is_none());
    }

    /// A revert: the spec names a new label (v3) on the content the
    /// deployment runs as stable (v1's): applied, with no rollout.
    #[test]
    fn a_new_label_on_the_stable_content_counts_as_applied() {
        let revision = |label: &str, hash: &str| RevisionId {
            revision: label.into(),
            hash: hash.into(),
        };
        let ready = Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "Stable".into(),
            message: String::new(),
            observed_generation: Some(3),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
        };
        let mut deployment: StackDeployment = serde_json::from_value(serde_json::json!({
            "apiVersion": "stackpilot.dev/v1alpha1", "kind": "StackDeployment",
            "metadata": {"name": "app", "namespace": "team", "generation": 3,
                         "annotations": {"stackpilot.dev/revision": "e3"}},
            "spec": {"artifact": {"revision": "v3", "template": {"body": "Resources: {}"}},
                     "targets": [{"name": "east", "region": "us-east-1"}]}
        }))
        .unwrap();
        let target: TargetStatus = serde_json::from_value(
            serde_json::json!({"name": "east", "stack": "app-east", "region": "us-east-1", "revision": "h1"}),
        )
        .unwrap();
        deployment.status = Some(StackDeploymentStatus {
            observed_generation: Some(3),
            update_revision: Some(revision("v3", "h1")),
            stable_revision: Some(revision("v1", "h1")),
            targets: vec![target],
            conditions: vec![ready],
            ..StackDeploymentStatus::default()
        });
        assert_eq!(deployment_child(&deployment).applied_revision.as_deref(), Some("e3"));
        // Other content stable (the revert not rolled out yet): not applied.
        deployment.status.as_mut().unwrap().stable_revision = Some(revision("v2", "h2"));
        assert_eq!(deployment_child(&deployment).applied_revision, None);
    }
}
