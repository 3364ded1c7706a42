//! `Pipeline`: stages of actions that deploy, wait for approval, bake and
//! test, triggered by a new source revision.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::JobTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::stack_deployment::{Artifact, DeploymentTarget, HealthGates, RollbackSpec, Strategy};
use super::template::{AccountRef, SourceRef, StackParameter};

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
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".status.currentExecution.revision"}"#,
    printcolumn = r#"{"name":"Stage","type":"string","jsonPath":".status.currentExecution.stage"}"#,
    printcolumn = r#"{"name":"Execution","type":"string","jsonPath":".status.currentExecution.phase"}"#,
    printcolumn = r#"{"name":"Approval","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"ApprovalRequired\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PipelineSpec {
    /// The source: a new revision starts an execution.
    pub source: PipelineSource,
    /// What happens when a new revision arrives while one runs: `Superseded`
    /// replaces the running one at its next stage boundary (withdrawing its
    /// pending approvals); `Queued` runs every revision in order.
    #[serde(default)]
    pub execution_mode: ExecutionMode,
    /// Stages in order, keyed by name.
    #[schemars(length(min = 1, max = 20))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub stages: Vec<Stage>,
    /// How many earlier executions to keep in `status.history`.
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

fn is_zero(value: &i32) -> bool {
    *value == 0
}

/// The pipeline's source. Exactly one of `artifact`, `artifactRef`, `s3` or
/// `sourceRef`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.artifact) ? 1 : 0) + (has(self.artifactRef) ? 1 : 0) + (has(self.s3) ? 1 : 0) + (has(self.sourceRef) ? 1 : 0) == 1").message("source needs exactly one of artifact, artifactRef, s3 or sourceRef"))]
#[x_kube(validation = Rule::new("!has(self.revision) || has(self.artifactRef)").message("source.revision labels a ConfigMap source only: an artifact has artifact.revision, an S3 object its version id"))]
pub struct PipelineSource {
    /// A label for the ConfigMap's revision, e.g. a commit; without it the
    /// revision is the hash of the ConfigMap's data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub revision: Option<String>,
    /// The artifact (template and parameters) itself; its `revision` labels it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Artifact>,
    /// A ConfigMap in this namespace holding `template` (and optionally
    /// `parameters.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_ref: Option<ArtifactRef>,
    /// An S3 object holding the artifact; its version id is the revision
    /// (the bucket must have versioning enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Source>,
    /// A template (and parameters file) in a Flux source's artifact; each
    /// new artifact revision (`main@sha1:...`) starts an execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<SourceRef>,
}

/// A ConfigMap that holds an artifact.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactRef {
    /// ConfigMap name.
    #[schemars(length(min = 1, max = 253))]
    pub config_map: String,
}

/// An S3 object that holds an artifact, read with an AwsAccount's role.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Source {
    /// Bucket name.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Object key (a zip or a template file).
    #[schemars(length(min = 1, max = 1024))]
    pub key: String,
    /// The bucket's region.
    #[schemars(regex(pattern = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$"))]
    pub region: String,
    /// The AwsAccount whose role reads the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_ref: Option<AccountRef>,
}

/// How executions share the pipeline.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum ExecutionMode {
    /// A newer revision replaces the running execution at its next stage boundary.
    #[default]
    Superseded,
    /// Revisions run one at a time, in the order they arrived.
    Queued,
}

/// A stage: actions grouped by `runOrder`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    /// Stage name, unique in the pipeline.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Actions, keyed by name; the same `runOrder` runs in parallel, lower first.
    #[schemars(length(min = 1, max = 20))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub actions: Vec<Action>,
    /// What a failed stage does: `Fail` stops the execution there;
    /// `Rollback` first redeploys the stage's deploy actions at the revision
    /// of the last execution that passed this stage.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Hold executions before entering this stage, with a reason; remove it
    /// to let them in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition_disabled: Option<DisabledTransition>,
}

/// What a failed stage does.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum OnFailure {
    #[default]
    Fail,
    Rollback,
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
    /// Actions with the same runOrder run in parallel, lower first.
    #[serde(default = "default_run_order")]
    #[schemars(range(min = 1, max = 999))]
    pub run_order: i32,
    /// How many times a failed deploy, wait or test is retried (with
    /// exponential backoff) before the stage fails. Approvals are not retried.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10))]
    pub retries: i32,
    /// Deploy the source artifact as a Stack or a StackDeployment.
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

