//! The StackDeployment vocabulary every decision file speaks: what the
//! decision observes (`Observed`), what it asks for (`Plan`), the annotation
//! names people and children carry. A leaf: it imports no decision file.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::api::{ChangeAction, DriftState, Replacement};

pub use crate::api::{
    Approval, Artifact, DeploymentPhase, DeploymentTarget, FleetPreview, HandledRequests, Pause, RejectedRevision,
    Release, RevisionId, RevisionOutcome, RevisionRecord, RolloutKind, RolloutPhase, RolloutStatus,
    StackDeploymentSpec, StackDeploymentStatus, StrategyType, TargetFailureStatus, TargetPhase, TargetPreview,
    TargetStatus, WavePhase, WaveStatus,
};
pub use crate::runtime::conditions::Truth;
pub use crate::runtime::events::Note;

/// On a child Stack: the revision hash its spec carries. The Stack echoes it
/// in `status.applied.revision` once those inputs are applied.
pub const REVISION_ANNOTATION: &str = "stackpilot.dev/revision";
/// On a child Stack: the one change set it may execute (the deployment
/// writes every child with `changes.approval: Manual` and releases them).
pub const CHILD_APPROVE_ANNOTATION: &str = "stackpilot.dev/approve";
/// Label on a child Stack naming its target.
pub const TARGET_LABEL: &str = "stackpilot.dev/target";

/// People's requests, as annotations on the StackDeployment. Values that
/// name a revision bind the request to it: `<hash>` or `<hash>@<token>`
/// (the token makes a repeated request new). Values of `promote` and
/// `promote-full` are request tokens (the CLI writes a timestamp). Every
/// value acted on or refused is recorded in `status.handled`, so an old
/// annotation never acts twice.
///
/// Approves the fleet preview of one revision: `<hash>`.
pub const APPROVE_REVISION_ANNOTATION: &str = "stackpilot.dev/approve-revision";
/// Ends the current pause.
pub const PROMOTE_ANNOTATION: &str = "stackpilot.dev/promote";
/// Skips the remaining pauses and bake times of the running rollout.
pub const PROMOTE_FULL_ANNOTATION: &str = "stackpilot.dev/promote-full";
/// While present (any value), the rollout holds; remove it to resume.
pub const PAUSE_ANNOTATION: &str = "stackpilot.dev/pause";
/// Stops the rollout of `<hash>` and rolls it back now.
pub const ABORT_ANNOTATION: &str = "stackpilot.dev/abort";
/// Runs rejected revision `<hash>` again.
pub const RETRY_ANNOTATION: &str = "stackpilot.dev/retry";
/// Rolls every target back to kept revision `<label or hash>`.
pub const ROLLBACK_TO_ANNOTATION: &str = "stackpilot.dev/rollback-to";

/// How long a target may take to be Ready at the revision, by default.
pub const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// How often to look again.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// While a rollout is under way.
    pub progressing: Duration,
    /// When nothing is happening.
    pub resync: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            progressing: Duration::from_secs(15),
            resync: Duration::from_secs(300),
        }
    }
}

/// Everything the decision looks at. The wiring fills it from the object,
/// its ControllerRevisions, its child Stacks and one CloudWatch read per
/// account and region.
#[derive(Clone, Copy)]
pub struct Observed<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub generation: i64,
    pub spec: &'a StackDeploymentSpec,
    pub annotations: &'a BTreeMap<String, String>,
    /// The status as last written (the rollout's memory).
    pub previous: &'a StackDeploymentStatus,
    /// ControllerRevisions owned by the deployment.
    pub revisions: &'a [KeptRevision],
    /// Child Stacks owned by the deployment, by target name (label
    /// `stackpilot.dev/target`), including those of removed targets.
    pub children: &'a BTreeMap<String, ObservedChild>,
    /// Alarm readings per placement, per alarm name. A placement or alarm
    /// absent here counts as missing.
    pub alarms: &'a BTreeMap<Placement, BTreeMap<String, AlarmReading>>,
    /// AwsAccount name -> AWS account id, for the accounts the targets name
    /// (and `""` for the operator's own credentials), where known.
    pub account_ids: &'a BTreeMap<String, String>,
    pub now: Timestamp,
    pub timing: Timing,
}

/// Where a target lives: an AwsAccount (by name, `None` for the operator's
/// own credentials) and a region. Alarms are read per placement.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Placement {
    pub account: Option<String>,
    pub region: String,
}

impl Placement {
    pub fn of(target: &DeploymentTarget) -> Self {
        Self {
            account: target.account_ref.as_ref().map(|a| a.name.clone()),
            region: target.region.clone(),
        }
    }
}

