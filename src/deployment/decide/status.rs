//! The status a person reads: target phases, `updated`, `phase`, and the
//! conditions (Ready, Reconciling, Stalled per kstatus; Progressing with the
//! wave / Paused / WaitingForApproval / RollingBack; ApprovalRequired;
//! Degraded naming failed targets; Drifted naming drifted targets), and the
//! requeue.

use std::time::Duration;

use crate::deployment::plan::{
    DeploymentPhase, Observed, PROMOTE_ANNOTATION, Plan, RETRY_ANNOTATION, RevisionId, RolloutKind, RolloutPhase,
    TargetPhase, WavePhase, WaveStatus, describe,
};
use crate::runtime::conditions::{
    self, APPROVAL_REQUIRED, ConditionUpdate, DEGRADED, DRIFTED, Kstatus, PROGRESSING, Truth,
};

use super::failure::failed_targets;
use super::gates::{after, alarms_unread, bake_end, duration_or};
use super::people::Requests;
use super::preview::approval_message;
use super::targets::Problem;

fn kstatus<'a>(o: &Observed, plan: &'a mut Plan) -> Kstatus<'a> {
    Kstatus {
        conditions: &mut plan.status.conditions,
        generation: o.generation,
        now: o.now,
    }
}

fn set(o: &Observed, plan: &mut Plan, type_: &'static str, truth: Truth, reason: &str, message: &str) {
    conditions::set(
        &mut plan.status.conditions,
        ConditionUpdate::new(type_, truth, reason, message),
        o.generation,
        o.now,
    );
}

/// The spec cannot be rolled out: Stalled, nothing written.
pub fn invalid(o: &Observed, plan: &mut Plan, problem: &Problem) {
    let repeated = plan.status.phase == Some(DeploymentPhase::Invalid)
        && conditions::find(&plan.status.conditions, conditions::STALLED).is_some_and(|c| c.message == problem.message);
    kstatus(o, plan).stalled(problem.reason, &problem.message);
    set(o, plan, PROGRESSING, Truth::False, problem.reason, &problem.message);
    plan.status.phase = Some(DeploymentPhase::Invalid);
    if !repeated {
        plan.event(crate::deployment::plan::Note::warning(
            problem.reason,
            problem.message.clone(),
        ));
    }
}

/// Something time alone fixes (a Flux source without an artifact yet):
/// Ready=False and Reconciling, one Event per new reason, nothing written.
pub fn waiting(o: &Observed, plan: &mut Plan, problem: &Problem) {
    let before = conditions::find(&plan.status.conditions, conditions::READY).map(|c| c.reason.clone());
    kstatus(o, plan).waiting(problem.reason, &problem.message);
    if before.as_deref() != Some(problem.reason) {
        plan.event(crate::deployment::plan::Note::warning(
            problem.reason,
            problem.message.clone(),
        ));
    }
}

pub fn suspended(o: &Observed, plan: &mut Plan) {
    let message = "reconciliation is suspended (spec.suspend: true)";
    kstatus(o, plan).waiting("Suspended", message);
    plan.status.phase = Some(DeploymentPhase::Suspended);
}

/// Everything a person reads, from the decided rollout.
pub fn summarise(o: &Observed, desired: &RevisionId, requests: &Requests, plan: &mut Plan) {
    target_phases(o, plan);
    let ready = o
        .spec
        .targets
        .iter()
        .filter(|t| o.children.get(&t.name).is_some_and(|c| c.ready_at(&desired.hash)))
        .count();
    plan.status.updated = Some(format!("{ready}/{}", o.spec.targets.len()));
    conditions_and_phase(o, desired, requests, plan);
    side_conditions(o, plan);
    plan.requeue = requeue(o, plan);
}

