//! The rollout: when one starts (a new revision that is not rejected), and
//! how it moves through its waves: start, gate, bake, pause, next, finish.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::deployment::plan::{
    APPROVE_REVISION_ANNOTATION, Approval, Note, Observed, Plan, RevisionId, RevisionOutcome, RolloutKind,
    RolloutPhase, RolloutStatus, TargetPhase, WavePhase, WaveStatus, bound_hash, describe,
};

use super::failure::{failed_targets, record};
use super::gates::{after, bake_end, check, duration_or};
use super::people::Requests;
use super::revisions::set_outcome;
use super::waves::{WavePlan, plan_waves};

/// Starts a rollout of `desired` unless one runs, it already ran, or it is
/// rejected. A running update of another revision is superseded; a running
/// rollback always finishes first.
pub fn begin_if_needed(o: &Observed, desired: &RevisionId, kind: RolloutKind, plan: &mut Plan) {
    let rejected = plan
        .status
        .rejected_revisions
        .iter()
        .any(|r| r.revision.hash == desired.hash);
    if let Some(rollout) = plan.status.rollout.clone() {
        if rollout.phase.is_active() {
            if rollout.revision.hash == desired.hash || rollout.kind == RolloutKind::Rollback {
                return;
            }
            supersede(o, plan, &rollout.revision, desired);
        } else if rollout.revision.hash == desired.hash
            && matches!(rollout.phase, RolloutPhase::Succeeded | RolloutPhase::Degraded)
        {
            return;
        }
    }
    if rejected {
        return;
    }
    let stable = plan.status.stable_revision.as_ref().map(|s| s.hash.as_str());
    let finished = plan.status.rollout.as_ref().is_none_or(|r| !r.phase.is_active());
    // Back at the stable revision while some targets still run a rejected
    // one (no automatic rollback; a Pipeline rolling its stage back): roll
    // the stable revision out to them again.
    let in_place = o.spec.targets.iter().all(|t| {
        o.children
            .get(&t.name)
            .is_none_or(|c| c.revision.as_deref() == Some(desired.hash.as_str()))
    });
    if stable == Some(desired.hash.as_str()) && finished && in_place {
        return;
    }
    start(o, desired, kind, plan);
}

fn supersede(o: &Observed, plan: &mut Plan, old: &RevisionId, new: &RevisionId) {
    if let Some(rollout) = plan.status.rollout.as_mut() {
        rollout.phase = RolloutPhase::Superseded;
        rollout.finished = Some(Time(o.now));
        rollout.reason = Some(format!("superseded by {}", describe(new)));
    }
    set_outcome(plan, old, RevisionOutcome::Superseded, Time(o.now));
    plan.events.push(Note::normal(
        "RolloutSuperseded",
        format!("rollout of {} stopped: {} replaces it", describe(old), describe(new)),
    ));
}

/// Starts rolling `revision` out: waves from the strategy for an update,
/// one wave of every target for a rollback.
pub fn start(o: &Observed, revision: &RevisionId, kind: RolloutKind, plan: &mut Plan) {
    let waves = match kind {
        RolloutKind::Update => plan_waves(o.spec).unwrap_or_default(),
        RolloutKind::Rollback => vec![WavePlan {
            targets: o.spec.targets.iter().map(|t| t.name.clone()).collect(),
            pause: None,
        }],
    };
    let manual = kind == RolloutKind::Update && o.spec.approval == Approval::Manual;
    let phase = match (kind, manual) {
        (RolloutKind::Rollback, _) => RolloutPhase::RollingBack,
        (_, true) => RolloutPhase::WaitingForApproval,
        _ => RolloutPhase::Progressing,
    };
    let layout: Vec<String> = waves.iter().map(|w| format!("[{}]", w.targets.join(", "))).collect();
    let message = match (kind, manual) {
        (RolloutKind::Rollback, _) => format!("rolling every target back to {}", describe(revision)),
        (_, true) => format!(
            "planning {} on every target; waits for approval, then waves {}",
            describe(revision),
            layout.join(" ")
        ),
        _ => format!(
            "rolling out {} in {} wave(s): {}",
            describe(revision),
            waves.len(),
            layout.join(" ")
        ),
    };
    begin(o, plan, revision, kind, phase, waves);
    plan.events.push(Note::normal("RolloutStarted", message));
}

