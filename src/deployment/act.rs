//! The act step, in the plan's order: create ControllerRevisions, write the
//! status (the intent), apply the child Stacks, delete removed children and
//! trimmed revisions, publish the Events. The deployment never calls
//! CloudFormation: it writes child specs and reads child status.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info};

use crate::api::{
    Approval, ChangesSpec, RollbackTriggers, RolloutKind, Stack, StackDeployment, StackDeploymentStatus,
    StackParameter, StackSpec, parse_duration,
};
use crate::runtime::error::Result;
use crate::runtime::status;

use super::context::DeploymentContext;
use super::observe::{HASH_LABEL, Observations, REVISION_LABEL};
use super::pacing::{PROGRESS_WRITE_INTERVAL, forward_only, progress_only};
use super::plan::{
    Artifact, CHILD_APPROVE_ANNOTATION, DeploymentTarget, NewRevision, Plan, REVISION_ANNOTATION, TARGET_LABEL,
    child_name,
};

pub const FINALIZER: &str = "stackpilot.dev/stackdeployment";
pub const FIELD_MANAGER: &str = "stackpilot-deployment";
/// Child writes in flight at once while rolling back.
const ROLLBACK_WRITES_AT_ONCE: usize = 32;

pub async fn act(
    deployment: &StackDeployment,
    ctx: &DeploymentContext,
    seen: &Observations,
    plan: Plan,
) -> Result<Action> {
    let Plan {
        status: next,
        create_revisions,
        writes,
        deletes,
        delete_revisions,
        events,
        requeue,
    } = plan;
    let namespace = deployment.namespace().unwrap_or_default();
    let client = &ctx.shared.client;
    let name = deployment.name_any();
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), &namespace);
    let uid = deployment.uid().unwrap_or_default();
    for revision in &create_revisions {
        create_revision(&revisions, deployment, revision).await?;
        ctx.revisions.created(&uid, &revision.name);
    }
    let previous = deployment.status.clone().unwrap_or_default();
    // The status is the intent, written before the children: a crash in
    // between repeats the decision from it, and a decision made from a
    // stale copy is refused (409) before it moves anything. A step forward
    // in the same update (the next wave, a release) may go first when the
    // cached copy shows our last write: repeated after a crash, it writes
    // the same children, and nothing it could undo is only in the status.
    // That keeps the status write out of a wave hand-over.
    let children_first = forward_only(&previous, &next) && ctx.caught_up(deployment);
    // Progress alone waits for its turn (see `pacing`): a deployment woken
    // by every child's every change would otherwise rewrite its whole
    // status each time, and a wave hand-over would wait behind it.
    let paced = (events.is_empty() && progress_only(&previous, &next))
        .then(|| ctx.progress_wait(deployment, PROGRESS_WRITE_INTERVAL))
        .flatten();
    let started = std::time::Instant::now();
    let mut version = deployment.resource_version();
    if !children_first && paced.is_none() {
        version = write_status(ctx, deployment, &previous, &next).await?;
    }
    let status_ms = started.elapsed().as_millis();

    let stacks: Api<Stack> = Api::namespaced(client.clone(), &namespace);
    let mut applies = Vec::new();
    for target in &deployment.spec.targets {
        let write = writes.iter().find(|w| w.target == target.name);
        let child = seen.child_objects.get(&target.name);
        // A written child keeps its revision and release unless the plan
        // moves them; every reconcile applies its whole desired spec.
        let (revision, approve) = match (write, child) {
            (Some(w), _) => (w.revision.clone(), w.approve.clone()),
            (None, Some(c)) => match c.annotations().get(REVISION_ANNOTATION) {
                Some(r) => (r.clone(), c.annotations().get(CHILD_APPROVE_ANNOTATION).cloned()),
                None => continue,
            },
            (None, None) => continue,
        };
        let artifact = match seen.artifacts.get(&revision) {
            Some(a) => a,
            None if revision == super::decide::artifact_hash(&deployment.spec.artifact) => &deployment.spec.artifact,
            None => continue,
        };
        let desired = ChildStack {
            deployment,
            target,
            artifact,
            revision: &revision,
            approve: approve.as_deref(),
            account_ids: &seen.account_ids,
        };
        if child.is_some_and(|c| desired.matches(c)) {
            continue;
        }
        let (stack_name, body) = (child_name(&name, &target.name), desired.body());
        if ctx
            .child_writes
            .in_flight(&namespace, &stack_name, child.map(Arc::as_ref), &body)
        {
            continue;
        }
        applies.push((stack_name, body));
    }
    // A rollout's writes go one after another, in target order: a wave's
    // targets start (and are released) in the order the spec lists them.
    // Sent together, a target listed first could start after a later one
    // had already failed the wave and be left behind (tests/pipeline_prod.rs
    // saw it). A rollback has no such order: every target goes back, so its
    // writes go out together, and 100 targets are written back in about the
    // time of a few writes.
    let rolling_back = next.rollout.as_ref().is_some_and(|r| r.kind == RolloutKind::Rollback);
    let at_once = if rolling_back { ROLLBACK_WRITES_AT_ONCE } else { 1 };
    let count = applies.len();
    let mut sent = futures::stream::iter(applies)
        .map(|(child, body)| {
            let stacks = stacks.clone();
            async move {
                let params = PatchParams::apply(FIELD_MANAGER).force();
                let result = stacks.patch(&child, &params, &Patch::Apply(&body)).await;
                (child, body, result)
            }
        })
        .buffered(at_once);
    // The first failed write stops the rest (its later ones are not sent).
    while let Some((child, body, result)) = sent.next().await {
        let written = result?;
        ctx.child_writes
            .wrote(&namespace, &child, &body, written.resource_version().as_deref());
        count_write(ctx, "child");
    }
    let children_ms = started.elapsed().as_millis() - status_ms;
    if children_first && paced.is_none() {
        version = write_status(ctx, deployment, &previous, &next).await?;
    }
    let status_written = version != deployment.resource_version();
    ctx.wrote(deployment, version, status_written);
    debug!(deployment = %name, status_ms, children_ms, count, children_first, paced = paced.is_some(), "acted");
    for stack in &deletes {
        delete_ignoring_missing(&stacks, stack).await?;
        ctx.child_writes.forget(&namespace, [stack.clone()]);
    }
    for revision in &delete_revisions {
        delete_ignoring_missing(&revisions, revision).await?;
        ctx.revisions.deleted(&uid, revision);
    }
    for note in &events {
        info!(deployment = %name, reason = %note.reason, message = %note.message, "event");
    }
    ctx.shared.events.publish_later(deployment.object_ref(&()), events);
    Ok(Action::requeue(paced.map_or(requeue, |wait| wait.min(requeue))))
}

