//! The Stack decision: observed inputs, AWS state and `now` in; the next AWS
//! steps, the new status, Events and the requeue out. Pure: no IO, no clock.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::{
    Adoption, AppliedRevision, Approval, ChangeSetSummary, CreateFailureAction, DeleteFailureAction, DeletionPolicy,
    Operation, PlannedChange, StackSpec, StackStatus, UpdateRollbackFailureAction,
};
use crate::aws::{
    ChangeSetDescription, ChangeSetRequest, ChangeSetStatus, ChangeSetType, ExecutionStatus, StackDescription,
    StackEvent, TemplateSource,
};

use super::desired::{DesiredStack, InputProblem};
use super::drift::DriftObservation;
use super::lifecycle::{Lifecycle, classify};
use super::names::{TAG_NAME, TAG_NAMESPACE, TAG_UID, change_set_name, client_token};
use super::report::{Note, Report, explain, failures_since, record_failures, transition_note};
use crate::conditions::{self, ConditionUpdate, DRIFTED, Truth};

/// The annotation that approves one change set by name.
pub const APPROVE_ANNOTATION: &str = "stackpilot.dev/approve";

/// How often to look again.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// While CloudFormation runs an operation.
    pub in_flight: Duration,
    /// While a change set is being computed.
    pub change_set: Duration,
    /// When nothing is happening.
    pub resync: Duration,
    /// Base of the delay before a failed create is recreated.
    pub recreate_backoff: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            in_flight: Duration::from_secs(5),
            change_set: Duration::from_secs(2),
            resync: Duration::from_secs(300),
            recreate_backoff: Duration::from_secs(30),
        }
    }
}

/// Everything the decision looks at.
pub struct Observed<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub generation: i64,
    pub spec: &'a StackSpec,
    pub previous: &'a StackStatus,
    /// The resolved spec, or why it could not be resolved.
    pub desired: &'a Result<DesiredStack, InputProblem>,
    /// The stack name in use (even when the rest of the spec did not resolve).
    pub stack_name: &'a str,
    /// Whether AWS was asked at all (not for bad input or a suspended Stack).
    pub aws_observed: bool,
    /// `None` when the stack does not exist.
    pub stack: Option<&'a StackDescription>,
    /// The change set named by `status.operation` or `status.changeSet`, if
    /// it was looked up and exists.
    pub change_set: Option<&'a ChangeSetDescription>,
    /// Stack events newer than `status.lastEventId`, newest first.
    pub new_events: &'a [StackEvent],
    /// Value of the approve annotation.
    pub approval: Option<&'a str>,
    /// Value of the reconcile-requested-at annotation (also asks for a drift check).
    pub requested: Option<&'a str>,
    /// A drift detection run read this time, if one was under way.
    pub drift: &'a DriftObservation,
    pub deleting: bool,
    pub now: Timestamp,
    pub timing: Timing,
}

/// One AWS call to make, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    CreateChangeSet(Box<ChangeSetRequest>),
    ExecuteChangeSet {
        name: String,
        token: String,
    },
    DeleteChangeSet {
        name: String,
    },
    DeleteStack {
        token: String,
        retain: Vec<String>,
    },
    /// Uploads the template to S3; the next CreateChangeSet passes its URL.
    UploadTemplate {
        bucket: String,
        key: String,
        region: String,
        body: String,
    },
    SetTerminationProtection {
        enabled: bool,
    },
    SetStackPolicy {
        body: String,
    },
    ContinueRollback {
        token: String,
        skip: Vec<String>,
    },
    /// Starts drift detection; its id goes to `status.drift`.
    DetectDrift,
}

impl Step {
    /// For logs: what is called and on which change set, never parameter values.
    pub fn label(&self) -> String {
        match self {
            Step::CreateChangeSet(request) => format!("CreateChangeSet {}", request.change_set_name),
            Step::ExecuteChangeSet { name, .. } => format!("ExecuteChangeSet {name}"),
            Step::DeleteChangeSet { name } => format!("DeleteChangeSet {name}"),
            Step::DeleteStack { retain, .. } => format!("DeleteStack (retaining {retain:?})"),
            Step::UploadTemplate { bucket, key, .. } => format!("PutObject s3://{bucket}/{key}"),
            Step::SetTerminationProtection { enabled } => format!("UpdateTerminationProtection {enabled}"),
            Step::SetStackPolicy { .. } => "SetStackPolicy".into(),
            Step::ContinueRollback { skip, .. } => format!("ContinueUpdateRollback (skipping {skip:?})"),
            Step::DetectDrift => "DetectStackDrift".into(),
        }
    }
}

