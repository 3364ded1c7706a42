//! `StackDeployment`: one template revision rolled out to many targets.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    printcolumn = r#"{"name":"Current","type":"string","jsonPath":".status.currentRevision"}"#,
    printcolumn = r#"{"name":"Updated","type":"integer","jsonPath":".status.updatedTargets"}"#,
    printcolumn = r#"{"name":"Progressing","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Progressing\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct StackDeploymentSpec {
    /// What is deployed: a template revision and its parameters.
    pub artifact: Artifact,
    /// CloudFormation stack name used in every target. Defaults to
    /// `<namespace>-<name>`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[a-zA-Z][-a-zA-Z0-9]*$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("stackName is immutable"))]
    pub stack_name: Option<String>,
    /// Where the artifact goes: one Stack per target.
    #[schemars(length(min = 1, max = 200))]
    #[x_kube(validation = Rule::new("self.all(t, self.exists_one(u, u.name == t.name))").message("target names must be unique"))]
    pub targets: Vec<DeploymentTarget>,
    /// How the rollout moves through the targets.
    #[serde(default)]
    pub strategy: Strategy,
    /// What a target must show before the rollout moves on.
    #[serde(default)]
    pub health: HealthGates,
    /// Automatic rollback on failure.
    #[serde(default)]
    pub rollback: RollbackSpec,
    /// How many previous revisions to keep (as ControllerRevisions).
    #[serde(default = "default_history_limit")]
    #[schemars(range(min = 0, max = 100))]
    pub revision_history_limit: i32,
    /// Roll back to a kept revision by its `revision` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<RevisionRef>,
    /// Hold the rollout where it is (a manual pause).
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

/// Targets in waves of at most `maxConcurrent`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollingStrategy {
    /// Targets updated at the same time.
    #[schemars(range(min = 1))]
    pub max_concurrent: i32,
    /// Failed targets tolerated before the rollout stops (and rolls back).
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub failure_tolerance: i32,
}

/// Explicit steps of targets with pauses between them.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStrategy {
    /// Steps in order; targets not named in any step go in a last step.
    #[schemars(length(min = 1, max = 50))]
    pub steps: Vec<CanaryStep>,
}

/// One canary step.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Target names deployed in this step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub targets: Vec<String>,
    /// A pause after this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
}

/// A pause: timed with `duration`, or manual (resumed by the annotation
/// `stackpilot.dev/resume`) without one.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pause {
    /// How long to pause, e.g. `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub duration: Option<String>,
}

/// Health gates for a target.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthGates {
    /// CloudWatch alarms (names or ARNs) that must stay OK during the bake time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub alarms: Vec<String>,
    /// How long a target must stay healthy before it counts as done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub bake_time: Option<String>,
}

/// Rollback behaviour.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackSpec {
    /// Roll every updated target back to the last good revision on failure.
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
    /// The `artifact.revision` label of a kept revision.
    #[schemars(length(min = 1, max = 63))]
    pub revision: String,
}

/// Observed state of a StackDeployment.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StackDeploymentStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling, Stalled, Progressing, Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The revision every target ran before the current rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,
    /// The revision being rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<String>,
    /// Targets already on the update revision.
    #[serde(default)]
    pub updated_targets: i32,
    /// Index of the current canary step or rolling wave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<i32>,
    /// When the current pause ends (timed pauses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_until: Option<Time>,
    /// Per-target progress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetStatus>,
    /// Kept revisions, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<RevisionRecord>,
}

/// Where one target stands.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    /// Target name.
    pub name: String,
    /// The Stack object for this target.
    pub stack: String,
    /// Revision the target runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Pending, Deploying, Baking, Healthy, Failed, RolledBack.
    pub phase: String,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A revision in the history.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionRecord {
    /// The `artifact.revision` label.
    pub revision: String,
    /// The ControllerRevision that keeps it.
    pub controller_revision: String,
    /// When the rollout of it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_at: Option<Time>,
    /// Succeeded, Failed, RolledBack.
    pub outcome: String,
}