fn target_phases(o: &Observed, plan: &mut Plan) {
    let rollout = plan.status.rollout.clone();
    let waves = plan.status.waves.clone();
    for row in &mut plan.status.targets {
        let child = o.children.get(&row.name);
        let wave = waves.iter().find(|w| w.targets.contains(&row.name));
        let rolled_back = rollout.as_ref().is_some_and(|r| r.kind == RolloutKind::Rollback) && wave.is_some();
        if row.phase == TargetPhase::Failed && rollout.is_some() && !rolled_back {
            continue;
        }
        let (phase, message) = match (&rollout, wave) {
            (Some(r), Some(w)) => {
                let at = child.is_some_and(|c| c.ready_at(&r.revision.hash));
                let phase = match (r.kind, w.phase, at) {
                    (RolloutKind::Rollback, _, true) => TargetPhase::RolledBack,
                    (RolloutKind::Rollback, WavePhase::Pending, false) => TargetPhase::Pending,
                    (RolloutKind::Rollback, _, false) if r.phase.is_active() => TargetPhase::RollingBack,
                    (_, WavePhase::Pending, _) if r.phase == RolloutPhase::WaitingForApproval => {
                        TargetPhase::WaitingForApproval
                    }
                    (_, WavePhase::Pending, _) => TargetPhase::Pending,
                    (_, WavePhase::Baking, true) => TargetPhase::Baking,
                    (_, _, true) => TargetPhase::Healthy,
                    (_, _, false) => TargetPhase::Deploying,
                };
                (phase, child.and_then(|c| c.ready.as_ref()).map(|c| c.message.clone()))
            }
            _ => {
                let at = child.is_some_and(|c| c.revision.as_deref().is_some_and(|rev| c.ready_at(rev)));
                let phase = if at {
                    TargetPhase::Healthy
                } else if child.is_some() {
                    TargetPhase::Deploying
                } else {
                    TargetPhase::Pending
                };
                (phase, child.and_then(|c| c.ready.as_ref()).map(|c| c.message.clone()))
            }
        };
        row.phase = phase;
        row.message = message.filter(|m| !m.is_empty());
    }
}

fn retry_hint(o: &Observed, hash: &str) -> String {
    format!(
        "It runs again when the artifact changes, or on retry: kubectl annotate stackdeployment/{} -n {} {RETRY_ANNOTATION}={hash} --overwrite",
        o.name, o.namespace
    )
}

