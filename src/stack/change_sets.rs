//! The change set lifecycle of a Stack: plan, show, wait for approval,
//! execute, and tell success from failure.

use crate::api::{AppliedRevision, Approval, ChangeSetSummary, Operation, PlannedChange};
use crate::aws::{
    ChangeSetRequest, ChangeSetStatus, ChangeSetType, ExecutionStatus, StackDescription, StackEvent, TemplateSource,
};

use super::decide::{APPROVE_ANNOTATION, Observed, Plan, Step, reason_of, record, report};
use super::desired::DesiredStack;
use super::drift::{configuration_drift, repair_configuration, set_drifted};
use super::lifecycle::{Lifecycle, classify};
use super::names::{change_set_name, client_token};
use super::report::{Note, explain};
use crate::runtime::conditions::{self, DRIFTED, Truth};

/// Starts a change set for the desired inputs.
pub(super) fn create_change_set(o: &Observed, desired: &DesiredStack, kind: ChangeSetType, plan: &mut Plan) {
    let name = change_set_name(o.generation, &desired.fingerprint);
    let token = client_token(o.uid, "changeset", &name);
    supersede(plan, &name);
    let request = request(o, desired, kind, &name, &token);
    push_with_upload(desired, Step::CreateChangeSet(Box::new(request)), plan);
    plan.status.operation = Some(record(
        o,
        "CreateChangeSet",
        Some(&name),
        &token,
        Some(&desired.fingerprint),
    ));
    plan.status.change_set = Some(ChangeSetSummary {
        name: name.clone(),
        change_type: kind_text(kind).into(),
        status: Some("CREATE_PENDING".into()),
        generation: o.generation,
        ..Default::default()
    });
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

/// The inputs of a change set (and of an UpdateStack standing in for one).
pub(super) fn request(
    o: &Observed,
    desired: &DesiredStack,
    kind: ChangeSetType,
    name: &str,
    token: &str,
) -> ChangeSetRequest {
    ChangeSetRequest {
        stack_name: desired.stack_name.clone(),
        change_set_name: name.to_string(),
        change_set_type: kind,
        template: desired.template.clone(),
        parameters: desired.aws_parameters(),
        tags: desired.tags.clone(),
        capabilities: desired.capabilities.clone(),
        role_arn: desired.role_arn.clone(),
        notification_arns: desired.notification_arns.clone(),
        rollback_triggers: desired.rollback_triggers.clone(),
        rollback_monitoring_minutes: desired.rollback_monitoring_minutes,
        client_token: token.to_string(),
        description: Some(format!(
            "stackpilot {}/{} generation {}",
            o.namespace, o.name, o.generation
        )),
        deployment_mode: desired.deployment_mode,
    }
}

/// A large template goes to S3 first; the step after it passes the URL.
pub(super) fn push_with_upload(desired: &DesiredStack, step: Step, plan: &mut Plan) {
    if let (Some(upload), TemplateSource::Body(body)) = (&desired.upload, &desired.template) {
        plan.steps.push(Step::UploadTemplate {
            bucket: upload.bucket.clone(),
            key: upload.key.clone(),
            region: upload.region.clone(),
            body: body.clone(),
        });
    }
    plan.steps.push(step);
}

fn kind_text(kind: ChangeSetType) -> &'static str {
    match kind {
        ChangeSetType::Create => "CREATE",
        ChangeSetType::Update => "UPDATE",
    }
}

fn was_executed(cs: &ChangeSetSummary) -> bool {
    cs.execution_status
        .as_deref()
        .is_some_and(|s| s.starts_with("EXECUTE_"))
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
    let Some(op) = o
        .previous
        .operation
        .as_ref()
        .filter(|op| op.action == "ExecuteChangeSet")
    else {
        return false;
    };
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
            report(o, plan).progressing("Executing", &format!("executing change set {name}"));
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
        cs.execution_status = Some(if failed { "EXECUTE_FAILED" } else { "EXECUTE_COMPLETE" }.into());
    }
    if !failed {
        record_applied(o, op, plan);
        finish_revert(o, plan);
        plan.notes.push(Note::normal(
            "ChangeSetExecuted",
            format!(
                "change set {} finished: {}",
                op.change_set_name.as_deref().unwrap_or("?"),
                stack.status
            ),
        ));
        return false;
    }
    let why = explain(failures, &stack.stack_name).unwrap_or_else(|| reason_of(stack));
    if let Some(cs) = plan.status.change_set.as_mut() {
        cs.status_reason = Some(why.clone());
    }
    update_failed(o, stack, &why, plan);
    true
}