/// Deploy the execution's artifact through one child object, named
/// `<pipeline>-<stage>-<action>` and reused by every execution. Exactly one
/// of `stack` or `deployment`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.stack) != has(self.deployment)").message("deploy needs exactly one of stack or deployment"))]
pub struct DeployAction {
    /// One stack in one account and region (a child `Stack`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<StackTarget>,
    /// Many targets with a strategy and health gates (a child `StackDeployment`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentTargets>,
}

/// Where a child `Stack` deploys.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StackTarget {
    /// AWS region.
    #[schemars(regex(pattern = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$"))]
    pub region: String,
    /// The AwsAccount to deploy into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_ref: Option<AccountRef>,
    /// CloudFormation stack name; defaults to `<namespace>-<pipeline>-<stage>-<action>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[a-zA-Z][-a-zA-Z0-9]*$"))]
    pub stack_name: Option<String>,
    /// Parameters that override the artifact's. A literal value may use
    /// `#{<stage>.<action>.<Output>}` for an output of a deploy action that
    /// runs earlier in the execution.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub parameters: Vec<StackParameter>,
}

/// A child `StackDeployment` without its artifact (the pipeline supplies it).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentTargets {
    /// Where the artifact goes: one Stack per target.
    #[schemars(length(min = 1, max = 50))]
    pub targets: Vec<PipelineTarget>,
    /// How the rollout moves through the targets.
    #[serde(default)]
    pub strategy: Strategy,
    /// What a target must show before the rollout moves on.
    #[serde(default)]
    pub health: HealthGates,
    /// The deployment's own automatic rollback.
    #[serde(default)]
    pub rollback: RollbackSpec,
    /// CloudFormation stack name used in every target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[a-zA-Z][-a-zA-Z0-9]*$"))]
    pub stack_name: Option<String>,
    /// Parameters that override the artifact's (variables as for a stack).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub parameters: Vec<StackParameter>,
}

/// A target of a pipeline's StackDeployment: the fields of a
/// StackDeployment target with tighter limits (50 targets of 20 parameter
/// overrides), because nested under stages and actions the StackDeployment's
/// own limits exceed the API server's CEL cost budget.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineTarget {
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
    #[schemars(length(max = 20))]
    pub parameters: Vec<StackParameter>,
}

impl From<PipelineTarget> for DeploymentTarget {
    fn from(target: PipelineTarget) -> Self {
        let PipelineTarget {
            name,
            region,
            account_ref,
            parameters,
        } = target;
        DeploymentTarget {
            name,
            region,
            account_ref,
            parameters,
        }
    }
}

/// A manual approval.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalAction {
    /// Shown to the approver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The action fails when nobody decides in time, e.g. `24h`.
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

/// A test Job. Its containers get the outputs of the deploy actions that ran
/// earlier in the execution as `<ACTION>_<OUTPUT>` (upper snake case), and
/// `PIPELINE_REVISION` and `PIPELINE_EXECUTION`. `activeDeadlineSeconds` and
/// `backoffLimit` in the template apply as usual.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestAction {
    /// The Job to run (batch/v1 JobTemplateSpec).
    #[schemars(schema_with = "super::preserve_unknown_object")]
    pub job_template: JobTemplateSpec,
}

/// Observed state of a Pipeline. Holds everything the controller needs to
/// resume after a restart.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling, Stalled, ApprovalRequired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The newest source revision taken in (started, queued or skipped): the
    /// same source applied again starts nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_source: Option<SourceRevision>,
    /// Executions started so far (the sequence in execution ids).
    #[serde(default)]
    pub execution_count: i64,
    /// The newest execution, running or finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_execution: Option<Execution>,
    /// Revisions waiting to run, oldest first (at most one in `Superseded` mode).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queued_revisions: Vec<SourceRevision>,
    /// Earlier executions, newest first, at most `executionHistoryLimit`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Execution>,
    /// Per stage, the last execution that passed it (what `Rollback` redeploys).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passed_stages: Vec<StagePass>,
    /// The last request handled per annotation, so none acts twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<HandledRequest>,
}

