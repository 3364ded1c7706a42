//! The Stack decision: observed inputs, AWS state and `now` in; the next AWS
//! steps, the new status, Events and the requeue out. Pure: no IO, no clock.
//! One file per concern; each imports only `plan.rs` and its siblings (a
//! test below checks there are no import cycles among them).

mod approval;
mod change_sets;
mod deletion;
pub mod drift;
mod failed_states;
mod outcome;
mod ownership;
mod refusal;
mod report;
mod requests;
mod stack_events;
mod timeout;
mod update_stack;

#[cfg(test)]
mod tests;

use std::time::Duration;

use k8s_openapi::jiff::SignedDuration;

use crate::api::OperationAction;
use crate::aws::ChangeSetType;

use super::plan::{
    DesiredStack, Lifecycle, Note, Observed, Plan, classify, executing, in_flight, operation_of, report,
};

pub use refusal::rejected;
pub use report::transition_note;

pub fn decide(o: &Observed) -> Plan {
    let mut plan = Plan {
        status: o.previous.clone(),
        steps: Vec::new(),
        notes: Vec::new(),
        requeue: o.timing.resync,
        release: false,
        approval_used: false,
    };
    plan.status.observed_generation = Some(o.generation);
    plan.status.stack_name = Some(o.stack_name.to_string());
    if o.aws_observed {
        mirror(o, &mut plan);
    }
    if o.deleting {
        deletion::decide_delete(o, &mut plan);
    } else {
        decide_apply(o, &mut plan);
    }
    if let Some(note) = transition_note(o.previous, &plan.status) {
        plan.notes.push(note);
    }
    plan
}

/// Mirrors what AWS reports into status.
fn mirror(o: &Observed, plan: &mut Plan) {
    let status = &mut plan.status;
    if let Some(newest) = o.new_events.first() {
        status.last_event_id = Some(newest.event_id.clone());
    }
    match o.stack {
        Some(stack) => {
            status.stack_status = Some(stack.status.to_string());
            status.stack_status_reason = stack.status_reason.clone();
            if stack.stack_id.starts_with("arn:") {
                status.stack_id = Some(stack.stack_id.clone());
            }
            let hidden = &o.spec.sensitive_outputs;
            status.outputs = stack
                .outputs
                .iter()
                .filter(|out| !hidden.contains(&out.key))
                .map(|out| (out.key.clone(), out.value.clone()))
                .collect();
        }
        None => {
            status.stack_status = None;
            status.stack_status_reason = None;
            status.outputs.clear();
        }
    }
}

fn decide_apply(o: &Observed, plan: &mut Plan) {
    if o.spec.suspend {
        report(o, plan).waiting("Suspended", "reconciliation is suspended (spec.suspend: true)");
        crate::runtime::conditions::remove(&mut plan.status.conditions, crate::runtime::conditions::RECONCILING);
        return;
    }
    let desired = match o.desired {
        Ok(desired) => desired,
        Err(problem) => {
            if problem.transient {
                report(o, plan).waiting(problem.reason, &problem.message);
                plan.requeue = o.timing.resync.min(Duration::from_secs(30));
            } else {
                report(o, plan).stalled(problem.reason, &problem.message);
            }
            return;
        }
    };
    let Some(stack) = o.stack.filter(|s| classify(&s.status) != Lifecycle::Deleted) else {
        return create_from_nothing(o, desired, plan);
    };
    if !ownership::claim(o, stack, plan) {
        return;
    }
    // Change sets recorded as superseded are deleted first, whatever else happens.
    change_sets::delete_superseded(plan);
    let since = o
        .previous
        .operation
        .as_ref()
        .map(|op| op.started_at.0 - SignedDuration::from_secs(30));
    let failures = stack_events::failures_since(o.new_events, since);
    stack_events::record_failures(&mut plan.status, &failures);

    match classify(&stack.status) {
        Lifecycle::Busy { .. } => {
            drift::skip(plan, "an operation was running");
            if timeout::cancel_late_create(o, stack, plan) {
                return;
            }
            match operation_of(o.previous, OperationAction::ExecuteChangeSet) {
                // Our execution runs: the status written when it started
                // stays (words, and the reason CloudFormation gives the same
                // status), so polling it writes nothing.
                Some(op) if o.previous.stack_status.as_deref() == Some(stack.status.as_str()) => {
                    plan.status.stack_status_reason = o.previous.stack_status_reason.clone();
                    executing(o, plan, op.change_set_name.as_deref().unwrap_or_default());
                }
                _ => {
                    let message = format!("CloudFormation is running the stack operation ({})", stack.status);
                    report(o, plan).progressing("Progressing", &message);
                }
            }
            plan.requeue = plan.requeue.min(o.timing.in_flight);
        }
        Lifecycle::Review => change_sets::change_set_flow(o, desired, stack, ChangeSetType::Create, plan),
        Lifecycle::Settled { last_update_failed } => {
            // The stack was created: failed creates no longer count.
            plan.status.create_failures = None;
            if in_flight(&plan.status, OperationAction::ContinueUpdateRollback) {
                plan.status.operation = None;
                plan.notes.push(Note::normal(
                    "RollbackContinued",
                    format!("the rollback finished: {}", stack.status),
                ));
            }
            if change_sets::finish_execution(o, stack, last_update_failed, &failures, plan)
                || update_stack::finish(o, stack, last_update_failed, &failures, plan)
            {
                return;
            }
            change_sets::change_set_flow(o, desired, stack, ChangeSetType::Update, plan)
        }
        Lifecycle::UpdateFailed => change_sets::change_set_flow(o, desired, stack, ChangeSetType::Update, plan),
        Lifecycle::CreateFailed => failed_states::create_failed(o, stack, &failures, plan),
        Lifecycle::UpdateRollbackFailed => failed_states::update_rollback_failed(o, stack, &failures, plan),
        Lifecycle::DeleteFailed | Lifecycle::ImportRollbackFailed => {
            failed_states::needs_attention(o, stack, &failures, plan)
        }
        Lifecycle::Unknown => {
            let message = format!(
                "CloudFormation reports status {} which this version does not know",
                stack.status
            );
            report(o, plan).waiting("UnknownStackStatus", &message);
        }
        Lifecycle::Deleted => unreachable!("filtered above"),
    }
}

/// No stack: start (or restart) with a CREATE change set.
fn create_from_nothing(o: &Observed, desired: &DesiredStack, plan: &mut Plan) {
    if timeout::hold_after_timeout(o, desired, plan) {
        return;
    }
    // Change sets die with their stack.
    plan.status.superseded_change_sets.clear();
    let recreating = in_flight(o.previous, OperationAction::DeleteStack);
    if o.previous.applied.is_some() && !recreating {
        plan.notes.push(Note::warning(
            "StackMissing",
            format!(
                "stack {} no longer exists in AWS (deleted outside Kubernetes); creating it again",
                desired.stack_name
            ),
        ));
        plan.status.applied = None;
        plan.status.stack_id = None;
    }
    if recreating {
        plan.status.operation = None;
        plan.status.stack_id = None;
    }
    // A change set recorded for an earlier stack is gone with it.
    if o.change_set.is_none() {
        plan.status.change_set = None;
    }
    change_sets::create_change_set(o, desired, ChangeSetType::Create, plan);
}
