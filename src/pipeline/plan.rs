//! The vocabulary of the Pipeline decision, imported by every `decide/` file
//! and by nothing it imports: what decide looks at ([`Observed`]), what it
//! asks for ([`Plan`]), the names it gives children and Jobs, and the
//! annotations people use.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use k8s_openapi::api::batch::v1::Job;
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub use crate::api::{
    Action, ActionPhase, ActionStatus, ApprovalAction, ApprovalDecision, ApprovalRecord, DeployAction,
    DeploymentTargets, Execution, ExecutionMode, ExecutionPhase, HandledRequest, OnFailure, PipelineSpec,
    PipelineStatus, RequestOutcome, RollbackPhase, SourceRevision, StackParameter, StackTarget, Stage, StagePass,
    StageRollback, TestAction, WaitAction, parse_duration,
};
pub use crate::runtime::events::Note;

/// On every child: the hash of the execution's artifact it should run.
pub const REVISION_ANNOTATION: &str = "stackpilot.dev/revision";
/// On a child Stack: set to a new value to make it try a failed update again
/// (the Stack controller's own annotation).
pub const RECONCILE_REQUESTED_AT: &str = "stackpilot.dev/reconcile-requested-at";
/// Approve one action: a JSON [`ApprovalRequest`].
pub const APPROVE_ANNOTATION: &str = "stackpilot.dev/approve";
/// Reject one action: a JSON [`ApprovalRequest`].
pub const REJECT_ANNOTATION: &str = "stackpilot.dev/reject";
/// Retry a failed or stopped execution's stage: a JSON [`RetryRequest`].
pub const RETRY_ANNOTATION: &str = "stackpilot.dev/retry";
/// Stop an execution: a JSON [`StopRequest`].
pub const STOP_ANNOTATION: &str = "stackpilot.dev/stop";

/// Labels on every Job (and child) the pipeline creates.
pub const LABEL_PIPELINE: &str = "stackpilot.dev/pipeline";
pub const LABEL_EXECUTION: &str = "stackpilot.dev/execution";
pub const LABEL_STAGE: &str = "stackpilot.dev/stage";
pub const LABEL_ACTION: &str = "stackpilot.dev/action";
pub const LABEL_ATTEMPT: &str = "stackpilot.dev/attempt";

/// Environment variables every test Job gets besides the outputs.
pub const ENV_REVISION: &str = "PIPELINE_REVISION";
pub const ENV_EXECUTION: &str = "PIPELINE_EXECUTION";

/// `stackpilot.dev/approve` and `stackpilot.dev/reject`, e.g.
/// `{"id":"2025-06-01T10:00:00Z-alice","target":"e3-1a2b3c4d/prod/gate","by":"alice","comment":"ok"}`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequest {
    /// Unique per request; a request id already handled does nothing.
    pub id: String,
    /// `<execution>/<stage>/<action>`.
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// `stackpilot.dev/retry`, e.g. `{"id":"r1","execution":"e3-1a2b3c4d","all":false}`:
/// re-runs the failed (or, with `all`, every) action of the stage where the
/// execution failed or stopped.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RetryRequest {
    pub id: String,
    pub execution: String,
    #[serde(default)]
    pub all: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// `stackpilot.dev/stop`, e.g. `{"id":"s1","execution":"e3-1a2b3c4d","abandon":false}`:
/// starts nothing more; running actions finish (or, with `abandon`, are left).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StopRequest {
    pub id: String,
    pub execution: String,
    #[serde(default)]
    pub abandon: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// How often to look again and how long to back off.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// While children or Jobs run (their watches also wake the pipeline).
    pub in_flight: Duration,
    /// When nothing is happening.
    pub resync: Duration,
    /// While the source cannot be read.
    pub source_retry: Duration,
    /// How often an S3 source is asked for its current version (HeadObject).
    pub source_poll: Duration,
    /// First automatic retry delay; doubles per retry.
    pub retry_base: Duration,
    /// Longest automatic retry delay.
    pub retry_max: Duration,
    /// How long a created Job may be missing from the cache before it counts as lost.
    pub job_grace: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            in_flight: Duration::from_secs(30),
            resync: Duration::from_secs(600),
            source_retry: Duration::from_secs(30),
            source_poll: Duration::from_secs(60),
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(600),
            job_grace: Duration::from_secs(120),
        }
    }
}

/// The source as the wiring read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceObserved {
    /// Its revision label and the hash of its content.
    Found(SourceRevision),
    /// It cannot be read (missing ConfigMap, S3 object or version, access
    /// denied); `reason` is CamelCase.
    Problem { reason: String, message: String },
}

