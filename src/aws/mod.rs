//! The one door to AWS. Everything outside this module speaks these domain
//! types; only `sdk/` imports the AWS SDK, so an SDK upgrade never reaches
//! the CRD schema or the reconcile logic. `fake/` implements the same trait
//! in memory for unit tests and for behaviour no emulator has.

mod action;
pub mod alarms;
pub mod budget;
pub mod fake;
pub mod fake_mode;
pub mod identity;
pub mod instrumented;
pub mod s3;
pub mod sdk;
mod stack_state;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use action::Action;
pub use stack_state::StackState;

/// Where a CloudFormation call goes: one account (through an optional role)
/// in one region.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AwsTarget {
    pub region: String,
    /// Role to assume; `None` uses the operator's own credentials.
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    /// Session name hint (the Kubernetes object acting).
    pub session_name: Option<String>,
    /// Session tags when the role is assumed (namespace and name of the
    /// object acting), so CloudTrail shows who acted.
    pub session_tags: Vec<(String, String)>,
}

/// A template, either inline or by URL (S3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateSource {
    Body(String),
    Url(String),
}

#[derive(Clone, PartialEq, Eq)]
pub struct Parameter {
    pub key: String,
    pub value: String,
}

/// Values are never printed: some come from Secrets, and a Debug print of a
/// request must be safe to log.
impl std::fmt::Debug for Parameter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parameter")
            .field("key", &self.key)
            .field("value", &"<redacted>")
            .finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeSetType {
    Create,
    Update,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RollbackTrigger {
    pub alarm_arn: String,
}

/// Everything CreateChangeSet takes that stackpilot sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeSetRequest {
    pub stack_name: String,
    pub change_set_name: String,
    pub change_set_type: ChangeSetType,
    pub template: TemplateSource,
    pub parameters: Vec<Parameter>,
    pub options: StackOptions,
    /// Idempotency token for CreateChangeSet (`ClientToken`).
    pub client_token: String,
    pub description: Option<String>,
    /// `None` is a plain change set; `RevertDrift` also brings drifted
    /// resources back to their template definition (drift-aware change set).
    pub deployment_mode: Option<DeploymentMode>,
}

/// What CloudFormation applies to a stack besides its template and
/// parameters (the console's "stack options"). The desired stack holds one
/// and every request made from it carries it whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StackOptions {
    pub tags: BTreeMap<String, String>,
    pub capabilities: Vec<String>,
    pub role_arn: Option<String>,
    pub notification_arns: Vec<String>,
    pub rollback_triggers: Vec<RollbackTrigger>,
    pub rollback_monitoring_minutes: Option<i32>,
}

/// CreateChangeSet `DeploymentMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeploymentMode {
    /// `REVERT_DRIFT`: a drift-aware change set that overwrites drifted
    /// properties with the template's values.
    RevertDrift,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackOutput {
    pub key: String,
    pub value: String,
    pub description: Option<String>,
    pub export_name: Option<String>,
}

