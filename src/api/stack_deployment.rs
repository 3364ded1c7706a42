//! `StackDeployment`: one template revision rolled out to many targets.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::stack::Approval;
use super::stack_deployment_status::StackDeploymentStatus;
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
    /// Keyed by name: the API server refuses two targets of one name.
    // A list map, not a CEL rule comparing every pair: that rule ran on
    // every status write too and took ~70 ms per write at 100 targets.
    #[schemars(length(min = 1, max = 200))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
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

pub(super) fn is_false(value: &bool) -> bool {
    !value
}

/// A template revision with its parameters.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.revision) && size(self.revision) > 0) || has(self.template.sourceRef)").message("artifact.revision is required unless the template comes from template.sourceRef (then the Flux artifact revision is used)"))]
pub struct Artifact {
    /// A label for this revision, e.g. `v42` or a commit SHA. With
    /// `template.sourceRef` leave it empty: the Flux artifact revision
    /// (`main@sha1:...`) is used.
    #[serde(default)]
    #[schemars(length(max = 63))]
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