/// A child Stack or StackDeployment, as its owner sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChildObserved {
    /// Its `stackpilot.dev/revision` annotation.
    pub revision: Option<String>,
    /// Its `stackpilot.dev/reconcile-requested-at` annotation.
    pub retry_request: Option<String>,
    /// The revision it reports as applied (a Stack's `status.applied.revision`;
    /// a StackDeployment's `updateRevision` once it is the stable one).
    pub applied_revision: Option<String>,
    /// Ready=True.
    pub ready: bool,
    /// Stalled=True (or a failed or rejected rollout).
    pub failure: Option<ChildFailure>,
    /// What its change set (or fleet preview) plans, when it has one.
    pub planned: Option<PlannedChanges>,
    /// Its outputs (sensitive ones are never in status).
    pub outputs: BTreeMap<String, String>,
}

/// Why a child cannot progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildFailure {
    pub reason: String,
    pub message: String,
    /// The failure condition's `lastTransitionTime`: failures older than the
    /// current attempt are the previous attempt's.
    pub since: Timestamp,
}

/// A change set (or fleet preview) summed up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlannedChanges {
    pub add: u32,
    pub modify: u32,
    pub remove: u32,
    pub replace: u32,
}

/// A test Job, as its owner sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobObserved {
    /// `Complete=True`.
    pub complete: bool,
    /// `Failed=True` with its reason (`BackoffLimitExceeded`,
    /// `DeadlineExceeded`, ...) and message.
    pub failed: Option<(String, String)>,
}

/// Everything the decision looks at.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub generation: i64,
    pub spec: &'a PipelineSpec,
    pub annotations: &'a BTreeMap<String, String>,
    pub previous: &'a PipelineStatus,
    pub source: &'a SourceObserved,
    /// Owned Stacks and StackDeployments by object name ([`child_name`]).
    pub children: &'a BTreeMap<String, ChildObserved>,
    /// Owned Jobs by name ([`job_name`]).
    pub jobs: &'a BTreeMap<String, JobObserved>,
    pub now: Timestamp,
    pub timing: Timing,
}

/// Which kind of child a deploy action owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildKind {
    Stack,
    StackDeployment,
}

/// Write (server-side apply) one child at one revision.
#[derive(Clone, Debug, PartialEq)]
pub struct ChildWrite {
    pub stage: String,
    pub action: String,
    /// Object name ([`child_name`]).
    pub name: String,
    pub kind: ChildKind,
    /// The artifact to write: the snapshot kept under `revision.hash`.
    pub revision: SourceRevision,
    /// The value of [`REVISION_ANNOTATION`]: a hash of the artifact's hash,
    /// the deploy settings and the resolved parameters, which the child
    /// echoes once it has applied them.
    pub deploy_revision: String,
    /// The action's deploy settings, to put around the artifact.
    pub deploy: DeployAction,
    /// The action's parameter overrides with every `#{...}` resolved.
    pub parameters: Vec<StackParameter>,
    /// Value for [`RECONCILE_REQUESTED_AT`]: one per attempt, so a child
    /// that failed before tries again.
    pub retry_request: String,
}

/// Keep the source content just read under its hash, so an execution (or a
/// queued revision, or a later rollback) deploys exactly it after the source moved on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub revision: SourceRevision,
}

/// The outcome of a decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The new status (write it when it differs from the previous one).
    pub status: PipelineStatus,
    /// Children to apply (idempotent; repeated while the child lags).
    pub child_writes: Vec<ChildWrite>,
    /// Jobs to create, complete with owner reference and env. Create them
    /// before writing status; `AlreadyExists` is success.
    pub job_creates: Vec<Job>,
    /// Snapshots to store before anything else.
    pub snapshots: Vec<Snapshot>,
    /// Hashes of every snapshot still needed; delete the others.
    pub keep_snapshots: Vec<String>,
    /// Approvals nobody may give any more: `<execution>/<stage>/<action>`.
    pub withdrawn_approvals: Vec<String>,
    /// One Event per transition.
    pub notes: Vec<Note>,
    /// Look again after this long.
    pub requeue: Option<Duration>,
}

impl Plan {
    pub fn new(status: PipelineStatus) -> Self {
        Self {
            status,
            child_writes: Vec::new(),
            job_creates: Vec::new(),
            snapshots: Vec::new(),
            keep_snapshots: Vec::new(),
            withdrawn_approvals: Vec::new(),
            notes: Vec::new(),
            requeue: None,
        }
    }

