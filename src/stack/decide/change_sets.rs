//! The change set lifecycle of a Stack: plan, show, wait for approval,
//! execute, and tell success from failure.

use std::borrow::Cow;

use crate::api::{
    ChangeAction, ChangeSetKind, ChangeSetState, ChangeSetSummary, ExecutionState, Operation, OperationAction,
    PlannedChange, Replacement,
};
use crate::aws::{ChangeSetDescription, ChangeSetStatus, ChangeSetType, ExecutionStatus, StackDescription, StackEvent};
use crate::runtime::conditions::{self, APPROVAL_REQUIRED, DRIFTED, Truth};

use super::super::plan::{
    DesiredStack, Lifecycle, Note, Observed, Plan, Step, classify, client_token, executing, in_flight, operation_of,
    reason_of, record, report, transition_change_set_name,
};
use super::approval::approve_or_execute;
use super::drift::{configuration_drift, repair_configuration, set_drifted};
use super::outcome::{apply_stack_policy, record_applied, record_desired_applied, update_failed};
use super::requests::{push_with_upload, request};
use super::stack_events::explain;

/// Starts a change set for the desired inputs.
pub(super) fn create_change_set(o: &Observed, desired: &DesiredStack, kind: ChangeSetType, plan: &mut Plan) {
    let name = wanted_name(o, desired);
    let token = client_token(o.uid, "changeset", &name);
    supersede(plan, &name);
    let request = request(o, desired, kind, &name, &token);
    push_with_upload(desired, Step::CreateChangeSet(Box::new(request)), plan);
    plan.status.operation = Some(record(
        o,
        OperationAction::CreateChangeSet,
        Some(&name),
        &token,
        Some(&desired.fingerprint),
    ));
    plan.status.change_set = Some(ChangeSetSummary {
        name: name.clone(),
        change_type: change_set_kind(kind),
        status: Some(ChangeSetState::CreatePending),
        generation: o.generation,
        revision: o.revision.map(str::to_string),
        ..Default::default()
    });
    planning(o, kind, &name, plan);
}

/// The change set for `desired`. A new generation names it alone (the name
/// stays put while an earlier generation's change set finishes, so an
/// approval of it is not lost); inputs that changed under the same
/// generation (a Flux source's new revision, a Secret) name it from the
/// applied inputs too, so coming back to earlier inputs gets a new one.
fn wanted_name(o: &Observed, desired: &DesiredStack) -> String {
    let applied = o
        .previous
        .applied
        .as_ref()
        .filter(|a| a.generation == o.generation)
        .map(|a| a.fingerprint.as_str());
    transition_change_set_name(o.generation, &desired.fingerprint, applied)
}

/// Ready=Unknown while CloudFormation computes the change set: the same
/// words from the request to the answer, so waiting writes nothing.
fn planning(o: &Observed, kind: ChangeSetType, name: &str, plan: &mut Plan) {
    let verb = if kind == ChangeSetType::Create {
        "create"
    } else {
        "update"
    };
    report(o, plan).progressing(
        "ChangeSetPending",
        &format!("planning the {verb} with change set {name}"),
    );
    plan.requeue = o.timing.change_set;
}

/// An execution we started has finished if the stack settled and the change
/// set no longer waits to run. Returns true when the plan is complete.
pub(super) fn finish_execution(
    o: &Observed,
    stack: &StackDescription,
    rolled_back: bool,
    failures: &[&StackEvent],
    plan: &mut Plan,
) -> bool {
    let Some(op) = execution(o) else {
        return false;
    };
    let op = op.as_ref();
    let pending = o
        .change_set
        .filter(|cs| Some(&cs.change_set_name) == op.change_set_name.as_ref())
        .map(|cs| &cs.execution_status);
    match pending {
        Some(ExecutionStatus::Available) => {
            // Not started yet (or the call was lost): run it again, same token.
            let name = op.change_set_name.clone().unwrap_or_default();
            plan.steps.push(Step::ExecuteChangeSet {
                name: name.clone(),
                token: op.client_token.clone(),
            });
            executing(o, plan, &name);
            plan.requeue = o.timing.in_flight;
            return true;
        }
        Some(ExecutionStatus::ExecuteInProgress) => {
            report(o, plan).progressing("Executing", "CloudFormation is starting the change set");
            plan.requeue = o.timing.in_flight;
            return true;
        }
        _ => {}
    }
    plan.status.operation = None;
    let failed = rolled_back || !failures.is_empty();
    if let Some(cs) = plan.status.change_set.as_mut() {
        cs.execution_status = Some(if failed {
            ExecutionState::ExecuteFailed
        } else {
            ExecutionState::ExecuteComplete
        });
    }
    if !failed {
        // Told by the Ready transition that follows (one Event, not two).
        record_applied(o, op, plan);
        finish_revert(o, plan);
        return false;
    }
    let why = explain(failures, &stack.stack_name).unwrap_or_else(|| reason_of(stack));
    if let Some(cs) = plan.status.change_set.as_mut() {
        cs.status_reason = Some(why.clone());
    }
    update_failed(o, stack, op, &why, plan)
}

