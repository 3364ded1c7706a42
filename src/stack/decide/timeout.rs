//! `spec.timeoutInMinutes`, enforced by stackpilot: CloudFormation takes no
//! timeout on change sets, which every create goes through. A create still
//! running past the timeout is cancelled the way CloudFormation cancels one,
//! by deleting the partial stack (a timed-out create's rollback removes every
//! resource too), and then counts as a failed create: created again with
//! backoff under `onCreateFailure: Recreate`, Stalled under `Retain` until the
//! spec changes or a reconcile is requested. Updates have no timeout, as in
//! CloudFormation.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::SignedDuration;

use crate::api::{CreateFailureAction, ExecutionState, FailureRecord, OperationAction};
use crate::aws::{StackDescription, StackState};

use super::super::plan::{
    DesiredStack, Note, Observed, Plan, Step, change_set_name, client_token, operation_of, record, report,
};
use super::failed_states::{count_create_failure, due, recreate_wait};
use super::stack_events::RECENT_FAILURES;

/// Marks the change set a timed-out create ran, so the same inputs are not
/// tried again under `Retain`.
const TIMED_OUT: &str = "timed out";

fn token(o: &Observed, change_set: &str) -> String {
    client_token(o.uid, "timeout", change_set)
}

/// A create under our change set ran past the timeout: delete the partial
/// stack. Returns true when it did.
pub(super) fn cancel_late_create(o: &Observed, stack: &StackDescription, plan: &mut Plan) -> bool {
    let Some(minutes) = o.spec.timeout_in_minutes.filter(|m| *m > 0) else {
        return false;
    };
    let Some(op) = operation_of(o.previous, OperationAction::ExecuteChangeSet) else {
        return false;
    };
    if stack.status != StackState::CreateInProgress {
        return false;
    }
    let deadline = op.started_at.0 + SignedDuration::from_mins(i64::from(minutes));
    if o.now < deadline {
        // Look again when it is due, if that comes before the next poll.
        let left = deadline.duration_since(o.now).unsigned_abs();
        plan.requeue = plan.requeue.min(left + std::time::Duration::from_secs(1));
        return false;
    }
    let change_set = op.change_set_name.clone().unwrap_or_default();
    let reason =
        format!("the create ran past timeoutInMinutes ({minutes}) and was cancelled by deleting the partial stack");
    let token = token(o, &change_set);
    plan.steps.push(Step::DeleteStack {
        token: token.clone(),
        retain: Vec::new(),
    });
    plan.status.operation = Some(record(
        o,
        OperationAction::DeleteStack,
        Some(&change_set),
        &token,
        op.fingerprint.as_deref(),
    ));
    if let Some(cs) = plan.status.change_set.as_mut().filter(|cs| cs.name == change_set) {
        cs.execution_status = Some(ExecutionState::ExecuteFailed);
        cs.status_reason = Some(format!("{TIMED_OUT}: {reason}"));
    }
    plan.status.recent_failures.insert(
        0,
        FailureRecord {
            time: Time(o.now),
            logical_id: stack.stack_name.clone(),
            resource_type: Some("AWS::CloudFormation::Stack".into()),
            status: "CREATE_FAILED".into(),
            reason: reason.clone(),
        },
    );
    plan.status.recent_failures.truncate(RECENT_FAILURES);
    count_create_failure(o, plan, op.generation, &reason);
    plan.notes.push(Note::warning(
        "CreateTimedOut",
        format!("stack {}: {reason}", stack.stack_name),
    ));
    report(o, plan).progressing(
        "CreateTimedOut",
        &format!("deleting stack {}: {reason}", stack.stack_name),
    );
    plan.requeue = o.timing.in_flight;
    true
}

/// The stack is gone after a timeout: under `Retain`, wait for new inputs;
/// under `Recreate`, wait out the backoff. Returns true when the plan is
/// complete (nothing to create now).
pub(super) fn hold_after_timeout(o: &Observed, desired: &DesiredStack, plan: &mut Plan) -> bool {
    let timed_out = |name: &str| {
        o.previous
            .change_set
            .as_ref()
            .is_some_and(|cs| cs.name == name && cs.status_reason.as_deref().is_some_and(|r| r.starts_with(TIMED_OUT)))
    };
    let wanted = change_set_name(o.generation, &desired.fingerprint);
    match o.spec.failure_policy.on_create_failure {
        CreateFailureAction::Retain if timed_out(&wanted) => {
            plan.status.operation = None;
            let message = format!(
                "stack {} did not finish creating within timeoutInMinutes ({}) and was deleted. Raise spec.timeoutInMinutes or fix the template, set the annotation stackpilot.dev/reconcile-requested-at to try again, or set spec.failurePolicy.onCreateFailure: Recreate",
                desired.stack_name,
                o.spec.timeout_in_minutes.unwrap_or_default()
            );
            report(o, plan).stalled("CreateTimedOut", &message);
            true
        }
        CreateFailureAction::Recreate
            if o.previous.operation.as_ref().is_some_and(|op| {
                op.action == OperationAction::DeleteStack && op.client_token == token(o, &wanted)
            }) =>
        {
            let Some(wait) = recreate_wait(o, plan) else {
                return false;
            };
            let message = format!(
                "stack {} did not finish creating within timeoutInMinutes; creating it again at {}",
                desired.stack_name,
                due(o, wait)
            );
            report(o, plan).waiting("CreateTimedOut", &message);
            plan.requeue = wait;
            true
        }
        _ => false,
    }
}
