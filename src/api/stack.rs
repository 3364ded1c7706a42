//! `Stack`: one CloudFormation stack in one account and region.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::failures::{CreateFailures, FailureRecord};
use super::template::{AccountRef, Capability, LocalRef, StackParameter, TemplateSpec};

/// One CloudFormation stack in one account and region, created and kept in
/// sync through change sets.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[kube(
    group = "stackpilot.dev",
    version = "v1alpha1",
    kind = "Stack",
    namespaced,
    status = "StackStatus",
    shortname = "cfs",
    shortname = "cfstack",
    category = "stackpilot",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.stackStatus"}"#,
    printcolumn = r#"{"name":"Drifted","type":"string","jsonPath":".status.conditions[?(@.type==\"Drifted\")].status"}"#,
    printcolumn = r#"{"name":"Stack","type":"string","priority":1,"jsonPath":".status.stackName"}"#,
    printcolumn = r#"{"name":"Region","type":"string","priority":1,"jsonPath":".spec.region"}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.stackName) == has(oldSelf.stackName) && (!has(self.stackName) || self.stackName == oldSelf.stackName)").message("stackName is immutable"))]
#[x_kube(validation = Rule::new("has(self.accountRef) == has(oldSelf.accountRef) && (!has(self.accountRef) || self.accountRef == oldSelf.accountRef)").message("accountRef is immutable"))]
pub struct StackSpec {
    /// CloudFormation stack name. Defaults to `<namespace>-<name>`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[a-zA-Z][-a-zA-Z0-9]*$"))]
    pub stack_name: Option<String>,
    /// AWS region of the stack, e.g. `eu-west-1`. Immutable.
    #[schemars(regex(pattern = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("region is immutable"))]
    pub region: String,
    /// The AwsAccount to act in. Without it the operator's own credentials are
    /// used, if the operator allows that. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_ref: Option<AccountRef>,
    /// The CloudFormation template.
    pub template: TemplateSpec,
    /// Template parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub parameters: Vec<StackParameter>,
    /// Stack tags, propagated by CloudFormation to the resources that support
    /// them. Ownership tags (`stackpilot.dev/*`) are added by the operator.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Capabilities to acknowledge (IAM resources, macros).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    pub capabilities: Vec<Capability>,
    /// IAM role CloudFormation assumes for stack operations. Must be allowed
    /// by the AwsAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_role_arn: Option<String>,
    /// Protect the stack from deletion outside Kubernetes.
    #[serde(default, skip_serializing_if = "is_false")]
    pub termination_protection: bool,
    /// Stack policy document (JSON) that guards resources against updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_policy: Option<String>,
    /// SNS topic ARNs that receive stack events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub notification_arns: Vec<String>,
    /// Minutes a create may run (CloudFormation TimeoutInMinutes). Change
    /// sets take no timeout, so stackpilot enforces it: a create still running
    /// past it is cancelled by deleting the partial stack and handled as a
    /// failed create (`failurePolicy.onCreateFailure`). Updates have no
    /// timeout, as in CloudFormation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 43200))]
    pub timeout_in_minutes: Option<i32>,
    /// CloudWatch alarms that roll back an update when they fire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_triggers: Option<RollbackTriggers>,
    /// How changes are approved before they run.
    #[serde(default)]
    pub changes: ChangesSpec,
    /// Resource drift detection.
    #[serde(default)]
    pub drift: DriftSpec,
    /// What to do with stacks stuck in a failed state.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// What happens to the CloudFormation stack when this object is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Whether an existing stack of the same name that stackpilot did not
    /// create may be taken over.
    #[serde(default)]
    pub adoption: Adoption,
    /// Mirror the stack outputs into a Secret or ConfigMap owned by this Stack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_outputs_to: Option<OutputTarget>,
    /// Outputs that are written only to the Secret of `writeOutputsTo`, never
    /// to status.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub sensitive_outputs: Vec<String>,
    /// Stacks in the same namespace that must be Ready first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub depends_on: Vec<LocalRef>,
    /// Pause reconciliation; nothing is read from or written to AWS.
    #[serde(default, skip_serializing_if = "is_false")]
    pub suspend: bool,
}

fn is_false(value: &bool) -> bool {
    !value
}

/// Rollback triggers (CloudFormation RollbackConfiguration).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackTriggers {
    /// CloudWatch alarm ARNs.
    #[schemars(length(min = 1, max = 5))]
    pub alarms: Vec<String>,
    /// Minutes to keep watching the alarms after the operation completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 180))]
    pub monitoring_time_in_minutes: Option<i32>,
}

/// How a planned change set is approved.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangesSpec {
    /// `Automatic` executes change sets at once; `Manual` waits for the
    /// annotation `stackpilot.dev/approve: <change-set-name>`.
    #[serde(default)]
    pub approval: Approval,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum Approval {
    #[default]
    Automatic,
    Manual,
}

