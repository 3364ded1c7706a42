//! Targets: validation (refused as Stalled, nothing written), the rows of
//! `status.targets`, added and removed targets, and the child Stack writes:
//! which revision each child carries and which change set it may execute.

use std::collections::BTreeMap;

use crate::api::parse_duration;
use crate::deployment::plan::{
    Approval, ChildWrite, Note, Observed, Plan, Release, RolloutKind, StrategyType, WavePhase, child_name,
};

use super::people::Requests;
use super::revisions::resolve;
use super::waves::{failure_tolerance, plan_waves};

/// Why the spec cannot be rolled out as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

fn problem(reason: &'static str, message: impl Into<String>) -> Problem {
    Problem {
        reason,
        message: message.into(),
    }
}

/// Everything that must hold before anything is written.
pub fn validate(o: &Observed) -> Result<(), Problem> {
    let mut seen: BTreeMap<(String, String), &str> = BTreeMap::new();
    for target in &o.spec.targets {
        let account_ref = target.account_ref.as_ref().map_or("", |a| a.name.as_str());
        let account = o
            .account_ids
            .get(account_ref)
            .cloned()
            .unwrap_or_else(|| account_ref.to_string());
        let key = (account.clone(), target.region.clone());
        if let Some(other) = seen.insert(key, &target.name) {
            let account = if account.is_empty() {
                "the operator's account".to_string()
            } else {
                format!("account {account}")
            };
            return Err(problem(
                "DuplicateTarget",
                format!(
                    "targets {other} and {} both resolve to {account} in {} with stack name {}: each account and region may appear once",
                    target.name,
                    target.region,
                    crate::deployment::plan::stack_name(o)
                ),
            ));
        }
    }
    let strategy = &o.spec.strategy;
    let invalid = |m: String| {
        let reason = if m.contains("names target") {
            "UnknownCanaryTarget"
        } else {
            "InvalidStrategy"
        };
        problem(reason, m)
    };
    plan_waves(o.spec).map_err(invalid)?;
    if strategy.strategy_type == StrategyType::Rolling {
        failure_tolerance(o.spec).map_err(|m| problem("InvalidStrategy", m))?;
    }
    let health = &o.spec.health;
    let mut durations: Vec<(String, &str)> = [
        ("health.bakeTime", health.bake_time.as_deref()),
        ("health.progressDeadline", health.progress_deadline.as_deref()),
        ("health.monitoringTime", health.monitoring_time.as_deref()),
    ]
    .into_iter()
    .filter_map(|(field, value)| value.map(|v| (field.to_string(), v)))
    .collect();
    if let Some(canary) = &strategy.canary {
        for (index, step) in canary.steps.iter().enumerate() {
            if let Some(d) = step.pause.as_ref().and_then(|p| p.duration.as_deref()) {
                durations.push((format!("strategy.canary.steps[{index}].pause.duration"), d));
            }
        }
    }
    for (field, value) in durations {
        parse_duration(value).map_err(|e| problem("InvalidDuration", format!("{field}: {e}")))?;
    }
    if let Some(wanted) = &o.spec.rollback_to
        && resolve(o, &wanted.revision).is_none()
    {
        let kept: Vec<&str> = o.revisions.iter().map(|r| r.label.as_str()).collect();
        return Err(problem(
            "UnknownRevision",
            format!(
                "spec.rollbackTo names revision {}, which is not kept (kept: {})",
                wanted.revision,
                kept.join(", ")
            ),
        ));
    }
    Ok(())
}

/// `status.targets` in spec order; children of removed targets deleted;
/// added targets placed in the waves of a running update.
pub fn sync(o: &Observed, plan: &mut Plan) {
    let old = std::mem::take(&mut plan.status.targets);
    for target in &o.spec.targets {
        let mut row = old.iter().find(|r| r.name == target.name).cloned().unwrap_or_default();
        let account_ref = target.account_ref.as_ref().map(|a| a.name.clone());
        let child = o.children.get(&target.name);
        row.name = target.name.clone();
        row.stack = child_name(o.name, &target.name);
        row.account = o
            .account_ids
            .get(account_ref.as_deref().unwrap_or(""))
            .cloned()
            .or(account_ref);
        row.region = target.region.clone();
        row.revision = child.and_then(|c| c.applied_revision.clone());
        row.desired_revision = child.and_then(|c| c.revision.clone());
        row.outputs = child.map(|c| c.outputs.clone()).unwrap_or_default();
        row.drifted = child.is_some_and(|c| c.drifted);
        plan.status.targets.push(row);
    }
    for (name, child) in o.children {
        if !child.deleting && !o.spec.targets.iter().any(|t| &t.name == name) {
            plan.deletes.push(child_name(o.name, name));
            plan.events.push(Note::normal(
                "TargetRemoved",
                format!("target {name} was removed: deleting its Stack"),
            ));
        }
    }
    for wave in &mut plan.status.waves {
        wave.targets.retain(|t| o.spec.targets.iter().any(|s| &s.name == t));
    }
    place_added_targets(o, plan);
}