/// What DescribeStacks says about one stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackDescription {
    pub stack_id: String,
    pub stack_name: String,
    pub status: StackState,
    pub status_reason: Option<String>,
    pub parameters: Vec<Parameter>,
    pub tags: BTreeMap<String, String>,
    pub outputs: Vec<StackOutput>,
    pub capabilities: Vec<String>,
    pub role_arn: Option<String>,
    pub notification_arns: Vec<String>,
    /// Alarm ARNs of the rollback triggers, and the monitoring time.
    pub rollback_triggers: Vec<String>,
    pub rollback_monitoring_minutes: Option<i32>,
    pub termination_protection: bool,
    pub creation_time: Option<DateTime<Utc>>,
    pub last_updated_time: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeSetStatus {
    CreatePending,
    CreateInProgress,
    CreateComplete,
    DeletePending,
    DeleteInProgress,
    DeleteComplete,
    DeleteFailed,
    Failed,
    Other(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecutionStatus {
    Unavailable,
    Available,
    ExecuteInProgress,
    ExecuteComplete,
    ExecuteFailed,
    Obsolete,
    Other(String),
}

/// One resource change in a change set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceChange {
    /// Add, Modify, Remove, Import, Dynamic.
    pub action: String,
    pub logical_id: String,
    pub physical_id: Option<String>,
    pub resource_type: String,
    /// True, False, Conditional (only for Modify).
    pub replacement: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeSetDescription {
    pub change_set_id: String,
    pub change_set_name: String,
    pub stack_id: Option<String>,
    pub status: ChangeSetStatus,
    pub status_reason: Option<String>,
    pub execution_status: ExecutionStatus,
    pub changes: Vec<ResourceChange>,
}

impl ChangeSetDescription {
    /// CloudFormation reports "nothing to do" as a FAILED change set with a
    /// fixed reason; stackpilot treats it as success.
    pub fn is_empty_failure(&self) -> bool {
        self.status == ChangeSetStatus::Failed
            && self
                .status_reason
                .as_deref()
                .is_some_and(|r| r.contains("didn't contain changes") || r.contains("No updates are to be performed"))
    }
}

/// One stack event (DescribeStackEvents), newest first as AWS returns them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackEvent {
    pub event_id: String,
    pub timestamp: DateTime<Utc>,
    pub logical_id: String,
    pub physical_id: Option<String>,
    pub resource_type: String,
    /// Resource status string, e.g. `CREATE_FAILED`.
    pub status: String,
    pub reason: Option<String>,
}

impl StackEvent {
    pub fn is_failure(&self) -> bool {
        self.status.ends_with("_FAILED")
    }
}

/// The largest template CloudFormation takes inline (`TemplateBody`), in
/// bytes; larger ones go through S3 ([`TemplateStore`]) as a `TemplateURL`.
pub const MAX_TEMPLATE_BODY_BYTES: usize = 51_200;

/// DescribeStacks without a stack name: every live stack of the account and
/// region, with all pages read.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StackListing {
    pub stacks: Vec<StackDescription>,
    /// DescribeStacks calls made (one per page), for the call budget.
    pub pages: u32,
}

/// Where a drift detection run is (DescribeStackDriftDetectionStatus).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriftDetectionStatus {
    InProgress,
    Complete,
    /// Detection failed for at least one resource (see `reason`); results
    /// are still there for the resources that were checked.
    Failed,
}

/// A stack's overall drift.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackDriftStatus {
    Drifted,
    InSync,
    Unknown,
    NotChecked,
}

/// One drift detection run, as DescribeStackDriftDetectionStatus reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriftDetection {
    pub detection_id: String,
    pub status: DriftDetectionStatus,
    pub stack_drift_status: StackDriftStatus,
    /// Why detection failed (`DetectionStatusReason`).
    pub reason: Option<String>,
    /// Resources found `MODIFIED` or `DELETED`; `None` while in progress.
    pub drifted_resource_count: Option<u32>,
    /// When the detection started (AWS: the run's timestamp).
    pub timestamp: DateTime<Utc>,
}

/// One resource's drift (`StackResourceDriftStatus`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResourceDriftStatus {
    Modified,
    Deleted,
    NotChecked,
    InSync,
    /// `UNKNOWN`, `UNSUPPORTED`, or a status added after this was written.
    Unknown(String),
}

impl ResourceDriftStatus {
    /// Whether the resource differs from its template (modified or deleted).
    pub fn is_drifted(&self) -> bool {
        matches!(self, ResourceDriftStatus::Modified | ResourceDriftStatus::Deleted)
    }
}

/// How one property differs (`DifferenceType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DifferenceKind {
    Add,
    Remove,
    NotEqual,
}

/// One property of a drifted resource that differs from the template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropertyDifference {
    /// JSON pointer-like path, e.g. `/Tags/0/Value`.
    pub path: String,
    /// The template's value, as JSON text.
    pub expected: String,
    /// The live value, as JSON text.
    pub actual: String,
    pub kind: DifferenceKind,
}

/// One resource's result of the latest drift detection
/// (DescribeStackResourceDrifts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceDrift {
    pub logical_id: String,
    pub physical_id: Option<String>,
    pub resource_type: String,
    pub drift: ResourceDriftStatus,
    pub differences: Vec<PropertyDifference>,
}