/// The execution to finish: the one recorded or, when the record was lost
/// between ExecuteChangeSet and the status write after it (a crash, a
/// conflict), the wanted change set's own, seen executed: its name stands
/// for the desired inputs, so it ran them.
fn execution<'o>(o: &'o Observed) -> Option<Cow<'o, Operation>> {
    if let Some(op) = operation_of(o.previous, OperationAction::ExecuteChangeSet) {
        return Some(Cow::Borrowed(op));
    }
    let desired = o.desired.as_ref().ok()?;
    let name = wanted_name(o, desired);
    let ran = o.change_set.is_some_and(|cs| {
        cs.change_set_name == name
            && matches!(
                cs.execution_status,
                ExecutionStatus::ExecuteComplete | ExecutionStatus::ExecuteFailed
            )
    });
    let finished = o
        .previous
        .change_set
        .as_ref()
        .is_some_and(|cs| cs.name == name && was_executed(cs));
    if !ran || finished {
        return None;
    }
    let token = client_token(o.uid, "execute", &name);
    let mut op = record(
        o,
        OperationAction::ExecuteChangeSet,
        Some(&name),
        &token,
        Some(&desired.fingerprint),
    );
    // Failures are looked for from the start of the rollout on.
    if let Some(started) = o.previous.operation.as_ref() {
        op.started_at = started.started_at.clone();
    }
    Some(Cow::Owned(op))
}