/// The outcome of a decision.
#[derive(Debug)]
pub struct Plan {
    pub status: StackStatus,
    pub steps: Vec<Step>,
    pub notes: Vec<Note>,
    pub requeue: Duration,
    /// Deletion is finished: the finalizer may go.
    pub release: bool,
    /// The approve annotation was used and can be removed.
    pub approval_used: bool,
}

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
        observe_stack(o, &mut plan);
    }
    if o.deleting {
        decide_delete(o, &mut plan);
    } else {
        decide_apply(o, &mut plan);
    }
    if let Some(note) = transition_note(o.previous, &plan.status) {
        plan.notes.push(note);
    }
    plan
}

/// Mirrors what AWS reports into status.
fn observe_stack(o: &Observed, plan: &mut Plan) {
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

fn report<'a>(o: &Observed, plan: &'a mut Plan) -> Report<'a> {
    Report {
        status: &mut plan.status,
        generation: o.generation,
        now: o.now,
    }
}

fn record(o: &Observed, action: &str, change_set: Option<&str>, token: &str, fingerprint: Option<&str>) -> Operation {
    Operation {
        action: action.to_string(),
        change_set_name: change_set.map(str::to_string),
        client_token: token.to_string(),
        generation: o.generation,
        fingerprint: fingerprint.map(str::to_string),
        started_at: Time(o.now),
    }
}

/// Whether the existing stack belongs to this object.
enum Ownership {
    Ours,
    Adopting,
    Foreign(String),
}

fn ownership(o: &Observed, stack: &StackDescription) -> Ownership {
    let tagged = stack.tags.get(TAG_UID);
    if tagged.map(String::as_str) == Some(o.uid) || o.previous.stack_id.as_deref() == Some(stack.stack_id.as_str()) {
        return Ownership::Ours;
    }
    // A CREATE change set we started puts the stack in REVIEW_IN_PROGRESS,
    // possibly before its tags are visible.
    let started_here = o.previous.operation.is_some() || o.previous.change_set.is_some();
    if classify(&stack.status) == Lifecycle::Review && started_here && tagged.is_none() {
        return Ownership::Ours;
    }
    if tagged.is_some() {
        let owner = format!(
            "{}/{}",
            stack.tags.get(TAG_NAMESPACE).map(String::as_str).unwrap_or("?"),
            stack.tags.get(TAG_NAME).map(String::as_str).unwrap_or("?")
        );
        return Ownership::Foreign(format!(
            "stack {} in {} is managed by another Stack object ({owner}); choose another spec.stackName",
            stack.stack_name, o.spec.region
        ));
    }
    match o.spec.adoption {
        Adoption::Adopt => Ownership::Adopting,
        Adoption::Refuse => Ownership::Foreign(format!(
            "a stack named {} already exists in {} and was not created by stackpilot; set spec.adoption: Adopt to take it over, or choose another spec.stackName",
            stack.stack_name, o.spec.region
        )),
    }
}