/// Coarse error categories the controllers act on. The message keeps what
/// AWS said; it never carries parameter values (the SDK does not echo them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AwsErrorKind {
    /// The stack or change set does not exist.
    NotFound,
    /// The request is wrong (bad template, unknown parameter, ...). Retrying
    /// without a spec change will not help.
    Validation,
    /// Already exists (a change set or stack with this name).
    AlreadyExists,
    /// Throttled by AWS; slow down.
    Throttled,
    /// Credentials or permissions.
    AccessDenied,
    /// Network, 5xx, timeouts: retry with backoff.
    Transient,
    /// An operation is already in progress on the stack.
    InProgress,
    /// The endpoint does not offer this API (HTTP 501, as LocalStack answers
    /// the operations it lacks): neither a retry nor a spec change helps.
    Unsupported,
    Other,
}

impl AwsErrorKind {
    /// The `outcome` label of a call that failed this way.
    pub fn label(self) -> &'static str {
        match self {
            AwsErrorKind::NotFound => "not_found",
            AwsErrorKind::Validation => "validation",
            AwsErrorKind::AlreadyExists => "already_exists",
            AwsErrorKind::Throttled => "throttled",
            AwsErrorKind::AccessDenied => "access_denied",
            AwsErrorKind::Transient => "transient",
            AwsErrorKind::InProgress => "in_progress",
            AwsErrorKind::Unsupported => "unsupported",
            AwsErrorKind::Other => "other",
        }
    }
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("{code}: {message}")]
pub struct AwsError {
    pub kind: AwsErrorKind,
    /// The AWS error code (e.g. `ValidationError`), or a local label.
    pub code: String,
    pub message: String,
}

impl AwsError {
    pub fn new(kind: AwsErrorKind, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind,
            code: code.into(),
            message: message.into(),
        }
    }
}

pub type AwsResult<T> = Result<T, AwsError>;

/// The CloudFormation operations stackpilot uses, in its own types.
#[async_trait]
pub trait CloudFormation: Send + Sync {
    /// DescribeStacks for one stack name or id. `Ok(None)` when it does not exist
    /// (including `DELETE_COMPLETE` when looked up by name).
    async fn describe_stack(&self, stack: &str) -> AwsResult<Option<StackDescription>>;

    /// CreateChangeSet; returns the change set id.
    async fn create_change_set(&self, request: &ChangeSetRequest) -> AwsResult<String>;

    /// DescribeChangeSet (all pages of changes). `Ok(None)` when it does not exist.
    async fn describe_change_set(&self, stack: &str, change_set_name: &str) -> AwsResult<Option<ChangeSetDescription>>;

    /// ExecuteChangeSet with an idempotency token.
    async fn execute_change_set(&self, stack: &str, change_set_name: &str, client_token: &str) -> AwsResult<()>;

    /// UpdateStack with the inputs of a change set and an idempotency token,
    /// for what a change set cannot carry: an update whose change set has no
    /// resource changes (only stack settings or unused parameters differ). `Ok` also when AWS finds nothing to update.
    async fn update_stack(&self, request: &ChangeSetRequest) -> AwsResult<()>;

    /// DeleteChangeSet; a missing change set is success.
    async fn delete_change_set(&self, stack: &str, change_set_name: &str) -> AwsResult<()>;

    /// DeleteStack with an idempotency token; `retain_resources` only applies
    /// to stacks in DELETE_FAILED.
    async fn delete_stack(&self, stack: &str, client_token: &str, retain_resources: &[String]) -> AwsResult<()>;

    /// Stack events newer than `after_event_id` (exclusive), newest first,
    /// reading pages only until that event is reached. With `None`, at most
    /// `limit` newest events. `limit` also caps the cursor case, so a cursor
    /// that is never found (stack re-created) cannot page the whole history.
    async fn stack_events(&self, stack: &str, after_event_id: Option<&str>, limit: usize)
    -> AwsResult<Vec<StackEvent>>;

    /// DescribeStacks without a stack name, every page (`NextToken`): all
    /// live stacks with outputs, tags and parameters, and the number of
    /// pages (calls) it took. `DELETE_COMPLETE` stacks are left out.
    async fn describe_all_stacks(&self) -> AwsResult<StackListing>;

    /// GetTemplate, stage `Original`: the template body as submitted.
    async fn get_template(&self, stack: &str) -> AwsResult<String>;

    /// UpdateTerminationProtection.
    async fn update_termination_protection(&self, stack: &str, enabled: bool) -> AwsResult<()>;

