//! Stacks in a failed state: a failed create (kept or recreated with
//! backoff), a failed update rollback (kept or continued), and the states
//! that need a person in AWS.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::SignedDuration;

use crate::api::{CreateFailureAction, CreateFailures, ExecutionState, OperationAction, UpdateRollbackFailureAction};
use crate::aws::{StackDescription, StackEvent};

use super::super::plan::{Note, Observed, Plan, Step, client_token, delete_stack, reason_of, record, report};
use super::stack_events::explain;

/// Our change set ran and the update failed (and so did its rollback):
/// recorded on the change set, so once the rollback is over (continued by
/// the failure policy or by hand) the Stack reports a failed update, not a
/// change set that "cannot be executed".
pub(super) fn execution_failed(plan: &mut Plan, stack: &StackDescription, why: &str) {
    let status = &mut plan.status;
    let executed = status
        .operation
        .as_ref()
        .filter(|op| op.action == OperationAction::ExecuteChangeSet)
        .and_then(|op| op.change_set_name.as_deref());
    let Some(cs) = status
        .change_set
        .as_mut()
        .filter(|cs| Some(cs.name.as_str()) == executed)
    else {
        return;
    };
    cs.execution_status = Some(ExecutionState::ExecuteFailed);
    let failed = format!("the update failed and so did its rollback ({})", stack.status);
    cs.status_reason = Some(format!("{failed}: {why}"));
}

/// How long a failed create still waits before it is created again:
/// exponential in the failed creates in a row (not in the rows of
/// `status.recentFailures`, of which one failure writes several), from the
/// newest one. New inputs (a generation or a requested reconcile the failure
/// did not see) are tried at once.
pub(super) fn recreate_wait(o: &Observed, plan: &Plan) -> Option<Duration> {
    let failed = plan.status.create_failures.as_ref()?;
    if failed.generation != o.generation || failed.requested.as_deref() != o.requested {
        return None;
    }
    let attempts = failed.count.clamp(1, MAX_DOUBLINGS + 1) as u32;
    let delay = o.timing.recreate_backoff * 2u32.pow(attempts - 1);
    let due = failed.last_failed_at.0 + SignedDuration::try_from(delay).unwrap_or_default();
    (o.now < due).then(|| due.duration_since(o.now).unsigned_abs())
}

/// When a wait from now ends, for messages: a time, not a countdown, so the
/// message (and so its Event) stays the same while it waits.
pub(super) fn due(o: &Observed, wait: Duration) -> String {
    let due = o.now + SignedDuration::try_from(wait).unwrap_or_default();
    format!("{due:.0}")
}

/// The backoff doubles this many times at most (30 s -> 8 min).
const MAX_DOUBLINGS: i64 = 4;

/// Counts one failed create, made at `generation`, explained by `reason`.
pub(super) fn count_create_failure(o: &Observed, plan: &mut Plan, generation: i64, reason: &str) {
    let count = plan.status.create_failures.as_ref().map_or(0, |f| f.count) + 1;
    plan.status.create_failures = Some(CreateFailures {
        count,
        last_failed_at: Time(o.now),
        generation,
        requested: o.requested.map(str::to_string),
        reason: reason.to_string(),
    });
}

pub(super) fn create_failed(o: &Observed, stack: &StackDescription, failures: &[&StackEvent], plan: &mut Plan) {
    let why = explain(failures, &stack.stack_name)
        .or_else(|| plan.status.create_failures.as_ref().map(|f| f.reason.clone()))
        .unwrap_or_else(|| reason_of(stack));
    if let Some(op) = plan
        .status
        .operation
        .take_if(|op| op.action == OperationAction::ExecuteChangeSet)
    {
        count_create_failure(o, plan, op.generation, &why);
        if let Some(cs) = plan.status.change_set.as_mut() {
            cs.execution_status = Some(ExecutionState::ExecuteFailed);
            cs.status_reason = Some(why.clone());
        }
        plan.notes.push(Note::warning(
            "CreateFailed",
            format!("stack {} failed to create: {why}", stack.stack_name),
        ));
    }
    match o.spec.failure_policy.on_create_failure {
        CreateFailureAction::Retain => {
            let message = format!(
                "stack {} failed to create ({}): {why}. It is kept for inspection; delete this Stack, or set spec.failurePolicy.onCreateFailure: Recreate",
                stack.stack_name, stack.status
            );
            report(o, plan).stalled("CreateFailed", &message);
        }
        CreateFailureAction::Recreate => {
            if let Some(wait) = recreate_wait(o, plan) {
                let message = format!(
                    "stack {} failed to create: {why}. Recreating it at {}",
                    stack.stack_name,
                    due(o, wait)
                );
                report(o, plan).waiting("CreateFailed", &message);
                plan.requeue = wait;
                return;
            }
            let failed = plan.status.create_failures.as_ref().map_or(0, |f| f.count);
            let token = client_token(o.uid, "recreate", &format!("{}-{failed}", o.generation));
            plan.notes.push(Note::warning(
                "Recreating",
                format!("deleting failed stack {} to create it again: {why}", stack.stack_name),
            ));
            let message = format!("deleting failed stack {} to create it again", stack.stack_name);
            delete_stack(o, plan, &token, Vec::new(), "Recreating", &message);
        }
    }
}

/// `UPDATE_ROLLBACK_FAILED`: continued by the failure policy, or Stalled.
pub(super) fn update_rollback_failed(
    o: &Observed,
    stack: &StackDescription,
    failures: &[&StackEvent],
    plan: &mut Plan,
) {
    let why = explain(failures, &stack.stack_name).unwrap_or_else(|| reason_of(stack));
    execution_failed(plan, stack, &why);
    if o.spec.failure_policy.on_update_rollback_failure != UpdateRollbackFailureAction::ContinueRollback {
        let message = format!(
            "the update failed and so did its rollback (UPDATE_ROLLBACK_FAILED): {why}. Fix the cause in AWS, then continue the rollback (aws cloudformation continue-update-rollback --stack-name {})",
            stack.stack_name
        );
        plan.status.operation = None;
        report(o, plan).stalled("UpdateRollbackFailed", &message);
        return;
    }
    let attempt = plan.status.recent_failures.len();
    let token = client_token(o.uid, "continue-rollback", &format!("{}-{attempt}", o.generation));
    let skip = o.spec.failure_policy.skip_resources.clone();
    let repeat = o.previous.operation.as_ref().is_some_and(|op| op.client_token == token);
    if !repeat {
        plan.notes.push(Note::warning(
            "ContinuingRollback",
            format!(
                "stack {} is UPDATE_ROLLBACK_FAILED; continuing the rollback (skipping {skip:?})",
                stack.stack_name
            ),
        ));
    }
    plan.steps.push(Step::ContinueRollback {
        token: token.clone(),
        skip,
    });
    plan.status.operation = Some(record(o, OperationAction::ContinueUpdateRollback, None, &token, None));
    report(o, plan).progressing("ContinuingRollback", "continuing the failed rollback");
    plan.requeue = o.timing.in_flight;
}

/// `DELETE_FAILED` or `IMPORT_ROLLBACK_FAILED` while the object lives.
pub(super) fn needs_attention(o: &Observed, stack: &StackDescription, failures: &[&StackEvent], plan: &mut Plan) {
    let why = explain(failures, &stack.stack_name).unwrap_or_else(|| reason_of(stack));
    let message = format!("the stack is in {} and needs attention in AWS: {why}", stack.status);
    plan.status.operation = None;
    report(o, plan).stalled("StackFailed", &message);
}