/// Resource drift detection settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftSpec {
    /// How often to run drift detection, e.g. `6h`; `0` turns it off.
    /// Defaults to `6h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(0|([0-9]+(ms|s|m|h))+)$"))]
    pub interval: Option<String>,
    /// `Report` only shows drift; `Revert` brings drifted resources back
    /// through a drift-aware change set.
    #[serde(default)]
    pub remediation: DriftRemediation,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum DriftRemediation {
    #[default]
    Report,
    Revert,
}

/// What to do with a stack stuck in a failed state. Defaults keep the stack
/// for inspection.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailurePolicy {
    /// A create that failed (`ROLLBACK_COMPLETE`, `ROLLBACK_FAILED`,
    /// `CREATE_FAILED`): `Retain` keeps it (Stalled); `Recreate` deletes it
    /// and creates it again, with backoff.
    #[serde(default)]
    pub on_create_failure: CreateFailureAction,
    /// `UPDATE_ROLLBACK_FAILED`: `Retain` (Stalled) or `ContinueRollback`.
    #[serde(default)]
    pub on_update_rollback_failure: UpdateRollbackFailureAction,
    /// Logical ids to skip when continuing a rollback.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub skip_resources: Vec<String>,
    /// `DELETE_FAILED`: `Retain` (Stalled) or `RetainFailedResources` (delete
    /// again keeping the resources that failed; they are listed in status).
    #[serde(default)]
    pub on_delete_failure: DeleteFailureAction,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum CreateFailureAction {
    #[default]
    Retain,
    Recreate,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum UpdateRollbackFailureAction {
    #[default]
    Retain,
    ContinueRollback,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum DeleteFailureAction {
    #[default]
    Retain,
    RetainFailedResources,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the CloudFormation stack with the object.
    #[default]
    Delete,
    /// Leave the stack in AWS.
    Retain,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum Adoption {
    /// Refuse to touch a same-named stack that stackpilot did not create.
    #[default]
    Refuse,
    /// Take over an existing stack without recreating it.
    Adopt,
}

/// Where to mirror outputs.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputTarget {
    /// `Secret` or `ConfigMap`.
    pub kind: OutputKind,
    /// Name of the Secret or ConfigMap (created and owned by this Stack).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum OutputKind {
    #[default]
    Secret,
    ConfigMap,
}

/// Observed state of a Stack.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StackStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling, Stalled, ApprovalRequired, Drifted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The CloudFormation stack name in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_name: Option<String>,
    /// The CloudFormation stack id (ARN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_id: Option<String>,
    /// The CloudFormation stack status, e.g. `CREATE_COMPLETE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_status: Option<String>,
    /// CloudFormation's reason for the stack status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_status_reason: Option<String>,
    /// Stack outputs (except `sensitiveOutputs`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
    /// The latest change set and what it plans to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_set: Option<ChangeSetSummary>,
    /// The AWS operation stackpilot started and has not seen finish. Recorded
    /// before the call, so a restart resumes it instead of starting another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
    /// What the stack in AWS was last brought to (hashes, no values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<AppliedRevision>,
    /// Id of the newest stack event already read (the event cursor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_id: Option<String>,
    /// The last few failures, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_failures: Vec<FailureRecord>,
    /// Creates that failed in a row (the backoff of `onCreateFailure: Recreate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_failures: Option<CreateFailures>,
    /// How many times a stack changed outside Kubernetes was brought back
    /// to the spec.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repairs: i64,
    /// Change sets replaced by newer ones and not yet deleted in AWS
    /// (recorded before the replacement, so a crash cannot forget them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub superseded_change_sets: Vec<String>,
    /// Resource drift: the last detection run and what it found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftReport>,
    /// The Secret or ConfigMap the outputs were last written to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_outputs: Option<WrittenOutputs>,
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

/// Where outputs were mirrored, and a hash of what was written.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WrittenOutputs {
    /// `Secret` or `ConfigMap`.
    pub kind: OutputKind,
    /// Its name.
    pub name: String,
    /// SHA-256 prefix of the written data.
    pub hash: String,
}

/// A change set and its planned changes.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeSetSummary {
    /// Change set name (deterministic; approve it by this name).
    pub name: String,
    /// Change set id (ARN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// CREATE / UPDATE.
    #[serde(rename = "type")]
    pub change_type: ChangeSetKind,
    /// Change set status, e.g. `CREATE_COMPLETE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ChangeSetState>,
    /// CloudFormation's reason for the status (why it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// Execution status, e.g. `AVAILABLE`, `EXECUTE_COMPLETE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_status: Option<ExecutionState>,
    /// The Stack generation it was made for.
    pub generation: i64,
    /// The `stackpilot.dev/revision` annotation of the inputs it was planned
    /// for (set by a StackDeployment or Pipeline that owns this Stack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The planned resource changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<PlannedChange>,
}

