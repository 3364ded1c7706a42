//! What a StackDeployment reports: the rollout's memory (waves, releases,
//! rejections), per-target state, the fleet preview and the history.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::stack_deployment::{Pause, is_false};

/// Observed state of a StackDeployment. Everything the rollout needs to
/// resume after a restart lives here (waves, releases, rejections).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StackDeploymentStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling, Stalled, Progressing, ApprovalRequired, Degraded, Drifted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Where the deployment stands, in one word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<DeploymentPhase>,
    /// The last revision that succeeded on every target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<RevisionId>,
    /// The revision the spec asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<RevisionId>,
    /// Targets Ready at the update revision, out of all, e.g. `3/5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
    /// The latest rollout (or rollback), running or finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// Waves of the latest rollout.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<WaveStatus>,
    /// Per-target progress, in target order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetStatus>,
    /// What the revision waiting for approval (or the first wave) plans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<FleetPreview>,
    /// Revisions that failed and are not rolled out again by themselves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected_revisions: Vec<RejectedRevision>,
    /// Kept revisions, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<RevisionRecord>,
    /// Annotation values already acted on (or refused), so none acts twice.
    #[serde(default, skip_serializing_if = "HandledRequests::is_empty")]
    pub handled: HandledRequests,
}

/// Where the deployment stands.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum DeploymentPhase {
    /// Every target runs the update revision.
    Ready,
    /// A rollout is moving through its waves.
    Progressing,
    /// The fleet preview waits for approval of the revision.
    WaitingForApproval,
    /// A wave finished and the rollout waits (timed or manual pause, or paused by a person).
    Paused,
    /// Targets go back to the stable revision.
    RollingBack,
    /// The rollout finished with failed targets within the tolerance.
    Degraded,
    /// The update revision failed and was rejected.
    Rejected,
    /// The spec cannot be rolled out as written.
    Invalid,
    /// `spec.suspend` is set.
    Suspended,
}

/// A revision: its label and its content hash.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionId {
    /// The `artifact.revision` label.
    pub revision: String,
    /// Hash of template, parameters, tags and capabilities.
    pub hash: String,
}

/// The latest rollout.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The revision rolled out.
    pub revision: RevisionId,
    /// `Update` (a new revision through the strategy) or `Rollback` (back
    /// to a known revision, all at once).
    pub kind: RolloutKind,
    /// Where it stands.
    pub phase: RolloutPhase,
    /// Index of the current wave.
    pub wave: i32,
    /// When it started.
    pub started: Time,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<Time>,
    /// Manual approval of this revision was given.
    #[serde(default, skip_serializing_if = "is_false")]
    pub approved: bool,
    /// `promote-full`: remaining pauses and bake times are skipped.
    #[serde(default, skip_serializing_if = "is_false")]
    pub promoted_full: bool,
    /// Why it ended (failure, abort, rollback request), if it did not succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum RolloutKind {
    Update,
    Rollback,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum RolloutPhase {
    WaitingForApproval,
    Progressing,
    Paused,
    RollingBack,
    Succeeded,
    /// Finished with failed targets within the tolerance.
    Degraded,
    /// Rejected and rolled back (or left, without automatic rollback).
    Failed,
    /// Replaced by a newer revision before it finished.
    Superseded,
}

impl RolloutPhase {
    /// Still running: waves, approval or rollback outstanding.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            RolloutPhase::WaitingForApproval
                | RolloutPhase::Progressing
                | RolloutPhase::Paused
                | RolloutPhase::RollingBack
        )
    }
}

/// One wave of the latest rollout.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaveStatus {
    /// Position, from 0.
    pub index: i32,
    /// Target names in this wave.
    pub targets: Vec<String>,
    /// Where it stands.
    pub phase: WavePhase,
    /// The pause after it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
    /// When its targets were first written at the revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Time>,
    /// When every target was first seen Ready at the revision (bake start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_since: Option<Time>,
    /// When its pause began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<Time>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<Time>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum WavePhase {
    Pending,
    Running,
    Baking,
    Paused,
    Succeeded,
    Failed,
}

/// Where one target stands.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    /// Target name.
    pub name: String,
    /// The Stack object for this target.
    pub stack: String,
    /// AWS account id (or the AwsAccount name until it is known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// AWS region.
    pub region: String,
    /// Hash of the revision the target's stack has applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Hash of the revision its Stack object is written at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_revision: Option<String>,
    /// Where it stands.
    #[serde(default)]
    pub phase: TargetPhase,
    /// The change set the deployment released (approved) on its Stack, and
    /// for which revision: recorded before the release, so it happens once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<Release>,
    /// Why it failed in the latest rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<TargetFailureStatus>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Stack outputs (the Stack already leaves out sensitive ones).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
    /// Its stack's resources differ from the template.
    #[serde(default, skip_serializing_if = "is_false")]
    pub drifted: bool,
}

/// Why a target failed.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetFailureStatus {
    /// What happened, in words (CloudFormation's reason, the alarm's state reason).
    pub reason: String,
    /// The failed resource (logical id), if CloudFormation named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The alarm that failed the gate, if it was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm: Option<String>,
    /// When it was seen.
    pub at: Time,
}

/// A change set released on a target's Stack.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    /// Revision hash.
    pub revision: String,
    /// Change set name written to the Stack's `stackpilot.dev/approve`.
    pub change_set: String,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum TargetPhase {
    /// Not yet part of a started wave.
    #[default]
    Pending,
    /// Its change set is planned and waits for the revision's approval.
    WaitingForApproval,
    Deploying,
    Baking,
    Healthy,
    Failed,
    RollingBack,
    RolledBack,
}

/// The planned changes of a revision, per target and in total.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetPreview {
    /// The revision planned.
    pub revision: RevisionId,
    /// Every previewed target's change set is known.
    pub complete: bool,
    pub adds: i32,
    pub modifies: i32,
    pub removes: i32,
    pub replacements: i32,
    /// Per target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetPreview>,
}

/// The planned changes of one target.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetPreview {
    pub name: String,
    /// The change set, once planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_set: Option<String>,
    pub adds: i32,
    pub modifies: i32,
    pub removes: i32,
    pub replacements: i32,
    /// Logical ids of resources that will be replaced (or may be).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaced: Vec<String>,
}

/// A revision that failed (or was aborted) and is not rolled out again by
/// itself; it runs again when the artifact changes or on `retry`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RejectedRevision {
    pub revision: RevisionId,
    /// What failed, in words.
    pub reason: String,
    /// The first failed target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Its failed resource (logical id), if CloudFormation named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The alarm that failed the gate, if it was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm: Option<String>,
    /// When it was rejected.
    pub rejected_at: Time,
}

/// A revision in the history.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionRecord {
    /// The `artifact.revision` label.
    pub revision: String,
    /// Its content hash.
    #[serde(default)]
    pub hash: String,
    /// The ControllerRevision that keeps it.
    pub controller_revision: String,
    /// When its latest rollout finished (or started, while it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_at: Option<Time>,
    /// How its latest rollout went.
    #[serde(default)]
    pub outcome: RevisionOutcome,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum RevisionOutcome {
    /// Kept, never rolled out.
    #[default]
    Pending,
    Progressing,
    Succeeded,
    /// Finished with failed targets within the tolerance.
    Degraded,
    Failed,
    RolledBack,
    Superseded,
}

/// The annotation values already acted on (or refused).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HandledRequests {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote_full: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<String>,
}

impl HandledRequests {
    pub fn is_empty(&self) -> bool {
        self == &HandledRequests::default()
    }
}