/// The change set lifecycle on a stack that can take one.
pub(super) fn change_set_flow(
    o: &Observed,
    desired: &DesiredStack,
    stack: &StackDescription,
    kind: ChangeSetType,
    plan: &mut Plan,
) {
    let wanted = wanted_name(o, desired);
    let applied = plan
        .status
        .applied
        .as_ref()
        .is_some_and(|a| a.fingerprint == desired.fingerprint);
    if kind == ChangeSetType::Update && applied && plan.status.operation.is_none() {
        // Same inputs under a new revision annotation: that revision is applied too.
        if let Some(applied) = plan.status.applied.as_mut() {
            applied.revision = o.revision.map(str::to_string);
        }
        if let Some(drift) = configuration_drift(desired, stack, o.live_template) {
            if repair_configuration(o, &drift, plan) {
                return;
            }
        } else if conditions::find(&plan.status.conditions, DRIFTED)
            .is_some_and(|c| c.status == "True" && c.reason != "ResourceDrift")
        {
            set_drifted(o, plan, Truth::False, "InSync", "the stack matches the spec");
        }
        plan.requeue = o.timing.resync;
        // The spec is back at the applied revision: a change set still
        // waiting (for approval) is no longer wanted.
        supersede(plan, &wanted);
        if plan
            .status
            .change_set
            .as_ref()
            .is_some_and(|cs| cs.name != wanted && !was_executed(cs))
        {
            plan.status.change_set = None;
            conditions::remove(&mut plan.status.conditions, APPROVAL_REQUIRED);
        }
        super::drift::check(o, desired, plan);
        if stack.termination_protection != desired.termination_protection {
            plan.steps.push(Step::SetTerminationProtection {
                enabled: desired.termination_protection,
            });
        }
        let message = format!("stack {} is {}", stack.stack_name, stack.status);
        report(o, plan).ready("Succeeded", &message);
        return;
    }
    let current = plan.status.change_set.clone().filter(|cs| cs.name == wanted);
    let Some(mut summary) = current else {
        return create_change_set(o, desired, kind, plan);
    };
    if summary.execution_status == Some(ExecutionState::ExecuteFailed) {
        // Reported when it failed; stay put until the spec or a request changes.
        let message = format!(
            "change set {wanted} failed: {}. Fix the spec, or set the annotation stackpilot.dev/reconcile-requested-at to retry",
            summary.status_reason.as_deref().unwrap_or("see status.recentFailures")
        );
        report(o, plan).stalled("UpdateFailed", &message);
        return;
    }
    let Some(described) = o.change_set.filter(|cs| cs.change_set_name == wanted) else {
        if summary.status == Some(ChangeSetState::Failed) {
            let message = format!(
                "change set {wanted} was rejected: {}",
                summary.status_reason.as_deref().unwrap_or("?")
            );
            report(o, plan).stalled("ChangeSetFailed", &message);
            return;
        }
        // Recorded but not found: the create was lost; repeat it (same token).
        return create_change_set(o, desired, kind, plan);
    };
    if in_flight(&plan.status, OperationAction::CreateChangeSet) {
        plan.status.operation = None;
    }
    describe(&mut summary, described);
    plan.status.change_set = Some(summary.clone());

    match &described.status {
        ChangeSetStatus::CreatePending | ChangeSetStatus::CreateInProgress => {
            // Nothing to tell until it is computed: the intent, the summary
            // and the stack as last written stay (a new stack's
            // REVIEW_IN_PROGRESS alone is not worth a status write; the
            // execution's write records it).
            plan.status.operation = o.previous.operation.clone();
            plan.status.change_set = o.previous.change_set.clone();
            plan.status.stack_id = o.previous.stack_id.clone();
            plan.status.stack_status = o.previous.stack_status.clone();
            plan.status.stack_status_reason = o.previous.stack_status_reason.clone();
            planning(o, kind, &wanted, plan);
        }
        ChangeSetStatus::Failed if described.is_empty_failure() => {
            if kind == ChangeSetType::Update && super::update_stack::needed(desired, stack) {
                return super::update_stack::start(o, desired, &summary, plan);
            }
            record_desired_applied(o, &desired.fingerprint, plan);
            apply_stack_policy(o, plan);
            plan.steps.push(Step::DeleteChangeSet { name: wanted.clone() });
            let message = format!("stack {} is {}; no changes were needed", stack.stack_name, stack.status);
            report(o, plan).ready("Succeeded", &message);
            plan.requeue = o.timing.resync;
        }
        ChangeSetStatus::CreateComplete => match described.execution_status {
            ExecutionStatus::Available => approve_or_execute(o, &summary, plan),
            // Executed, on a settled stack, with no intent left to finish it
            // (lost to a crash or a stale write): the result is in AWS already.
            ExecutionStatus::ExecuteComplete
                if matches!(
                    classify(&stack.status),
                    Lifecycle::Settled {
                        last_update_failed: false
                    }
                ) =>
            {
                plan.status.operation = None;
                record_desired_applied(o, &desired.fingerprint, plan);
                if let Some(cs) = plan.status.change_set.as_mut() {
                    cs.execution_status = Some(ExecutionState::ExecuteComplete);
                }
                let message = format!("stack {} is {}", stack.stack_name, stack.status);
                report(o, plan).ready("Succeeded", &message);
                plan.requeue = o.timing.resync;
            }
            ExecutionStatus::ExecuteInProgress | ExecutionStatus::ExecuteComplete => {
                report(o, plan).progressing("Executing", &format!("change set {wanted} is running"));
                plan.requeue = o.timing.in_flight;
            }
            _ => {
                let message = format!(
                    "change set {wanted} cannot be executed ({}): {}",
                    described.execution_status.as_str(),
                    described.status_reason.as_deref().unwrap_or("no reason given")
                );
                report(o, plan).stalled("ChangeSetFailed", &message);
            }
        },
        other => {
            let message = format!(
                "change set {wanted} is {}: {}",
                other.as_str(),
                described.status_reason.as_deref().unwrap_or("no reason given")
            );
            report(o, plan).stalled("ChangeSetFailed", &message);
        }
    }
}

/// After a drift revert ran, check again at once to confirm.
fn finish_revert(o: &Observed, plan: &mut Plan) {
    let reverting = o.desired.as_ref().is_ok_and(|d| d.deployment_mode.is_some());
    if let Some(drift) = plan.status.drift.as_mut().filter(|d| d.revert_pending && reverting) {
        drift.revert_pending = false;
        drift.checked_at = None;
        drift.started_at = None;
    }
}