fn conditions_and_phase(o: &Observed, desired: &RevisionId, requests: &Requests, plan: &mut Plan) {
    let rollout = plan.status.rollout.clone();
    let rejected = plan
        .status
        .rejected_revisions
        .iter()
        .find(|r| r.revision.hash == desired.hash)
        .cloned();
    conditions::remove(&mut plan.status.conditions, APPROVAL_REQUIRED);
    let total = o.spec.targets.len();
    if let Some(rejected) = rejected {
        let now_runs = match &rollout {
            Some(r) if r.kind == RolloutKind::Rollback && r.phase.is_active() => {
                let count = plan.status.waves.first().map_or(0, |w| w.targets.len());
                format!("Rolling {count} target(s) back to {}.", describe(&r.revision))
            }
            Some(r) if r.kind == RolloutKind::Rollback && r.phase == RolloutPhase::Failed => {
                format!("The rollback failed: {}.", r.reason.clone().unwrap_or_default())
            }
            Some(r) if r.kind == RolloutKind::Rollback => {
                format!("{} runs on the targets that took it back.", describe(&r.revision))
            }
            _ if !o.spec.rollback.automatic => {
                let took: Vec<String> = plan
                    .status
                    .targets
                    .iter()
                    .filter(|t| t.desired_revision.as_deref() == Some(desired.hash.as_str()))
                    .map(|t| t.name.clone())
                    .collect();
                format!(
                    "rollback.automatic is off: {} stay at it.",
                    if took.is_empty() {
                        "no targets".to_string()
                    } else {
                        took.join(", ")
                    }
                )
            }
            _ => "No stable revision to go back to: the targets stay as they are.".to_string(),
        };
        let message = format!(
            "Revision {} rejected: {}. {now_runs} {}",
            describe(&rejected.revision),
            rejected.reason,
            retry_hint(o, &desired.hash)
        );
        let rolling_back = rollout
            .as_ref()
            .is_some_and(|r| r.kind == RolloutKind::Rollback && r.phase.is_active());
        kstatus(o, plan).stalled("RevisionRejected", &message);
        if rolling_back {
            set(o, plan, PROGRESSING, Truth::True, "RollingBack", &message);
            plan.status.phase = Some(DeploymentPhase::RollingBack);
        } else {
            set(o, plan, PROGRESSING, Truth::False, "RevisionRejected", &message);
            plan.status.phase = Some(DeploymentPhase::Rejected);
        }
        return;
    }
    let Some(r) = rollout else {
        let message = "no revision rolled out yet";
        kstatus(o, plan).progressing("Progressing", message);
        plan.status.phase = Some(DeploymentPhase::Progressing);
        return;
    };
    let index = usize::try_from(r.wave).unwrap_or(0);
    let wave = plan.status.waves.get(index).cloned();
    let waves = plan.status.waves.len();
    let updated = plan.status.updated.clone().unwrap_or_default();
    let paused = wave.clone().filter(|w| w.phase == WavePhase::Paused);
    match r.phase {
        RolloutPhase::WaitingForApproval => {
            let message = approval_message(o, plan).unwrap_or_default();
            kstatus(o, plan).waiting("WaitingForApproval", &message);
            set(o, plan, APPROVAL_REQUIRED, Truth::True, "RevisionPending", &message);
            set(o, plan, PROGRESSING, Truth::True, "WaitingForApproval", &message);
            plan.status.phase = Some(DeploymentPhase::WaitingForApproval);
        }
        RolloutPhase::RollingBack => {
            let message = format!(
                "rolling back to {} ({updated} targets at {})",
                describe(&r.revision),
                desired.revision
            );
            kstatus(o, plan).progressing("RollingBack", &message);
            set(o, plan, PROGRESSING, Truth::True, "RollingBack", &message);
            plan.status.phase = Some(DeploymentPhase::RollingBack);
        }
        _ if r.phase.is_active() && requests.paused => {
            let message = format!(
                "{} is paused (spec.paused or the stackpilot.dev/pause annotation) at wave {}/{waves}; {updated} targets updated. Remove the pause to resume",
                describe(&r.revision),
                index + 1
            );
            kstatus(o, plan).waiting("Paused", &message);
            set(o, plan, PROGRESSING, Truth::True, "Paused", &message);
            plan.status.phase = Some(DeploymentPhase::Paused);
        }
        _ if r.phase.is_active() && paused.is_some() => {
            let message = pause_message(o, paused.as_ref(), waves, &updated);
            let timed = paused
                .as_ref()
                .and_then(|w| w.pause.as_ref())
                .is_some_and(|p| p.duration.is_some());
            if timed {
                kstatus(o, plan).progressing("Paused", &message);
            } else {
                kstatus(o, plan).waiting("Paused", &message);
            }
            set(o, plan, PROGRESSING, Truth::True, "Paused", &message);
            plan.status.phase = Some(DeploymentPhase::Paused);
        }
        _ if r.phase.is_active() => {
            let targets = wave.map(|w| w.targets.join(", ")).unwrap_or_default();
            let reason = format!("Wave{}", index + 1);
            let message = format!(
                "rolling out {}: wave {}/{waves} ({targets}); {updated} targets updated",
                describe(&r.revision),
                index + 1
            );
            kstatus(o, plan).progressing(&reason, &message);
            set(o, plan, PROGRESSING, Truth::True, &reason, &message);
            plan.status.phase = Some(DeploymentPhase::Progressing);
        }
        RolloutPhase::Failed if r.kind == RolloutKind::Rollback => {
            let message = r.reason.clone().unwrap_or_else(|| "the rollback failed".into());
            kstatus(o, plan).stalled("RollbackFailed", &message);
            set(o, plan, PROGRESSING, Truth::False, "RollbackFailed", &message);
            plan.status.phase = Some(DeploymentPhase::Rejected);
        }
        RolloutPhase::Degraded => {
            let failed = failed_targets(plan).join(", ");
            let message = format!(
                "{} runs on {updated} targets; failed within failureTolerance: {failed}",
                describe(&r.revision)
            );
            kstatus(o, plan).ready("SucceededWithFailures", &message);
            set(o, plan, PROGRESSING, Truth::False, "RolloutComplete", &message);
            plan.status.phase = Some(DeploymentPhase::Degraded);
        }
        _ => {
            let message = format!("{} runs on all {total} targets", describe(&r.revision));
            kstatus(o, plan).ready("Succeeded", &message);
            set(o, plan, PROGRESSING, Truth::False, "RolloutComplete", &message);
            plan.status.phase = Some(DeploymentPhase::Ready);
        }
    }
}

