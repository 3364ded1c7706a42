//! People's requests, as annotations: pause/resume, promote, promote-full,
//! abort, retry, rollback-to. Each value is acted on once (recorded in
//! `status.handled`); a request that does not apply is refused with a
//! Warning Event that says why.

use crate::deployment::plan::{
    ABORT_ANNOTATION, Note, Observed, PAUSE_ANNOTATION, PROMOTE_ANNOTATION, PROMOTE_FULL_ANNOTATION, Plan,
    RETRY_ANNOTATION, ROLLBACK_TO_ANNOTATION, RevisionId, RolloutKind, RolloutPhase, WavePhase, bound_hash, describe,
};

use super::failure::{reject, roll_back};
use super::revisions::{id_of, resolve};
use super::rollout::start_rollback;

/// What the requests mean for this decision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requests {
    /// `spec.paused` or the pause annotation: no wave starts, no target is released.
    pub paused: bool,
    /// End the current pause (consumed by the wave that is paused).
    pub promote: bool,
}

/// Reads the annotations not handled yet and acts on them.
pub fn handle(o: &Observed, update: &RevisionId, plan: &mut Plan) -> Requests {
    let mut requests = Requests {
        paused: o.spec.paused || o.annotations.contains_key(PAUSE_ANNOTATION),
        promote: false,
    };
    if let Some(value) = fresh(o, PROMOTE_ANNOTATION, plan.status.handled.promote.as_deref()) {
        plan.status.handled.promote = Some(value.clone());
        match paused_wave(plan) {
            Ok(wave) => {
                requests.promote = true;
                plan.events
                    .push(Note::normal("Promoted", format!("wave {wave} promoted by request")));
            }
            Err(why) => refuse(plan, "promote", &why),
        }
    }
    if let Some(value) = fresh(o, PROMOTE_FULL_ANNOTATION, plan.status.handled.promote_full.as_deref()) {
        plan.status.handled.promote_full = Some(value.clone());
        match plan.status.rollout.as_mut() {
            Some(r) if r.phase.is_active() && r.kind == RolloutKind::Update => {
                r.promoted_full = true;
                let message = format!(
                    "{}: remaining pauses and bake times skipped by request",
                    describe(&r.revision)
                );
                plan.events.push(Note::normal("PromotedFull", message));
            }
            _ => refuse(plan, "promote-full", "no rollout is running"),
        }
    }
    if let Some(value) = fresh(o, ABORT_ANNOTATION, plan.status.handled.abort.as_deref()) {
        plan.status.handled.abort = Some(value.clone());
        abort(o, plan, bound_hash(&value));
    }
    if let Some(value) = fresh(o, RETRY_ANNOTATION, plan.status.handled.retry.as_deref()) {
        plan.status.handled.retry = Some(value.clone());
        retry(plan, bound_hash(&value), update);
    }
    if let Some(value) = fresh(o, ROLLBACK_TO_ANNOTATION, plan.status.handled.rollback_to.as_deref()) {
        plan.status.handled.rollback_to = Some(value.clone());
        rollback_to(o, plan, bound_hash(&value), update);
    }
    requests
}

/// The annotation's value, unless it was handled already.
fn fresh(o: &Observed, annotation: &str, handled: Option<&str>) -> Option<String> {
    o.annotations
        .get(annotation)
        .filter(|v| !v.trim().is_empty() && Some(v.as_str()) != handled)
        .cloned()
}

fn refuse(plan: &mut Plan, request: &str, why: &str) {
    plan.events
        .push(Note::warning("RequestRefused", format!("{request} refused: {why}")));
}

/// The (1-based) number of the wave that is paused, or why none is.
fn paused_wave(plan: &Plan) -> Result<usize, String> {
    let Some(rollout) = plan.status.rollout.as_ref().filter(|r| r.phase.is_active()) else {
        return Err("nothing is paused: no rollout is running".into());
    };
    if rollout.phase == RolloutPhase::WaitingForApproval {
        return Err(format!(
            "nothing is paused: revision {} waits for approval (stackpilot.dev/approve-revision={})",
            describe(&rollout.revision),
            rollout.revision.hash
        ));
    }
    let index = usize::try_from(rollout.wave).unwrap_or(0);
    match plan.status.waves.get(index) {
        Some(wave) if wave.phase == WavePhase::Paused => Ok(index + 1),
        Some(wave) => Err(format!(
            "nothing is paused: wave {} is {:?} (promote-full skips bake times)",
            index + 1,
            wave.phase
        )),
        None => Err("nothing is paused".into()),
    }
}

fn abort(o: &Observed, plan: &mut Plan, hash: &str) {
    let running = plan
        .status
        .rollout
        .clone()
        .filter(|r| r.phase.is_active() && r.kind == RolloutKind::Update);
    match running {
        Some(rollout) if rollout.revision.hash == hash => {
            let reason = "aborted by request".to_string();
            if let Some(r) = plan.status.rollout.as_mut() {
                r.phase = RolloutPhase::Failed;
                r.finished = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(o.now));
                r.reason = Some(reason.clone());
            }
            reject(o, plan, &rollout.revision, &reason, None);
            roll_back(o, plan, &rollout.revision, &reason);
        }
        Some(rollout) => refuse(
            plan,
            "abort",
            &format!(
                "it names revision {hash}, but {} is rolling out",
                describe(&rollout.revision)
            ),
        ),
        None => refuse(plan, "abort", &format!("revision {hash} is not rolling out")),
    }
}

fn retry(plan: &mut Plan, hash: &str, update: &RevisionId) {
    let Some(position) = plan
        .status
        .rejected_revisions
        .iter()
        .position(|r| r.revision.hash == hash)
    else {
        return refuse(plan, "retry", &format!("revision {hash} is not rejected"));
    };
    if hash != update.hash {
        let why = format!(
            "revision {hash} is not the one the spec asks for ({})",
            describe(update)
        );
        return refuse(plan, "retry", &why);
    }
    let rejected = plan.status.rejected_revisions.remove(position);
    plan.events.push(Note::normal(
        "RetryAccepted",
        format!("revision {} runs again by request", describe(&rejected.revision)),
    ));
}

fn rollback_to(o: &Observed, plan: &mut Plan, reference: &str, update: &RevisionId) {
    let Some(kept) = resolve(o, reference) else {
        let kept: Vec<String> = o
            .revisions
            .iter()
            .map(|r| format!("{} ({})", r.label, r.hash))
            .collect();
        let why = format!("revision {reference} is no longer kept (kept: {})", kept.join(", "));
        return refuse(plan, "rollback-to", &why);
    };
    let target = id_of(kept);
    if target.hash == update.hash {
        let why = format!("{} is already the revision the spec asks for", describe(&target));
        return refuse(plan, "rollback-to", &why);
    }
    let reason = format!("rolled back to {} by request", describe(&target));
    if let Some(r) = plan.status.rollout.as_mut().filter(|r| r.phase.is_active()) {
        r.phase = RolloutPhase::Failed;
        r.finished = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(o.now));
        r.reason = Some(reason.clone());
    }
    reject(o, plan, update, &reason, None);
    let everyone = o.spec.targets.iter().map(|t| t.name.clone()).collect();
    start_rollback(o, plan, &target, everyone, &reason);
}