/// Records the pending change set (not executed, not the one wanted) as
/// superseded: it is deleted by `delete_superseded`, now and after a crash.
pub(super) fn supersede(plan: &mut Plan, wanted: &str) {
    let Some(old) = plan
        .status
        .change_set
        .as_ref()
        .filter(|cs| cs.name != wanted && !was_executed(cs))
    else {
        return;
    };
    let old = old.name.clone();
    if !plan.status.superseded_change_sets.contains(&old) {
        plan.notes.push(Note::normal(
            "ChangeSetSuperseded",
            format!("change set {old} is no longer wanted and is deleted"),
        ));
        plan.status.superseded_change_sets.push(old.clone());
        plan.steps.push(Step::DeleteChangeSet { name: old });
    }
}

/// One DeleteChangeSet per superseded change set; each leaves the list once
/// AWS confirms (see the reconcile).
pub(super) fn delete_superseded(plan: &mut Plan) {
    for name in plan.status.superseded_change_sets.clone() {
        plan.steps.push(Step::DeleteChangeSet { name });
    }
}

fn was_executed(cs: &ChangeSetSummary) -> bool {
    cs.execution_status.is_some_and(ExecutionState::was_executed)
}

/// What DescribeChangeSet said, in the status's words.
fn describe(summary: &mut ChangeSetSummary, described: &ChangeSetDescription) {
    summary.id = Some(described.change_set_id.clone());
    summary.status = Some(change_set_state(&described.status));
    summary.status_reason = described.status_reason.clone();
    summary.execution_status = Some(execution_state(&described.execution_status));
    summary.changes = described
        .changes
        .iter()
        .map(|c| PlannedChange {
            action: change_action(&c.action),
            logical_id: c.logical_id.clone(),
            resource_type: c.resource_type.clone(),
            replacement: c.replacement.as_deref().and_then(replacement),
            physical_id: c.physical_id.clone(),
        })
        .collect();
}

fn change_set_kind(kind: ChangeSetType) -> ChangeSetKind {
    match kind {
        ChangeSetType::Create => ChangeSetKind::Create,
        ChangeSetType::Update => ChangeSetKind::Update,
    }
}

fn change_set_state(status: &ChangeSetStatus) -> ChangeSetState {
    match status {
        ChangeSetStatus::CreatePending => ChangeSetState::CreatePending,
        ChangeSetStatus::CreateInProgress => ChangeSetState::CreateInProgress,
        ChangeSetStatus::CreateComplete => ChangeSetState::CreateComplete,
        ChangeSetStatus::DeletePending => ChangeSetState::DeletePending,
        ChangeSetStatus::DeleteInProgress => ChangeSetState::DeleteInProgress,
        ChangeSetStatus::DeleteComplete => ChangeSetState::DeleteComplete,
        ChangeSetStatus::DeleteFailed => ChangeSetState::DeleteFailed,
        ChangeSetStatus::Failed => ChangeSetState::Failed,
        ChangeSetStatus::Other(_) => ChangeSetState::Unknown,
    }
}

fn execution_state(status: &ExecutionStatus) -> ExecutionState {
    match status {
        ExecutionStatus::Unavailable => ExecutionState::Unavailable,
        ExecutionStatus::Available => ExecutionState::Available,
        ExecutionStatus::ExecuteInProgress => ExecutionState::ExecuteInProgress,
        ExecutionStatus::ExecuteComplete => ExecutionState::ExecuteComplete,
        ExecutionStatus::ExecuteFailed => ExecutionState::ExecuteFailed,
        ExecutionStatus::Obsolete => ExecutionState::Obsolete,
        ExecutionStatus::Other(_) => ExecutionState::Unknown,
    }
}

fn change_action(action: &str) -> ChangeAction {
    match action {
        "Add" => ChangeAction::Add,
        "Modify" => ChangeAction::Modify,
        "Remove" => ChangeAction::Remove,
        "Import" => ChangeAction::Import,
        "Dynamic" => ChangeAction::Dynamic,
        _ => ChangeAction::Unknown,
    }
}

fn replacement(text: &str) -> Option<Replacement> {
    match text {
        "True" => Some(Replacement::True),
        "False" => Some(Replacement::False),
        "Conditional" => Some(Replacement::Conditional),
        _ => None,
    }
}
