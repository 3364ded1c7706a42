//! The Stack decision: observed inputs, AWS state and `now` in; the next AWS
//! steps, the new status, Events and the requeue out. Pure: no IO, no clock.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::{Adoption, CreateFailureAction, Operation, StackSpec, StackStatus, UpdateRollbackFailureAction};
use crate::aws::{ChangeSetDescription, ChangeSetRequest, ChangeSetType, StackDescription, StackEvent};

use super::change_sets::{change_set_flow, create_change_set, finish_execution};
use super::deletion::decide_delete;
use super::desired::{DesiredStack, InputProblem};
use super::drift::DriftObservation;
use super::lifecycle::{Lifecycle, classify};
use super::names::{TAG_NAME, TAG_NAMESPACE, TAG_UID, client_token};
use super::report::{Note, Report, explain, failures_since, record_failures, transition_note};

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
    /// The template in AWS, read when a drift check starts.
    pub live_template: Option<&'a str>,
    pub deleting: bool,
    pub now: Timestamp,
    pub timing: Timing,
}

/// One AWS call to make, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    CreateChangeSet(Box<ChangeSetRequest>),
    /// UpdateStack with a change set's inputs (see [`super::update_stack`]).
    UpdateStack(Box<ChangeSetRequest>),
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
            Step::UpdateStack(request) => format!("UpdateStack for {}", request.change_set_name),
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

pub(super) fn report<'a>(o: &Observed, plan: &'a mut Plan) -> Report<'a> {
    Report {
        status: &mut plan.status,
        generation: o.generation,
        now: o.now,
    }
}

pub(super) fn record(
    o: &Observed,
    action: &str,
    change_set: Option<&str>,
    token: &str,
    fingerprint: Option<&str>,
) -> Operation {
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
pub(super) enum Ownership {
    Ours,
    Adopting,
    Foreign(String),
}

pub(super) fn ownership(o: &Observed, stack: &StackDescription) -> Ownership {
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
            // Nothing of a stack we do not own goes to status: `ownership`
            // trusts `status.stackId`, so recording it would make the next
            // reconcile take the stack over (and delete it with the object).
            plan.status.stack_id = o.previous.stack_id.clone();
            plan.status.outputs.clear();
            report(o, plan).stalled("StackNotOwned", &message);
            return;
        }
    }
    // Change sets recorded as superseded are deleted first, whatever else happens.
    super::change_sets::delete_superseded(plan);
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
            if super::timeout::cancel_late_create(o, stack, plan) {
                return;
            }
            let message = format!("CloudFormation is running the stack operation ({})", stack.status);
            report(o, plan).progressing("Progressing", &message);
            plan.requeue = plan.requeue.min(o.timing.in_flight);
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
            if finish_execution(o, stack, last_update_failed, &failures, plan)
                || super::update_stack::finish(o, stack, last_update_failed, &failures, plan)
            {
                return;
            }
            change_set_flow(o, desired, stack, ChangeSetType::Update, plan)
        }
        Lifecycle::UpdateFailed => change_set_flow(o, desired, stack, ChangeSetType::Update, plan),
        Lifecycle::CreateFailed => create_failed(o, stack, &failures, plan),
        Lifecycle::UpdateRollbackFailed
            if o.spec.failure_policy.on_update_rollback_failure == UpdateRollbackFailureAction::ContinueRollback =>
        {
            let why = explain(&failures, &stack.stack_name).unwrap_or_else(|| reason_of(stack));
            execution_failed(plan, stack, &why);
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
            execution_failed(plan, stack, &why);
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

/// Our change set ran and the update failed (and so did its rollback):
/// recorded on the change set, so once the rollback is over (continued by
/// the failure policy or by hand) the Stack reports a failed update, not a
/// change set that "cannot be executed".
fn execution_failed(plan: &mut Plan, stack: &StackDescription, why: &str) {
    let status = &mut plan.status;
    let executed = status
        .operation
        .as_ref()
        .filter(|op| op.action == "ExecuteChangeSet")
        .and_then(|op| op.change_set_name.as_deref());
    let Some(cs) = status
        .change_set
        .as_mut()
        .filter(|cs| Some(cs.name.as_str()) == executed)
    else {
        return;
    };
    cs.execution_status = Some("EXECUTE_FAILED".into());
    let failed = format!("the update failed and so did its rollback ({})", stack.status);
    cs.status_reason = Some(format!("{failed}: {why}"));
}

fn conditions_remove_reconciling(plan: &mut Plan) {
    crate::runtime::conditions::remove(&mut plan.status.conditions, crate::runtime::conditions::RECONCILING);
}

pub(super) fn reason_of(stack: &StackDescription) -> String {
    stack.status_reason.clone().unwrap_or_else(|| "no reason given".into())
}

/// No stack: start (or restart) with a CREATE change set.
fn create_from_nothing(o: &Observed, desired: &DesiredStack, plan: &mut Plan) {
    if super::timeout::hold_after_timeout(o, desired, plan) {
        return;
    }
    // Change sets die with their stack.
    plan.status.superseded_change_sets.clear();
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

/// How long a failed create still waits before it is created again:
/// exponential in the recent failures, from the newest one.
pub(super) fn recreate_wait(o: &Observed, plan: &Plan) -> Option<Duration> {
    let attempts = plan.status.recent_failures.len().max(1) as u32;
    let delay = o.timing.recreate_backoff * 2u32.pow(attempts.min(6) - 1);
    let last = plan.status.recent_failures.first().map(|f| f.time.0).unwrap_or(o.now);
    let due = last + SignedDuration::try_from(delay).unwrap_or_default();
    (o.now < due).then(|| due.duration_since(o.now).unsigned_abs())
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
            if let Some(wait) = recreate_wait(o, plan) {
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
