//! The vocabulary of the Stack decision, a leaf every `decide/` file
//! imports: what was observed, the plan that comes out (AWS steps, new
//! status, Events, requeue), and the small helpers every decision uses.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::{ChangeSetKind, Operation, OperationAction, StackSpec, StackStatus};
use crate::aws::{ChangeSetDescription, ChangeSetRequest, DriftDetection, ResourceDrift, StackDescription, StackEvent};
use crate::runtime::conditions::{self, APPROVAL_REQUIRED, Kstatus, READY, RECONCILING, STALLED, Truth};

pub use super::desired::DesiredStack;
pub use super::lifecycle::{Lifecycle, classify};
pub use super::names::{TAG_NAME, TAG_NAMESPACE, TAG_UID, change_set_name, client_token, transition_change_set_name};
pub use crate::runtime::events::Note;
pub use crate::runtime::problem::Problem;

/// The annotation that approves one change set by name.
pub const APPROVE_ANNOTATION: &str = "stackpilot.dev/approve";
/// The annotation that forces a reconcile now; after a failure it also
/// retries the same spec.
pub const RECONCILE_REQUESTED_AT: &str = "stackpilot.dev/reconcile-requested-at";
/// The revision a StackDeployment or Pipeline wrote this Stack at; echoed
/// in `status.applied.revision` once those inputs are applied.
pub const REVISION_ANNOTATION: &str = "stackpilot.dev/revision";

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
    /// When the Stack object was created.
    pub created: Timestamp,
    pub generation: i64,
    pub spec: &'a StackSpec,
    pub previous: &'a StackStatus,
    /// The resolved spec, or why it could not be resolved.
    pub desired: &'a Result<DesiredStack, Problem>,
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
    /// Value of the revision annotation (set by an owning StackDeployment
    /// or Pipeline).
    pub revision: Option<&'a str>,
    /// Value of the reconcile-requested-at annotation (also asks for a drift check).
    pub requested: Option<&'a str>,
    /// A drift detection run read this time, if one was under way.
    pub drift: &'a DriftObservation,
    /// Why drift detection is not asked for now: the endpoint said it does
    /// not offer it (told once per account and region).
    pub drift_unsupported: Option<&'a str>,
    /// The template in AWS, read when a drift check starts.
    pub live_template: Option<&'a str>,
    pub deleting: bool,
    pub now: Timestamp,
    pub timing: Timing,
}

/// What the reconcile read about a detection run in progress.
#[derive(Clone, Debug, Default)]
pub struct DriftObservation {
    pub detection: Option<DriftDetection>,
    pub resources: Option<Vec<ResourceDrift>>,
}

/// One AWS call to make, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    CreateChangeSet(Box<ChangeSetRequest>),
    /// UpdateStack with a change set's inputs (see `decide::update_stack`).
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

    /// Whether the intent must be in status before the call. Not for calls
    /// whose loss or repeat is harmless (idempotent settings, a drift check
    /// that is simply started again), nor for ExecuteChangeSet: its change
    /// set, named by the inputs, tells once read that it ran (see
    /// `decide::change_sets::execution`), so the execution is recorded once,
    /// after the call, with the stack already moving.
    pub fn needs_intent(&self) -> bool {
        !matches!(
            self,
            Step::ExecuteChangeSet { .. }
                | Step::SetTerminationProtection { .. }
                | Step::SetStackPolicy { .. }
                | Step::DetectDrift
        )
    }
}

/// What a successful ExecuteChangeSet has done to the stack: CloudFormation
/// moves it to the operation's IN_PROGRESS status before it answers.
pub fn execution_started(status: &mut StackStatus) {
    let Some(kind) = status.change_set.as_ref().map(|cs| cs.change_type) else {
        return;
    };
    status.stack_status = Some(
        match kind {
            ChangeSetKind::Create => "CREATE_IN_PROGRESS",
            ChangeSetKind::Update => "UPDATE_IN_PROGRESS",
        }
        .into(),
    );
    status.stack_status_reason = None;
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

/// Sets the kstatus trio on a status being built.
pub struct Report<'a> {
    pub status: &'a mut StackStatus,
    pub generation: i64,
    pub now: Timestamp,
}

