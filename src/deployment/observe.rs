//! The observe step: the account grant of every placement (no AWS call for
//! a refused one), the kept ControllerRevisions, the child Stacks from the
//! shared cache and one batched alarm read per account and region.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};

use crate::account::{self, tenancy::Grant};
use crate::api::{RolloutKind, Stack, StackDeployment};
use crate::aws::alarms::{AlarmStateValue, Alarms};
use crate::runtime::error::Result;
use crate::runtime::problem::Problem;

use super::context::{DeploymentContext, HistoryKey};
use super::decide::{alarm_placements, artifact_hash};
use super::plan::{
    AlarmReading, AlarmState, AlarmValue, Artifact, KeptRevision, ObservedChild, Placement, TARGET_LABEL,
};

/// Label on a ControllerRevision: the revision's content hash.
pub const HASH_LABEL: &str = "stackpilot.dev/revision-hash";
/// Annotation (and, when it is a valid label value, label) on a
/// ControllerRevision: the `artifact.revision` it was created with.
pub const REVISION_LABEL: &str = "stackpilot.dev/revision";
/// Accounts and regions whose alarms are read at once.
const ALARM_READS_AT_ONCE: usize = 16;

/// Everything read for one decision.
pub struct Observations {
    pub revisions: Vec<KeptRevision>,
    /// Each kept revision's artifact, by hash.
    pub artifacts: BTreeMap<String, Artifact>,
    pub children: BTreeMap<String, ObservedChild>,
    /// The child Stack objects as cached, by target.
    pub child_objects: BTreeMap<String, Arc<Stack>>,
    pub alarms: BTreeMap<Placement, BTreeMap<String, AlarmReading>>,
    /// AwsAccount name (`""`: the operator's own) -> account id.
    pub account_ids: BTreeMap<String, String>,
}

/// The grant of every placement the targets name, or the first refusal
/// (with the target it concerns).
pub async fn grants(
    ctx: &DeploymentContext,
    deployment: &StackDeployment,
    namespace: &str,
) -> Result<Result<BTreeMap<Placement, Grant>, Problem>> {
    // Each placement once, in target order (the first refused target is named).
    let mut placements: Vec<(Placement, &str)> = Vec::new();
    for target in &deployment.spec.targets {
        let placement = Placement::of(target);
        if !placements.iter().any(|(p, _)| *p == placement) {
            placements.push((placement, target.name.as_str()));
        }
    }
    let asked: Vec<(Option<&str>, &str)> = placements
        .iter()
        .map(|(p, _)| (p.account.as_deref(), p.region.as_str()))
        .collect();
    let answers = account::grants_for(&ctx.tenancy, ctx.settings.allow_operator_credentials, namespace, &asked).await?;
    let mut grants = BTreeMap::new();
    for ((placement, target), answer) in placements.into_iter().zip(answers) {
        match answer {
            Ok(grant) => grants.insert(placement, grant),
            Err(refusal) => {
                let message = format!("target {target}: {}", refusal.message);
                return Ok(Err(Problem { message, ..refusal }));
            }
        };
    }
    Ok(Ok(grants))
}

/// The ControllerRevisions owned by the deployment (from the cache when it
/// can be trusted, see `revision_cache`), and their artifacts.
pub async fn revisions(
    ctx: &DeploymentContext,
    deployment: &StackDeployment,
    namespace: &str,
) -> Result<(Vec<KeptRevision>, BTreeMap<String, Artifact>)> {
    let uid = deployment.meta().uid.clone().unwrap_or_default();
    let owned = match ctx.revisions.owned(&uid) {
        Some(cached) => cached,
        None => {
            let api: Api<ControllerRevision> = Api::namespaced(ctx.shared.client.clone(), namespace);
            let listed = api.list(&ListParams::default().labels(HASH_LABEL)).await?;
            let owned = listed.items.into_iter().filter(|r| owned_by(r.meta(), &uid));
            owned.map(Arc::new).collect()
        }
    };
    let mut kept = Vec::new();
    let mut artifacts = BTreeMap::new();
    for revision in &owned {
        let Some(artifact) = revision
            .data
            .as_ref()
            .and_then(|d| serde_json::from_value::<Artifact>(d.0.clone()).ok())
        else {
            continue;
        };
        let hash = revision
            .labels()
            .get(HASH_LABEL)
            .cloned()
            .unwrap_or_else(|| artifact_hash(&artifact));
        kept.push(KeptRevision {
            name: revision.name_any(),
            hash: hash.clone(),
            label: artifact.revision.clone(),
            number: revision.revision,
            created: revision
                .meta()
                .creation_timestamp
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
        });
        artifacts.insert(hash, artifact);
    }
    Ok((kept, artifacts))
}

pub fn owned_by(meta: &kube::api::ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .as_ref()
        .is_some_and(|refs| refs.iter().any(|r| r.uid == uid && r.controller == Some(true)))
}

/// The deployment's child Stacks from the shared cache, by target label.
pub fn children(
    ctx: &DeploymentContext,
    deployment: &StackDeployment,
    namespace: &str,
) -> BTreeMap<String, Arc<Stack>> {
    let uid = deployment.meta().uid.clone().unwrap_or_default();
    ctx.stacks
        .state()
        .into_iter()
        .filter(|s| s.namespace().as_deref() == Some(namespace) && owned_by(s.meta(), &uid))
        .filter_map(|s| s.labels().get(TARGET_LABEL).cloned().map(|t| (t, s)))
        .collect()
}

