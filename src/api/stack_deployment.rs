//! `StackDeployment`: one template revision rolled out to many targets.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::stack::Approval;
use super::template::{AccountRef, Capability, StackParameter, TemplateSpec};

/// One template revision rolled out to many regions and accounts with a
/// strategy, health gates, automatic rollback and a revision history.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[kube(
    group = "stackpilot.dev",
    version = "v1alpha1",
    kind = "StackDeployment",
    namespaced,
    status = "StackDeploymentStatus",
    shortname = "sdep",
    category = "stackpilot",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".spec.artifact.revision"}"#,
    printcolumn = r#"{"name":"Stable","type":"string","jsonPath":".status.stableRevision.revision"}"#,
    printcolumn = r#"{"name":"Updated","type":"string","jsonPath":".status.updated"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.stackName) == has(oldSelf.stackName) && (!has(self.stackName) || self.stackName == oldSelf.stackName)").message("stackName is immutable"))]
pub struct StackDeploymentSpec {
    /// What is deployed: a template revision and its parameters.
    pub artifact: Artifact,
    /// CloudFormation stack name used in every target. Defaults to
    /// `<namespace>-<name>`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[a-zA-Z][-a-zA-Z0-9]*$"))]
    pub stack_name: Option<String>,
    /// Where the artifact goes: one Stack per target, in this order.
    #[schemars(length(min = 1, max = 200))]
    #[x_kube(validation = Rule::new("self.all(t, self.exists_one(u, u.name == t.name))").message("target names must be unique"))]
    pub targets: Vec<DeploymentTarget>,
    /// How the rollout moves through the targets.
    #[serde(default)]
    pub strategy: Strategy,
    /// `Automatic` rolls a new revision out at once. `Manual` first plans
    /// every target's change set (`status.preview`) and waits for the
    /// annotation `stackpilot.dev/approve-revision: <revision hash>`.
    #[serde(default)]
    pub approval: Approval,
    /// What a wave must show before the rollout moves on.
    #[serde(default)]
    pub health: HealthGates,
    /// Automatic rollback on failure.
    #[serde(default)]
    pub rollback: RollbackSpec,
    /// How many previous revisions to keep (as ControllerRevisions) besides
    /// the current and the stable one.
    #[serde(default = "default_history_limit")]
    #[schemars(range(min = 0, max = 100))]
    pub revision_history_limit: i32,
    /// Run a kept revision instead of `artifact` (GitOps rollback), by its
    /// `revision` label or hash. Clear it to roll `artifact` out again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<RevisionRef>,
    /// Hold the rollout where it is: no new wave starts and no further
    /// target is released (the annotation `stackpilot.dev/pause` does the same).
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,
    /// Pause reconciliation altogether.
    #[serde(default, skip_serializing_if = "is_false")]
    pub suspend: bool,
}

fn default_history_limit() -> i32 {
    3
}

fn is_false(value: &bool) -> bool {
    !value
}

/// A template revision with its parameters.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// A label for this revision, e.g. `v42` or a commit SHA.
    #[schemars(length(min = 1, max = 63))]
    pub revision: String,
    /// The template.
    pub template: TemplateSpec,
    /// Parameters for every target (targets may override them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub parameters: Vec<StackParameter>,
    /// Tags for every target stack.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Capabilities to acknowledge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    pub capabilities: Vec<Capability>,
}

/// One place the artifact is deployed to.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentTarget {
    /// Target name, unique in this deployment (used in the Stack name).
    #[schemars(length(min = 1, max = 40), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// AWS region.
    #[schemars(regex(pattern = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$"))]
    pub region: String,
    /// The AwsAccount to deploy into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_ref: Option<AccountRef>,
    /// Parameters that override the artifact's for this target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub parameters: Vec<StackParameter>,
}

/// Rollout strategy. `type` selects which of `rolling` or `canary` applies.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type != 'Canary' || has(self.canary)").message("strategy.canary is required when type is Canary"))]
#[x_kube(validation = Rule::new("self.type != 'Rolling' || has(self.rolling)").message("strategy.rolling is required when type is Rolling"))]
pub struct Strategy {
    /// `AllAtOnce`, `Rolling` or `Canary`.
    #[serde(rename = "type", default)]
    pub strategy_type: StrategyType,
    /// Settings for `Rolling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling: Option<RollingStrategy>,
    /// Settings for `Canary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum StrategyType {
    #[default]
    AllAtOnce,
    Rolling,
    Canary,
}

/// Targets in waves of at most `maxConcurrent`, in target order. A count
/// or percentage out of range is refused by the controller with a Stalled
/// condition: a CEL rule on these fields would push the Pipeline CRD, which
/// embeds this type in every deploy action, over the API server's CEL cost
/// budget.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollingStrategy {
    /// Targets updated at the same time: a count (`2`) or a percentage of
    /// the targets (`"25%"`, rounded up, at least one).
    pub max_concurrent: IntOrString,
    /// Failed targets tolerated before the rollout stops (and rolls back):
    /// a count or a percentage of the targets (rounded down). Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_tolerance: Option<IntOrString>,
}

/// Explicit steps of targets with pauses between them.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStrategy {
    /// Steps in order; targets not named in any step go in a last step.
    #[schemars(length(min = 1, max = 50))]
    pub steps: Vec<CanaryStep>,
}

/// One canary step: named targets, or a percentage of all targets.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.targets) && size(self.targets) > 0) != has(self.percentage)").message("a canary step names either targets or a percentage"))]
pub struct CanaryStep {
    /// Target names deployed in this step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub targets: Vec<String>,
    /// Percentage of all targets that run the new revision once this step is
    /// done (cumulative, rounded up), taken in target order from the
    /// targets no step names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub percentage: Option<i32>,
    /// A pause after this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
}

/// A pause: timed with `duration`, or manual (ended by the annotation
/// `stackpilot.dev/promote`) without one.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pause {
    /// How long to pause, e.g. `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub duration: Option<String>,
}

/// Health gates of a wave.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthGates {
    /// CloudWatch alarm names, read in each target's account and region.
    /// They must never be in ALARM from a wave's start through `bakeTime`,
    /// and are passed to CloudFormation as rollback triggers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub alarms: Vec<String>,
    /// How long CloudFormation keeps watching the alarms after an update
    /// (rollback trigger monitoring time), e.g. `10m`; at most `3h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub monitoring_time: Option<String>,
    /// How long a wave must stay healthy once every target is Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub bake_time: Option<String>,
    /// How long a target may take from its wave's start to Ready at the new
    /// revision before it counts as failed. Default `30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub progress_deadline: Option<String>,
    /// Treat an alarm that is missing or cannot be read as healthy instead
    /// of failing the gate.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ignore_alarm_read_failure: bool,
}

/// Rollback behaviour.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackSpec {
    /// Roll every target that took a failed revision back to the stable one.
    #[serde(default = "default_true")]
    pub automatic: bool,
}

impl Default for RollbackSpec {
    fn default() -> Self {
        Self { automatic: true }
    }
}

fn default_true() -> bool {
    true
}

/// A kept revision.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionRef {
    /// The `artifact.revision` label or the hash of a kept revision.
    #[schemars(length(min = 1, max = 63))]
    pub revision: String,
}

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
