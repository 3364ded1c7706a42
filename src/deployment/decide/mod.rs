//! The StackDeployment decision: spec, status, kept revisions, child Stacks,
//! alarm readings and `now` in; child writes and deletes, ControllerRevision
//! changes, the new status, Events and the requeue out. Pure: no IO, no
//! clock, no randomness. It decides from the status it wrote last and what
//! it observes, so deciding again after a crash repeats nothing.

mod failure;
mod gates;
mod people;
mod preview;
mod revisions;
mod rollout;
mod status;
mod targets;
mod waves;

#[cfg(test)]
mod tests;

pub use gates::alarm_placements;
pub use revisions::{artifact_hash, controller_revision_name};
pub use waves::{WavePlan, plan_waves};

use crate::deployment::plan::{Observed, Plan, RevisionId, RolloutKind};

/// Decides the next step of a StackDeployment.
pub fn decide(o: &Observed) -> Plan {
    let mut plan = Plan {
        status: o.previous.clone(),
        create_revisions: Vec::new(),
        writes: Vec::new(),
        deletes: Vec::new(),
        delete_revisions: Vec::new(),
        events: Vec::new(),
        requeue: o.timing.resync,
    };
    plan.status.observed_generation = Some(o.generation);
    let update = revisions::spec_revision(o);
    plan.status.update_revision = Some(update.clone());
    if o.spec.suspend {
        status::suspended(o, &mut plan);
        return plan;
    }
    if let Err(problem) = targets::validate(o) {
        status::invalid(o, &mut plan, &problem);
        return plan;
    }
    revisions::keep(o, &update, &mut plan);
    targets::sync(o, &mut plan);
    let mut requests = people::handle(o, &update, &mut plan);
    let (desired, kind) = desired(o, &update);
    rollout::begin_if_needed(o, &desired, kind, &mut plan);
    rollout::advance(o, &mut requests, &mut plan);
    targets::write_children(o, &requests, &mut plan);
    preview::summarise(o, &mut plan);
    let mut protected = vec![update.hash.as_str(), desired.hash.as_str()];
    let stable = plan.status.stable_revision.clone();
    let running = plan.status.rollout.as_ref().map(|r| r.revision.hash.clone());
    protected.extend(stable.as_ref().map(|s| s.hash.as_str()));
    protected.extend(running.as_deref());
    revisions::trim(o, &protected, &mut plan);
    revisions::history(o, &mut plan);
    status::summarise(o, &desired, &requests, &mut plan);
    plan
}

/// What the targets should run: `spec.rollbackTo` (all at once) if set,
/// else the spec's artifact (through the strategy).
fn desired(o: &Observed, update: &RevisionId) -> (RevisionId, RolloutKind) {
    match o
        .spec
        .rollback_to
        .as_ref()
        .and_then(|r| revisions::resolve(o, &r.revision))
    {
        Some(kept) => (revisions::id_of(kept), RolloutKind::Rollback),
        None => (update.clone(), RolloutKind::Update),
    }
}

/// The deployment may not act where a target says (a refused account
/// grant): shown like invalid input, nothing written; retried soon when
/// time alone can fix it (an account not verified yet).
pub fn refused(o: &Observed, reason: &'static str, message: &str, transient: bool) -> Plan {
    let mut plan = Plan {
        status: o.previous.clone(),
        create_revisions: Vec::new(),
        writes: Vec::new(),
        deletes: Vec::new(),
        delete_revisions: Vec::new(),
        events: Vec::new(),
        requeue: if transient {
            o.timing.progressing
        } else {
            o.timing.resync
        },
    };
    plan.status.observed_generation = Some(o.generation);
    plan.status.update_revision = Some(revisions::spec_revision(o));
    let problem = targets::Problem {
        reason,
        message: message.to_string(),
    };
    if transient && waits(reason) {
        status::waiting(o, &mut plan, &problem);
    } else {
        status::invalid(o, &mut plan, &problem);
    }
    plan
}

/// Refusals that are waits, not invalid input: a Flux source with no
/// artifact yet, or not readable for now.
fn waits(reason: &str) -> bool {
    reason.starts_with("Source")
}