/// A kept `apps/v1 ControllerRevision`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptRevision {
    /// Object name.
    pub name: String,
    /// Content hash (its `stackpilot.dev/revision-hash` label).
    pub hash: String,
    /// The `artifact.revision` label it was created with.
    pub label: String,
    /// `ControllerRevision.revision`: increases with every new revision.
    pub number: i64,
    pub created: Timestamp,
}

/// A condition of a child, as read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ChildCondition {
    pub status: String,
    pub reason: String,
    pub message: String,
}

impl ChildCondition {
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// What CloudFormation's change set on a child is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeSetState {
    /// Being created.
    Planning,
    /// Created and waiting to be executed (approved).
    Available,
    Executing,
    Executed,
    Failed,
}

/// A child's latest change set (`status.changeSet`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChildChangeSet {
    pub name: String,
    /// The Stack generation it was made for.
    pub generation: i64,
    pub state: ChangeSetState,
    pub adds: i32,
    pub modifies: i32,
    pub removes: i32,
    /// Logical ids of resources replaced (Replacement True or Conditional).
    pub replaced: Vec<String>,
}

/// The first failed resource of a child and CloudFormation's reason.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChildFailure {
    pub resource: String,
    pub reason: String,
}

/// One child Stack as read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ObservedChild {
    pub generation: i64,
    pub observed_generation: Option<i64>,
    /// Its `stackpilot.dev/revision` annotation.
    pub revision: Option<String>,
    /// Its `stackpilot.dev/approve` annotation.
    pub approved_change_set: Option<String>,
    /// `status.applied.revision`: the revision whose inputs its stack runs.
    pub applied_revision: Option<String>,
    pub ready: Option<ChildCondition>,
    pub stalled: Option<ChildCondition>,
    pub stack_status: Option<String>,
    pub failure: Option<ChildFailure>,
    pub change_set: Option<ChildChangeSet>,
    pub drifted: bool,
    pub outputs: BTreeMap<String, String>,
    /// It has a deletionTimestamp (its stack is being deleted).
    pub deleting: bool,
}

impl ObservedChild {
    /// The Stack has seen its current spec.
    pub fn settled(&self) -> bool {
        self.observed_generation == Some(self.generation)
    }

    /// Written at `revision` and its status describes that spec.
    pub fn at(&self, revision: &str) -> bool {
        self.revision.as_deref() == Some(revision) && self.settled()
    }

    /// Ready with the inputs of `revision` applied.
    pub fn ready_at(&self, revision: &str) -> bool {
        self.at(revision)
            && self.applied_revision.as_deref() == Some(revision)
            && self.ready.as_ref().is_some_and(ChildCondition::is_true)
    }

    /// Stalled at `revision` (a failed update, a failed change set).
    pub fn failed_at(&self, revision: &str) -> bool {
        self.at(revision) && self.stalled.as_ref().is_some_and(ChildCondition::is_true)
    }

    /// It has run (or is running) change set `name` at `revision`, or runs
    /// that revision already: an approval of it has been used.
    pub fn used(&self, name: &str, revision: &str) -> bool {
        let ran = self.change_set.as_ref().is_some_and(|c| {
            c.name == name && !matches!(c.state, ChangeSetState::Planning | ChangeSetState::Available)
        });
        self.revision.as_deref() == Some(revision) && (ran || self.applied_revision.as_deref() == Some(revision))
    }

    /// The change set planned for its current spec, waiting to be released.
    pub fn available_change_set(&self) -> Option<&ChildChangeSet> {
        self.change_set
            .as_ref()
            .filter(|c| self.settled() && c.generation == self.generation && c.state == ChangeSetState::Available)
    }
}

/// A CloudWatch alarm state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlarmValue {
    Ok,
    Alarm,
    InsufficientData,
}

/// One alarm as read: its state, or why it could not be read.
pub type AlarmReading = Result<AlarmState, String>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlarmState {
    pub value: AlarmValue,
    pub reason: String,
    pub changed_at: Timestamp,
}

/// Write (server-side apply) the child Stack of `target`: the revision's
/// template, parameters, tags and capabilities with the target's region,
/// accountRef and parameter overrides, `stackName`, `changes.approval:
/// Manual`, the health alarms as rollback triggers, label
/// `stackpilot.dev/target: <target>`, annotations `stackpilot.dev/revision:
/// <revision>` and, when set, `stackpilot.dev/approve: <approve>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildWrite {
    pub target: String,
    /// The Stack object name, `<deployment>-<target>`.
    pub stack: String,
    /// The revision hash (its content is in the ControllerRevision).
    pub revision: String,
    /// The change set it may execute.
    pub approve: Option<String>,
}

