//! Failure: failed targets are recorded; past `failureTolerance` the
//! rollout stops (targets not yet reached stay untouched), the revision is
//! rejected with the first failure's reason, and with `rollback.automatic`
//! every target that took it goes back to the stable revision.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::deployment::plan::{
    Note, Observed, Plan, RejectedRevision, RevisionId, RevisionOutcome, RolloutKind, RolloutPhase,
    TargetFailureStatus, TargetPhase, WavePhase, describe,
};

use super::gates::TargetFailure;
use super::revisions::set_outcome;
use super::rollout::start_rollback;
use super::waves::failure_tolerance;

/// Records `failures` of the running rollout's current wave. Returns true
/// when the rollout stopped.
pub fn record(o: &Observed, plan: &mut Plan, failures: &[TargetFailure]) -> bool {
    let Some(rollout) = plan.status.rollout.clone() else {
        return false;
    };
    for failure in failures {
        let Some(row) = plan.status.targets.iter_mut().find(|t| t.name == failure.target) else {
            continue;
        };
        if row.phase != TargetPhase::Failed {
            plan.events.push(Note::warning(
                "TargetFailed",
                format!(
                    "target {} failed at revision {}: {}",
                    failure.target,
                    describe(&rollout.revision),
                    failure.reason
                ),
            ));
        }
        row.phase = TargetPhase::Failed;
        row.message = Some(failure.reason.clone());
        row.failure = Some(TargetFailureStatus {
            reason: failure.reason.clone(),
            resource: failure.resource.clone(),
            alarm: failure.alarm.clone(),
            at: Time(o.now),
        });
    }
    let Some(first) = first_failure(plan) else {
        return false;
    };
    if rollout.kind == RolloutKind::Rollback {
        let reason = format!(
            "rollback of target {} to {} failed: {}",
            first.0,
            describe(&rollout.revision),
            first.1.reason
        );
        stop(o, plan, &reason);
        plan.events.push(Note::warning("RollbackFailed", reason));
        return true;
    }
    let failed = failed_targets(plan).len();
    let tolerance = failure_tolerance(o.spec).unwrap_or(0);
    if failed <= tolerance {
        return false;
    }
    let reason = format!(
        "{failed} target(s) failed, more than failureTolerance {tolerance}; first: target {}: {}",
        first.0, first.1.reason
    );
    stop(o, plan, &reason);
    reject(o, plan, &rollout.revision, &reason, Some(&first));
    if o.spec.rollback.automatic {
        roll_back(o, plan, &rollout.revision, &reason);
    }
    true
}

/// Names of the targets that failed in the latest rollout, in target order.
pub fn failed_targets(plan: &Plan) -> Vec<String> {
    plan.status
        .targets
        .iter()
        .filter(|t| t.phase == TargetPhase::Failed)
        .map(|t| t.name.clone())
        .collect()
}

/// The earliest failure (ties: target order).
fn first_failure(plan: &Plan) -> Option<(String, TargetFailureStatus)> {
    plan.status
        .targets
        .iter()
        .filter(|t| t.phase == TargetPhase::Failed)
        .filter_map(|t| t.failure.clone().map(|f| (t.name.clone(), f)))
        .min_by_key(|(_, f)| f.at.0)
}

/// Ends the running rollout as failed; its current wave failed, later waves
/// never start.
fn stop(o: &Observed, plan: &mut Plan, reason: &str) {
    let Some(rollout) = plan.status.rollout.as_mut() else {
        return;
    };
    rollout.phase = RolloutPhase::Failed;
    rollout.finished = Some(Time(o.now));
    rollout.reason = Some(reason.to_string());
    let index = usize::try_from(rollout.wave).unwrap_or(0);
    if let Some(wave) = plan.status.waves.get_mut(index) {
        wave.phase = WavePhase::Failed;
        wave.finished = Some(Time(o.now));
    }
}

/// Records `revision` as rejected: it is not rolled out again by itself.
pub fn reject(
    o: &Observed,
    plan: &mut Plan,
    revision: &RevisionId,
    reason: &str,
    first: Option<&(String, TargetFailureStatus)>,
) {
    if plan
        .status
        .rejected_revisions
        .iter()
        .any(|r| r.revision.hash == revision.hash)
    {
        return;
    }
    plan.status.rejected_revisions.push(RejectedRevision {
        revision: revision.clone(),
        reason: reason.to_string(),
        target: first.map(|f| f.0.clone()),
        resource: first.and_then(|f| f.1.resource.clone()),
        alarm: first.and_then(|f| f.1.alarm.clone()),
        rejected_at: Time(o.now),
    });
    set_outcome(plan, revision, RevisionOutcome::Failed, Time(o.now));
    plan.events.push(Note::warning(
        "RevisionRejected",
        format!("revision {} rejected: {reason}", describe(revision)),
    ));
}

/// Sends every target written at `bad` back to the stable revision. Without
/// a stable revision nothing can go back: the targets stay as they are.
pub fn roll_back(o: &Observed, plan: &mut Plan, bad: &RevisionId, reason: &str) {
    let Some(stable) = plan.status.stable_revision.clone().filter(|s| s.hash != bad.hash) else {
        plan.events.push(Note::warning(
            "NoStableRevision",
            format!(
                "no revision has succeeded on every target yet: nothing to roll back to; targets keep {}",
                describe(bad)
            ),
        ));
        return;
    };
    let took: Vec<String> = o
        .spec
        .targets
        .iter()
        .filter(|t| {
            o.children
                .get(&t.name)
                .is_some_and(|c| c.revision.as_deref() == Some(bad.hash.as_str()))
                || plan
                    .status
                    .targets
                    .iter()
                    .any(|row| row.name == t.name && row.released.as_ref().is_some_and(|r| r.revision == bad.hash))
        })
        .map(|t| t.name.clone())
        .collect();
    set_outcome(plan, bad, RevisionOutcome::RolledBack, Time(o.now));
    start_rollback(o, plan, &stable, took, reason);
}