/// A target added while an update runs joins the wave the strategy gives
/// it; if the rollout is already past that wave, it joins the current one.
fn place_added_targets(o: &Observed, plan: &mut Plan) {
    let Some(rollout) = plan.status.rollout.as_ref().filter(|r| r.phase.is_active()) else {
        return;
    };
    let current = usize::try_from(rollout.wave).unwrap_or(0);
    let fresh = plan_waves(o.spec).unwrap_or_default();
    let rollback = rollout.kind == RolloutKind::Rollback;
    for target in &o.spec.targets {
        let placed = plan.status.waves.iter().any(|w| w.targets.contains(&target.name));
        if placed || plan.status.waves.is_empty() || rollback {
            continue;
        }
        let wanted = fresh.iter().position(|w| w.targets.contains(&target.name)).unwrap_or(0);
        let index = wanted.max(current).min(plan.status.waves.len() - 1);
        plan.status.waves[index].targets.push(target.name.clone());
    }
}

/// Which revision a target's child should carry, and whether a change set
/// planned for it may be released now.
fn wanted(o: &Observed, plan: &Plan, requests: &Requests, target: &str) -> Option<(String, bool)> {
    let child = o.children.get(target);
    let rejected = |hash: &str| plan.status.rejected_revisions.iter().any(|r| r.revision.hash == hash);
    let keep = || {
        child
            .and_then(|c| c.revision.clone())
            .or_else(|| plan.status.stable_revision.as_ref().map(|s| s.hash.clone()))
            .map(|hash| {
                let releasable = !rejected(&hash);
                (hash, releasable)
            })
    };
    let Some(rollout) = plan.status.rollout.as_ref().filter(|r| r.phase.is_active()) else {
        return keep();
    };
    let Some(wave) = plan.status.waves.iter().find(|w| w.targets.iter().any(|t| t == target)) else {
        return keep();
    };
    let started = wave.phase != WavePhase::Pending;
    let manual = rollout.kind == RolloutKind::Update && o.spec.approval == Approval::Manual;
    if !started && !manual {
        return keep();
    }
    let cleared = !manual || rollout.approved;
    let held = requests.paused && rollout.kind == RolloutKind::Update;
    Some((rollout.revision.hash.clone(), started && cleared && !held))
}

/// The child writes that change something: a child missing, at another
/// revision, or with another change set released. A release is recorded in
/// `status.targets[].released` (written before the child), so it happens once.
pub fn write_children(o: &Observed, requests: &Requests, plan: &mut Plan) {
    for target in &o.spec.targets {
        let Some((revision, releasable)) = wanted(o, plan, requests, &target.name) else {
            continue;
        };
        let child = o.children.get(&target.name);
        let Some(row) = plan.status.targets.iter_mut().find(|r| r.name == target.name) else {
            continue;
        };
        let mut approve = row
            .released
            .as_ref()
            .filter(|r| r.revision == revision)
            .map(|r| r.change_set.clone());
        let planned = child
            .filter(|c| c.revision.as_deref() == Some(revision.as_str()))
            .and_then(|c| c.available_change_set());
        if let Some(change_set) = planned.filter(|_| releasable)
            && approve.as_deref() != Some(change_set.name.as_str())
        {
            row.released = Some(Release {
                revision: revision.clone(),
                change_set: change_set.name.clone(),
            });
            approve = Some(change_set.name.clone());
        }
        // Once the child has run the released change set it clears its
        // approve annotation: that is not a reason to write it again.
        let used = approve
            .as_deref()
            .is_some_and(|name| child.is_some_and(|c| c.used(name, &revision)));
        if used {
            approve = None;
        }
        let same = child.is_some_and(|c| {
            c.revision.as_deref() == Some(revision.as_str()) && (used || c.approved_change_set == approve)
        });
        if !same {
            plan.writes.push(ChildWrite {
                target: target.name.clone(),
                stack: child_name(o.name, &target.name),
                revision,
                approve,
            });
        }
    }
}
