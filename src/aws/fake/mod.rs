//! In-memory fake of [`super::CloudFormation`], for reconcile tests and
//! benchmarks, modelling what the emulators do not: asynchronous change sets
//! and stack operations, rollback and failure states, idempotency tokens and
//! injected errors. Cheap: one `std::sync::Mutex` around maps, no sleeps, no
//! wall clock (timestamps come from a counter).
//!
//! Model, in short:
//! - `create_change_set` validates like AWS (template format, undeclared or
//!   missing parameters, IAM capabilities) and computes `changes` by diffing
//!   the template `Resources` by logical id: `Add`, `Remove`, and `Modify` when
//!   a resource's definition differs or it references (`Ref`, `${X}`) a
//!   parameter whose value changed; `Replacement` is `"False"` (`"True"` when
//!   the type changed) unless [`FakeCloudFormation::set_replacement`] says
//!   otherwise. A `Create` change set for a new stack puts it in
//!   `REVIEW_IN_PROGRESS`. An `Update` with identical template, parameters and
//!   tags ends `FAILED` with [`EMPTY_CHANGE_SET_REASON`].
//! - A change set is `CREATE_PENDING` for the first
//!   [`FakeCloudFormation::set_change_set_delay`] `describe_change_set` calls
//!   (default 1), then `CREATE_COMPLETE`/`AVAILABLE` (or `FAILED`).
//! - Executing or deleting starts an operation; each in-progress phase
//!   (`CREATE_IN_PROGRESS`, `ROLLBACK_IN_PROGRESS`, `UPDATE_IN_PROGRESS`,
//!   `UPDATE_COMPLETE_CLEANUP_IN_PROGRESS`, `UPDATE_ROLLBACK_IN_PROGRESS`,
//!   `DELETE_IN_PROGRESS`) is seen by [`FakeCloudFormation::set_operation_steps`]
//!   `describe_stack` calls of that stack (default 1; 0 = synchronous, like
//!   moto). Only `describe_stack` advances time; `stack_events` does not.
//! - Outputs: for each template `Outputs` key `K`, the value is `"<stack>-<K>"`
//!   (description and `Export.Name` are copied when they are plain strings).
//! - Failures are injected per stack name or per logical id (see `fail_*`),
//!   errors per operation with [`ErrorInjection`].
//! - `ClientRequestToken`s of execute, delete and continue-update-rollback are
//!   remembered per stack: the same token again is a no-op success. The same
//!   `ClientToken` and name on `create_change_set` returns the existing change
//!   set.
//! - Bulk read: `describe_all_stacks` pages like AWS (100 stacks per page,
//!   sorted by name), logs one `DescribeStacks` call per page (each page can
//!   be throttled or failed), and gives each stack one `describe_stack`
//!   worth of time.
//! - Update rollback: a failed rollback ([`FakeCloudFormation::fail_update_rollback`])
//!   marks the failed resource `UPDATE_FAILED`; `continue_update_rollback`
//!   retries it (failing again while the failure is configured, unless that
//!   resource is skipped) and ends `UPDATE_ROLLBACK_COMPLETE` with the
//!   previous content.
//! - Drift: [`FakeCloudFormation::set_resource_drift`] changes a resource
//!   behind CloudFormation's back. `detect_stack_drift` snapshots it; the run
//!   is `DETECTION_IN_PROGRESS` for the first
//!   [`FakeCloudFormation::set_drift_detection_delay`] status reads (default
//!   1), then complete, and `resource_drifts` returns that snapshot
//!   (`MODIFIED` and `DELETED` only, 100 per page, one call per page). A
//!   change set with `DeploymentMode::RevertDrift` lists drifted resources as
//!   `Modify` (`Add` when deleted) and executing it clears the drift.
//! - Termination protection blocks `delete_stack`; stack policies are stored
//!   (valid JSON required) but not enforced. `get_template` returns the body
//!   as submitted. The fake is also a [`TemplateStore`]: `put_template`
//!   stores the body under its S3 URL, which `TemplateSource::Url` then reads.
//! - Fault rates ([`FakeCloudFormation::set_fault_rates`]) throttle and fail
//!   (HTTP 5xx) fixed fractions of every call, drawn from a seeded sequence.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{
    AwsError, AwsErrorKind, AwsResult, AwsTarget, ChangeSetDescription, ChangeSetRequest, ChangeSetStatus,
    ChangeSetType, CloudFormation, CloudFormationProvider, DeploymentMode, DriftDetection, DriftDetectionStatus,
    ExecutionStatus, Parameter, ResourceChange, ResourceDrift, ResourceDriftStatus, StackDescription, StackDriftStatus,
    StackEvent, StackListing, StackOutput, StackState, TemplateSource, TemplateStore,
};

/// The account every fake stack lives in.
pub const ACCOUNT_ID: &str = "123456789012";
/// What AWS says when an update change set has nothing to do.
pub const EMPTY_CHANGE_SET_REASON: &str =
    "The submitted information didn't contain changes. Submit different information to create a change set.";
const STACK_TYPE: &str = "AWS::CloudFormation::Stack";
/// 2024-01-01T00:00:00Z; the fake clock ticks one second per event.
const EPOCH: i64 = 1_704_067_200;
/// Stacks per DescribeStacks page, as AWS pages them.
pub const DESCRIBE_STACKS_PAGE: usize = 100;
/// Resource drifts per DescribeStackResourceDrifts page (its maximum).
pub const RESOURCE_DRIFTS_PAGE: usize = 100;

/// The trait operations, named as the AWS API names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    DescribeStacks,
    CreateChangeSet,
    DescribeChangeSet,
    ExecuteChangeSet,
    UpdateStack,
    DeleteChangeSet,
    DeleteStack,
    DescribeStackEvents,
    GetTemplate,
    UpdateTerminationProtection,
    SetStackPolicy,
    GetStackPolicy,
    ContinueUpdateRollback,
    DetectStackDrift,
    DescribeStackDriftDetectionStatus,
    DescribeStackResourceDrifts,
    /// S3, through [`TemplateStore`].
    PutObject,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::DescribeStacks => "DescribeStacks",
            Operation::CreateChangeSet => "CreateChangeSet",
            Operation::DescribeChangeSet => "DescribeChangeSet",
            Operation::ExecuteChangeSet => "ExecuteChangeSet",
            Operation::UpdateStack => "UpdateStack",
            Operation::DeleteChangeSet => "DeleteChangeSet",
            Operation::DeleteStack => "DeleteStack",
            Operation::DescribeStackEvents => "DescribeStackEvents",
            Operation::GetTemplate => "GetTemplate",
            Operation::UpdateTerminationProtection => "UpdateTerminationProtection",
            Operation::SetStackPolicy => "SetStackPolicy",
            Operation::GetStackPolicy => "GetStackPolicy",
            Operation::ContinueUpdateRollback => "ContinueUpdateRollback",
            Operation::DetectStackDrift => "DetectStackDrift",
            Operation::DescribeStackDriftDetectionStatus => "DescribeStackDriftDetectionStatus",
            Operation::DescribeStackResourceDrifts => "DescribeStackResourceDrifts",
            Operation::PutObject => "PutObject",
        }
    }
}

/// One recorded call: operation, the stack as the caller named it (empty for
/// the bulk read and `PutObject`; the run's stack for a drift status read),
/// and the change set name where there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub operation: Operation,
    pub stack: String,
    pub change_set: Option<String>,
}

/// A throttling error as the SDK mapping reports it.
pub fn throttling_error() -> AwsError {
    AwsError::new(AwsErrorKind::Throttled, "Throttling", "Rate exceeded")
}

/// A transient server error (HTTP 503) as the SDK mapping reports it.
pub fn server_error() -> AwsError {
    AwsError::new(
        AwsErrorKind::Transient,
        "ServiceUnavailable",
        "Service is unavailable (HTTP 503)",
    )
}

/// Next number in [0, 1) of a splitmix64 sequence.
fn next_unit(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Fractions of ALL calls (every operation, every stack) that fail: one
/// number per call from a splitmix64 sequence started at `seed`, below
/// `throttled` -> [`throttling_error`], below `throttled + server_errors` ->
/// [`server_error`]. The same seed and call order, the same failures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultRates {
    pub throttled: f64,
    pub server_errors: f64,
    pub seed: u64,
}

/// Calls failed by [`FaultRates`] so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub throttled: usize,
    pub server_errors: usize,
}

/// Makes calls fail with a given error: once (default), `n` times, always, or
/// with a probability drawn from a seeded sequence (deterministic).
#[derive(Clone, Debug)]
pub struct ErrorInjection {
    operation: Option<Operation>,
    stack: Option<String>,
    error: AwsError,
    mode: InjectionMode,
}

#[derive(Clone, Debug)]
enum InjectionMode {
    Times(usize),
    Always,
    Probability { probability: f64, state: u64 },
}

impl ErrorInjection {
    /// Fails the next call of any operation on any stack, once.
    pub fn new(error: AwsError) -> Self {
        Self {
            operation: None,
            stack: None,
            error,
            mode: InjectionMode::Times(1),
        }
    }

    /// Only calls of this operation.
    pub fn on(mut self, operation: Operation) -> Self {
        self.operation = Some(operation);
        self
    }

    /// Only calls naming this stack (by name, or by an id containing it).
    pub fn for_stack(mut self, stack: impl Into<String>) -> Self {
        self.stack = Some(stack.into());
        self
    }

    pub fn times(mut self, n: usize) -> Self {
        self.mode = InjectionMode::Times(n);
        self
    }

    pub fn always(mut self) -> Self {
        self.mode = InjectionMode::Always;
        self
    }

    /// Each matching call fails with `probability` (0..=1), drawn from a
    /// splitmix64 sequence started at `seed`: the same seed, the same calls.
    pub fn with_probability(mut self, probability: f64, seed: u64) -> Self {
        self.mode = InjectionMode::Probability {
            probability,
            state: seed,
        };
        self
    }

    fn matches(&self, call: &Call) -> bool {
        self.operation.is_none_or(|op| op == call.operation)
            && self
                .stack
                .as_deref()
                .is_none_or(|name| call.stack == name || call.stack.contains(&format!("/{name}/")))
    }

    /// Whether this call fails; consumes one use.
    fn fire(&mut self) -> bool {
        match &mut self.mode {
            InjectionMode::Times(0) => false,
            InjectionMode::Times(n) => {
                *n -= 1;
                true
            }
            InjectionMode::Always => true,
            InjectionMode::Probability { probability, state } => next_unit(state) < *probability,
        }
    }
}

/// One resource of a template, as far as the fake reads it.
#[derive(Clone, Debug, PartialEq)]
struct Resource {
    resource_type: String,
    definition: Value,
}

/// The parts of a template the fake reads.
#[derive(Clone, Debug, PartialEq)]
struct Template {
    document: Value,
    resources: BTreeMap<String, Resource>,
    /// Declared parameters and their defaults.
    parameters: BTreeMap<String, Option<String>>,
    outputs: Vec<(String, Option<String>, Option<String>)>,
}

fn format_error(detail: impl std::fmt::Display) -> AwsError {
    AwsError::new(
        AwsErrorKind::Validation,
        "ValidationError",
        format!("Template format error: {detail}"),
    )
}

/// YAML to JSON, with CloudFormation short forms (`!Ref X`, `!Sub ...`) turned
/// into their long forms (`{"Ref": X}`, `{"Fn::Sub": ...}`).
fn yaml_to_json(value: serde_yaml_ng::Value) -> Value {
    use serde_yaml_ng::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or_default())
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match yaml_to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let key = if name == "Ref" || name == "Condition" {
                name.to_string()
            } else {
                format!("Fn::{name}")
            };
            let mut object = serde_json::Map::new();
            object.insert(key, yaml_to_json(tagged.value));
            Value::Object(object)
        }
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) => Some(items.iter().filter_map(scalar_text).collect::<Vec<_>>().join(",")),
        _ => None,
    }
}