    /// Asks to look again after `after` at the latest.
    pub fn requeue_after(&mut self, after: Duration) {
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }

    /// Asks to look again at `at` (now at the latest).
    pub fn requeue_at(&mut self, now: Timestamp, at: Timestamp) {
        let after = if at > now {
            at.duration_since(now).unsigned_abs()
        } else {
            Duration::ZERO
        };
        self.requeue_after(after);
    }

    pub fn note(&mut self, note: Note) {
        self.notes.push(note);
    }
}

/// `at + after`, saturating.
pub fn later(at: Timestamp, after: Duration) -> Timestamp {
    SignedDuration::try_from(after)
        .ok()
        .and_then(|d| at.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// A short lowercase hex hash of the parts, length-prefixed.
pub fn short_hash(parts: &[&str], len: usize) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let mut hex = hex::encode(hasher.finalize());
    hex.truncate(len);
    hex
}

/// The id of the `sequence`th execution: `e<sequence>-<hash>`, the hash of
/// pipeline uid, revision and sequence.
pub fn execution_id(uid: &str, revision: &SourceRevision, sequence: i64) -> String {
    let sequence = sequence.to_string();
    format!(
        "e{sequence}-{}",
        short_hash(&[uid, &revision.revision, &revision.hash, &sequence], 8)
    )
}

/// `<execution>/<stage>/<action>`: what an approval names.
pub fn action_path(execution: &str, stage: &str, action: &str) -> String {
    format!("{execution}/{stage}/{action}")
}

/// A name of at most `max` characters: `base` as is when it fits, otherwise
/// cut and suffixed with a hash of the whole.
fn fit(base: &str, max: usize) -> String {
    if base.len() <= max {
        return base.to_string();
    }
    let hash = short_hash(&[base], 8);
    let cut = base[..max - 9].trim_end_matches('-');
    format!("{cut}-{hash}")
}

/// The child object of a deploy action, reused by every execution.
pub fn child_name(pipeline: &str, stage: &str, action: &str) -> String {
    fit(&format!("{pipeline}-{stage}-{action}"), 253)
}

/// The Job of one attempt of a test action: never the same for two attempts
/// or executions, at most 63 characters (it becomes a label value).
pub fn job_name(pipeline: &str, execution: &str, stage: &str, action: &str, attempt: i32) -> String {
    let suffix = format!("-{execution}-{attempt}");
    format!(
        "{}{suffix}",
        fit(&format!("{pipeline}-{stage}-{action}"), 63 - suffix.len())
    )
}

/// What looking at one running action found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionCheck {
    Running,
    Passed {
        outputs: BTreeMap<String, String>,
    },
    /// `retryable: false` for failures a retry cannot fix (a rejection, a bad variable).
    Failed {
        reason: String,
        message: String,
        retryable: bool,
    },
}

impl ActionCheck {
    pub fn passed() -> Self {
        ActionCheck::Passed {
            outputs: BTreeMap::new(),
        }
    }

    pub fn failed(reason: &str, message: impl Into<String>, retryable: bool) -> Self {
        ActionCheck::Failed {
            reason: reason.into(),
            message: message.into(),
            retryable,
        }
    }
}

/// The status entry of one action of an execution.
pub fn find_action<'e>(execution: &'e Execution, stage: &str, action: &str) -> Option<&'e ActionStatus> {
    execution
        .actions
        .iter()
        .find(|a| a.stage == stage && a.action == action)
}

/// The status entry of one action, added (Pending) when it has none yet.
pub fn action_entry<'e>(execution: &'e mut Execution, stage: &str, action: &str) -> &'e mut ActionStatus {
    let index = match execution
        .actions
        .iter()
        .position(|a| a.stage == stage && a.action == action)
    {
        Some(index) => index,
        None => {
            execution.actions.push(ActionStatus {
                stage: stage.into(),
                action: action.into(),
                ..ActionStatus::default()
            });
            execution.actions.len() - 1
        }
    };
    &mut execution.actions[index]
}

/// The stage of the spec with this name.
pub fn find_stage<'s>(spec: &'s PipelineSpec, name: &str) -> Option<&'s Stage> {
    spec.stages.iter().find(|s| s.name == name)
}

/// The ControllerRevision that keeps one artifact of a pipeline.
pub fn snapshot_name(pipeline: &str, hash: &str) -> String {
    let suffix = format!("-{hash}");
    format!("{}{suffix}", fit(pipeline, 253 - suffix.len()))
}