/// A source revision: its label and the hash of its content. The hash is
/// what children carry in `stackpilot.dev/revision`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceRevision {
    /// The label (artifact revision, ConfigMap label or S3 version id).
    pub revision: String,
    /// Hash of the artifact's content.
    pub hash: String,
}

/// One run of the pipeline for one source revision.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    /// Execution id (deterministic: pipeline uid, revision and sequence).
    pub id: String,
    /// The source revision label.
    pub revision: String,
    /// Hash of the artifact's content.
    pub hash: String,
    /// Where the execution stands.
    pub phase: ExecutionPhase,
    /// The stage it is in (or waits to enter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Why it waits or how it ended, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Start time.
    pub started_at: Time,
    /// End time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// A stage rollback under way or done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<StageRollback>,
    /// Per-action results, in the order they started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ActionStatus>,
}

/// Where an execution stands.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum ExecutionPhase {
    #[default]
    InProgress,
    /// Stopped by a person; running actions are finishing.
    Stopping,
    /// A failed stage is being redeployed at its last good revision.
    RollingBack,
    Succeeded,
    Failed,
    /// Replaced by a newer revision.
    Superseded,
    Stopped,
}

impl ExecutionPhase {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            ExecutionPhase::Succeeded | ExecutionPhase::Failed | ExecutionPhase::Superseded | ExecutionPhase::Stopped
        )
    }
}

/// Result of one action in one execution.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionStatus {
    /// Stage name.
    pub stage: String,
    /// Action name.
    pub action: String,
    /// Where the action stands.
    pub phase: ActionPhase,
    /// Attempts so far (each test attempt is its own Job).
    #[serde(default)]
    pub attempts: i32,
    /// Automatic retries used since the stage was last started or retried.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries_used: i32,
    /// When the current attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// When the next automatic retry starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Time>,
    /// Detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Deploy: the child object; test: the Job of the current attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// Approval: who decided, how and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRecord>,
    /// Deploy: the child's outputs when it passed (kept while the execution
    /// is current, for tests and variables).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
}

/// Where an action stands.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum ActionPhase {
    /// Not started (again) yet.
    #[default]
    Pending,
    InProgress,
    WaitingForApproval,
    /// Failed; waits for `retryAt` to try again.
    Retrying,
    Succeeded,
    Failed,
    /// An approval nobody may give any more (superseded, stopped, stage failed).
    Withdrawn,
    /// Stopped before it finished.
    Stopped,
    /// Left running by a stop-abandon.
    Abandoned,
    /// Passed, then redeployed at the previous revision by a stage rollback.
    RolledBack,
}

/// A decision on an approval action.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRecord {
    /// How it was decided.
    pub decision: ApprovalDecision,
    /// Who decided (as the request says), or what withdrew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The approver's comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// When.
    pub at: Time,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum ApprovalDecision {
    #[default]
    Approved,
    Rejected,
    TimedOut,
    Withdrawn,
}

/// The last execution that passed a stage.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StagePass {
    /// Stage name.
    pub stage: String,
    /// The execution.
    pub execution: String,
    /// Its source revision.
    pub revision: SourceRevision,
    /// The variable values its deploy actions used (`stage.action.Output`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
}

/// A stage being put back at the revision that last passed it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageRollback {
    /// The failed stage.
    pub stage: String,
    /// The revision it goes back to.
    pub revision: SourceRevision,
    /// The execution that last passed the stage.
    pub execution: String,
    /// InProgress, Succeeded or Failed.
    pub phase: RollbackPhase,
    /// Detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Start time.
    pub started_at: Time,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum RollbackPhase {
    #[default]
    InProgress,
    Succeeded,
    Failed,
}

/// A request made through an annotation, and what became of it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HandledRequest {
    /// The annotation, e.g. `stackpilot.dev/approve`.
    pub annotation: String,
    /// The request's id.
    pub id: String,
    /// Applied or Ignored.
    pub outcome: RequestOutcome,
    /// What it did, or why it was ignored.
    pub message: String,
    /// When it was handled.
    pub at: Time,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum RequestOutcome {
    #[default]
    Applied,
    Ignored,
}
