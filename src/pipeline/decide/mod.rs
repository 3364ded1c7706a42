//! The Pipeline decision: spec, status, annotations, the source, children,
//! Jobs and `now` in; child writes, Job creates, withdrawn approvals, the new
//! status, Events and the requeue out. Pure: no IO, no clock, no randomness.
//! Everything it needs to resume after a crash is in the status it writes.

mod approval;
mod deploy;
mod executions;
mod failure;
mod people;
mod stages;
mod status;
mod test_job;
mod validation;
mod variables;
mod wait;

#[cfg(test)]
mod tests;

use super::plan::{Observed, Plan};

pub use deploy::deploy_revision;
pub use test_job::{environment, upper_snake};

/// Decides the next step of one Pipeline.
pub fn decide(o: &Observed) -> Plan {
    let mut plan = Plan::new(o.previous.clone());
    plan.status.observed_generation = Some(o.generation);
    if o.spec.suspend {
        plan.status = o.previous.clone();
        status::keep_snapshots(&mut plan);
        return plan;
    }
    let problems = validation::problems(o.spec);
    if !problems.is_empty() {
        status::invalid_spec(o, &problems, &mut plan);
        return plan;
    }
    people::handle(o, &mut plan);
    executions::take_source(o, &mut plan);
    for _ in 0..=o.spec.stages.len() + 2 {
        stages::drive(o, &mut plan);
        if !executions::start_next(o, &mut plan) {
            break;
        }
    }
    status::conclude(o, &mut plan);
    plan
}