    /// SetStackPolicy with an inline policy document.
    async fn set_stack_policy(&self, stack: &str, policy_body: &str) -> AwsResult<()>;

    /// GetStackPolicy; `None` when the stack has no policy.
    async fn get_stack_policy(&self, stack: &str) -> AwsResult<Option<String>>;

    /// ContinueUpdateRollback of a stack in `UPDATE_ROLLBACK_FAILED`,
    /// skipping the named resources (logical ids; `Nested.Logical` for
    /// resources of nested stacks), with an idempotency token.
    async fn continue_update_rollback(
        &self,
        stack: &str,
        resources_to_skip: &[String],
        client_token: &str,
    ) -> AwsResult<()>;

    /// DetectStackDrift: starts a drift detection run and returns its id at
    /// once; poll [`CloudFormation::drift_detection_status`] for the result.
    async fn detect_stack_drift(&self, stack: &str) -> AwsResult<String>;

    /// DescribeStackDriftDetectionStatus of one run.
    async fn drift_detection_status(&self, detection_id: &str) -> AwsResult<DriftDetection>;

    /// DescribeStackResourceDrifts, every page, of the latest detection run:
    /// only `MODIFIED` and `DELETED` resources.
    async fn resource_drifts(&self, stack: &str) -> AwsResult<Vec<ResourceDrift>>;
}

/// Where templates too large to pass inline ([`MAX_TEMPLATE_BODY_BYTES`])
/// are uploaded (S3), for CloudFormation to read by URL.
#[async_trait]
pub trait TemplateStore: Send + Sync {
    /// PutObject `body` at `bucket`/`key` (the bucket must exist); returns
    /// the URL to pass as [`TemplateSource::Url`].
    async fn put_template(&self, bucket: &str, key: &str, body: &str) -> AwsResult<String>;
}

impl ChangeSetStatus {
    /// CloudFormation's text for the status, e.g. `CREATE_COMPLETE`.
    pub fn as_str(&self) -> &str {
        match self {
            ChangeSetStatus::CreatePending => "CREATE_PENDING",
            ChangeSetStatus::CreateInProgress => "CREATE_IN_PROGRESS",
            ChangeSetStatus::CreateComplete => "CREATE_COMPLETE",
            ChangeSetStatus::DeletePending => "DELETE_PENDING",
            ChangeSetStatus::DeleteInProgress => "DELETE_IN_PROGRESS",
            ChangeSetStatus::DeleteComplete => "DELETE_COMPLETE",
            ChangeSetStatus::DeleteFailed => "DELETE_FAILED",
            ChangeSetStatus::Failed => "FAILED",
            ChangeSetStatus::Other(text) => text,
        }
    }
}

impl ExecutionStatus {
    /// CloudFormation's text for the status, e.g. `AVAILABLE`.
    pub fn as_str(&self) -> &str {
        match self {
            ExecutionStatus::Unavailable => "UNAVAILABLE",
            ExecutionStatus::Available => "AVAILABLE",
            ExecutionStatus::ExecuteInProgress => "EXECUTE_IN_PROGRESS",
            ExecutionStatus::ExecuteComplete => "EXECUTE_COMPLETE",
            ExecutionStatus::ExecuteFailed => "EXECUTE_FAILED",
            ExecutionStatus::Obsolete => "OBSOLETE",
            ExecutionStatus::Other(text) => text,
        }
    }
}

/// The account (role) and region a target acts in, without the per-object
/// session: what shared state (bulk reads, the call budget) is keyed by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AccountScope {
    pub region: String,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
}

impl From<&AwsTarget> for AccountScope {
    fn from(target: &AwsTarget) -> Self {
        AccountScope {
            region: target.region.clone(),
            role_arn: target.role_arn.clone(),
            external_id: target.external_id.clone(),
        }
    }
}

/// Gives a CloudFormation client for a target (account role + region).
/// Implementations cache clients; a client is cheap to clone.
pub trait CloudFormationProvider: Send + Sync {
    fn client(&self, target: &AwsTarget) -> Arc<dyn CloudFormation>;

    /// The template store (S3) of the same account and region.
    fn template_store(&self, target: &AwsTarget) -> Arc<dyn TemplateStore>;
}
