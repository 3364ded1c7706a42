//! What a change set cannot carry. CloudFormation answers a change set whose
//! only differences are stack settings (notification topics, rollback
//! triggers, service role) or parameters no resource reads with "didn't
//! contain changes", and such a change set cannot run. stackpilot
//! then applies the same inputs with UpdateStack (one token per change set,
//! so a retry is never a second update): AWS updates the stack, or answers
//! that there is nothing to update, which is success too.

use std::collections::BTreeSet;

use crate::api::ChangeSetSummary;
use crate::aws::{ChangeSetType, StackDescription, StackEvent};

use crate::api::OperationAction;

use super::super::plan::{
    DesiredStack, Note, Observed, Plan, Step, client_token, operation_of, reason_of, record, report,
};
use super::approval::approved;
use super::outcome::{record_applied, update_failed};
use super::requests::{push_with_upload, request};
use super::stack_events::explain;

/// Whether an empty change set leaves something undone: a stack setting or a
/// parameter value the stack does not have. Values AWS masks (NoEcho) and
/// settings an emulator does not report cannot be compared; the latter cost
/// one UpdateStack that finds nothing to do.
pub(super) fn needed(desired: &DesiredStack, stack: &StackDescription) -> bool {
    let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<String>>();
    let role = desired.options.role_arn.is_some() && desired.options.role_arn != stack.role_arn;
    let topics = set(&desired.options.notification_arns) != set(&stack.notification_arns);
    let alarms: Vec<String> = desired
        .options
        .rollback_triggers
        .iter()
        .map(|t| t.alarm_arn.clone())
        .collect();
    let triggers = set(&alarms) != set(&stack.rollback_triggers)
        || desired.options.rollback_monitoring_minutes.unwrap_or(0) != stack.rollback_monitoring_minutes.unwrap_or(0);
    let parameters = desired
        .parameters
        .iter()
        .any(|p| match stack.parameters.iter().find(|live| live.key == p.name) {
            Some(live) => live.value != MASKED && live.value != p.value,
            None => true,
        });
    role || topics || triggers || parameters
}

/// What AWS shows for a NoEcho parameter's value.
const MASKED: &str = "****";

/// The change set `summary` came back empty for inputs not applied yet.
pub(super) fn start(o: &Observed, desired: &DesiredStack, summary: &ChangeSetSummary, plan: &mut Plan) {
    let name = &summary.name;
    let plans = format!(
        "change set {name} has no resource changes, but the stack's settings or parameters change; they are applied with UpdateStack once approved"
    );
    if !approved(o, name, &plans, plan) {
        return;
    }
    let token = client_token(o.uid, "update", name);
    let update = request(o, desired, ChangeSetType::Update, name, &token);
    push_with_upload(desired, Step::UpdateStack(Box::new(update)), plan);
    // The empty change set cannot run; it goes once the update is sent.
    plan.steps.push(Step::DeleteChangeSet { name: name.clone() });
    plan.status.operation = Some(record(
        o,
        OperationAction::UpdateStack,
        Some(name),
        &token,
        Some(&desired.fingerprint),
    ));
    let message = format!(
        "change set {name} has no resource changes; applying the stack's settings and parameters with UpdateStack"
    );
    plan.notes.push(Note::normal("UpdatingStack", message.clone()));
    report(o, plan).progressing("Updating", &message);
    plan.requeue = o.timing.in_flight;
}

/// An UpdateStack of ours has settled. Returns true when the plan is complete.
pub(super) fn finish(
    o: &Observed,
    stack: &StackDescription,
    rolled_back: bool,
    failures: &[&StackEvent],
    plan: &mut Plan,
) -> bool {
    let Some(op) = operation_of(o.previous, OperationAction::UpdateStack) else {
        return false;
    };
    plan.status.operation = None;
    if !rolled_back && failures.is_empty() {
        record_applied(o, op, plan);
        plan.notes.push(Note::normal(
            "StackUpdated",
            format!(
                "stack {} updated without resource changes: {}",
                stack.stack_name, stack.status
            ),
        ));
        return false;
    }
    let why = explain(failures, &stack.stack_name).unwrap_or_else(|| reason_of(stack));
    update_failed(o, stack, op, &why, plan)
}