fn parse_template(body: &str) -> AwsResult<Template> {
    let document: Value = if body.trim_start().starts_with('{') {
        serde_json::from_str(body).map_err(|e| format_error(format_args!("JSON not well-formed. ({e})")))?
    } else {
        let yaml: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(body).map_err(|e| format_error(format_args!("YAML not well-formed. ({e})")))?;
        yaml_to_json(yaml)
    };
    let Some(top) = document.as_object() else {
        return Err(format_error("unsupported structure."));
    };
    let resources_doc = top.get("Resources").and_then(Value::as_object);
    let Some(resources_doc) = resources_doc.filter(|r| !r.is_empty()) else {
        return Err(format_error("At least one Resources member must be defined."));
    };
    let mut resources = BTreeMap::new();
    for (id, definition) in resources_doc {
        let Some(resource_type) = definition.get("Type").and_then(Value::as_str) else {
            return Err(format_error(format_args!(
                "[/Resources/{id}] Every Resources object must contain a Type member."
            )));
        };
        resources.insert(
            id.clone(),
            Resource {
                resource_type: resource_type.to_string(),
                definition: definition.clone(),
            },
        );
    }
    let parameters = top
        .get("Parameters")
        .and_then(Value::as_object)
        .map(|params| {
            params
                .iter()
                .map(|(k, v)| (k.clone(), v.get("Default").and_then(scalar_text)))
                .collect()
        })
        .unwrap_or_default();
    let outputs = top
        .get("Outputs")
        .and_then(Value::as_object)
        .map(|outputs| {
            outputs
                .iter()
                .map(|(k, v)| {
                    let description = v.get("Description").and_then(Value::as_str);
                    let export = v.pointer("/Export/Name").and_then(Value::as_str);
                    (k.clone(), description.map(str::to_string), export.map(str::to_string))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Template {
        document,
        resources,
        parameters,
        outputs,
    })
}

/// Whether a resource definition mentions parameter `name` (`Ref` or `${name}`).
fn references(definition: &Value, name: &str) -> bool {
    match definition {
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| (k == "Ref" && v.as_str() == Some(name)) || references(v, name)),
        Value::Array(items) => items.iter().any(|v| references(v, name)),
        Value::String(s) => s.contains(&format!("${{{name}}}")),
        _ => false,
    }
}

fn validation(message: impl Into<String>) -> AwsError {
    AwsError::new(AwsErrorKind::Validation, "ValidationError", message)
}

fn stack_not_found(stack: &str) -> AwsError {
    AwsError::new(
        AwsErrorKind::NotFound,
        "ValidationError",
        format!("Stack [{stack}] does not exist"),
    )
}

/// Stack content a change set carries and an update rollback restores.
#[derive(Clone, Debug)]
struct Content {
    template: Template,
    body: String,
    parameters: Vec<Parameter>,
    tags: BTreeMap<String, String>,
    capabilities: Vec<String>,
    role_arn: Option<String>,
}

#[derive(Clone, Debug)]
struct FakeChangeSet {
    id: String,
    name: String,
    client_token: String,
    kind: ChangeSetType,
    status: ChangeSetStatus,
    status_reason: Option<String>,
    execution_status: ExecutionStatus,
    changes: Vec<ResourceChange>,
    /// Describes left that still see CREATE_PENDING.
    pending_describes: u32,
    /// Whether it ends FAILED (no changes) once no longer pending.
    empty: bool,
    content: Content,
    deployment_mode: Option<DeploymentMode>,
}

/// What happens when the current in-progress phase ends.
#[derive(Clone, Debug)]
enum Phase {
    /// CREATE_IN_PROGRESS ends; `failure` = (logical id, reason).
    Create {
        change_set: String,
        failure: Option<(String, String)>,
    },
    /// ROLLBACK_IN_PROGRESS ends after a failed create.
    CreateRollback { change_set: String },
    /// UPDATE_IN_PROGRESS ends.
    Update {
        change_set: String,
        failure: Option<(String, String)>,
        rollback_failure: Option<String>,
        previous: Box<Content>,
    },
    /// UPDATE_COMPLETE_CLEANUP_IN_PROGRESS ends (removed resources go).
    UpdateCleanup { change_set: String, removed: Vec<String> },
    /// UPDATE_ROLLBACK_IN_PROGRESS ends.
    UpdateRollback {
        change_set: String,
        rollback_failure: Option<String>,
        previous: Box<Content>,
        /// The resource whose update failed; it fails the rollback too.
        failed_resource: String,
    },
    /// DELETE_IN_PROGRESS ends.
    Delete {
        failure: Option<(String, String)>,
        retained: Vec<String>,
    },
}

#[derive(Clone, Debug)]
struct InFlight {
    remaining: u32,
    phase: Phase,
}

/// What `continue_update_rollback` resumes after UPDATE_ROLLBACK_FAILED.
#[derive(Clone, Debug)]
struct StuckRollback {
    change_set: String,
    previous: Box<Content>,
    failed_resource: String,
}

/// One drift detection run.
#[derive(Clone, Debug)]
struct Detection {
    stack: String,
    /// Status reads left that still see DETECTION_IN_PROGRESS.
    remaining: u32,
    timestamp: DateTime<Utc>,
    /// The drifted resources when the run started.
    results: Vec<ResourceDrift>,
    failure: Option<String>,
    /// Whether `results` became the stack's latest drift results.
    published: bool,
}

#[derive(Clone, Debug)]
struct FakeStack {
    id: String,
    name: String,
    status: StackState,
    status_reason: Option<String>,
    content: Option<Content>,
    outputs: Vec<StackOutput>,
    termination_protection: bool,
    creation_time: DateTime<Utc>,
    last_updated_time: Option<DateTime<Utc>>,
    /// Oldest first.
    events: Vec<StackEvent>,
    change_sets: Vec<FakeChangeSet>,
    /// (operation, token) pairs already used.
    tokens: BTreeSet<(Operation, String)>,
    physical_ids: BTreeMap<String, String>,
    in_flight: Option<InFlight>,
    policy: Option<String>,
    /// Actual drift by logical id (set by tests).
    drift: BTreeMap<String, ResourceDrift>,
    /// Drifted resources found by the latest completed detection.
    drift_results: Vec<ResourceDrift>,
    rollback: Option<StuckRollback>,
}

impl FakeStack {
    fn describe(&self) -> StackDescription {
        let content = self.content.as_ref();
        StackDescription {
            stack_id: self.id.clone(),
            stack_name: self.name.clone(),
            status: self.status.clone(),
            status_reason: self.status_reason.clone(),
            parameters: content.map(|c| c.parameters.clone()).unwrap_or_default(),
            tags: content.map(|c| c.tags.clone()).unwrap_or_default(),
            outputs: self.outputs.clone(),
            capabilities: content.map(|c| c.capabilities.clone()).unwrap_or_default(),
            role_arn: content.and_then(|c| c.role_arn.clone()),
            // Not modelled: read as none.
            notification_arns: Vec::new(),
            rollback_triggers: Vec::new(),
            rollback_monitoring_minutes: None,
            termination_protection: self.termination_protection,
            creation_time: Some(self.creation_time),
            last_updated_time: self.last_updated_time,
        }
    }

    fn resources(&self) -> BTreeMap<String, Resource> {
        self.content
            .as_ref()
            .map(|c| c.template.resources.clone())
            .unwrap_or_default()
    }

    fn change_set_mut(&mut self, name: &str) -> Option<&mut FakeChangeSet> {
        self.change_sets.iter_mut().find(|cs| cs.name == name || cs.id == name)
    }

    fn set_execution(&mut self, change_set: &str, status: ExecutionStatus) {
        if let Some(cs) = self.change_set_mut(change_set) {
            cs.execution_status = status;
        }
    }

    fn in_progress_error(&self, verb: &str) -> AwsError {
        let kind = if self.status.is_in_progress() && self.status != StackState::ReviewInProgress {
            AwsErrorKind::InProgress
        } else {
            AwsErrorKind::Validation
        };
        AwsError::new(
            kind,
            "ValidationError",
            format!("Stack:{} is in {} state and can not be {verb}.", self.id, self.status),
        )
    }
}

#[derive(Debug)]
struct Failures {
    create: HashMap<String, String>,
    update: HashMap<String, String>,
    update_rollback: HashMap<String, String>,
    delete: HashMap<String, String>,
    resources: HashMap<String, String>,
}

#[derive(Debug)]
struct State {
    region: String,
    stacks: HashMap<String, FakeStack>,
    /// Stack id -> name, for live stacks.
    ids: HashMap<String, String>,
    /// Deleted stacks by id (DescribeStacks by id still finds them).
    deleted: HashMap<String, FakeStack>,
    templates_by_url: HashMap<String, String>,
    change_set_delay: u32,
    operation_steps: u32,
    replacements: HashMap<String, String>,
    failures: Failures,
    injections: Vec<ErrorInjection>,
    /// Fault rates and their sequence state.
    faults: Option<(FaultRates, u64)>,
    fault_counts: FaultCounts,
    detections: HashMap<String, Detection>,
    drift_detection_delay: u32,
    drift_failures: HashMap<String, String>,
    record_calls: bool,
    calls: Vec<Call>,
    call_counts: HashMap<Operation, usize>,
    counter: u64,
}

impl State {
    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn now(&mut self) -> DateTime<Utc> {
        let tick = self.next() as i64;
        DateTime::from_timestamp(EPOCH + tick, 0).unwrap_or(DateTime::UNIX_EPOCH)
    }

    fn uuid(&mut self) -> String {
        let n = self.next();
        let mut z = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z ^= z >> 29;
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            z >> 32,
            (z >> 16) & 0xffff,
            z & 0xfff,
            (z >> 4) & 0xfff,
            n
        )
    }

    /// Logs the call and applies error injection.
    fn enter(&mut self, operation: Operation, stack: &str, change_set: Option<&str>) -> AwsResult<()> {
        let call = Call {
            operation,
            stack: stack.to_string(),
            change_set: change_set.map(str::to_string),
        };
        *self.call_counts.entry(operation).or_default() += 1;
        let mut failure = None;
        if let Some((rates, sequence)) = &mut self.faults {
            let draw = next_unit(sequence);
            if draw < rates.throttled {
                self.fault_counts.throttled += 1;
                failure = Some(throttling_error());
            } else if draw < rates.throttled + rates.server_errors {
                self.fault_counts.server_errors += 1;
                failure = Some(server_error());
            }
        }
        if failure.is_none() {
            for injection in &mut self.injections {
                if injection.matches(&call) && injection.fire() {
                    failure = Some(injection.error.clone());
                    break;
                }
            }
        }
        if self.record_calls {
            self.calls.push(call);
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Name of the live stack called `stack` (a name or an id).
    fn resolve(&self, stack: &str) -> Option<String> {
        if stack.starts_with("arn:") {
            self.ids.get(stack).cloned()
        } else {
            self.stacks.contains_key(stack).then(|| stack.to_string())
        }
    }

    fn event(&mut self, name: &str, logical_id: &str, resource_type: &str, status: &str, reason: Option<&str>) {
        let event_id = self.uuid();
        let timestamp = self.now();
        let Some(stack) = self.stacks.get_mut(name) else {
            return;
        };
        let physical_id = if resource_type == STACK_TYPE {
            Some(stack.id.clone())
        } else {
            stack.physical_ids.get(logical_id).cloned()
        };
        stack.events.push(StackEvent {
            event_id,
            timestamp,
            logical_id: logical_id.to_string(),
            physical_id,
            resource_type: resource_type.to_string(),
            status: status.to_string(),
            reason: reason.map(str::to_string),
        });
    }

    /// Sets the stack's status and writes the stack's own event.
    fn stack_status(&mut self, name: &str, status: StackState, reason: Option<&str>) {
        if let Some(stack) = self.stacks.get_mut(name) {
            stack.status = status.clone();
            stack.status_reason = reason.map(str::to_string);
        }
        self.event(name, name, STACK_TYPE, status.as_str(), reason);
    }

    fn resource_event(&mut self, name: &str, logical_id: &str, status: &str, reason: Option<&str>) {
        let resource_type = self
            .stacks
            .get(name)
            .and_then(|s| {
                let from_content = s
                    .content
                    .as_ref()
                    .and_then(|c| c.template.resources.get(logical_id))
                    .map(|r| r.resource_type.clone());
                from_content.or_else(|| {
                    s.events
                        .iter()
                        .rev()
                        .find(|e| e.logical_id == logical_id)
                        .map(|e| e.resource_type.clone())
                })
            })
            .unwrap_or_default();
        if status.ends_with("_COMPLETE") && status.starts_with("CREATE") {
            let physical = format!("{name}-{logical_id}-{:08X}", self.next());
            if let Some(stack) = self.stacks.get_mut(name) {
                stack.physical_ids.entry(logical_id.to_string()).or_insert(physical);
            }
        }
        self.event(name, logical_id, &resource_type, status, reason);
        if status == "DELETE_COMPLETE"
            && let Some(stack) = self.stacks.get_mut(name)
        {
            stack.physical_ids.remove(logical_id);
        }
    }

    fn start(&mut self, name: &str, phase: Phase) {
        let steps = self.operation_steps;
        if let Some(stack) = self.stacks.get_mut(name) {
            stack.in_flight = Some(InFlight {
                remaining: steps,
                phase,
            });
        }
    }

    /// One `describe_stack` worth of time for this stack.
    fn tick(&mut self, name: &str) {
        let Some(stack) = self.stacks.get_mut(name) else {
            return;
        };
        let Some(flight) = &mut stack.in_flight else {
            return;
        };
        if flight.remaining > 0 {
            flight.remaining -= 1;
            return;
        }
        self.settle(name);
        if let Some(flight) = self.stacks.get_mut(name).and_then(|s| s.in_flight.as_mut()) {
            flight.remaining = flight.remaining.saturating_sub(1);
        }
    }

    /// Ends phases whose steps are used up (all of them when steps = 0).
    fn settle(&mut self, name: &str) {
        loop {
            let Some(stack) = self.stacks.get_mut(name) else {
                return;
            };
            match &stack.in_flight {
                Some(flight) if flight.remaining == 0 => {}
                _ => return,
            }
            let Some(flight) = stack.in_flight.take() else {
                return;
            };
            self.finish(name, flight.phase);
        }
    }

    fn outputs_for(name: &str, template: &Template) -> Vec<StackOutput> {
        template
            .outputs
            .iter()
            .map(|(key, description, export_name)| StackOutput {
                key: key.clone(),
                value: format!("{name}-{key}"),
                description: description.clone(),
                export_name: export_name.clone(),
            })
            .collect()
    }

    fn changes_of(&self, name: &str, change_set: &str) -> Vec<ResourceChange> {
        self.stacks
            .get(name)
            .and_then(|s| s.change_sets.iter().find(|cs| cs.name == change_set))
            .map(|cs| cs.changes.clone())
            .unwrap_or_default()
    }

    fn finish(&mut self, name: &str, phase: Phase) {
        match phase {
            Phase::Create { change_set, failure } => {
                let changes = self.changes_of(name, &change_set);
                for change in &changes {
                    let failed = failure.as_ref().filter(|(id, _)| *id == change.logical_id);
                    self.resource_event(name, &change.logical_id, "CREATE_IN_PROGRESS", None);
                    match failed {
                        Some((_, reason)) => {
                            self.resource_event(name, &change.logical_id, "CREATE_FAILED", Some(reason));
                            break;
                        }
                        None => self.resource_event(name, &change.logical_id, "CREATE_COMPLETE", None),
                    }
                }
                match failure {
                    None => {
                        let template = self.stacks.get(name).and_then(|s| s.content.clone());
                        if let (Some(content), Some(stack)) = (template, self.stacks.get_mut(name)) {
                            stack.outputs = Self::outputs_for(name, &content.template);
                        }
                        self.set_execution(name, &change_set, ExecutionStatus::ExecuteComplete);
                        self.stack_status(name, StackState::CreateComplete, None);
                    }
                    Some((id, _)) => {
                        let reason =
                            format!("The following resource(s) failed to create: [{id}]. Rollback requested by user.");
                        self.stack_status(name, StackState::RollbackInProgress, Some(&reason));
                        self.start(name, Phase::CreateRollback { change_set });
                    }
                }
            }
            Phase::CreateRollback { change_set } => {
                let created: Vec<String> = self
                    .stacks
                    .get(name)
                    .map(|s| s.physical_ids.keys().cloned().collect())
                    .unwrap_or_default();
                for id in created.iter().rev() {
                    self.resource_event(name, id, "DELETE_IN_PROGRESS", None);
                    self.resource_event(name, id, "DELETE_COMPLETE", None);
                }
                self.set_execution(name, &change_set, ExecutionStatus::ExecuteFailed);
                self.stack_status(name, StackState::RollbackComplete, None);
            }
            Phase::Update {
                change_set,
                failure,
                rollback_failure,
                previous,
            } => {
                let changes = self.changes_of(name, &change_set);
                let mut removed = Vec::new();
                let mut failed_id = None;
                for change in &changes {
                    let (start, done, fail) = match change.action.as_str() {
                        "Add" => ("CREATE_IN_PROGRESS", "CREATE_COMPLETE", "CREATE_FAILED"),
                        "Modify" => ("UPDATE_IN_PROGRESS", "UPDATE_COMPLETE", "UPDATE_FAILED"),
                        _ => {
                            removed.push(change.logical_id.clone());
                            continue;
                        }
                    };
                    self.resource_event(name, &change.logical_id, start, None);
                    match failure.as_ref().filter(|(id, _)| *id == change.logical_id) {
                        Some((id, reason)) => {
                            self.resource_event(name, id, fail, Some(reason));
                            failed_id = Some(id.clone());
                            break;
                        }
                        None => self.resource_event(name, &change.logical_id, done, None),
                    }
                }
                if let (Some((id, reason)), None) = (&failure, &failed_id) {
                    // The failing resource was not among the changes: fail the first one.
                    self.resource_event(name, id, "UPDATE_FAILED", Some(reason));
                    failed_id = Some(id.clone());
                }
                match failed_id {
                    None if removed.is_empty() => {
                        self.update_complete(name, &change_set);
                    }
                    None => {
                        self.stack_status(name, StackState::UpdateCompleteCleanupInProgress, None);
                        self.start(name, Phase::UpdateCleanup { change_set, removed });
                    }
                    Some(id) => {
                        let reason = format!("The following resource(s) failed to update: [{id}]. ");
                        self.stack_status(name, StackState::UpdateRollbackInProgress, Some(&reason));
                        self.start(
                            name,
                            Phase::UpdateRollback {
                                change_set,
                                rollback_failure,
                                previous,
                                failed_resource: id,
                            },
                        );
                    }
                }
            }
            Phase::UpdateCleanup { change_set, removed } => {
                for id in &removed {
                    self.resource_event(name, id, "DELETE_IN_PROGRESS", None);
                    self.resource_event(name, id, "DELETE_COMPLETE", None);
                    if let Some(stack) = self.stacks.get_mut(name) {
                        stack.drift.remove(id);
                    }
                }
                self.update_complete(name, &change_set);
            }
            Phase::UpdateRollback {
                change_set,
                rollback_failure,
                previous,
                failed_resource,
            } => {
                self.set_execution(name, &change_set, ExecutionStatus::ExecuteFailed);
                match rollback_failure {
                    Some(reason) => {
                        if !failed_resource.is_empty() {
                            self.resource_event(name, &failed_resource, "UPDATE_FAILED", Some(&reason));
                        }
                        if let Some(stack) = self.stacks.get_mut(name) {
                            stack.rollback = Some(StuckRollback {
                                change_set,
                                previous,
                                failed_resource,
                            });
                        }
                        self.stack_status(name, StackState::UpdateRollbackFailed, Some(&reason));
                    }
                    None => {
                        if let Some(stack) = self.stacks.get_mut(name) {
                            stack.content = Some(*previous);
                            stack.rollback = None;
                        }
                        self.stack_status(name, StackState::UpdateRollbackComplete, None);
                    }
                }
            }
            Phase::Delete { failure, retained } => {
                let resources: Vec<String> = self
                    .stacks
                    .get(name)
                    .map(|s| s.resources().into_keys().collect())
                    .unwrap_or_default();
                for id in resources.iter().rev() {
                    if retained.contains(id) {
                        self.resource_event(name, id, "DELETE_SKIPPED", None);
                        continue;
                    }
                    self.resource_event(name, id, "DELETE_IN_PROGRESS", None);
                    if let Some((_, reason)) = failure.as_ref().filter(|(f, _)| f == id) {
                        self.resource_event(name, id, "DELETE_FAILED", Some(reason));
                        let reason = format!("The following resource(s) failed to delete: [{id}]. ");
                        self.stack_status(name, StackState::DeleteFailed, Some(&reason));
                        return;
                    }
                    self.resource_event(name, id, "DELETE_COMPLETE", None);
                }
                self.stack_status(name, StackState::DeleteComplete, None);
                self.remove(name);
            }
        }
    }

    fn update_complete(&mut self, name: &str, change_set: &str) {
        let template = self.stacks.get(name).and_then(|s| s.content.clone());
        let now = self.now();
        if let (Some(content), Some(stack)) = (template, self.stacks.get_mut(name)) {
            stack.outputs = Self::outputs_for(name, &content.template);
            stack.last_updated_time = Some(now);
            let reverted = stack
                .change_sets
                .iter()
                .any(|cs| cs.name == change_set && cs.deployment_mode == Some(DeploymentMode::RevertDrift));
            if reverted {
                // A drift-aware change set brings every resource back to its
                // template and resets its drift status.
                stack.drift.clear();
                stack.drift_results.clear();
            }
        }
        self.set_execution(name, change_set, ExecutionStatus::ExecuteComplete);
        self.stack_status(name, StackState::UpdateComplete, None);
    }

    fn set_execution(&mut self, name: &str, change_set: &str, status: ExecutionStatus) {
        if let Some(stack) = self.stacks.get_mut(name) {
            stack.set_execution(change_set, status);
        }
    }

    /// Moves a stack to the deleted set (DELETE_COMPLETE, findable by id).
    fn remove(&mut self, name: &str) {
        if let Some(mut stack) = self.stacks.remove(name) {
            self.ids.remove(&stack.id);
            stack.status = StackState::DeleteComplete;
            stack.in_flight = None;
            stack.change_sets.clear();
            self.deleted.insert(stack.id.clone(), stack);
        }
    }

    fn new_stack(&mut self, name: &str) -> String {
        let uuid = self.uuid();
        let id = format!(
            "arn:aws:cloudformation:{}:{ACCOUNT_ID}:stack/{name}/{uuid}",
            self.region
        );
        let creation_time = self.now();
        self.ids.insert(id.clone(), name.to_string());
        self.stacks.insert(
            name.to_string(),
            FakeStack {
                id: id.clone(),
                name: name.to_string(),
                status: StackState::ReviewInProgress,
                status_reason: None,
                content: None,
                outputs: Vec::new(),
                termination_protection: false,
                creation_time,
                last_updated_time: None,
                events: Vec::new(),
                change_sets: Vec::new(),
                tokens: BTreeSet::new(),
                physical_ids: BTreeMap::new(),
                in_flight: None,
                policy: None,
                drift: BTreeMap::new(),
                drift_results: Vec::new(),
                rollback: None,
            },
        );
        id
    }

    fn read_template(&self, source: &TemplateSource) -> AwsResult<(String, Template)> {
        let body = match source {
            TemplateSource::Body(body) => body.clone(),
            TemplateSource::Url(url) => self
                .templates_by_url
                .get(url)
                .cloned()
                .ok_or_else(|| validation(format!("S3 error: The specified key does not exist. ({url})")))?,
        };
        let template = parse_template(&body)?;
        Ok((body, template))
    }

    fn create_change_set(&mut self, request: &ChangeSetRequest) -> AwsResult<String> {
        let stack_name = request.stack_name.as_str();
        let existing = self.resolve(stack_name);
        // Idempotency and name clashes first, as AWS does.
        if let Some(stack) = existing.as_ref().and_then(|n| self.stacks.get(n))
            && let Some(cs) = stack.change_sets.iter().find(|cs| cs.name == request.change_set_name)
        {
            if !request.client_token.is_empty() && cs.client_token == request.client_token {
                return Ok(cs.id.clone());
            }
            return Err(AwsError::new(
                AwsErrorKind::AlreadyExists,
                "AlreadyExistsException",
                format!("ChangeSet [{}] already exists", request.change_set_name),
            ));
        }
        match (
            request.change_set_type,
            existing.as_ref().and_then(|n| self.stacks.get(n)),
        ) {
            (ChangeSetType::Create, Some(stack)) if stack.status != StackState::ReviewInProgress => {
                return Err(AwsError::new(
                    AwsErrorKind::AlreadyExists,
                    "ValidationError",
                    format!(
                        "Stack [{stack_name}] already exists and cannot be created again with the changeSet [{}].",
                        request.change_set_name
                    ),
                ));
            }
            (ChangeSetType::Update, None) => return Err(stack_not_found(stack_name)),
            (ChangeSetType::Update, Some(stack)) => {
                let updatable = matches!(
                    stack.status,
                    StackState::CreateComplete
                        | StackState::UpdateComplete
                        | StackState::UpdateRollbackComplete
                        | StackState::ImportComplete
                        | StackState::ImportRollbackComplete
                );
                if !updatable {
                    return Err(stack.in_progress_error("updated"));
                }
            }
            _ => {}
        }
        let (body, template) = self.read_template(&request.template)?;
        let undeclared: Vec<&str> = request
            .parameters
            .iter()
            .filter(|p| !template.parameters.contains_key(&p.key))
            .map(|p| p.key.as_str())
            .collect();
        if !undeclared.is_empty() {
            return Err(validation(format!(
                "Parameters: [{}] do not exist in the template",
                undeclared.join(", ")
            )));
        }
        let mut parameters = Vec::new();
        let mut missing = Vec::new();
        for (key, default) in &template.parameters {
            let given = request.parameters.iter().rev().find(|p| &p.key == key);
            match (given, default) {
                (Some(p), _) => parameters.push(p.clone()),
                (None, Some(default)) => parameters.push(Parameter {
                    key: key.clone(),
                    value: default.clone(),
                }),
                (None, None) => missing.push(key.as_str()),
            }
        }
        if !missing.is_empty() {
            return Err(validation(format!(
                "Parameters: [{}] must have values",
                missing.join(", ")
            )));
        }
        let needs_iam = template
            .resources
            .values()
            .any(|r| r.resource_type.starts_with("AWS::IAM::"));
        let has_iam = request
            .capabilities
            .iter()
            .any(|c| c == "CAPABILITY_IAM" || c == "CAPABILITY_NAMED_IAM");
        if needs_iam && !has_iam {
            return Err(AwsError::new(
                AwsErrorKind::Validation,
                "InsufficientCapabilitiesException",
                "Requires capabilities : [CAPABILITY_IAM]",
            ));
        }

        let name = match existing {
            Some(name) => name,
            None => {
                self.new_stack(stack_name);
                self.stack_status(stack_name, StackState::ReviewInProgress, Some("User Initiated"));
                stack_name.to_string()
            }
        };
        let content = Content {
            template,
            body,
            parameters,
            tags: request.tags.clone(),
            capabilities: request.capabilities.clone(),
            role_arn: request.role_arn.clone(),
        };
        let revert_drift = request.deployment_mode == Some(DeploymentMode::RevertDrift);
        let (changes, empty) = self.diff(&name, &content, request.change_set_type, revert_drift);
        let uuid = self.uuid();
        let id = format!(
            "arn:aws:cloudformation:{}:{ACCOUNT_ID}:changeSet/{}/{uuid}",
            self.region, request.change_set_name
        );
        let mut change_set = FakeChangeSet {
            id: id.clone(),
            name: request.change_set_name.clone(),
            client_token: request.client_token.clone(),
            kind: request.change_set_type,
            status: ChangeSetStatus::CreatePending,
            status_reason: None,
            execution_status: ExecutionStatus::Unavailable,
            changes,
            pending_describes: self.change_set_delay,
            empty,
            content,
            deployment_mode: request.deployment_mode,
        };
        if change_set.pending_describes == 0 {
            complete_change_set(&mut change_set);
        }
        if let Some(stack) = self.stacks.get_mut(&name) {
            stack.change_sets.push(change_set);
        }
        Ok(id)
    }

    /// Resource changes from the stack's current content to `new`, and
    /// whether the change set is empty. With `revert_drift`, drifted
    /// resources the template keeps are changed back (`Modify`, or `Add` when
    /// deleted) even where the template did not change them.
    fn diff(&self, name: &str, new: &Content, kind: ChangeSetType, revert_drift: bool) -> (Vec<ResourceChange>, bool) {
        let stack = self.stacks.get(name);
        let old = stack.and_then(|s| s.content.as_ref());
        let old_resources = stack.map(FakeStack::resources).unwrap_or_default();
        let old_params: BTreeMap<&str, &str> = old
            .map(|c| {
                c.parameters
                    .iter()
                    .map(|p| (p.key.as_str(), p.value.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        let changed_params: Vec<&str> = new
            .parameters
            .iter()
            .filter(|p| old_params.get(p.key.as_str()) != Some(&p.value.as_str()))
            .map(|p| p.key.as_str())
            .collect();
        let physical = |id: &str| stack.and_then(|s| s.physical_ids.get(id).cloned());
        let drift_of = |id: &str| {
            stack
                .and_then(|s| s.drift.get(id))
                .map(|d| d.drift.clone())
                .filter(|d| revert_drift && d.is_drifted())
        };
        let mut reverts_drift = false;
        let mut changes = Vec::new();
        let ids: BTreeSet<&String> = old_resources.keys().chain(new.template.resources.keys()).collect();
        for id in ids {
            let change = match (old_resources.get(id), new.template.resources.get(id)) {
                (None, Some(added)) => Some(("Add", added, None)),
                (Some(removed), None) => Some(("Remove", removed, None)),
                (Some(before), Some(after)) => {
                    let modified = before.definition != after.definition
                        || changed_params.iter().any(|p| references(&after.definition, p));
                    let replacement = if let Some(configured) = self.replacements.get(id.as_str()) {
                        configured.clone()
                    } else if before.resource_type != after.resource_type {
                        "True".to_string()
                    } else {
                        "False".to_string()
                    };
                    match drift_of(id) {
                        _ if modified => Some(("Modify", after, Some(replacement))),
                        Some(ResourceDriftStatus::Deleted) => {
                            reverts_drift = true;
                            Some(("Add", after, None))
                        }
                        Some(_) => {
                            reverts_drift = true;
                            Some(("Modify", after, Some("False".to_string())))
                        }
                        None => None,
                    }
                }
                (None, None) => None,
            };
            if let Some((action, resource, replacement)) = change {
                changes.push(ResourceChange {
                    action: action.to_string(),
                    logical_id: id.clone(),
                    physical_id: if action == "Add" { None } else { physical(id) },
                    resource_type: resource.resource_type.clone(),
                    replacement,
                });
            }
        }
        let empty = kind == ChangeSetType::Update
            && !reverts_drift
            && old.is_some_and(|old| {
                old.template.document == new.template.document
                    && old.parameters == new.parameters
                    && old.tags == new.tags
            });
        (changes, empty)
    }

    fn execute(&mut self, stack: &str, change_set_name: &str, token: &str) -> AwsResult<()> {
        let name = self.resolve(stack).ok_or_else(|| stack_not_found(stack))?;
        let configured = (
            self.failures.create.get(&name).cloned(),
            self.failures.update.get(&name).cloned(),
            self.failures.update_rollback.get(&name).cloned(),
        );
        let resource_failures = self.failures.resources.clone();
        let Some(fake) = self.stacks.get_mut(&name) else {
            return Err(stack_not_found(stack));
        };
        let key = (Operation::ExecuteChangeSet, token.to_string());
        if !token.is_empty() && fake.tokens.contains(&key) {
            return Ok(());
        }
        let Some(cs) = fake
            .change_sets
            .iter()
            .find(|cs| cs.name == change_set_name || cs.id == change_set_name)
            .cloned()
        else {
            return Err(AwsError::new(
                AwsErrorKind::NotFound,
                "ChangeSetNotFound",
                format!("ChangeSet [{change_set_name}] does not exist"),
            ));
        };
        if cs.execution_status != ExecutionStatus::Available {
            return Err(AwsError::new(
                AwsErrorKind::Validation,
                "InvalidChangeSetStatus",
                format!(
                    "ChangeSet [{}] cannot be executed in its current status of [{}]",
                    cs.id,
                    cs.status.as_str()
                ),
            ));
        }
        if fake.status.is_in_progress() && fake.status != StackState::ReviewInProgress {
            return Err(fake.in_progress_error("updated"));
        }
        if !token.is_empty() {
            fake.tokens.insert(key);
        }
        // AWS drops the other change sets of a stack once one is executed.
        fake.change_sets.retain(|other| other.name == cs.name);
        fake.set_execution(&cs.name, ExecutionStatus::ExecuteInProgress);
        let previous = fake.content.replace(cs.content.clone());
        let touched: Vec<&str> = cs
            .changes
            .iter()
            .filter(|c| c.action != "Remove")
            .map(|c| c.logical_id.as_str())
            .collect();
        let by_resource = touched
            .iter()
            .find_map(|id| resource_failures.get(*id).map(|r| (id.to_string(), r.clone())));
        let first = touched
            .first()
            .map(|id| id.to_string())
            .or_else(|| cs.content.template.resources.keys().next().cloned())
            .unwrap_or_default();
        let (create_failure, update_failure, rollback_failure) = configured;
        match (cs.kind, previous) {
            (ChangeSetType::Create, _) | (_, None) => {
                let failure = create_failure.map(|r| (first, r)).or(by_resource);
                self.stack_status(&name, StackState::CreateInProgress, Some("User Initiated"));
                self.start(
                    &name,
                    Phase::Create {
                        change_set: cs.name,
                        failure,
                    },
                );
            }
            (ChangeSetType::Update, Some(previous)) => {
                let failure = update_failure.map(|r| (first, r)).or(by_resource);
                self.stack_status(&name, StackState::UpdateInProgress, Some("User Initiated"));
                self.start(
                    &name,
                    Phase::Update {
                        change_set: cs.name,
                        failure,
                        rollback_failure,
                        previous: Box::new(previous),
                    },
                );
            }
        }
        self.settle(&name);
        Ok(())
    }

    fn delete_stack(&mut self, stack: &str, token: &str, retain: &[String]) -> AwsResult<()> {
        let Some(name) = self.resolve(stack) else {
            // Deleting a stack that is gone succeeds, as in AWS.
            return Ok(());
        };
        let failure = self.failures.delete.get(&name).cloned();
        let Some(fake) = self.stacks.get_mut(&name) else {
            return Ok(());
        };
        let key = (Operation::DeleteStack, token.to_string());
        if !token.is_empty() && fake.tokens.contains(&key) {
            return Ok(());
        }
        if fake.status == StackState::DeleteInProgress {
            return Ok(());
        }
        if !retain.is_empty() && fake.status != StackState::DeleteFailed {
            return Err(validation(format!(
                "Invalid operation on stack [{}]: RetainResources can only be specified when the stack is in DELETE_FAILED state",
                fake.id
            )));
        }
        if fake.termination_protection {
            return Err(validation(format!(
                "Stack [{name}] cannot be deleted while TerminationProtection is enabled"
            )));
        }
        let cancellable = matches!(fake.status, StackState::CreateInProgress | StackState::ReviewInProgress);
        if fake.status.is_in_progress() && !cancellable {
            return Err(AwsError::new(
                AwsErrorKind::InProgress,
                "ValidationError",
                format!("Stack [{name}] cannot be deleted while in status {}", fake.status),
            ));
        }
        if !token.is_empty() {
            fake.tokens.insert(key);
        }
        fake.in_flight = None;
        // The resource deleted first (the last logical id) is the one that
        // fails; retaining it lets the delete finish.
        let failing = fake
            .resources()
            .into_keys()
            .next_back()
            .filter(|id| !retain.contains(id));
        let failure = failure.and_then(|reason| failing.map(|id| (id, reason)));
        self.stack_status(&name, StackState::DeleteInProgress, Some("User Initiated"));
        self.start(
            &name,
            Phase::Delete {
                failure,
                retained: retain.to_vec(),
            },
        );
        self.settle(&name);
        Ok(())
    }

    fn stack_mut(&mut self, name: &str) -> Option<&mut FakeStack> {
        let name = self.resolve(name)?;
        self.stacks.get_mut(&name)
    }

    fn find_any(&self, stack: &str) -> Option<&FakeStack> {
        match self.resolve(stack) {
            Some(name) => self.stacks.get(&name),
            None => self.deleted.get(stack),
        }
    }

    /// The live stack, or the AWS "does not exist" error.
    fn live_mut(&mut self, stack: &str) -> AwsResult<&mut FakeStack> {
        let name = self.resolve(stack).ok_or_else(|| stack_not_found(stack))?;
        self.stacks.get_mut(&name).ok_or_else(|| stack_not_found(stack))
    }

    fn continue_update_rollback(&mut self, stack: &str, skip: &[String], token: &str) -> AwsResult<()> {
        let name = self.resolve(stack).ok_or_else(|| stack_not_found(stack))?;
        let configured = self.failures.update_rollback.get(&name).cloned();
        let fake = self.live_mut(stack)?;
        let key = (Operation::ContinueUpdateRollback, token.to_string());
        if !token.is_empty() && fake.tokens.contains(&key) {
            return Ok(());
        }
        if fake.status != StackState::UpdateRollbackFailed {
            return Err(fake.in_progress_error("rolled back"));
        }
        // Set out of band (set_status): nothing recorded, keep the content.
        let stuck = match fake.rollback.clone() {
            Some(stuck) => stuck,
            None => StuckRollback {
                change_set: String::new(),
                previous: Box::new(fake.content.clone().ok_or_else(|| stack_not_found(stack))?),
                failed_resource: fake.resources().into_keys().next().unwrap_or_default(),
            },
        };
        if let Some(bad) = skip.iter().find(|id| **id != stuck.failed_resource) {
            return Err(validation(format!(
                "Resource [{bad}] cannot be skipped: only resources in UPDATE_FAILED state can be skipped"
            )));
        }
        if !token.is_empty() {
            fake.tokens.insert(key);
        }
        fake.rollback = None;
        let skipped = skip.contains(&stuck.failed_resource);
        let rollback_failure = configured.filter(|_| !skipped);
        self.stack_status(&name, StackState::UpdateRollbackInProgress, Some("User Initiated"));
        for id in skip {
            self.resource_event(&name, id, "UPDATE_COMPLETE", Some("Resource skipped during rollback"));
        }
        self.start(
            &name,
            Phase::UpdateRollback {
                change_set: stuck.change_set,
                rollback_failure,
                previous: stuck.previous,
                failed_resource: stuck.failed_resource,
            },
        );
        self.settle(&name);
        Ok(())
    }

    fn detect_stack_drift(&mut self, stack: &str) -> AwsResult<String> {
        let name = self.resolve(stack).ok_or_else(|| stack_not_found(stack))?;
        let failure = self.drift_failures.get(&name).cloned();
        let delay = self.drift_detection_delay;
        let id = self.uuid();
        let timestamp = self.now();
        let fake = self.live_mut(stack)?;
        if fake.status.is_in_progress() {
            return Err(fake.in_progress_error("checked for drift"));
        }
        let resources = fake.resources();
        let results: Vec<ResourceDrift> = fake
            .drift
            .values()
            .filter(|d| d.drift.is_drifted())
            .filter_map(|d| {
                let resource = resources.get(&d.logical_id)?;
                let mut d = d.clone();
                if d.physical_id.is_none() {
                    d.physical_id = fake.physical_ids.get(&d.logical_id).cloned();
                }
                if d.resource_type.is_empty() {
                    d.resource_type = resource.resource_type.clone();
                }
                Some(d)
            })
            .collect();
        let published = delay == 0;
        if published {
            fake.drift_results = results.clone();
        }
        self.detections.insert(
            id.clone(),
            Detection {
                stack: name,
                remaining: delay,
                timestamp,
                results,
                failure,
                published,
            },
        );
        Ok(id)
    }

    fn drift_detection_status(&mut self, detection_id: &str) -> AwsResult<DriftDetection> {
        let not_found = || {
            AwsError::new(
                AwsErrorKind::NotFound,
                "ValidationError",
                format!("Drift detection [{detection_id}] does not exist"),
            )
        };
        let detection = self.detections.get_mut(detection_id).ok_or_else(not_found)?;
        let running = detection.remaining > 0;
        if running {
            detection.remaining -= 1;
        } else if !detection.published {
            detection.published = true;
            let (stack, results) = (detection.stack.clone(), detection.results.clone());
            if let Some(fake) = self.stacks.get_mut(&stack) {
                fake.drift_results = results;
            }
        }
        let detection = self.detections.get(detection_id).ok_or_else(not_found)?;
        let drifted = detection.results.len() as u32;
        Ok(DriftDetection {
            detection_id: detection_id.to_string(),
            status: match (running, &detection.failure) {
                (true, _) => DriftDetectionStatus::InProgress,
                (false, None) => DriftDetectionStatus::Complete,
                (false, Some(_)) => DriftDetectionStatus::Failed,
            },
            stack_drift_status: match (running, drifted) {
                (true, _) => StackDriftStatus::Unknown,
                (false, 0) => StackDriftStatus::InSync,
                (false, _) => StackDriftStatus::Drifted,
            },
            reason: detection.failure.clone().filter(|_| !running),
            drifted_resource_count: (!running).then_some(drifted),
            timestamp: detection.timestamp,
        })
    }

    /// One page of the bulk DescribeStacks, from `names`; time passes for
    /// each stack on it.
    fn stacks_page(&mut self, names: &[String]) -> Vec<StackDescription> {
        let mut page = Vec::with_capacity(names.len());
        for name in names {
            self.tick(name);
            if let Some(stack) = self.stacks.get(name) {
                page.push(stack.describe());
            }
        }
        page
    }
}

fn complete_change_set(cs: &mut FakeChangeSet) {
    if cs.empty {
        cs.status = ChangeSetStatus::Failed;
        cs.status_reason = Some(EMPTY_CHANGE_SET_REASON.to_string());
        cs.execution_status = ExecutionStatus::Unavailable;
    } else {
        cs.status = ChangeSetStatus::CreateComplete;
        cs.execution_status = ExecutionStatus::Available;
    }
}

fn describe_change_set(stack: &FakeStack, cs: &FakeChangeSet) -> ChangeSetDescription {
    ChangeSetDescription {
        change_set_id: cs.id.clone(),
        change_set_name: cs.name.clone(),
        stack_id: Some(stack.id.clone()),
        status: cs.status.clone(),
        status_reason: cs.status_reason.clone(),
        execution_status: cs.execution_status.clone(),
        changes: if cs.status == ChangeSetStatus::CreatePending {
            Vec::new()
        } else {
            cs.changes.clone()
        },
    }
}

/// In-memory CloudFormation for one region. See the module docs for the model.
#[derive(Debug)]
pub struct FakeCloudFormation {
    state: Mutex<State>,
}

impl Default for FakeCloudFormation {
    fn default() -> Self {
        Self::new("us-east-1")
    }
}

impl FakeCloudFormation {
    pub fn new(region: impl Into<String>) -> Self {
        Self {
            state: Mutex::new(State {
                region: region.into(),
                stacks: HashMap::new(),
                ids: HashMap::new(),
                deleted: HashMap::new(),
                templates_by_url: HashMap::new(),
                change_set_delay: 1,
                operation_steps: 1,
                replacements: HashMap::new(),
                failures: Failures {
                    create: HashMap::new(),
                    update: HashMap::new(),
                    update_rollback: HashMap::new(),
                    delete: HashMap::new(),
                    resources: HashMap::new(),
                },
                injections: Vec::new(),
                faults: None,
                fault_counts: FaultCounts::default(),
                detections: HashMap::new(),
                drift_detection_delay: 1,
                drift_failures: HashMap::new(),
                record_calls: true,
                calls: Vec::new(),
                call_counts: HashMap::new(),
                counter: 0,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn region(&self) -> String {
        self.state().region.clone()
    }

    // ---- behaviour knobs

    /// `describe_change_set` calls that still see CREATE_PENDING (default 1).
    pub fn set_change_set_delay(&self, describes: u32) {
        self.state().change_set_delay = describes;
    }

    /// `describe_stack` calls that see each in-progress phase (default 1; 0
    /// completes operations inside execute/delete, like moto).
    pub fn set_operation_steps(&self, describes: u32) {
        self.state().operation_steps = describes;
    }

    /// The `Replacement` reported when `logical_id` is modified (`True`,
    /// `False`, `Conditional`).
    pub fn set_replacement(&self, logical_id: &str, replacement: &str) {
        self.state()
            .replacements
            .insert(logical_id.to_string(), replacement.to_string());
    }

    /// Content for `TemplateSource::Url(url)`.
    pub fn put_template_url(&self, url: &str, body: &str) {
        self.state().templates_by_url.insert(url.to_string(), body.to_string());
    }

    /// Keep the full call log (default) or only the per-operation counts
    /// (for benchmarks with many calls).
    pub fn record_calls(&self, enabled: bool) {
        self.state().record_calls = enabled;
    }

    // ---- failure injection

    /// Creating `stack` fails: its first resource ends CREATE_FAILED with
    /// `reason`, then ROLLBACK_IN_PROGRESS -> ROLLBACK_COMPLETE.
    pub fn fail_create(&self, stack: &str, reason: &str) {
        self.state().failures.create.insert(stack.into(), reason.into());
    }

    /// Updating `stack` fails: the first changed resource ends UPDATE_FAILED,
    /// then UPDATE_ROLLBACK_IN_PROGRESS -> UPDATE_ROLLBACK_COMPLETE (previous
    /// template, parameters and tags restored).
    pub fn fail_update(&self, stack: &str, reason: &str) {
        self.state().failures.update.insert(stack.into(), reason.into());
    }

    /// A failed update of `stack` ends UPDATE_ROLLBACK_FAILED with `reason`.
    pub fn fail_update_rollback(&self, stack: &str, reason: &str) {
        self.state()
            .failures
            .update_rollback
            .insert(stack.into(), reason.into());
    }

    /// Deleting `stack` ends DELETE_FAILED: its last logical id (the first
    /// deleted) fails with `reason`, unless that resource is retained.
    pub fn fail_delete(&self, stack: &str, reason: &str) {
        self.state().failures.delete.insert(stack.into(), reason.into());
    }

    /// Creating or updating resource `logical_id` fails in any stack.
    pub fn fail_resource(&self, logical_id: &str, reason: &str) {
        self.state().failures.resources.insert(logical_id.into(), reason.into());
    }

    pub fn clear_failures(&self) {
        let mut state = self.state();
        state.drift_failures.clear();
        state.failures.create.clear();
        state.failures.update.clear();
        state.failures.update_rollback.clear();
        state.failures.delete.clear();
        state.failures.resources.clear();
    }

    /// Adds an error injection; rules are tried in the order added.
    pub fn inject(&self, injection: ErrorInjection) {
        self.state().injections.push(injection);
    }

    /// The next call of `operation` fails with `error`.
    pub fn fail_next(&self, operation: Operation, error: AwsError) {
        self.inject(ErrorInjection::new(error).on(operation));
    }

    pub fn clear_injections(&self) {
        self.state().injections.clear();
    }

    /// Throttles and fails (HTTP 5xx) fixed fractions of every call from now
    /// on; `None` stops it. Applied before [`ErrorInjection`] rules.
    pub fn set_fault_rates(&self, rates: Option<FaultRates>) {
        self.state().faults = rates.map(|rates| (rates, rates.seed));
    }

    /// Calls failed by fault rates so far.
    pub fn fault_counts(&self) -> FaultCounts {
        self.state().fault_counts
    }

    // ---- drift

    /// Changes resource `drift.logical_id` of `stack` outside CloudFormation
    /// (`Modified` with differences, or `Deleted`); `InSync` undoes it. Seen
    /// by the next `detect_stack_drift` and by `RevertDrift` change sets. An
    /// empty `resource_type` / `None` physical id are filled in from the stack.
    pub fn set_resource_drift(&self, stack: &str, drift: ResourceDrift) {
        if let Some(s) = self.state().stack_mut(stack) {
            s.drift.insert(drift.logical_id.clone(), drift);
        }
    }

    /// Removes all drift of `stack` (not the latest detection's results).
    pub fn clear_resource_drift(&self, stack: &str) {
        if let Some(s) = self.state().stack_mut(stack) {
            s.drift.clear();
        }
    }

    /// `drift_detection_status` reads that still see DETECTION_IN_PROGRESS
    /// (default 1; 0 = complete at once).
    pub fn set_drift_detection_delay(&self, reads: u32) {
        self.state().drift_detection_delay = reads;
    }

    /// Drift detection runs of `stack` end DETECTION_FAILED with `reason`
    /// (the drifted resources found are still reported).
    pub fn fail_drift_detection(&self, stack: &str, reason: &str) {
        self.state().drift_failures.insert(stack.into(), reason.into());
    }

    /// The stack policy, without logging a call.
    pub fn stack_policy(&self, stack: &str) -> Option<String> {
        self.state().find_any(stack)?.policy.clone()
    }

    // ---- call log

    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Calls of `operation` since the last reset (counted even when the log
    /// is off, and including calls that failed by injection).
    pub fn call_count(&self, operation: Operation) -> usize {
        self.state().call_counts.get(&operation).copied().unwrap_or(0)
    }

    pub fn total_calls(&self) -> usize {
        self.state().call_counts.values().sum()
    }

    pub fn reset_calls(&self) {
        let mut state = self.state();
        state.calls.clear();
        state.call_counts.clear();
    }

    // ---- direct state access (no call logged, no time passes)

    /// Creates a stack directly in CREATE_COMPLETE, as if created earlier.
    pub fn put_stack(
        &self,
        name: &str,
        template_body: &str,
        parameters: &[Parameter],
        tags: BTreeMap<String, String>,
    ) -> AwsResult<String> {
        let mut state = self.state();
        if state.stacks.contains_key(name) {
            return Err(AwsError::new(
                AwsErrorKind::AlreadyExists,
                "AlreadyExistsException",
                format!("Stack [{name}] already exists"),
            ));
        }
        let template = parse_template(template_body)?;
        let id = state.new_stack(name);
        // Given values, else the template's defaults.
        let parameters = template
            .parameters
            .iter()
            .filter_map(|(key, default)| {
                let given = parameters.iter().rev().find(|p| &p.key == key);
                let value = given.map(|p| p.value.clone()).or_else(|| default.clone())?;
                Some(Parameter {
                    key: key.clone(),
                    value,
                })
            })
            .collect();
        let content = Content {
            template: template.clone(),
            body: template_body.to_string(),
            parameters,
            tags,
            capabilities: Vec::new(),
            role_arn: None,
        };
        state.stack_status(name, StackState::CreateInProgress, Some("User Initiated"));
        if let Some(stack) = state.stacks.get_mut(name) {
            stack.content = Some(content);
        }
        for id in template.resources.keys() {
            state.resource_event(name, id, "CREATE_IN_PROGRESS", None);
            state.resource_event(name, id, "CREATE_COMPLETE", None);
        }
        if let Some(stack) = state.stacks.get_mut(name) {
            stack.outputs = State::outputs_for(name, &template);
        }
        state.stack_status(name, StackState::CreateComplete, None);
        Ok(id)
    }

    /// What `describe_stack` would return, without logging a call or letting
    /// time pass.
    pub fn stack(&self, stack: &str) -> Option<StackDescription> {
        self.state().find_any(stack).map(FakeStack::describe)
    }

    /// The template body the stack runs (after execute), if any.
    pub fn template_body(&self, stack: &str) -> Option<String> {
        let state = self.state();
        state.find_any(stack)?.content.as_ref().map(|c| c.body.clone())
    }

    /// All stack events, newest first, without logging a call.
    pub fn events(&self, stack: &str) -> Vec<StackEvent> {
        let state = self.state();
        state
            .find_any(stack)
            .map(|s| s.events.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// Live stack names, sorted.
    pub fn stack_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.state().stacks.keys().cloned().collect();
        names.sort();
        names
    }

    /// Out-of-band status change (ends any operation in flight).
    pub fn set_status(&self, stack: &str, status: StackState, reason: Option<&str>) {
        let mut state = self.state();
        let Some(name) = state.resolve(stack) else {
            return;
        };
        if let Some(s) = state.stacks.get_mut(&name) {
            s.in_flight = None;
        }
        state.stack_status(&name, status, reason);
    }

    /// Out-of-band tag change.
    pub fn set_tags(&self, stack: &str, tags: BTreeMap<String, String>) {
        if let Some(content) = self.state().stack_mut(stack).and_then(|s| s.content.as_mut()) {
            content.tags = tags;
        }
    }

    /// Out-of-band parameter change.
    pub fn set_parameters(&self, stack: &str, parameters: Vec<Parameter>) {
        if let Some(content) = self.state().stack_mut(stack).and_then(|s| s.content.as_mut()) {
            content.parameters = parameters;
        }
    }

    pub fn set_termination_protection(&self, stack: &str, enabled: bool) {
        if let Some(s) = self.state().stack_mut(stack) {
            s.termination_protection = enabled;
        }
    }

    /// Someone deleted the stack outside stackpilot.
    pub fn delete_out_of_band(&self, stack: &str) {
        let mut state = self.state();
        if let Some(name) = state.resolve(stack) {
            state.stack_status(&name, StackState::DeleteComplete, None);
            state.remove(&name);
        }
    }
}

#[async_trait]
impl CloudFormation for FakeCloudFormation {
    async fn describe_stack(&self, stack: &str) -> AwsResult<Option<StackDescription>> {
        let mut state = self.state();
        state.enter(Operation::DescribeStacks, stack, None)?;
        match state.resolve(stack) {
            Some(name) => {
                state.tick(&name);
                // The tick may have completed a delete.
                Ok(state.find_any(stack).and_then(|s| {
                    (s.status != StackState::DeleteComplete || stack.starts_with("arn:")).then(|| s.describe())
                }))
            }
            None if stack.starts_with("arn:") => Ok(state.deleted.get(stack).map(FakeStack::describe)),
            None => Ok(None),
        }
    }

    async fn create_change_set(&self, request: &ChangeSetRequest) -> AwsResult<String> {
        let mut state = self.state();
        state.enter(
            Operation::CreateChangeSet,
            &request.stack_name,
            Some(&request.change_set_name),
        )?;
        state.create_change_set(request)
    }

    async fn describe_change_set(&self, stack: &str, change_set_name: &str) -> AwsResult<Option<ChangeSetDescription>> {
        let mut state = self.state();
        state.enter(Operation::DescribeChangeSet, stack, Some(change_set_name))?;
        let Some(fake) = state.stack_mut(stack) else {
            return Ok(None);
        };
        let Some(cs) = fake.change_set_mut(change_set_name) else {
            return Ok(None);
        };
        if cs.status == ChangeSetStatus::CreatePending {
            if cs.pending_describes == 0 {
                complete_change_set(cs);
            } else {
                cs.pending_describes -= 1;
            }
        }
        let cs = cs.clone();
        Ok(Some(describe_change_set(fake, &cs)))
    }

    async fn execute_change_set(&self, stack: &str, change_set_name: &str, client_token: &str) -> AwsResult<()> {
        let mut state = self.state();
        state.enter(Operation::ExecuteChangeSet, stack, Some(change_set_name))?;
        state.execute(stack, change_set_name, client_token)
    }

    /// Modelled as a change set made and run at once (named after the
    /// token); with nothing to change it does nothing, as AWS answers "No
    /// updates are to be performed".
    async fn update_stack(&self, request: &ChangeSetRequest) -> AwsResult<()> {
        let mut state = self.state();
        state.enter(Operation::UpdateStack, &request.stack_name, None)?;
        let name = format!("update-{}", request.client_token);
        let internal = ChangeSetRequest {
            change_set_name: name.clone(),
            change_set_type: ChangeSetType::Update,
            ..request.clone()
        };
        state.create_change_set(&internal)?;
        let Some(fake) = state.stack_mut(&request.stack_name) else {
            return Err(stack_not_found(&request.stack_name));
        };
        let Some(cs) = fake.change_set_mut(&name) else {
            return Ok(());
        };
        if cs.status == ChangeSetStatus::CreatePending {
            complete_change_set(cs);
        }
        if cs.status == ChangeSetStatus::Failed {
            fake.change_sets.retain(|cs| cs.name != name);
            return Ok(());
        }
        state.execute(&request.stack_name, &name, &request.client_token)
    }

    async fn delete_change_set(&self, stack: &str, change_set_name: &str) -> AwsResult<()> {
        let mut state = self.state();
        state.enter(Operation::DeleteChangeSet, stack, Some(change_set_name))?;
        if let Some(fake) = state.stack_mut(stack) {
            fake.change_sets
                .retain(|cs| cs.name != change_set_name && cs.id != change_set_name);
        }
        Ok(())
    }

    async fn delete_stack(&self, stack: &str, client_token: &str, retain_resources: &[String]) -> AwsResult<()> {
        let mut state = self.state();
        state.enter(Operation::DeleteStack, stack, None)?;
        state.delete_stack(stack, client_token, retain_resources)
    }

    async fn stack_events(
        &self,
        stack: &str,
        after_event_id: Option<&str>,
        limit: usize,
    ) -> AwsResult<Vec<StackEvent>> {
        let mut state = self.state();
        state.enter(Operation::DescribeStackEvents, stack, None)?;
        let fake = state.find_any(stack).ok_or_else(|| stack_not_found(stack))?;
        Ok(fake
            .events
            .iter()
            .rev()
            .take_while(|e| Some(e.event_id.as_str()) != after_event_id)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn describe_all_stacks(&self) -> AwsResult<StackListing> {
        let mut state = self.state();
        let mut names: Vec<String> = state.stacks.keys().cloned().collect();
        names.sort_unstable();
        let mut listing = StackListing::default();
        // At least one call, even for no stacks.
        for chunk in names
            .chunks(DESCRIBE_STACKS_PAGE)
            .chain(names.is_empty().then_some(&[][..]))
        {
            state.enter(Operation::DescribeStacks, "", None)?;
            listing.pages += 1;
            let page = state.stacks_page(chunk);
            listing.stacks.extend(page);
        }
        Ok(listing)
    }

    async fn get_template(&self, stack: &str) -> AwsResult<String> {
        let mut state = self.state();
        state.enter(Operation::GetTemplate, stack, None)?;
        let fake = state.find_any(stack).ok_or_else(|| stack_not_found(stack))?;
        match &fake.content {
            Some(content) => Ok(content.body.clone()),
            None => Err(validation(format!(
                "Stack [{}] has no template yet (status {})",
                fake.name, fake.status
            ))),
        }
    }

    async fn update_termination_protection(&self, stack: &str, enabled: bool) -> AwsResult<()> {
        let mut state = self.state();
        state.enter(Operation::UpdateTerminationProtection, stack, None)?;
        state.live_mut(stack)?.termination_protection = enabled;
        Ok(())
    }

    async fn set_stack_policy(&self, stack: &str, policy_body: &str) -> AwsResult<()> {
        let mut state = self.state();
        state.enter(Operation::SetStackPolicy, stack, None)?;
        let fake = state.live_mut(stack)?;
        if !serde_json::from_str::<Value>(policy_body).is_ok_and(|v| v.is_object()) {
            return Err(validation("Error validating stack policy: Invalid stack policy"));
        }
        fake.policy = Some(policy_body.to_string());
        Ok(())
    }

    async fn get_stack_policy(&self, stack: &str) -> AwsResult<Option<String>> {
        let mut state = self.state();
        state.enter(Operation::GetStackPolicy, stack, None)?;
        Ok(state.live_mut(stack)?.policy.clone())
    }

    async fn continue_update_rollback(
        &self,
        stack: &str,
        resources_to_skip: &[String],
        client_token: &str,
    ) -> AwsResult<()> {
        let mut state = self.state();
        state.enter(Operation::ContinueUpdateRollback, stack, None)?;
        state.continue_update_rollback(stack, resources_to_skip, client_token)
    }

    async fn detect_stack_drift(&self, stack: &str) -> AwsResult<String> {
        let mut state = self.state();
        state.enter(Operation::DetectStackDrift, stack, None)?;
        state.detect_stack_drift(stack)
    }

    async fn drift_detection_status(&self, detection_id: &str) -> AwsResult<DriftDetection> {
        let mut state = self.state();
        let stack = state
            .detections
            .get(detection_id)
            .map(|d| d.stack.clone())
            .unwrap_or_default();
        state.enter(Operation::DescribeStackDriftDetectionStatus, &stack, None)?;
        state.drift_detection_status(detection_id)
    }

    async fn resource_drifts(&self, stack: &str) -> AwsResult<Vec<ResourceDrift>> {
        let mut state = self.state();
        state.enter(Operation::DescribeStackResourceDrifts, stack, None)?;
        let drifts = state.live_mut(stack)?.drift_results.clone();
        for _ in 1..drifts.len().div_ceil(RESOURCE_DRIFTS_PAGE) {
            state.enter(Operation::DescribeStackResourceDrifts, stack, None)?;
        }
        Ok(drifts)
    }
}

#[async_trait]
impl TemplateStore for FakeCloudFormation {
    /// Stores `body` under its S3 URL, for `TemplateSource::Url`. Any bucket
    /// exists.
    async fn put_template(&self, bucket: &str, key: &str, body: &str) -> AwsResult<String> {
        let mut state = self.state();
        state.enter(Operation::PutObject, "", None)?;
        let url = super::sdk::template_url(None, &state.region, bucket, key);
        state.templates_by_url.insert(url.clone(), body.to_string());
        Ok(url)
    }
}

/// Hands out one [`FakeCloudFormation`] per region and records every target
/// asked for.
#[derive(Debug, Default)]
pub struct FakeProvider {
    regions: Mutex<BTreeMap<String, Arc<FakeCloudFormation>>>,
    targets: Mutex<Vec<AwsTarget>>,
    faults: Mutex<Option<FaultRates>>,
}

/// A seed per region from one seed (FNV-1a of the region name mixed in).
fn region_seed(seed: u64, region: &str) -> u64 {
    region.bytes().fold(0xCBF2_9CE4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    }) ^ seed
}

impl FakeProvider {
    pub fn new() -> Self {
        Self::default()
    }

    /// The fake for `region` (created on first use), for setup and asserts.
    pub fn region(&self, region: &str) -> Arc<FakeCloudFormation> {
        let faults = *self.faults.lock().unwrap_or_else(|e| e.into_inner());
        let mut regions = self.regions.lock().unwrap_or_else(|e| e.into_inner());
        regions
            .entry(region.to_string())
            .or_insert_with(|| {
                let fake = FakeCloudFormation::new(region);
                fake.set_fault_rates(faults.map(|f| FaultRates {
                    seed: region_seed(f.seed, region),
                    ..f
                }));
                Arc::new(fake)
            })
            .clone()
    }

    /// [`FakeCloudFormation::set_fault_rates`] for every region, present and
    /// future (each region's sequence seeded from `seed` and its name).
    pub fn set_fault_rates(&self, rates: Option<FaultRates>) {
        *self.faults.lock().unwrap_or_else(|e| e.into_inner()) = rates;
        let regions = self.regions.lock().unwrap_or_else(|e| e.into_inner());
        for (region, fake) in regions.iter() {
            fake.set_fault_rates(rates.map(|f| FaultRates {
                seed: region_seed(f.seed, region),
                ..f
            }));
        }
    }

    /// Calls failed by fault rates, summed over regions.
    pub fn fault_counts(&self) -> FaultCounts {
        let regions = self.regions.lock().unwrap_or_else(|e| e.into_inner());
        regions.values().fold(FaultCounts::default(), |sum, fake| {
            let counts = fake.fault_counts();
            FaultCounts {
                throttled: sum.throttled + counts.throttled,
                server_errors: sum.server_errors + counts.server_errors,
            }
        })
    }

    /// Every target a client was asked for, in order.
    pub fn targets(&self) -> Vec<AwsTarget> {
        self.targets.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl CloudFormationProvider for FakeProvider {
    fn client(&self, target: &AwsTarget) -> Arc<dyn CloudFormation> {
        self.targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(target.clone());
        self.region(&target.region)
    }

    fn template_store(&self, target: &AwsTarget) -> Arc<dyn TemplateStore> {
        self.region(&target.region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Parameters:
  Env:
    Type: String
    Default: dev
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-${Env}"
  Topic:
    Type: AWS::SNS::Topic
Outputs:
  QueueUrl:
    Value: !Ref Queue
    Description: the queue
"#;

    fn request(stack: &str, cs: &str, kind: ChangeSetType, body: &str) -> ChangeSetRequest {
        ChangeSetRequest {
            stack_name: stack.into(),
            change_set_name: cs.into(),
            change_set_type: kind,
            template: TemplateSource::Body(body.into()),
            parameters: vec![],
            tags: BTreeMap::from([("team".into(), "a".into())]),
            capabilities: vec![],
            role_arn: None,
            notification_arns: vec![],
            rollback_triggers: vec![],
            rollback_monitoring_minutes: None,
            client_token: format!("{cs}-token"),
            description: None,
            deployment_mode: None,
        }
    }

    async fn status(fake: &FakeCloudFormation, stack: &str) -> Option<StackState> {
        fake.describe_stack(stack).await.unwrap().map(|s| s.status)
    }

    /// Creates and executes a Create change set and waits for the stack to settle.
    async fn create(fake: &FakeCloudFormation, stack: &str) -> StackState {
        fake.create_change_set(&request(stack, "c1", ChangeSetType::Create, TEMPLATE))
            .await
            .unwrap();
        while fake.describe_change_set(stack, "c1").await.unwrap().unwrap().status == ChangeSetStatus::CreatePending {}
        fake.execute_change_set(stack, "c1", "x1").await.unwrap();
        loop {
            let status = status(fake, stack).await.unwrap();
            if !status.is_in_progress() {
                return status;
            }
        }
    }

    #[tokio::test]
    async fn create_goes_through_review_pending_and_in_progress_to_complete() {
        let fake = FakeCloudFormation::default();
        let id = fake
            .create_change_set(&request("s1", "c1", ChangeSetType::Create, TEMPLATE))
            .await
            .unwrap();
        assert!(id.starts_with("arn:aws:cloudformation:us-east-1:123456789012:changeSet/c1/"));
        assert_eq!(status(&fake, "s1").await, Some(StackState::ReviewInProgress));

        let pending = fake.describe_change_set("s1", "c1").await.unwrap().unwrap();
        assert_eq!(pending.status, ChangeSetStatus::CreatePending);
        assert_eq!(pending.execution_status, ExecutionStatus::Unavailable);
        let ready = fake.describe_change_set("s1", "c1").await.unwrap().unwrap();
        assert_eq!(ready.status, ChangeSetStatus::CreateComplete);
        assert_eq!(ready.execution_status, ExecutionStatus::Available);
        let actions: Vec<(&str, &str)> = ready
            .changes
            .iter()
            .map(|c| (c.action.as_str(), c.logical_id.as_str()))
            .collect();
        assert_eq!(actions, [("Add", "Queue"), ("Add", "Topic")]);

        fake.execute_change_set("s1", "c1", "t1").await.unwrap();
        assert_eq!(status(&fake, "s1").await, Some(StackState::CreateInProgress));
        let done = fake.describe_stack("s1").await.unwrap().unwrap();
        assert_eq!(done.status, StackState::CreateComplete);
        assert!(
            done.stack_id
                .starts_with("arn:aws:cloudformation:us-east-1:123456789012:stack/s1/")
        );
        assert_eq!(
            done.parameters,
            [Parameter {
                key: "Env".into(),
                value: "dev".into()
            }]
        );
        assert_eq!(done.tags.get("team").map(String::as_str), Some("a"));
        assert_eq!(done.outputs.len(), 1);
        assert_eq!(done.outputs[0].value, "s1-QueueUrl");
        assert_eq!(done.outputs[0].description.as_deref(), Some("the queue"));

        let events = fake.stack_events("s1", None, 100).await.unwrap();
        assert_eq!(events[0].status, "CREATE_COMPLETE");
        assert_eq!(events[0].logical_id, "s1");
        assert_eq!(events.last().unwrap().status, "REVIEW_IN_PROGRESS");
        let ids: BTreeSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids.len(), events.len(), "event ids are unique");
        let executed = fake.describe_change_set("s1", "c1").await.unwrap().unwrap();
        assert_eq!(executed.execution_status, ExecutionStatus::ExecuteComplete);
    }

    #[tokio::test]
    async fn identical_update_is_an_empty_change_set_and_changes_are_diffed() {
        let fake = FakeCloudFormation::default();
        fake.set_change_set_delay(0);
        fake.set_operation_steps(0);
        assert_eq!(create(&fake, "s1").await, StackState::CreateComplete);

        fake.create_change_set(&request("s1", "same", ChangeSetType::Update, TEMPLATE))
            .await
            .unwrap();
        let same = fake.describe_change_set("s1", "same").await.unwrap().unwrap();
        assert!(same.is_empty_failure(), "{same:?}");
        assert_eq!(same.status_reason.as_deref(), Some(EMPTY_CHANGE_SET_REASON));

        // A parameter change modifies the resource referencing it (via !Sub).
        let mut update = request("s1", "param", ChangeSetType::Update, TEMPLATE);
        update.parameters = vec![Parameter {
            key: "Env".into(),
            value: "prod".into(),
        }];
        fake.create_change_set(&update).await.unwrap();
        let changes = fake.describe_change_set("s1", "param").await.unwrap().unwrap().changes;
        assert_eq!(changes.len(), 1);
        assert_eq!(
            (changes[0].action.as_str(), changes[0].logical_id.as_str()),
            ("Modify", "Queue")
        );
        assert_eq!(changes[0].replacement.as_deref(), Some("False"));
        assert!(changes[0].physical_id.is_some());

        // Template edits: Topic removed, Bucket added, Queue modified (replacement configured).
        fake.set_replacement("Queue", "True");
        let edited = TEMPLATE
            .replace(
                "  Topic:\n    Type: AWS::SNS::Topic\n",
                "  Bucket:\n    Type: AWS::S3::Bucket\n",
            )
            .replace("!Sub \"${AWS::StackName}-${Env}\"", "fixed");
        fake.create_change_set(&request("s1", "edit", ChangeSetType::Update, &edited))
            .await
            .unwrap();
        let changes = fake.describe_change_set("s1", "edit").await.unwrap().unwrap().changes;
        let summary: Vec<(&str, &str, Option<&str>)> = changes
            .iter()
            .map(|c| (c.action.as_str(), c.logical_id.as_str(), c.replacement.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [
                ("Add", "Bucket", None),
                ("Modify", "Queue", Some("True")),
                ("Remove", "Topic", None)
            ]
        );
        fake.execute_change_set("s1", "edit", "e1").await.unwrap();
        let stack = fake.describe_stack("s1").await.unwrap().unwrap();
        assert_eq!(stack.status, StackState::UpdateComplete);
        // Executing dropped the other change sets.
        assert_eq!(fake.describe_change_set("s1", "param").await.unwrap(), None);
    }

    #[tokio::test]
    async fn failed_create_rolls_back_with_a_failed_resource_event() {
        let fake = FakeCloudFormation::default();
        fake.fail_resource("Topic", "Topic limit exceeded");
        fake.set_change_set_delay(0);
        fake.create_change_set(&request("s1", "c1", ChangeSetType::Create, TEMPLATE))
            .await
            .unwrap();
        fake.execute_change_set("s1", "c1", "t").await.unwrap();
        let mut seen = Vec::new();
        loop {
            let status = status(&fake, "s1").await.unwrap();
            seen.push(status.clone());
            if !status.is_in_progress() {
                break;
            }
        }
        assert_eq!(
            seen,
            [
                StackState::CreateInProgress,
                StackState::RollbackInProgress,
                StackState::RollbackComplete
            ]
        );
        let events = fake.stack_events("s1", None, 100).await.unwrap();
        let failed: Vec<&StackEvent> = events.iter().filter(|e| e.is_failure()).collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].logical_id, "Topic");
        assert_eq!(failed[0].reason.as_deref(), Some("Topic limit exceeded"));
        // A ROLLBACK_COMPLETE stack cannot be updated.
        let err = fake
            .create_change_set(&request("s1", "c2", ChangeSetType::Update, TEMPLATE))
            .await
            .unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::Validation);
        assert!(err.message.contains("ROLLBACK_COMPLETE state"), "{err}");
    }

    #[tokio::test]
    async fn failed_update_rolls_back_or_gets_stuck() {
        for (rollback_fails, want) in [
            (false, StackState::UpdateRollbackComplete),
            (true, StackState::UpdateRollbackFailed),
        ] {
            let fake = FakeCloudFormation::default();
            fake.set_change_set_delay(0);
            fake.set_operation_steps(0);
            create(&fake, "s1").await;
            fake.fail_update("s1", "boom");
            if rollback_fails {
                fake.fail_update_rollback("s1", "stuck");
            }
            let mut update = request("s1", "u1", ChangeSetType::Update, TEMPLATE);
            update.parameters = vec![Parameter {
                key: "Env".into(),
                value: "prod".into(),
            }];
            fake.create_change_set(&update).await.unwrap();
            fake.execute_change_set("s1", "u1", "u1").await.unwrap();
            let stack = fake.describe_stack("s1").await.unwrap().unwrap();
            assert_eq!(stack.status, want);
            if !rollback_fails {
                assert_eq!(
                    stack.parameters[0].value, "dev",
                    "rolled back to the previous parameters"
                );
            }
            let events = fake.stack_events("s1", None, 100).await.unwrap();
            assert!(
                events
                    .iter()
                    .any(|e| e.status == "UPDATE_FAILED" && e.reason.as_deref() == Some("boom"))
            );
        }
    }

    #[tokio::test]
    async fn delete_failure_and_retained_resources() {
        let fake = FakeCloudFormation::default();
        fake.set_change_set_delay(0);
        fake.set_operation_steps(0);
        create(&fake, "s1").await;
        fake.fail_delete("s1", "bucket not empty");
        fake.delete_stack("s1", "d1", &[]).await.unwrap();
        let stack = fake.describe_stack("s1").await.unwrap().unwrap();
        assert_eq!(stack.status, StackState::DeleteFailed);
        // Retaining the failing resource (the last one, deleted first) lets the delete finish.
        fake.delete_stack("s1", "d2", &["Topic".into()]).await.unwrap();
        assert_eq!(fake.describe_stack("s1").await.unwrap(), None);
        // By id, the deleted stack is still visible.
        let by_id = fake.describe_stack(&stack.stack_id).await.unwrap().unwrap();
        assert_eq!(by_id.status, StackState::DeleteComplete);
        // Deleting a missing stack succeeds.
        fake.delete_stack("s1", "d3", &[]).await.unwrap();
    }

    #[tokio::test]
    async fn tokens_make_writes_idempotent() {
        let fake = FakeCloudFormation::default();
        fake.set_change_set_delay(0);
        let first = fake
            .create_change_set(&request("s1", "c1", ChangeSetType::Create, TEMPLATE))
            .await
            .unwrap();
        let again = fake
            .create_change_set(&request("s1", "c1", ChangeSetType::Create, TEMPLATE))
            .await
            .unwrap();
        assert_eq!(first, again);
        let mut other_token = request("s1", "c1", ChangeSetType::Create, TEMPLATE);
        other_token.client_token = "different".into();
        let err = fake.create_change_set(&other_token).await.unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::AlreadyExists);

        fake.execute_change_set("s1", "c1", "exec-1").await.unwrap();
        fake.execute_change_set("s1", "c1", "exec-1").await.unwrap();
        let err = fake.execute_change_set("s1", "c1", "exec-2").await.unwrap_err();
        assert_eq!(err.code, "InvalidChangeSetStatus");
        let starts = fake
            .events("s1")
            .iter()
            .filter(|e| e.logical_id == "s1" && e.status == "CREATE_IN_PROGRESS")
            .count();
        assert_eq!(starts, 1, "executed once");

        while status(&fake, "s1").await.unwrap().is_in_progress() {}
        fake.delete_stack("s1", "del-1", &[]).await.unwrap();
        fake.delete_stack("s1", "del-1", &[]).await.unwrap();
        assert_eq!(fake.call_count(Operation::DeleteStack), 2);
    }

    #[tokio::test]
    async fn validation_errors_look_like_aws() {
        let fake = FakeCloudFormation::default();
        let bad = fake
            .create_change_set(&request("s1", "c1", ChangeSetType::Create, "Resources: [unclosed"))
            .await
            .unwrap_err();
        assert_eq!(bad.kind, AwsErrorKind::Validation);
        assert!(bad.message.starts_with("Template format error: "), "{bad}");
        let json = fake
            .create_change_set(&request(
                "s1",
                "c1",
                ChangeSetType::Create,
                r#"{"Resources": {"A": {"Type": "AWS::SNS::Topic"}}"#,
            ))
            .await
            .unwrap_err();
        assert!(json.message.starts_with("Template format error: JSON"), "{json}");

        let mut unknown = request("s1", "c1", ChangeSetType::Create, TEMPLATE);
        unknown.parameters = vec![Parameter {
            key: "Nope".into(),
            value: "x".into(),
        }];
        let err = fake.create_change_set(&unknown).await.unwrap_err();
        assert_eq!(err.message, "Parameters: [Nope] do not exist in the template");
        assert_eq!(err.kind, AwsErrorKind::Validation);

        let iam = "Resources:\n  Role:\n    Type: AWS::IAM::Role\n";
        let err = fake
            .create_change_set(&request("s1", "c1", ChangeSetType::Create, iam))
            .await
            .unwrap_err();
        assert_eq!(err.code, "InsufficientCapabilitiesException");

        let err = fake
            .create_change_set(&request("s1", "c1", ChangeSetType::Update, TEMPLATE))
            .await
            .unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::NotFound);
        assert_eq!(fake.stack("s1"), None, "failed validations create no stack");
        assert_eq!(fake.describe_change_set("s1", "c1").await.unwrap(), None);
    }

    #[tokio::test]
    async fn events_read_from_a_cursor_and_errors_are_injected() {
        let fake = FakeCloudFormation::default();
        fake.put_stack("s1", TEMPLATE, &[], BTreeMap::new()).unwrap();
        let all = fake.stack_events("s1", None, 100).await.unwrap();
        let cursor = all[0].event_id.clone();
        assert_eq!(fake.stack_events("s1", Some(&cursor), 100).await.unwrap(), []);
        assert_eq!(fake.stack_events("s1", None, 2).await.unwrap().len(), 2);

        fake.set_status("s1", StackState::UpdateRollbackFailed, Some("out of band"));
        let newer = fake.stack_events("s1", Some(&cursor), 100).await.unwrap();
        assert_eq!(newer.len(), 1);
        assert_eq!(newer[0].status, "UPDATE_ROLLBACK_FAILED");

        fake.inject(
            ErrorInjection::new(throttling_error())
                .on(Operation::DescribeStacks)
                .times(2),
        );
        for _ in 0..2 {
            let err = fake.describe_stack("s1").await.unwrap_err();
            assert_eq!(err.kind, AwsErrorKind::Throttled);
        }
        assert!(fake.describe_stack("s1").await.is_ok());

        // Probabilistic injection repeats exactly with the same seed.
        let pattern = |seed| {
            let fake = FakeCloudFormation::default();
            fake.inject(ErrorInjection::new(throttling_error()).with_probability(0.3, seed));
            futures::executor::block_on(async {
                let mut out = Vec::new();
                for _ in 0..50 {
                    out.push(fake.describe_stack("x").await.is_err());
                }
                out
            })
        };
        let a = pattern(7);
        assert_eq!(a, pattern(7));
        let failures = a.iter().filter(|f| **f).count();
        assert!((5..=25).contains(&failures), "{failures} of 50");
        assert_eq!(fake.call_count(Operation::DescribeStacks), 3);
        assert_eq!(fake.calls()[0].operation, Operation::DescribeStackEvents);
    }

    #[tokio::test]
    async fn provider_hands_out_one_fake_per_region_and_records_targets() {
        let provider = FakeProvider::new();
        let target = |region: &str, role: Option<&str>| AwsTarget {
            region: region.into(),
            role_arn: role.map(str::to_string),
            external_id: None,
            session_name: None,
            session_tags: Vec::new(),
        };
        provider
            .region("eu-west-1")
            .put_stack("s1", TEMPLATE, &[], BTreeMap::new())
            .unwrap();
        let client = provider.client(&target("eu-west-1", Some("arn:aws:iam::1:role/a")));
        assert!(client.describe_stack("s1").await.unwrap().is_some());
        let other = provider.client(&target("us-east-1", None));
        assert!(other.describe_stack("s1").await.unwrap().is_none());
        assert_eq!(provider.targets().len(), 2);
        assert_eq!(provider.targets()[0].role_arn.as_deref(), Some("arn:aws:iam::1:role/a"));
    }

    fn drift(logical_id: &str, drift: ResourceDriftStatus) -> ResourceDrift {
        ResourceDrift {
            logical_id: logical_id.into(),
            physical_id: None,
            resource_type: String::new(),
            drift,
            differences: vec![super::super::PropertyDifference {
                path: "/QueueName".into(),
                expected: "\"a\"".into(),
                actual: "\"b\"".into(),
                kind: super::super::DifferenceKind::NotEqual,
            }],
        }
    }

    #[tokio::test]
    async fn termination_protection_policy_and_template_round_trip() {
        let fake = FakeCloudFormation::default();
        fake.put_stack("s1", TEMPLATE, &[], BTreeMap::new()).unwrap();
        assert_eq!(fake.get_template("s1").await.unwrap(), TEMPLATE);
        assert_eq!(fake.get_stack_policy("s1").await.unwrap(), None);

        fake.update_termination_protection("s1", true).await.unwrap();
        assert!(fake.describe_stack("s1").await.unwrap().unwrap().termination_protection);
        let err = fake.delete_stack("s1", "d1", &[]).await.unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::Validation);
        assert!(err.message.contains("TerminationProtection"), "{err}");
        fake.update_termination_protection("s1", false).await.unwrap();

        let err = fake.set_stack_policy("s1", "not json").await.unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::Validation);
        let policy = r#"{"Statement":[{"Effect":"Deny","Action":"Update:Replace","Principal":"*","Resource":"*"}]}"#;
        fake.set_stack_policy("s1", policy).await.unwrap();
        assert_eq!(fake.get_stack_policy("s1").await.unwrap().as_deref(), Some(policy));
        assert_eq!(fake.stack_policy("s1").as_deref(), Some(policy));

        for err in [
            fake.get_template("nope").await.unwrap_err(),
            fake.update_termination_protection("nope", true).await.unwrap_err(),
            fake.set_stack_policy("nope", policy).await.unwrap_err(),
            fake.get_stack_policy("nope").await.unwrap_err(),
            fake.detect_stack_drift("nope").await.unwrap_err(),
            fake.resource_drifts("nope").await.unwrap_err(),
            fake.continue_update_rollback("nope", &[], "t").await.unwrap_err(),
        ] {
            assert_eq!(err.kind, AwsErrorKind::NotFound, "{err}");
        }

        // A deleted stack's template is still there by id.
        let id = fake.stack("s1").unwrap().stack_id;
        fake.set_operation_steps(0);
        fake.delete_stack("s1", "d2", &[]).await.unwrap();
        assert_eq!(fake.get_template(&id).await.unwrap(), TEMPLATE);
        assert_eq!(fake.call_count(Operation::GetTemplate), 3);
    }

    #[tokio::test]
    async fn continue_update_rollback_retries_or_skips_the_failed_resource() {
        let fake = FakeCloudFormation::default();
        fake.set_change_set_delay(0);
        fake.set_operation_steps(0);
        create(&fake, "s1").await;
        fake.fail_update("s1", "boom");
        fake.fail_update_rollback("s1", "stuck");
        let mut update = request("s1", "u1", ChangeSetType::Update, TEMPLATE);
        update.parameters = vec![Parameter {
            key: "Env".into(),
            value: "prod".into(),
        }];
        fake.create_change_set(&update).await.unwrap();
        fake.execute_change_set("s1", "u1", "u1").await.unwrap();
        assert_eq!(status(&fake, "s1").await, Some(StackState::UpdateRollbackFailed));
        let failed = fake.events("s1");
        assert_eq!(
            (
                failed[1].logical_id.as_str(),
                failed[1].status.as_str(),
                failed[1].reason.as_deref()
            ),
            ("Queue", "UPDATE_FAILED", Some("stuck")),
            "the rollback failed on the resource whose update failed"
        );

        // While the cause is there, continuing fails again.
        fake.continue_update_rollback("s1", &[], "c1").await.unwrap();
        assert_eq!(status(&fake, "s1").await, Some(StackState::UpdateRollbackFailed));
        // Only the failed resource can be skipped.
        let err = fake
            .continue_update_rollback("s1", &["Topic".into()], "c2")
            .await
            .unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::Validation);
        // Skipping it lets the rollback finish, to the previous parameters.
        fake.continue_update_rollback("s1", &["Queue".into()], "c3")
            .await
            .unwrap();
        let stack = fake.describe_stack("s1").await.unwrap().unwrap();
        assert_eq!(stack.status, StackState::UpdateRollbackComplete);
        assert_eq!(stack.parameters[0].value, "dev");
        // The same token again is a no-op; a new one in the wrong state fails.
        fake.continue_update_rollback("s1", &["Queue".into()], "c3")
            .await
            .unwrap();
        let err = fake.continue_update_rollback("s1", &[], "c4").await.unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::Validation, "{err}");

        // Out of band UPDATE_ROLLBACK_FAILED, cause fixed: continuing completes.
        fake.clear_failures();
        fake.set_status("s1", StackState::UpdateRollbackFailed, Some("out of band"));
        fake.continue_update_rollback("s1", &[], "c5").await.unwrap();
        assert_eq!(status(&fake, "s1").await, Some(StackState::UpdateRollbackComplete));
    }

    #[tokio::test]
    async fn drift_is_detected_asynchronously_and_reverted_by_a_drift_aware_change_set() {
        let fake = FakeCloudFormation::default();
        fake.put_stack("s1", TEMPLATE, &[], BTreeMap::new()).unwrap();
        fake.set_resource_drift("s1", drift("Queue", ResourceDriftStatus::Modified));
        fake.set_resource_drift("s1", drift("Topic", ResourceDriftStatus::Deleted));
        fake.set_resource_drift("s1", drift("Gone", ResourceDriftStatus::Modified));
        assert_eq!(fake.resource_drifts("s1").await.unwrap(), [], "nothing detected yet");

        let id = fake.detect_stack_drift("s1").await.unwrap();
        let running = fake.drift_detection_status(&id).await.unwrap();
        assert_eq!(running.status, DriftDetectionStatus::InProgress);
        assert_eq!(running.drifted_resource_count, None);
        assert_eq!(fake.resource_drifts("s1").await.unwrap(), []);
        let done = fake.drift_detection_status(&id).await.unwrap();
        assert_eq!(done.detection_id, id);
        assert_eq!(done.status, DriftDetectionStatus::Complete);
        assert_eq!(done.stack_drift_status, StackDriftStatus::Drifted);
        assert_eq!(
            done.drifted_resource_count,
            Some(2),
            "resources not in the stack are ignored"
        );
        assert_eq!(done.timestamp, running.timestamp);
        let drifts = fake.resource_drifts("s1").await.unwrap();
        let summary: Vec<(&str, &ResourceDriftStatus, &str)> = drifts
            .iter()
            .map(|d| (d.logical_id.as_str(), &d.drift, d.resource_type.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("Queue", &ResourceDriftStatus::Modified, "AWS::SQS::Queue"),
                ("Topic", &ResourceDriftStatus::Deleted, "AWS::SNS::Topic")
            ]
        );
        assert!(drifts[0].physical_id.as_deref().unwrap().starts_with("s1-Queue-"));
        assert_eq!(drifts[0].differences[0].path, "/QueueName");
        let err = fake.drift_detection_status("no-such-run").await.unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::NotFound);

        // A plain update with the same template is empty; a drift-aware one is not.
        fake.set_change_set_delay(0);
        fake.set_operation_steps(0);
        let mut plain = request("s1", "plain", ChangeSetType::Update, TEMPLATE);
        plain.tags = BTreeMap::new();
        fake.create_change_set(&plain).await.unwrap();
        assert!(
            fake.describe_change_set("s1", "plain")
                .await
                .unwrap()
                .unwrap()
                .is_empty_failure()
        );
        let mut revert = request("s1", "revert", ChangeSetType::Update, TEMPLATE);
        revert.tags = BTreeMap::new();
        revert.deployment_mode = Some(DeploymentMode::RevertDrift);
        fake.create_change_set(&revert).await.unwrap();
        let cs = fake.describe_change_set("s1", "revert").await.unwrap().unwrap();
        let actions: Vec<(&str, &str)> = cs
            .changes
            .iter()
            .map(|c| (c.action.as_str(), c.logical_id.as_str()))
            .collect();
        assert_eq!(actions, [("Modify", "Queue"), ("Add", "Topic")]);
        fake.execute_change_set("s1", "revert", "r1").await.unwrap();
        assert_eq!(status(&fake, "s1").await, Some(StackState::UpdateComplete));
        assert_eq!(fake.resource_drifts("s1").await.unwrap(), [], "drift reset");

        // Detection with no delay, and a failing one.
        fake.set_drift_detection_delay(0);
        let id = fake.detect_stack_drift("s1").await.unwrap();
        let clean = fake.drift_detection_status(&id).await.unwrap();
        assert_eq!(
            (clean.status, clean.stack_drift_status, clean.drifted_resource_count),
            (DriftDetectionStatus::Complete, StackDriftStatus::InSync, Some(0))
        );
        fake.fail_drift_detection("s1", "access denied on Queue");
        let id = fake.detect_stack_drift("s1").await.unwrap();
        let failed = fake.drift_detection_status(&id).await.unwrap();
        assert_eq!(failed.status, DriftDetectionStatus::Failed);
        assert_eq!(failed.reason.as_deref(), Some("access denied on Queue"));
        assert_eq!(fake.call_count(Operation::DetectStackDrift), 3);
    }

    #[tokio::test]
    async fn drift_detection_waits_for_operations_and_pages_its_results() {
        let fake = FakeCloudFormation::default();
        let resources: String = (0..150)
            .map(|i| format!("  R{i:03}:\n    Type: AWS::SNS::Topic\n"))
            .collect();
        fake.put_stack("s1", &format!("Resources:\n{resources}"), &[], BTreeMap::new())
            .unwrap();
        for i in 0..150 {
            fake.set_resource_drift("s1", drift(&format!("R{i:03}"), ResourceDriftStatus::Modified));
        }
        fake.set_resource_drift("s1", drift("R000", ResourceDriftStatus::InSync));
        fake.set_drift_detection_delay(0);
        fake.detect_stack_drift("s1").await.unwrap();
        fake.reset_calls();
        assert_eq!(fake.resource_drifts("s1").await.unwrap().len(), 149);
        assert_eq!(fake.call_count(Operation::DescribeStackResourceDrifts), 2, "two pages");

        fake.set_status("s1", StackState::UpdateInProgress, None);
        let err = fake.detect_stack_drift("s1").await.unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::InProgress, "{err}");
    }

    #[tokio::test]
    async fn bulk_describe_pages_by_100_and_counts_each_page() {
        let fake = FakeCloudFormation::default();
        let empty = fake.describe_all_stacks().await.unwrap();
        assert_eq!((empty.stacks.len(), empty.pages), (0, 1));
        for i in 0..250 {
            let tags = BTreeMap::from([("n".to_string(), i.to_string())]);
            fake.put_stack(&format!("s{i:03}"), TEMPLATE, &[], tags).unwrap();
        }
        fake.delete_out_of_band("s249");
        fake.reset_calls();
        let all = fake.describe_all_stacks().await.unwrap();
        assert_eq!(all.pages, 3);
        assert_eq!(all.stacks.len(), 249, "deleted stacks are not listed");
        assert_eq!(fake.call_count(Operation::DescribeStacks), 3);
        assert_eq!(all.stacks[7], fake.stack("s007").unwrap(), "full descriptions");
        assert_eq!(all.stacks[7].outputs[0].value, "s007-QueueUrl");
        assert_eq!(all.stacks[7].tags["n"], "7");

        // Time passes for stacks in flight, as with describe_stack.
        fake.set_change_set_delay(0);
        let mut update = request("s000", "u1", ChangeSetType::Update, TEMPLATE);
        update.parameters = vec![Parameter {
            key: "Env".into(),
            value: "prod".into(),
        }];
        fake.create_change_set(&update).await.unwrap();
        fake.execute_change_set("s000", "u1", "u1").await.unwrap();
        let statuses: Vec<StackState> = futures::future::join_all((0..2).map(|_| fake.describe_all_stacks()))
            .await
            .into_iter()
            .map(|listing| listing.unwrap().stacks[0].status.clone())
            .collect();
        assert_eq!(statuses, [StackState::UpdateInProgress, StackState::UpdateComplete]);

        // A failed page fails the read.
        fake.inject(
            ErrorInjection::new(throttling_error())
                .on(Operation::DescribeStacks)
                .times(1),
        );
        assert_eq!(
            fake.describe_all_stacks().await.unwrap_err().kind,
            AwsErrorKind::Throttled
        );
    }

    #[tokio::test]
    async fn fault_rates_throttle_and_fail_fractions_of_every_call() {
        let rates = FaultRates {
            throttled: 0.5,
            server_errors: 0.05,
            seed: 42,
        };
        let run = |rates: FaultRates| {
            let fake = FakeCloudFormation::default();
            fake.put_stack("s1", TEMPLATE, &[], BTreeMap::new()).unwrap();
            fake.set_fault_rates(Some(rates));
            futures::executor::block_on(async {
                let mut outcomes = Vec::new();
                for i in 0..2000 {
                    let result = match i % 4 {
                        0 => fake.describe_stack("s1").await.map(|_| ()),
                        1 => fake.get_template("s1").await.map(|_| ()),
                        2 => fake.stack_events("s1", None, 1).await.map(|_| ()),
                        _ => fake.put_template("b", "k", "x").await.map(|_| ()),
                    };
                    outcomes.push(result.err().map(|e| e.kind));
                }
                (outcomes, fake.fault_counts(), fake.total_calls())
            })
        };
        let (outcomes, counts, calls) = run(rates);
        assert_eq!(outcomes, run(rates).0, "deterministic");
        assert_ne!(outcomes, run(FaultRates { seed: 43, ..rates }).0);
        assert_eq!(calls, 2000);
        let throttled = outcomes.iter().filter(|o| **o == Some(AwsErrorKind::Throttled)).count();
        let transient = outcomes.iter().filter(|o| **o == Some(AwsErrorKind::Transient)).count();
        assert_eq!((counts.throttled, counts.server_errors), (throttled, transient));
        assert!((900..=1100).contains(&throttled), "{throttled}");
        assert!((60..=140).contains(&transient), "{transient}");
        // Every operation is hit.
        for op in 0..4 {
            assert!(
                outcomes.iter().skip(op).step_by(4).any(Option::is_some),
                "operation {op}"
            );
        }

        let provider = FakeProvider::new();
        provider.set_fault_rates(Some(FaultRates {
            throttled: 1.0,
            server_errors: 0.0,
            seed: 1,
        }));
        let target = AwsTarget {
            region: "eu-west-1".into(),
            role_arn: None,
            external_id: None,
            session_name: None,
            session_tags: Vec::new(),
        };
        let err = provider.client(&target).describe_stack("x").await.unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::Throttled);
        provider.set_fault_rates(None);
        assert!(provider.client(&target).describe_stack("x").await.is_ok());
        assert_eq!(provider.fault_counts().throttled, 1);
    }

    #[tokio::test]
    async fn uploaded_templates_are_read_by_url() {
        let provider = FakeProvider::new();
        let target = AwsTarget {
            region: "eu-west-1".into(),
            role_arn: None,
            external_id: None,
            session_name: None,
            session_tags: Vec::new(),
        };
        let big = format!("{TEMPLATE}# {}\n", "x".repeat(super::super::MAX_TEMPLATE_BODY_BYTES));
        let url = provider
            .template_store(&target)
            .put_template("bucket", "stacks/s1 big.yaml", &big)
            .await
            .unwrap();
        assert_eq!(url, "https://bucket.s3.eu-west-1.amazonaws.com/stacks/s1%20big.yaml");
        let fake = provider.region("eu-west-1");
        let mut create = request("s1", "c1", ChangeSetType::Create, TEMPLATE);
        create.template = TemplateSource::Url(url);
        fake.create_change_set(&create).await.unwrap();
        assert_eq!(fake.call_count(Operation::PutObject), 1);
        create.template = TemplateSource::Url("https://bucket.s3.eu-west-1.amazonaws.com/other".into());
        create.change_set_name = "c2".into();
        let err = fake.create_change_set(&create).await.unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::Validation);
    }

    #[tokio::test]
    async fn out_of_band_changes_show_up() {
        let fake = FakeCloudFormation::default();
        fake.put_stack("s1", TEMPLATE, &[], BTreeMap::new()).unwrap();
        fake.set_tags("s1", BTreeMap::from([("x".into(), "y".into())]));
        fake.set_parameters(
            "s1",
            vec![Parameter {
                key: "Env".into(),
                value: "hacked".into(),
            }],
        );
        let stack = fake.describe_stack("s1").await.unwrap().unwrap();
        assert_eq!(stack.tags.len(), 1);
        assert_eq!(stack.parameters[0].value, "hacked");
        fake.delete_out_of_band("s1");
        assert_eq!(fake.describe_stack("s1").await.unwrap(), None);
        assert_eq!(fake.stack_names(), Vec::<String>::new());
    }
}