/// Server-side apply of the status, skipped when nothing but timestamps
/// changed; the deployment's resourceVersion after it.
pub async fn write_status(
    ctx: &DeploymentContext,
    deployment: &StackDeployment,
    before: &StackDeploymentStatus,
    after: &StackDeploymentStatus,
) -> Result<Option<String>> {
    let api: Api<StackDeployment> =
        Api::namespaced(ctx.shared.client.clone(), &deployment.namespace().unwrap_or_default());
    let mut version = deployment.resource_version();
    let name = deployment.name_any();
    let metrics = &ctx.shared.metrics;
    status::write(&api, metrics, FIELD_MANAGER, &name, &mut version, before, after).await?;
    Ok(version)
}

fn count_write(ctx: &DeploymentContext, what: &'static str) {
    let labels = crate::runtime::metrics::OutcomeLabels {
        kind: "StackDeployment",
        outcome: what,
    };
    ctx.shared.metrics.status_writes.get_or_create(&labels).inc();
}

async fn delete_ignoring_missing<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        other => other.map(|_| ()).map_err(Into::into),
    }
}

fn controller_reference(
    deployment: &StackDeployment,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
    let mut owner = deployment.controller_owner_ref(&()).unwrap_or_default();
    owner.block_owner_deletion = Some(true);
    owner
}

/// A ControllerRevision keeping the spec's artifact; one that exists already
/// (a retry after a crash) is fine.
async fn create_revision(
    api: &Api<ControllerRevision>,
    deployment: &StackDeployment,
    revision: &NewRevision,
) -> Result<()> {
    let mut labels = BTreeMap::from([(HASH_LABEL.to_string(), revision.hash.clone())]);
    if is_label_value(&revision.label) {
        labels.insert(REVISION_LABEL.to_string(), revision.label.clone());
    }
    let object = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision.name.clone()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(REVISION_LABEL.to_string(), revision.label.clone())])),
            owner_references: Some(vec![controller_reference(deployment)]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(
            serde_json::to_value(&deployment.spec.artifact).unwrap_or_default(),
        )),
        revision: revision.number,
    };
    match api.create(&PostParams::default(), &object).await {
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        other => other.map(|_| ()).map_err(Into::into),
    }
}