/// Account ids by AwsAccount name (`""` for the operator's own).
pub async fn account_ids(ctx: &DeploymentContext, grants: &BTreeMap<Placement, Grant>) -> BTreeMap<String, String> {
    let mut ids = BTreeMap::new();
    for (placement, grant) in grants {
        let name = placement.account.clone().unwrap_or_default();
        let id = match &grant.account_id {
            Some(id) => Some(id.clone()),
            None if placement.account.is_none() => ctx.own_account().await,
            None => None,
        };
        if let Some(id) = id {
            ids.insert(name, id);
        }
    }
    ids
}

/// One DescribeAlarms per account and region the running wave's targets
/// live in ([`alarm_placements`]); a failed read
/// marks every name of that placement unreadable (the gate decides). An
/// alarm not in ALARM now that changed state since the running wave began
/// has its history read too (DescribeAlarmHistory): an ALARM that came and
/// went between two polls still fails the gate.
pub async fn alarms(
    ctx: &DeploymentContext,
    deployment: &StackDeployment,
    grants: &BTreeMap<Placement, Grant>,
) -> BTreeMap<Placement, BTreeMap<String, AlarmReading>> {
    let names = &deployment.spec.health.alarms;
    if names.is_empty() {
        return BTreeMap::new();
    }
    let since = gated_since(deployment);
    let wanted = alarm_placements(&deployment.spec, deployment.status.as_ref());
    // Placements are read together (a bounded number at once): one after
    // another, 100 regions would cost 100 round trips per reconcile.
    let name = deployment.name_any();
    let reads: Vec<_> = grants
        .iter()
        .filter(|(placement, _)| wanted.contains(*placement))
        .map(|(placement, grant)| {
            let reader = ctx.alarms.alarms(&grant.target(&name));
            let placement = placement.clone();
            async move {
                let by_name = read_placement(ctx, reader.as_ref(), &placement, names, since).await;
                (placement, by_name)
            }
        })
        .collect();
    futures::stream::iter(reads)
        .buffer_unordered(ALARM_READS_AT_ONCE)
        .collect()
        .await
}

/// The alarms `names` of one account and region (their histories too, when
/// they changed during the running wave).
async fn read_placement(
    ctx: &DeploymentContext,
    reader: &dyn Alarms,
    placement: &Placement,
    names: &[String],
    since: Option<Timestamp>,
) -> BTreeMap<String, AlarmReading> {
    match reader.describe_alarms(names).await {
        Ok(found) => {
            let mut by_name = BTreeMap::new();
            for mut alarm in found {
                let mut state = AlarmState {
                    value: value_of(alarm.state),
                    reason: std::mem::take(&mut alarm.reason),
                    changed_at: Timestamp::from_millisecond(alarm.updated.timestamp_millis())
                        .unwrap_or(Timestamp::UNIX_EPOCH),
                };
                if let Some(since) = since.filter(|s| state.value != AlarmValue::Alarm && state.changed_at >= *s) {
                    let key = (
                        placement.clone(),
                        alarm.name.clone(),
                        state.changed_at.as_millisecond(),
                        since.as_millisecond(),
                    );
                    match alarm_seen_since(ctx, reader, key, &alarm.name, since).await {
                        Ok(Some(seen)) => {
                            state.value = AlarmValue::Alarm;
                            state.reason = format!("between two polls: {seen}; now {:?}", alarm.state);
                        }
                        Ok(None) => {}
                        Err(reason) => {
                            by_name.insert(alarm.name, Err(reason));
                            continue;
                        }
                    }
                }
                by_name.insert(alarm.name, Ok(state));
            }
            by_name
        }
        Err(error) => names
            .iter()
            .map(|n| (n.clone(), Err(format!("cannot read alarm {n}: {error}"))))
            .collect(),
    }
}

/// The ALARM in `name`'s history since `since`, if any ("Alarm updated
/// from OK to ALARM at ..."); each alarm state is read once per wave.
async fn alarm_seen_since(
    ctx: &DeploymentContext,
    reader: &dyn Alarms,
    key: HistoryKey,
    name: &str,
    since: Timestamp,
) -> std::result::Result<Option<String>, String> {
    let memo = || ctx.alarm_histories.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = memo().get(&key).cloned() {
        return Ok(known);
    }
    let start = chrono::DateTime::from_timestamp_millis(since.as_millisecond()).unwrap_or_default();
    let changes = reader
        .state_changes(name, start)
        .await
        .map_err(|error| format!("cannot read the history of alarm {name}: {error}"))?;
    let seen = changes
        .iter()
        .find(|c| c.touches_alarm())
        .map(|c| format!("{} at {}", c.summary, c.at));
    let mut known = memo();
    // Old waves' entries are of no use; a bound keeps the memo small.
    if known.len() >= 10_000 {
        known.clear();
    }
    known.insert(key, seen.clone());
    Ok(seen)
}

fn value_of(state: AlarmStateValue) -> AlarmValue {
    match state {
        AlarmStateValue::Ok => AlarmValue::Ok,
        AlarmStateValue::Alarm => AlarmValue::Alarm,
        AlarmStateValue::InsufficientData => AlarmValue::InsufficientData,
    }
}

/// When the gated window of the running rollout's wave began: alarms count
/// from then on. None when no update wave runs (rollbacks have no alarm gate).
pub fn gated_since(deployment: &StackDeployment) -> Option<Timestamp> {
    let status = deployment.status.as_ref()?;
    let rollout = status
        .rollout
        .as_ref()
        .filter(|r| r.phase.is_active() && r.kind == RolloutKind::Update)?;
    let wave = status.waves.get(usize::try_from(rollout.wave).ok()?)?;
    wave.started.as_ref().map(|t| t.0)
}