fn decide_apply(o: &Observed, plan: &mut Plan) {
    if o.spec.suspend {
        report(o, plan).waiting("Suspended", "reconciliation is suspended (spec.suspend: true)");
        conditions_remove_reconciling(plan);
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
    match ownership(o, stack) {
        Ownership::Ours => {}
        Ownership::Adopting => plan.notes.push(Note::normal(
            "Adopting",
            format!("taking over existing stack {}", stack.stack_name),
        )),
        Ownership::Foreign(message) => {
            report(o, plan).stalled("StackNotOwned", &message);
            return;
        }
    }
    let since = o
        .previous
        .operation
        .as_ref()
        .map(|op| op.started_at.0 - SignedDuration::from_secs(30));
    let failures = failures_since(o.new_events, since);
    record_failures(&mut plan.status, &failures);

    match classify(&stack.status) {
        Lifecycle::Busy { .. } => {
            super::drift::skip(plan, "an operation was running");
            let message = format!("CloudFormation is running the stack operation ({})", stack.status);
            report(o, plan).progressing("Progressing", &message);
            plan.requeue = o.timing.in_flight;
        }
        Lifecycle::Review => change_set_flow(o, desired, stack, ChangeSetType::Create, plan),
        Lifecycle::Settled { last_update_failed } => {
            if plan
                .status
                .operation
                .as_ref()
                .is_some_and(|op| op.action == "ContinueUpdateRollback")
            {
                plan.status.operation = None;
                plan.notes.push(Note::normal(
                    "RollbackContinued",
                    format!("the rollback finished: {}", stack.status),
                ));
            }
            if finish_execution(o, stack, last_update_failed, &failures, plan) {
                return;
            }
            change_set_flow(o, desired, stack, ChangeSetType::Update, plan)
        }
        Lifecycle::UpdateFailed => change_set_flow(o, desired, stack, ChangeSetType::Update, plan),
        Lifecycle::CreateFailed => create_failed(o, stack, &failures, plan),
        Lifecycle::UpdateRollbackFailed
            if o.spec.failure_policy.on_update_rollback_failure == UpdateRollbackFailureAction::ContinueRollback =>
        {
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
            plan.status.operation = Some(record(o, "ContinueUpdateRollback", None, &token, None));
            report(o, plan).progressing("ContinuingRollback", "continuing the failed rollback");
            plan.requeue = o.timing.in_flight;
        }
        Lifecycle::UpdateRollbackFailed => {
            let why = explain(&failures, &stack.stack_name).unwrap_or_else(|| reason_of(stack));
            let message = format!(
                "the update failed and so did its rollback (UPDATE_ROLLBACK_FAILED): {why}. Fix the cause in AWS, then continue the rollback (aws cloudformation continue-update-rollback --stack-name {})",
                stack.stack_name
            );
            plan.status.operation = None;
            report(o, plan).stalled("UpdateRollbackFailed", &message);
        }
        Lifecycle::DeleteFailed | Lifecycle::ImportRollbackFailed => {
            let why = explain(&failures, &stack.stack_name).unwrap_or_else(|| reason_of(stack));
            let message = format!("the stack is in {} and needs attention in AWS: {why}", stack.status);
            plan.status.operation = None;
            report(o, plan).stalled("StackFailed", &message);
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

fn conditions_remove_reconciling(plan: &mut Plan) {
    crate::conditions::remove(&mut plan.status.conditions, crate::conditions::RECONCILING);
}

fn reason_of(stack: &StackDescription) -> String {
    stack.status_reason.clone().unwrap_or_else(|| "no reason given".into())
}

/// No stack: start (or restart) with a CREATE change set.
fn create_from_nothing(o: &Observed, desired: &DesiredStack, plan: &mut Plan) {
    let recreating = o
        .previous
        .operation
        .as_ref()
        .is_some_and(|op| op.action == "DeleteStack");
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
    create_change_set(o, desired, ChangeSetType::Create, plan);
}

/// Starts a change set for the desired inputs.
fn create_change_set(o: &Observed, desired: &DesiredStack, kind: ChangeSetType, plan: &mut Plan) {
    let name = change_set_name(o.generation, &desired.fingerprint);
    let token = client_token(o.uid, "changeset", &name);
    if let Some(old) = plan
        .status
        .change_set
        .as_ref()
        .filter(|cs| cs.name != name && !was_executed(cs))
    {
        plan.steps.push(Step::DeleteChangeSet { name: old.name.clone() });
        plan.notes.push(Note::normal(
            "ChangeSetSuperseded",
            format!("change set {} was replaced by {name}", old.name),
        ));
    }
    let request = ChangeSetRequest {
        stack_name: desired.stack_name.clone(),
        change_set_name: name.clone(),
        change_set_type: kind,
        template: desired.template.clone(),
        parameters: desired.aws_parameters(),
        tags: desired.tags.clone(),
        capabilities: desired.capabilities.clone(),
        role_arn: desired.role_arn.clone(),
        notification_arns: desired.notification_arns.clone(),
        rollback_triggers: desired.rollback_triggers.clone(),
        rollback_monitoring_minutes: desired.rollback_monitoring_minutes,
        client_token: token.clone(),
        description: Some(format!(
            "stackpilot {}/{} generation {}",
            o.namespace, o.name, o.generation
        )),
        deployment_mode: desired.deployment_mode,
    };
    if let (Some(upload), TemplateSource::Body(body)) = (&desired.upload, &desired.template) {
        plan.steps.push(Step::UploadTemplate {
            bucket: upload.bucket.clone(),
            key: upload.key.clone(),
            region: upload.region.clone(),
            body: body.clone(),
        });
    }
    plan.steps.push(Step::CreateChangeSet(Box::new(request)));
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
fn finish_execution(
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
        plan.status.applied = Some(AppliedRevision {
            generation: op.generation,
            fingerprint: op.fingerprint.clone().unwrap_or_default(),
        });
        apply_stack_policy(o, plan);
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
    let message = format!(
        "the update failed and CloudFormation rolled it back ({}): {why}. Fix the spec, or set the annotation stackpilot.dev/reconcile-requested-at to retry",
        stack.status
    );
    report(o, plan).stalled("UpdateFailed", &message);
    true
}

/// The change set lifecycle on a stack that can take one.
fn change_set_flow(
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
        if let Some(drift) = configuration_drift(desired, stack) {
            if repair_configuration(o, &drift, plan) {
                return;
            }
        } else if conditions::find(&plan.status.conditions, DRIFTED).is_some_and(|c| c.reason != "ResourceDrift") {
            set_drifted(o, plan, Truth::False, "InSync", "the stack matches the spec");
        }
        plan.requeue = o.timing.resync;
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
    summary.status = Some(change_set_status_text(&described.status).to_string());
    summary.status_reason = described.status_reason.clone();
    summary.execution_status = Some(execution_status_text(&described.execution_status).to_string());
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
            ExecutionStatus::ExecuteInProgress | ExecutionStatus::ExecuteComplete => {
                report(o, plan).progressing("Executing", &format!("change set {wanted} is running"));
                plan.requeue = o.timing.in_flight;
            }
            _ => {
                let message = format!(
                    "change set {wanted} cannot be executed ({}): {}",
                    execution_status_text(&described.execution_status),
                    described.status_reason.as_deref().unwrap_or("no reason given")
                );
                report(o, plan).stalled("ChangeSetFailed", &message);
            }
        },
        other => {
            let message = format!(
                "change set {wanted} is {}: {}",
                change_set_status_text(other),
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

/// Parameters and tags changed outside Kubernetes, by name (never values).
fn configuration_drift(desired: &DesiredStack, stack: &StackDescription) -> Option<String> {
    let normal = |v: &str| v.split(',').map(str::trim).collect::<Vec<_>>().join(",");
    let parameters: Vec<&str> = desired
        .parameters
        .iter()
        .filter(|p| {
            stack
                .parameters
                .iter()
                .find(|a| a.key == p.name)
                .is_some_and(|a| a.value != "****" && normal(&a.value) != normal(&p.value))
        })
        .map(|p| p.name.as_str())
        .collect();
    let visible = |k: &&String| !k.starts_with("aws:");
    let mut tags: Vec<&str> = desired
        .tags
        .iter()
        .filter(|(k, v)| stack.tags.get(*k) != Some(v))
        .map(|(k, _)| k.as_str())
        .collect();
    tags.extend(
        stack
            .tags
            .keys()
            .filter(visible)
            .filter(|k| !desired.tags.contains_key(*k))
            .map(String::as_str),
    );
    if parameters.is_empty() && tags.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    if !parameters.is_empty() {
        parts.push(format!("parameters {parameters:?}"));
    }
    if !tags.is_empty() {
        parts.push(format!("tags {tags:?}"));
    }
    Some(parts.join(" and "))
}

fn set_drifted(o: &Observed, plan: &mut Plan, truth: Truth, reason: &str, message: &str) {
    conditions::set(
        &mut plan.status.conditions,
        ConditionUpdate::new(DRIFTED, truth, reason, message),
        o.generation,
        o.now,
    );
}

/// Re-applies the spec over an out-of-band change, once: a difference that
/// survives a re-apply is reported, not fought. Returns true when a repair
/// was started.
fn repair_configuration(o: &Observed, drift: &str, plan: &mut Plan) -> bool {
    let already = conditions::find(&plan.status.conditions, DRIFTED)
        .is_some_and(|c| c.status == "True" && c.reason == "ConfigurationDrift");
    if already {
        let message = format!("{drift} still differ from the spec after it was re-applied; stackpilot does not retry");
        set_drifted(o, plan, Truth::True, "UnresolvedDrift", &message);
        return false;
    }
    let message = format!("{drift} were changed outside Kubernetes; re-applying the spec");
    set_drifted(o, plan, Truth::True, "ConfigurationDrift", &message);
    plan.notes.push(Note::warning("ConfigurationDrift", message.clone()));
    plan.status.repairs += 1;
    plan.status.applied = None;
    report(o, plan).progressing("ConfigurationDrift", &message);
    plan.requeue = Duration::from_secs(1);
    true
}

fn approve_or_execute(o: &Observed, summary: &ChangeSetSummary, plan: &mut Plan) {
    let name = &summary.name;
    if o.spec.changes.approval == Approval::Manual {
        if o.approval != Some(name.as_str()) {
            let mut message = format!(
                "change set {name} plans {} change(s) ({}). Approve it with: kubectl annotate stack/{} {APPROVE_ANNOTATION}={name} --overwrite",
                summary.changes.len(),
                change_summary(summary),
                o.name
            );
            if let Some(other) = o.approval {
                message.push_str(&format!(
                    ". The current approval names {other:?}, which is not this change set"
                ));
            }
            if plan
                .status
                .conditions
                .iter()
                .all(|c| c.type_ != crate::conditions::APPROVAL_REQUIRED)
            {
                plan.notes.push(Note::normal("ApprovalRequired", message.clone()));
            }
            report(o, plan).approval_required(&message);
            return;
        }
        plan.approval_used = true;
        plan.notes
            .push(Note::normal("ChangeSetApproved", format!("change set {name} approved")));
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

fn create_failed(o: &Observed, stack: &StackDescription, failures: &[&StackEvent], plan: &mut Plan) {
    let why = explain(failures, &stack.stack_name)
        .or_else(|| {
            plan.status
                .recent_failures
                .first()
                .map(|f| format!("{} {}: {}", f.logical_id, f.status, f.reason))
        })
        .unwrap_or_else(|| reason_of(stack));
    if plan
        .status
        .operation
        .as_ref()
        .is_some_and(|op| op.action == "ExecuteChangeSet")
    {
        plan.status.operation = None;
        if let Some(cs) = plan.status.change_set.as_mut() {
            cs.execution_status = Some("EXECUTE_FAILED".into());
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
            let attempts = plan.status.recent_failures.len().max(1) as u32;
            let delay = o.timing.recreate_backoff * 2u32.pow(attempts.min(6) - 1);
            let last = plan.status.recent_failures.first().map(|f| f.time.0).unwrap_or(o.now);
            let due = last + SignedDuration::try_from(delay).unwrap_or_default();
            if o.now < due {
                let wait = due.duration_since(o.now).unsigned_abs();
                let message = format!(
                    "stack {} failed to create: {why}. Recreating it in {}s",
                    stack.stack_name,
                    wait.as_secs()
                );
                report(o, plan).waiting("CreateFailed", &message);
                plan.requeue = wait;
                return;
            }
            let token = client_token(
                o.uid,
                "recreate",
                &format!("{}-{}", o.generation, plan.status.recent_failures.len()),
            );
            plan.steps.push(Step::DeleteStack {
                token: token.clone(),
                retain: Vec::new(),
            });
            plan.status.operation = Some(record(o, "DeleteStack", None, &token, None));
            plan.notes.push(Note::warning(
                "Recreating",
                format!("deleting failed stack {} to create it again: {why}", stack.stack_name),
            ));
            report(o, plan).progressing(
                "Recreating",
                &format!("deleting failed stack {} to create it again", stack.stack_name),
            );
            plan.requeue = o.timing.in_flight;
        }
    }
}

fn decide_delete(o: &Observed, plan: &mut Plan) {
    let name = o.stack_name;
    if o.spec.deletion_policy == DeletionPolicy::Retain {
        plan.notes.push(Note::normal(
            "StackRetained",
            format!("deletionPolicy is Retain: stack {name} is left in AWS"),
        ));
        plan.release = true;
        return;
    }
    let Some(stack) = o.stack.filter(|s| classify(&s.status) != Lifecycle::Deleted) else {
        plan.notes
            .push(Note::normal("StackDeleted", format!("stack {name} is deleted")));
        plan.release = true;
        return;
    };
    if let Ownership::Foreign(_) = ownership(o, stack) {
        plan.notes.push(Note::normal(
            "StackLeftAlone",
            format!("stack {name} was never managed by this object; left in AWS"),
        ));
        plan.release = true;
        return;
    }
    let failures = failures_since(o.new_events, None);
    record_failures(&mut plan.status, &failures);
    match classify(&stack.status) {
        Lifecycle::Busy { deleting: true } => {
            report(o, plan).progressing("Deleting", &format!("CloudFormation is deleting stack {name}"));
            plan.requeue = o.timing.in_flight;
        }
        Lifecycle::Busy { deleting: false } => {
            let message = format!("waiting for {} to finish before deleting stack {name}", stack.status);
            report(o, plan).progressing("Deleting", &message);
            plan.requeue = o.timing.in_flight;
        }
        Lifecycle::DeleteFailed => {
            let why = explain(&failures, name)
                .or_else(|| {
                    plan.status
                        .recent_failures
                        .first()
                        .map(|f| format!("{}: {}", f.logical_id, f.reason))
                })
                .unwrap_or_else(|| reason_of(stack));
            match o.spec.failure_policy.on_delete_failure {
                DeleteFailureAction::RetainFailedResources => {
                    let retain: Vec<String> = plan
                        .status
                        .recent_failures
                        .iter()
                        .filter(|f| f.status == "DELETE_FAILED" && f.logical_id != name)
                        .map(|f| f.logical_id.clone())
                        .collect();
                    let token = client_token(o.uid, "delete-retain", &o.generation.to_string());
                    plan.notes.push(Note::warning(
                        "DeleteRetainingResources",
                        format!("deleting stack {name} again, keeping the resources that failed: {retain:?}"),
                    ));
                    plan.steps.push(Step::DeleteStack {
                        token: token.clone(),
                        retain,
                    });
                    plan.status.operation = Some(record(o, "DeleteStack", None, &token, None));
                    report(o, plan).progressing(
                        "Deleting",
                        &format!("deleting stack {name}, retaining failed resources"),
                    );
                    plan.requeue = o.timing.in_flight;
                }
                DeleteFailureAction::Retain => {
                    let message = format!(
                        "deleting stack {name} failed: {why}. Fix it in AWS and set the annotation stackpilot.dev/reconcile-requested-at to retry, or set spec.failurePolicy.onDeleteFailure: RetainFailedResources"
                    );
                    plan.status.operation = None;
                    report(o, plan).stalled("DeleteFailed", &message);
                }
            }
        }
        _ => {
            if stack.termination_protection {
                plan.steps.push(Step::SetTerminationProtection { enabled: false });
            }
            let token = client_token(o.uid, "delete", &o.generation.to_string());
            let repeat = o.previous.operation.as_ref().is_some_and(|op| op.client_token == token);
            if !repeat {
                plan.notes
                    .push(Note::normal("Deleting", format!("deleting stack {name}")));
            }
            plan.steps.push(Step::DeleteStack {
                token: token.clone(),
                retain: Vec::new(),
            });
            plan.status.operation = Some(record(o, "DeleteStack", None, &token, None));
            report(o, plan).progressing("Deleting", &format!("deleting stack {name}"));
            plan.requeue = o.timing.in_flight;
        }
    }
}

pub fn change_set_status_text(status: &ChangeSetStatus) -> &str {
    match status {
        ChangeSetStatus::CreatePending => "CREATE_PENDING",
        ChangeSetStatus::CreateInProgress => "CREATE_IN_PROGRESS",
        ChangeSetStatus::CreateComplete => "CREATE_COMPLETE",
        ChangeSetStatus::DeletePending => "DELETE_PENDING",
        ChangeSetStatus::DeleteInProgress => "DELETE_IN_PROGRESS",
        ChangeSetStatus::DeleteComplete => "DELETE_COMPLETE",
        ChangeSetStatus::DeleteFailed => "DELETE_FAILED",
        ChangeSetStatus::Failed => "FAILED",
        ChangeSetStatus::Other(text) => text,
    }
}

pub fn execution_status_text(status: &ExecutionStatus) -> &str {
    match status {
        ExecutionStatus::Unavailable => "UNAVAILABLE",
        ExecutionStatus::Available => "AVAILABLE",
        ExecutionStatus::ExecuteInProgress => "EXECUTE_IN_PROGRESS",
        ExecutionStatus::ExecuteComplete => "EXECUTE_COMPLETE",
        ExecutionStatus::ExecuteFailed => "EXECUTE_FAILED",
        ExecutionStatus::Obsolete => "OBSOLETE",
        ExecutionStatus::Other(text) => text,
    }
}