/// A ControllerRevision to create, with `data` = the spec's artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRevision {
    pub name: String,
    pub hash: String,
    pub label: String,
    pub number: i64,
}

/// The outcome of a decision. Apply in this order: create revisions, write
/// status (the intent: releases and waves are recorded before they
/// happen), write children, delete children, delete revisions, publish
/// events, requeue.
#[derive(Debug)]
pub struct Plan {
    pub status: StackDeploymentStatus,
    pub create_revisions: Vec<NewRevision>,
    pub writes: Vec<ChildWrite>,
    /// Stack object names of removed targets.
    pub deletes: Vec<String>,
    /// ControllerRevision names beyond `revisionHistoryLimit`.
    pub delete_revisions: Vec<String>,
    pub events: Vec<Note>,
    pub requeue: Duration,
}

impl Plan {
    pub fn event(&mut self, note: Note) {
        self.events.push(note);
    }
}

/// The CloudFormation stack name of every target.
pub fn stack_name(o: &Observed) -> String {
    o.spec
        .stack_name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", o.namespace, o.name))
}

/// The child Stack object name of a target.
pub fn child_name(deployment: &str, target: &str) -> String {
    format!("{deployment}-{target}")
}

/// The hash a request annotation binds to: `<hash>` or `<hash>@<token>`.
pub fn bound_hash(value: &str) -> &str {
    value.split('@').next().unwrap_or(value).trim()
}

/// A revision for messages: `v42 (3f2a9c1e)`.
pub fn describe(revision: &RevisionId) -> String {
    let short: String = revision.hash.chars().take(8).collect();
    format!("{} ({short})", revision.revision)
}

impl ObservedChild {
    /// Reads a child Stack: the revision it applied is the one it echoes in
    /// `status.applied.revision` (the annotation of the inputs it applied).
    pub fn from_stack(stack: &crate::api::Stack) -> Self {
        let generation = stack.metadata.generation.unwrap_or(0);
        let annotations = stack.metadata.annotations.clone().unwrap_or_default();
        let status = stack.status.clone().unwrap_or_default();
        let condition = |type_: &str| {
            status
                .conditions
                .iter()
                .find(|c| c.type_ == type_)
                .map(|c| ChildCondition {
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                })
        };
        let revision = annotations.get(REVISION_ANNOTATION).cloned();
        let applied_revision = status.applied.as_ref().and_then(|a| a.revision.clone());
        Self {
            generation,
            observed_generation: status.observed_generation,
            approved_change_set: annotations.get(CHILD_APPROVE_ANNOTATION).cloned(),
            applied_revision,
            ready: condition("Ready"),
            stalled: condition("Stalled"),
            stack_status: status.stack_status.clone(),
            // Newest first; "Resource creation cancelled" follows the cause.
            failure: status
                .recent_failures
                .iter()
                .find(|f| !f.reason.contains("cancelled"))
                .or(status.recent_failures.first())
                .map(|f| ChildFailure {
                    resource: f.logical_id.clone(),
                    reason: f.reason.clone(),
                }),
            change_set: status.change_set.as_ref().map(child_change_set),
            drifted: status.drift.as_ref().is_some_and(|d| d.status == DriftState::Drifted),
            outputs: status.outputs.clone(),
            deleting: stack.metadata.deletion_timestamp.is_some(),
            revision,
        }
    }
}

fn child_change_set(summary: &crate::api::ChangeSetSummary) -> ChildChangeSet {
    use crate::api::{ChangeSetState as Cs, ExecutionState as Ex};
    let state = match (summary.status, summary.execution_status) {
        (Some(Cs::Failed), _) => ChangeSetState::Failed,
        (_, Some(Ex::Available)) => ChangeSetState::Available,
        (_, Some(Ex::ExecuteInProgress)) => ChangeSetState::Executing,
        (_, Some(Ex::ExecuteComplete)) => ChangeSetState::Executed,
        (_, Some(Ex::ExecuteFailed | Ex::Obsolete)) => ChangeSetState::Failed,
        _ => ChangeSetState::Planning,
    };
    let count = |action: ChangeAction| {
        let n = summary.changes.iter().filter(|c| c.action == action).count();
        i32::try_from(n).unwrap_or(i32::MAX)
    };
    ChildChangeSet {
        name: summary.name.clone(),
        generation: summary.generation,
        state,
        adds: count(ChangeAction::Add),
        modifies: count(ChangeAction::Modify),
        removes: count(ChangeAction::Remove),
        replaced: summary
            .changes
            .iter()
            .filter(|c| matches!(c.replacement, Some(Replacement::True | Replacement::Conditional)))
            .map(|c| c.logical_id.clone())
            .collect(),
    }
}