/// Starts a rollback of `targets` to `revision` (a failure, an abort, a
/// person's rollback), all at once, gated only by Ready at the revision.
pub fn start_rollback(o: &Observed, plan: &mut Plan, revision: &RevisionId, targets: Vec<String>, reason: &str) {
    let count = targets.len();
    let wave = WavePlan { targets, pause: None };
    begin(
        o,
        plan,
        revision,
        RolloutKind::Rollback,
        RolloutPhase::RollingBack,
        vec![wave],
    );
    // A rollback starts at once, also when it begins after `advance` ran.
    if let Some(wave) = plan.status.waves.first_mut() {
        wave.phase = WavePhase::Running;
        wave.started = Some(Time(o.now));
    }
    plan.events.push(Note::warning(
        "RollbackStarted",
        format!("rolling {count} target(s) back to {}: {reason}", describe(revision)),
    ));
}

fn begin(
    o: &Observed,
    plan: &mut Plan,
    revision: &RevisionId,
    kind: RolloutKind,
    phase: RolloutPhase,
    waves: Vec<WavePlan>,
) {
    plan.status.rollout = Some(RolloutStatus {
        revision: revision.clone(),
        kind,
        phase,
        wave: 0,
        started: Time(o.now),
        finished: None,
        approved: false,
        promoted_full: false,
        reason: None,
    });
    plan.status.waves = waves
        .into_iter()
        .enumerate()
        .map(|(index, wave)| WaveStatus {
            index: i32::try_from(index).unwrap_or(i32::MAX),
            targets: wave.targets,
            phase: WavePhase::Pending,
            pause: wave.pause,
            started: None,
            healthy_since: None,
            paused_at: None,
            finished: None,
        })
        .collect();
    if kind == RolloutKind::Update {
        for row in &mut plan.status.targets {
            row.phase = TargetPhase::Pending;
            row.failure = None;
        }
        set_outcome(plan, revision, RevisionOutcome::Progressing, Time(o.now));
    }
}

/// Moves the running rollout as far as the gates allow.
pub fn advance(o: &Observed, requests: &mut Requests, plan: &mut Plan) {
    let Some(mut rollout) = plan.status.rollout.clone().filter(|r| r.phase.is_active()) else {
        return;
    };
    if rollout.phase == RolloutPhase::WaitingForApproval {
        let approval = o.annotations.get(APPROVE_REVISION_ANNOTATION).map(|v| bound_hash(v));
        if approval != Some(rollout.revision.hash.as_str()) {
            return;
        }
        rollout.approved = true;
        rollout.phase = RolloutPhase::Progressing;
        set_rollout(plan, &rollout);
        plan.events.push(Note::normal(
            "RevisionApproved",
            format!("revision {} approved; the rollout starts", describe(&rollout.revision)),
        ));
    }
    let update = rollout.kind == RolloutKind::Update;
    loop {
        let index = usize::try_from(rollout.wave).unwrap_or(0);
        let Some(wave) = plan.status.waves.get(index).cloned() else {
            finish(o, plan, &rollout);
            return;
        };
        let total = plan.status.waves.len();
        let next = match wave.phase {
            WavePhase::Pending => {
                if requests.paused {
                    break;
                }
                let wave = &mut plan.status.waves[index];
                wave.phase = WavePhase::Running;
                wave.started = Some(Time(o.now));
                if update {
                    plan.events.push(Note::normal(
                        "WaveStarted",
                        format!("wave {}/{total} started: {}", index + 1, wave.targets.join(", ")),
                    ));
                }
                false
            }
            WavePhase::Running | WavePhase::Baking => {
                let failed = failed_targets(plan);
                let active: Vec<String> = wave.targets.iter().filter(|t| !failed.contains(t)).cloned().collect();
                let started = wave.started.as_ref().map_or(o.now, |t| t.0);
                let result = check(o, &active, &rollout.revision.hash, started, update);
                if !result.failures.is_empty() && record(o, plan, &result.failures) {
                    return;
                }
                // Failures within the tolerance are recorded: the rest decide.
                if !result.waiting.is_empty() {
                    break;
                }
                let healthy_since = wave.healthy_since.as_ref().map_or(o.now, |t| t.0);
                let wave_status = &mut plan.status.waves[index];
                wave_status.healthy_since = Some(Time(healthy_since));
                wave_status.phase = WavePhase::Baking;
                let baked = !update || rollout.promoted_full || o.now >= bake_end(o, healthy_since);
                if !baked {
                    break;
                }
                if wave.pause.is_some() && update && !rollout.promoted_full && index + 1 < total {
                    wave_status.phase = WavePhase::Paused;
                    wave_status.paused_at = Some(Time(o.now));
                    plan.events.push(Note::normal(
                        "WavePaused",
                        format!("wave {}/{total} done; {}", index + 1, pause_words(&wave)),
                    ));
                    continue;
                }
                true
            }
            WavePhase::Paused => {
                let timed_out = wave
                    .pause
                    .as_ref()
                    .and_then(|p| p.duration.as_deref())
                    .zip(wave.paused_at.as_ref())
                    .is_some_and(|(d, at)| o.now >= after(at.0, duration_or(Some(d), std::time::Duration::ZERO)));
                let promoted = std::mem::take(&mut requests.promote);
                if rollout.promoted_full || promoted || (timed_out && !requests.paused) {
                    true
                } else {
                    break;
                }
            }
            WavePhase::Succeeded => {
                rollout.wave += 1;
                set_rollout(plan, &rollout);
                continue;
            }
            WavePhase::Failed => return,
        };
        if next {
            let wave_status = &mut plan.status.waves[index];
            wave_status.phase = WavePhase::Succeeded;
            wave_status.finished = Some(Time(o.now));
            if update {
                plan.events.push(Note::normal(
                    "WaveSucceeded",
                    format!("wave {}/{total} succeeded: {}", index + 1, wave.targets.join(", ")),
                ));
            }
            rollout.wave += 1;
            set_rollout(plan, &rollout);
        }
    }
}