impl Report<'_> {
    fn kstatus(&mut self) -> Kstatus<'_> {
        Kstatus {
            conditions: &mut self.status.conditions,
            generation: self.generation,
            now: self.now,
        }
    }

    /// The stack matches the spec.
    pub fn ready(&mut self, reason: &str, message: &str) {
        self.kstatus().ready(reason, message);
        conditions::remove(&mut self.status.conditions, APPROVAL_REQUIRED);
    }

    /// Work is under way and will finish by itself.
    pub fn progressing(&mut self, reason: &str, message: &str) {
        self.kstatus().progressing(reason, message);
        conditions::remove(&mut self.status.conditions, APPROVAL_REQUIRED);
    }

    /// Not ready, waiting on something outside (a dependency, a retry).
    pub fn waiting(&mut self, reason: &str, message: &str) {
        self.kstatus().waiting(reason, message);
        conditions::remove(&mut self.status.conditions, APPROVAL_REQUIRED);
    }

    /// Cannot progress until somebody changes something.
    pub fn stalled(&mut self, reason: &str, message: &str) {
        self.kstatus().stalled(reason, message);
        conditions::remove(&mut self.status.conditions, APPROVAL_REQUIRED);
    }

    /// A change set waits for a person.
    pub fn approval_required(&mut self, message: &str) {
        let mut kstatus = self.kstatus();
        kstatus.set(READY, Truth::False, "ApprovalRequired", message);
        kstatus.set(APPROVAL_REQUIRED, Truth::True, "ChangeSetPending", message);
        conditions::remove(&mut self.status.conditions, RECONCILING);
        conditions::remove(&mut self.status.conditions, STALLED);
    }
}

/// Ready=Unknown `Executing` while a change set of ours runs: the same words
/// from the call to the end, so polling it writes nothing.
pub fn executing(o: &Observed, plan: &mut Plan, change_set: &str) {
    report(o, plan).progressing("Executing", &format!("executing change set {change_set}"));
}

pub fn report<'a>(o: &Observed, plan: &'a mut Plan) -> Report<'a> {
    Report {
        status: &mut plan.status,
        generation: o.generation,
        now: o.now,
    }
}

/// The intent of an AWS operation, recorded before the call.
pub fn record(
    o: &Observed,
    action: OperationAction,
    change_set: Option<&str>,
    token: &str,
    fingerprint: Option<&str>,
) -> Operation {
    Operation {
        action,
        change_set_name: change_set.map(str::to_string),
        client_token: token.to_string(),
        generation: o.generation,
        fingerprint: fingerprint.map(str::to_string),
        revision: o.revision.map(str::to_string),
        started_at: Time(o.now),
    }
}

/// Deletes the stack with `token`: the step, the recorded intent, progress
/// reported as `reason`, and a quick look again.
pub fn delete_stack(o: &Observed, plan: &mut Plan, token: &str, retain: Vec<String>, reason: &str, message: &str) {
    plan.steps.push(Step::DeleteStack {
        token: token.to_string(),
        retain,
    });
    plan.status.operation = Some(record(o, OperationAction::DeleteStack, None, token, None));
    report(o, plan).progressing(reason, message);
    plan.requeue = o.timing.in_flight;
}

/// Whether the operation in flight is `action`.
pub fn in_flight(status: &StackStatus, action: OperationAction) -> bool {
    operation_of(status, action).is_some()
}

/// The operation in flight, if it is `action`.
pub fn operation_of(status: &StackStatus, action: OperationAction) -> Option<&Operation> {
    status.operation.as_ref().filter(|op| op.action == action)
}

pub fn reason_of(stack: &StackDescription) -> String {
    stack.status_reason.clone().unwrap_or_else(|| "no reason given".into())
}