/// The operation `op` (an execution or an UpdateStack) succeeded: its inputs
/// are applied, and a stack policy that came with them is set now.
pub(super) fn record_applied(o: &Observed, op: &Operation, plan: &mut Plan) {
    plan.status.applied = Some(AppliedRevision {
        generation: op.generation,
        fingerprint: op.fingerprint.clone().unwrap_or_default(),
    });
    apply_stack_policy(o, plan);
}

/// An update of ours was rolled back: Stalled until the spec changes or a retry is asked for.
pub(super) fn update_failed(o: &Observed, stack: &StackDescription, why: &str, plan: &mut Plan) {
    let message = format!(
        "the update failed and CloudFormation rolled it back ({}): {why}. Fix the spec, or set the annotation stackpilot.dev/reconcile-requested-at to retry",
        stack.status
    );
    report(o, plan).stalled("UpdateFailed", &message);
}

/// The change set lifecycle on a stack that can take one.
pub(super) fn change_set_flow(
    o: &Observed,
    desired: &DesiredStack,
    stack: &StackDescription,
    kind: ChangeSetType,
    plan: &mut Plan,
) {
    let wanted = change_set_name(o.generation, &desired.fingerprint);
    let applied = plan
        .status
        .applied
        .as_ref()
        .is_some_and(|a| a.fingerprint == desired.fingerprint);
    if kind == ChangeSetType::Update && applied && plan.status.operation.is_none() {
        if let Some(drift) = configuration_drift(desired, stack, o.live_template) {
            if repair_configuration(o, &drift, plan) {
                return;
            }
        } else if conditions::find(&plan.status.conditions, DRIFTED).is_some_and(|c| c.reason != "ResourceDrift") {
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
            conditions::remove(
                &mut plan.status.conditions,
                crate::runtime::conditions::APPROVAL_REQUIRED,
            );
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
    if summary.execution_status.as_deref() == Some("EXECUTE_FAILED") {
        // Reported when it failed; stay put until the spec or a request changes.
        let message = format!(
            "change set {wanted} failed: {}. Fix the spec, or set the annotation stackpilot.dev/reconcile-requested-at to retry",
            summary.status_reason.as_deref().unwrap_or("see status.recentFailures")
        );
        report(o, plan).stalled("UpdateFailed", &message);
        return;
    }
    let Some(described) = o.change_set.filter(|cs| cs.change_set_name == wanted) else {
        if summary.status.as_deref() == Some("FAILED") {
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
    if plan
        .status
        .operation
        .as_ref()
        .is_some_and(|op| op.action == "CreateChangeSet")
    {
        plan.status.operation = None;
    }
    summary.id = Some(described.change_set_id.clone());
    summary.status = Some(described.status.as_str().to_string());
    summary.status_reason = described.status_reason.clone();
    summary.execution_status = Some(described.execution_status.as_str().to_string());
    summary.changes = described
        .changes
        .iter()
        .map(|c| PlannedChange {
            action: c.action.clone(),
            logical_id: c.logical_id.clone(),
            resource_type: c.resource_type.clone(),
            replacement: c.replacement.clone(),
            physical_id: c.physical_id.clone(),
        })
        .collect();
    plan.status.change_set = Some(summary.clone());

    match &described.status {
        ChangeSetStatus::CreatePending | ChangeSetStatus::CreateInProgress => {
            report(o, plan).progressing(
                "ChangeSetPending",
                &format!("CloudFormation is computing change set {wanted}"),
            );
            plan.requeue = o.timing.change_set;
        }
        ChangeSetStatus::Failed if described.is_empty_failure() => {
            if kind == ChangeSetType::Update && super::update_stack::needed(desired, stack) {
                return super::update_stack::start(o, desired, &summary, plan);
            }
            plan.status.applied = Some(AppliedRevision {
                generation: o.generation,
                fingerprint: desired.fingerprint.clone(),
            });
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
                plan.status.applied = Some(AppliedRevision {
                    generation: o.generation,
                    fingerprint: desired.fingerprint.clone(),
                });
                if let Some(cs) = plan.status.change_set.as_mut() {
                    cs.execution_status = Some("EXECUTE_COMPLETE".into());
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

/// CloudFormation takes the stack policy through its own call, after the
/// change that a new policy came with.
fn apply_stack_policy(o: &Observed, plan: &mut Plan) {
    if let Some(body) = o.desired.as_ref().ok().and_then(|d| d.stack_policy.clone()) {
        plan.steps.push(Step::SetStackPolicy { body });
    }
}

fn approve_or_execute(o: &Observed, summary: &ChangeSetSummary, plan: &mut Plan) {
    let name = &summary.name;
    let plans = format!(
        "change set {name} plans {} change(s) ({})",
        summary.changes.len(),
        change_summary(summary)
    );
    if !approved(o, name, &plans, plan) {
        return;
    }
    let token = client_token(o.uid, "execute", name);
    plan.steps.push(Step::ExecuteChangeSet {
        name: name.clone(),
        token: token.clone(),
    });
    let fingerprint = plan.status.operation.as_ref().and_then(|op| op.fingerprint.clone());
    let fingerprint = fingerprint.or_else(|| o.desired.as_ref().ok().map(|d| d.fingerprint.clone()));
    plan.status.operation = Some(record(
        o,
        "ExecuteChangeSet",
        Some(name),
        &token,
        fingerprint.as_deref(),
    ));
    plan.notes.push(Note::normal(
        "ChangeSetExecuting",
        format!("executing change set {name}: {}", change_summary(summary)),
    ));
    report(o, plan).progressing("Executing", &format!("executing change set {name}"));
    plan.requeue = o.timing.in_flight;
}

/// Under `Manual`, whether change set `name` is approved; if not, says what
/// it `plans` and how to approve it (an Event the first time).
pub(super) fn approved(o: &Observed, name: &str, plans: &str, plan: &mut Plan) -> bool {
    if o.spec.changes.approval != Approval::Manual {
        return true;
    }
    if o.approval == Some(name) {
        plan.approval_used = true;
        plan.notes
            .push(Note::normal("ChangeSetApproved", format!("change set {name} approved")));
        return true;
    }
    let mut message = format!(
        "{plans}. Approve it with: kubectl annotate stack/{} {APPROVE_ANNOTATION}={name} --overwrite",
        o.name
    );
    if let Some(other) = o.approval {
        message.push_str(&format!(
            ". The current approval names {other:?}, which is not this change set"
        ));
    }
    if conditions::find(&plan.status.conditions, conditions::APPROVAL_REQUIRED).is_none() {
        plan.notes.push(Note::normal("ApprovalRequired", message.clone()));
    }
    report(o, plan).approval_required(&message);
    false
}

/// "2 Add, 1 Modify (1 replacement)".
fn change_summary(summary: &ChangeSetSummary) -> String {
    let count = |action: &str| summary.changes.iter().filter(|c| c.action == action).count();
    let replacements = summary
        .changes
        .iter()
        .filter(|c| c.replacement.as_deref() == Some("True"))
        .count();
    let mut parts: Vec<String> = ["Add", "Modify", "Remove", "Import", "Dynamic"]
        .iter()
        .filter(|a| count(a) > 0)
        .map(|a| format!("{} {a}", count(a)))
        .collect();
    if replacements > 0 {
        parts.push(format!("{replacements} replacement(s)"));
    }
    if parts.is_empty() {
        "no resource changes".into()
    } else {
        parts.join(", ")
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