/// A wave's pause: until when, or how to promote it.
fn pause_message(o: &Observed, wave: Option<&WaveStatus>, waves: usize, updated: &str) -> String {
    let number = wave.map_or(0, |w| w.index + 1);
    let duration = wave.and_then(|w| w.pause.as_ref()).and_then(|p| p.duration.as_deref());
    match (duration, wave.and_then(|w| w.paused_at.as_ref())) {
        (Some(d), Some(at)) => format!(
            "wave {number}/{waves} done; paused for {d} until {}; {updated} targets updated",
            after(at.0, duration_or(Some(d), Duration::ZERO))
        ),
        _ => format!(
            "wave {number}/{waves} done; {updated} targets updated; paused until promoted: kubectl annotate stackdeployment/{name} -n {ns} {PROMOTE_ANNOTATION}=\"$(date +%s)\" --overwrite, or: stackpilot deployment promote {name} -n {ns}",
            name = o.name,
            ns = o.namespace,
        ),
    }
}

fn side_conditions(o: &Observed, plan: &mut Plan) {
    let failed: Vec<String> = plan
        .status
        .targets
        .iter()
        .filter(|t| t.phase == TargetPhase::Failed)
        .map(|t| format!("{} ({})", t.name, t.failure.as_ref().map_or("", |f| f.reason.as_str())))
        .collect();
    if failed.is_empty() {
        set(o, plan, DEGRADED, Truth::False, "NoFailedTargets", "no target failed");
    } else {
        let message = format!("failed targets: {}", failed.join("; "));
        set(o, plan, DEGRADED, Truth::True, "TargetsFailed", &message);
    }
    let drifted: Vec<String> = plan
        .status
        .targets
        .iter()
        .filter(|t| t.drifted)
        .map(|t| t.name.clone())
        .collect();
    if drifted.is_empty() {
        set(o, plan, DRIFTED, Truth::False, "NoDrift", "no target has drifted");
    } else {
        let message = format!(
            "resources changed outside CloudFormation in targets: {}",
            drifted.join(", ")
        );
        set(o, plan, DRIFTED, Truth::True, "TargetsDrifted", &message);
    }
}

/// Soon while a rollout runs (sooner when a bake or a timed pause ends
/// first, at once when a wave that started now has targets Ready whose
/// alarms were not read yet), else the resync interval.
fn requeue(o: &Observed, plan: &Plan) -> Duration {
    let Some(rollout) = plan.status.rollout.as_ref().filter(|r| r.phase.is_active()) else {
        return o.timing.resync;
    };
    let mut next = o.timing.progressing;
    let index = usize::try_from(rollout.wave).unwrap_or(0);
    if let Some(wave) = plan.status.waves.get(index) {
        let unread = rollout.kind == RolloutKind::Update
            && wave
                .targets
                .iter()
                .any(|t| o.children.get(t).is_some_and(|c| c.ready_at(&rollout.revision.hash)) && alarms_unread(o, t));
        if unread {
            return Duration::from_secs(1);
        }
        let ends = match wave.phase {
            WavePhase::Baking => wave.healthy_since.as_ref().map(|t| bake_end(o, t.0)),
            WavePhase::Paused => wave
                .pause
                .as_ref()
                .and_then(|p| p.duration.as_deref())
                .zip(wave.paused_at.as_ref())
                .map(|(d, at)| after(at.0, duration_or(Some(d), Duration::ZERO))),
            _ => None,
        };
        if let Some(ends) = ends {
            let left = ends.duration_since(o.now);
            let left = Duration::try_from(left)
                .unwrap_or(Duration::ZERO)
                .max(Duration::from_secs(1));
            next = next.min(left);
        }
    }
    next
}