/// One planned resource change.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedChange {
    /// Add, Modify, Remove, Import, Dynamic.
    pub action: ChangeAction,
    /// Logical id in the template.
    pub logical_id: String,
    /// Resource type, e.g. `AWS::S3::Bucket`.
    pub resource_type: String,
    /// For Modify: True, False or Conditional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<Replacement>,
    /// Physical id of an existing resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_id: Option<String>,
}

/// An AWS operation in flight.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// CreateChangeSet, ExecuteChangeSet, DeleteStack, ...
    pub action: OperationAction,
    /// The change set it concerns, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_set_name: Option<String>,
    /// The idempotency token sent with the call.
    pub client_token: String,
    /// Generation it was started for.
    pub generation: i64,
    /// Fingerprint of the inputs it applies, if it applies any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The `stackpilot.dev/revision` annotation of those inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// When it was recorded.
    pub started_at: Time,
}

/// Fingerprint of what was last applied: hashes only, so a Secret-backed
/// parameter never shows up here.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppliedRevision {
    /// Generation of the spec that was applied.
    pub generation: i64,
    /// SHA-256 of the resolved template, parameters, tags and options.
    pub fingerprint: String,
    /// The `stackpilot.dev/revision` annotation of the applied inputs: what
    /// a StackDeployment or Pipeline owning this Stack compares to tell
    /// "Ready at the revision I wrote" from "Ready at an older one".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

/// Resource drift found by CloudFormation drift detection.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftReport {
    /// `Checking`, `InSync`, `Drifted`, `Unknown`, `Skipped` (the stack's
    /// state does not allow detection) or `Failed` (detection is not possible).
    pub status: DriftState,
    /// Why detection was skipped or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The detection run under way or last finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection_id: Option<String>,
    /// When detection was last started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When a detection run last finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<Time>,
    /// The `reconcile-requested-at` value that last triggered a detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<String>,
    /// A revert of the drift (drift.remediation: Revert) is pending.
    #[serde(default, skip_serializing_if = "is_false_ref")]
    pub revert_pending: bool,
    /// Drifted resources (at most 50).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<DriftedResource>,
}

fn is_false_ref(value: &bool) -> bool {
    !*value
}

/// One resource that differs from its template.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftedResource {
    /// Logical id in the template.
    pub logical_id: String,
    /// Resource type.
    pub resource_type: String,
    /// Physical id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_id: Option<String>,
    /// `MODIFIED` or `DELETED`.
    pub drift: String,
    /// Property differences (at most 20 per resource).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<DriftedProperty>,
}

/// One property that differs; values from Secret-backed parameters are masked.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftedProperty {
    /// Property path, e.g. `/VisibilityTimeout`.
    pub path: String,
    /// `ADD`, `REMOVE` or `NOT_EQUAL`.
    pub kind: String,
    /// Value in the template.
    pub expected: String,
    /// Value in AWS.
    pub actual: String,
}

/// What an operation in flight is.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum OperationAction {
    CreateChangeSet,
    ExecuteChangeSet,
    /// UpdateStack standing in for an empty change set.
    UpdateStack,
    DeleteStack,
    ContinueUpdateRollback,
}

/// `CREATE` or `UPDATE`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum ChangeSetKind {
    #[default]
    #[serde(rename = "CREATE")]
    Create,
    #[serde(rename = "UPDATE")]
    Update,
}

/// CloudFormation's change set status.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChangeSetState {
    CreatePending,
    CreateInProgress,
    CreateComplete,
    DeletePending,
    DeleteInProgress,
    DeleteComplete,
    DeleteFailed,
    Failed,
    /// A status this version does not know.
    #[serde(other)]
    Unknown,
}

/// CloudFormation's change set execution status.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionState {
    Unavailable,
    Available,
    ExecuteInProgress,
    ExecuteComplete,
    ExecuteFailed,
    Obsolete,
    /// A status this version does not know.
    #[serde(other)]
    Unknown,
}

impl ExecutionState {
    /// The change set was run (whatever came of it).
    pub fn was_executed(self) -> bool {
        matches!(
            self,
            ExecutionState::ExecuteInProgress | ExecutionState::ExecuteComplete | ExecutionState::ExecuteFailed
        )
    }
}

/// What a change set does to one resource.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum ChangeAction {
    #[default]
    Add,
    Modify,
    Remove,
    Import,
    Dynamic,
    /// An action this version does not know.
    #[serde(other)]
    Unknown,
}

/// Whether a modified resource is replaced.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum Replacement {
    True,
    False,
    Conditional,
}

/// Where resource drift detection stands.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum DriftState {
    /// A detection run is under way.
    Checking,
    InSync,
    Drifted,
    #[default]
    Unknown,
    /// The stack's state did not allow detection.
    Skipped,
    /// Detection is not possible (the reason says why).
    Failed,
}