fn is_label_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// The child Stack of one target at one revision.
struct ChildStack<'a> {
    deployment: &'a StackDeployment,
    target: &'a DeploymentTarget,
    artifact: &'a Artifact,
    revision: &'a str,
    approve: Option<&'a str>,
    account_ids: &'a BTreeMap<String, String>,
}

impl ChildStack<'_> {
    fn spec(&self) -> StackSpec {
        let spec = &self.deployment.spec;
        let mut parameters: Vec<StackParameter> = self.artifact.parameters.clone();
        for own in &self.target.parameters {
            match parameters.iter_mut().find(|p| p.name == own.name) {
                Some(p) => *p = own.clone(),
                None => parameters.push(own.clone()),
            }
        }
        StackSpec {
            stack_name: Some(spec.stack_name.clone().unwrap_or_else(|| {
                format!(
                    "{}-{}",
                    self.deployment.namespace().unwrap_or_default(),
                    self.deployment.name_any()
                )
            })),
            region: self.target.region.clone(),
            account_ref: self.target.account_ref.clone(),
            template: self.artifact.template.clone(),
            parameters,
            tags: self.artifact.tags.clone(),
            capabilities: self.artifact.capabilities.clone(),
            changes: ChangesSpec {
                approval: Approval::Manual,
            },
            rollback_triggers: self.rollback_triggers(),
            ..StackSpec::default()
        }
    }

    /// `health.alarms` as CloudFormation rollback triggers, in the target's
    /// account and region (left out while the account id is unknown).
    fn rollback_triggers(&self) -> Option<RollbackTriggers> {
        let health = &self.deployment.spec.health;
        let account = self.target.account_ref.as_ref().map_or("", |a| a.name.as_str());
        let id = self.account_ids.get(account)?;
        if health.alarms.is_empty() {
            return None;
        }
        let minutes = health
            .monitoring_time
            .as_deref()
            .and_then(|t| parse_duration(t).ok())
            .map(|d| i32::try_from(d.as_secs().div_ceil(60).min(180)).unwrap_or(180));
        Some(RollbackTriggers {
            alarms: health
                .alarms
                .iter()
                .map(|name| format!("arn:aws:cloudwatch:{}:{id}:alarm:{name}", self.target.region))
                .collect(),
            monitoring_time_in_minutes: minutes,
        })
    }

    fn annotations(&self) -> BTreeMap<String, String> {
        let mut annotations = BTreeMap::from([(REVISION_ANNOTATION.to_string(), self.revision.to_string())]);
        if let Some(change_set) = self.approve {
            annotations.insert(CHILD_APPROVE_ANNOTATION.to_string(), change_set.to_string());
        }
        annotations
    }

    /// The cached child already is what would be applied.
    fn matches(&self, child: &Arc<Stack>) -> bool {
        let annotations = child.annotations();
        let ours = self.annotations();
        owned_fields(&child.spec) == owned_fields(&self.spec())
            && child.labels().get(TARGET_LABEL) == Some(&self.target.name)
            && ours.iter().all(|(k, v)| annotations.get(k) == Some(v))
            && (self.approve.is_some() || !annotations.contains_key(CHILD_APPROVE_ANNOTATION))
    }

    fn body(&self) -> serde_json::Value {
        let name = child_name(&self.deployment.name_any(), &self.target.name);
        json!({
            "apiVersion": Stack::api_version(&()),
            "kind": Stack::kind(&()),
            "metadata": {
                "name": name,
                "labels": {TARGET_LABEL: self.target.name},
                "annotations": self.annotations(),
                "ownerReferences": [controller_reference(self.deployment)],
            },
            "spec": owned_fields(&self.spec()),
        })
    }
}

/// The spec fields the deployment sets (and owns under server-side apply);
/// the others (`deletionPolicy`, `drift`, `failurePolicy`, ...) stay the
/// Stack's defaults or whatever a person set on the child.
fn owned_fields(spec: &StackSpec) -> serde_json::Value {
    let StackSpec {
        stack_name,
        region,
        account_ref,
        template,
        parameters,
        tags,
        capabilities,
        changes,
        rollback_triggers,
        ..
    } = spec;
    let mut fields = json!({
        "stackName": stack_name,
        "region": region,
        "accountRef": account_ref,
        "template": template,
        "parameters": parameters,
        "tags": tags,
        "capabilities": capabilities,
        "changes": changes,
        "rollbackTriggers": rollback_triggers,
    });
    if let Some(map) = fields.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
    fields
}