fn pause_words(wave: &WaveStatus) -> String {
    match wave.pause.as_ref().and_then(|p| p.duration.as_deref()) {
        Some(duration) => format!("pausing for {duration}"),
        None => "paused until promoted".to_string(),
    }
}

/// Keeps the fields `advance` owns, without overwriting what `record` wrote.
fn set_rollout(plan: &mut Plan, rollout: &RolloutStatus) {
    if let Some(current) = plan.status.rollout.as_mut() {
        current.wave = rollout.wave;
        current.approved = rollout.approved;
        if current.phase.is_active() {
            current.phase = rollout.phase;
        }
    }
}

/// Every wave is done: the revision is stable if it runs on every target.
fn finish(o: &Observed, plan: &mut Plan, rollout: &RolloutStatus) {
    // A rollback's targets failed in the update before it, not in it.
    let failed = match rollout.kind {
        RolloutKind::Update => failed_targets(plan),
        RolloutKind::Rollback => Vec::new(),
    };
    let everywhere = failed.is_empty()
        && o.spec.targets.iter().all(|t| {
            o.children
                .get(&t.name)
                .is_some_and(|c| c.ready_at(&rollout.revision.hash))
        });
    let phase = if failed.is_empty() {
        RolloutPhase::Succeeded
    } else {
        RolloutPhase::Degraded
    };
    if let Some(current) = plan.status.rollout.as_mut() {
        current.phase = phase;
        current.finished = Some(Time(o.now));
        current.wave = rollout.wave;
    }
    if everywhere {
        plan.status.stable_revision = Some(rollout.revision.clone());
    }
    let (reason, message, outcome) = match (rollout.kind, failed.is_empty()) {
        (RolloutKind::Rollback, _) => (
            "RollbackSucceeded",
            format!("rolled back to {}", describe(&rollout.revision)),
            None,
        ),
        (_, true) => (
            "RolloutSucceeded",
            format!("{} runs on every target", describe(&rollout.revision)),
            Some(RevisionOutcome::Succeeded),
        ),
        (_, false) => (
            "RolloutDegraded",
            format!(
                "{} rolled out; failed within failureTolerance: {}",
                describe(&rollout.revision),
                failed.join(", ")
            ),
            Some(RevisionOutcome::Degraded),
        ),
    };
    if let Some(outcome) = outcome {
        set_outcome(plan, &rollout.revision, outcome, Time(o.now));
    } else if everywhere {
        set_outcome(plan, &rollout.revision, RevisionOutcome::Succeeded, Time(o.now));
    }
    if failed.is_empty() {
        plan.events.push(Note::normal(reason, message));
    } else {
        plan.events.push(Note::warning(reason, message));
    }
}
