//! `Pipeline`: stages of actions that deploy, wait for approval, bake and
//! test, triggered by a new source revision.

use k8s_openapi::api::batch::v1::JobTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::stack_deployment::Artifact;
use super::template::{AccountRef, StackParameter};

/// Stages of actions (same `runOrder` runs in parallel) that deploy, wait
/// for approval, bake and test each new source revision.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[kube(
    group = "stackpilot.dev",
    version = "v1alpha1",
    kind = "Pipeline",
    namespaced,
    status = "PipelineStatus",
    shortname = "cfpipe",
    category = "stackpilot",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".spec.source.revision"}"#,
    printcolumn = r#"{"name":"Stage","type":"string","jsonPath":".status.currentExecution.stage"}"#,
    printcolumn = r#"{"name":"Approval","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"ApprovalRequired\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PipelineSpec {
    /// The source: a new `revision` starts an execution.
    pub source: PipelineSource,
    /// What happens when a new revision arrives while one runs: `Superseded`
    /// replaces the waiting one at the next stage boundary; `Queued` runs
    /// every revision in order.
    #[serde(default)]
    pub execution_mode: ExecutionMode,
    /// Stages in order.
    #[schemars(length(min = 1, max = 20))]
    #[x_kube(validation = Rule::new("self.all(s, self.exists_one(t, t.name == s.name))").message("stage names must be unique"))]
    pub stages: Vec<Stage>,
    /// How many finished executions to keep in status.
    #[serde(default = "default_history_limit")]
    #[schemars(range(min = 0, max = 100))]
    pub execution_history_limit: i32,
    /// Pause reconciliation.
    #[serde(default, skip_serializing_if = "is_false")]
    pub suspend: bool,
}

fn default_history_limit() -> i32 {
    10
}

fn is_false(value: &bool) -> bool {
    !value
}

/// The pipeline's source: an inline artifact or a reference to one.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.artifact) != has(self.artifactRef)").message("source needs exactly one of artifact or artifactRef"))]
pub struct PipelineSource {
    /// The source revision label; changing it starts an execution.
    #[schemars(length(min = 1, max = 63))]
    pub revision: String,
    /// The artifact (template and parameters) itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Artifact>,
    /// A ConfigMap in this namespace holding `template` (and optionally
    /// `parameters.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_ref: Option<ArtifactRef>,
}

/// A ConfigMap that holds an artifact.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactRef {
    /// ConfigMap name.
    #[schemars(length(min = 1, max = 253))]
    pub config_map: String,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum ExecutionMode {
    #[default]
    Superseded,
    Queued,
}

/// A stage: actions grouped by `runOrder`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    /// Stage name, unique in the pipeline.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Actions; the same `runOrder` runs in parallel, lower first.
    #[schemars(length(min = 1, max = 20))]
    pub actions: Vec<Action>,
    /// Stop executions before entering this stage, with a reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition_disabled: Option<DisabledTransition>,
}

/// A disabled transition into a stage.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DisabledTransition {
    /// Why it is disabled (shown in status).
    #[schemars(length(min = 1))]
    pub reason: String,
}

/// One action. Exactly one of `deploy`, `approval`, `wait`, `test`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.deploy) ? 1 : 0) + (has(self.approval) ? 1 : 0) + (has(self.wait) ? 1 : 0) + (has(self.test) ? 1 : 0) == 1").message("an action needs exactly one of deploy, approval, wait or test"))]
pub struct Action {
    /// Action name, unique in its stage.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Actions with the same runOrder run in parallel.
    #[serde(default = "default_run_order")]
    #[schemars(range(min = 1, max = 999))]
    pub run_order: i32,
    /// How many times a failed action is retried before the execution fails.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10))]
    pub retries: i32,
    /// Deploy the source artifact as a Stack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeployAction>,
    /// Wait for a person to approve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalAction>,
    /// Wait a fixed time (bake).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<WaitAction>,
    /// Run a Kubernetes Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<TestAction>,
}

fn default_run_order() -> i32 {
    1
}

/// Deploy the artifact to one account and region.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployAction {
    /// AWS region.
    #[schemars(regex(pattern = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$"))]
    pub region: String,
    /// The AwsAccount to deploy into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_ref: Option<AccountRef>,
    /// CloudFormation stack name; defaults to `<namespace>-<pipeline>-<stage>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[a-zA-Z][-a-zA-Z0-9]*$"))]
    pub stack_name: Option<String>,
    /// Stage parameter overrides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub parameters: Vec<StackParameter>,
}

/// A manual approval.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalAction {
    /// Shown to the approver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The execution fails when nobody approves in time, e.g. `24h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub timeout: Option<String>,
}

/// A bake time.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaitAction {
    /// How long, e.g. `15m`.
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub duration: String,
}

/// A test Job; the outputs of the stage's deploy actions arrive as
/// environment variables `<ACTION>_<OUTPUT>`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestAction {
    /// The Job to run (batch/v1 JobTemplateSpec).
    #[schemars(schema_with = "super::preserve_unknown_object")]
    pub job_template: JobTemplateSpec,
}

/// Observed state of a Pipeline.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling, Stalled, ApprovalRequired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The execution under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_execution: Option<Execution>,
    /// Revisions waiting to run (`Queued` mode).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queued_revisions: Vec<String>,
    /// Finished executions, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Execution>,
}

/// One run of the pipeline for one source revision.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    /// Execution id.
    pub id: String,
    /// The source revision.
    pub revision: String,
    /// InProgress, Succeeded, Failed, Superseded, Stopped.
    pub phase: String,
    /// The stage under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Start time.
    pub started_at: Time,
    /// End time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// Per-action results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ActionStatus>,
}

/// Result of one action.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionStatus {
    /// Stage name.
    pub stage: String,
    /// Action name.
    pub action: String,
    /// Pending, InProgress, Succeeded, Failed, WaitingForApproval.
    pub phase: String,
    /// Attempts so far.
    #[serde(default)]
    pub attempts: i32,
    /// Detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
