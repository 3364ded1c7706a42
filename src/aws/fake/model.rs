//! What the fake remembers: stacks with their content, change sets and
//! events, and the per-region [`State`] behind one lock, with its clock and ids.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::aws::{
    AwsError, AwsErrorKind, AwsResult, ChangeSetStatus, ChangeSetType, DeploymentMode, ExecutionStatus, Parameter,
    ResourceChange, ResourceDrift, StackDescription, StackEvent, StackOutput, StackState,
};

use super::ACCOUNT_ID;
use super::calls::{Action, Call};
use super::drift::Detection;
use super::errors::{ErrorInjection, FaultCounts, FaultRates, stack_not_found};
use super::phases::{InFlight, StuckRollback};
use super::template::{Resource, Template};

const STACK_TYPE: &str = "AWS::CloudFormation::Stack";
/// 2024-01-01T00:00:00Z; the fake clock ticks one second per event.
const EPOCH: i64 = 1_704_067_200;

/// Stack content a change set carries and an update rollback restores.
#[derive(Clone, Debug)]
pub(super) struct Content {
    pub(super) template: Template,
    pub(super) body: String,
    pub(super) parameters: Vec<Parameter>,
    pub(super) tags: BTreeMap<String, String>,
    pub(super) capabilities: Vec<String>,
    pub(super) role_arn: Option<String>,
}

#[derive(Clone, Debug)]
pub(super) struct FakeChangeSet {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) client_token: String,
    pub(super) kind: ChangeSetType,
    pub(super) status: ChangeSetStatus,
    pub(super) status_reason: Option<String>,
    pub(super) execution_status: ExecutionStatus,
    pub(super) changes: Vec<ResourceChange>,
    /// Describes left that still see CREATE_PENDING.
    pub(super) pending_describes: u32,
    /// Whether it ends FAILED (no changes) once no longer pending.
    pub(super) empty: bool,
    pub(super) content: Content,
    pub(super) deployment_mode: Option<DeploymentMode>,
}

#[derive(Clone, Debug)]
pub(super) struct FakeStack {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) status: StackState,
    pub(super) status_reason: Option<String>,
    pub(super) content: Option<Content>,
    pub(super) outputs: Vec<StackOutput>,
    pub(super) termination_protection: bool,
    pub(super) creation_time: DateTime<Utc>,
    pub(super) last_updated_time: Option<DateTime<Utc>>,
    /// Oldest first.
    pub(super) events: Vec<StackEvent>,
    pub(super) change_sets: Vec<FakeChangeSet>,
    /// (operation, token) pairs already used.
    pub(super) tokens: BTreeSet<(Action, String)>,
    pub(super) physical_ids: BTreeMap<String, String>,
    pub(super) in_flight: Option<InFlight>,
    pub(super) policy: Option<String>,
    /// Actual drift by logical id (set by tests).
    pub(super) drift: BTreeMap<String, ResourceDrift>,
    /// Drifted resources found by the latest completed detection.
    pub(super) drift_results: Vec<ResourceDrift>,
    pub(super) rollback: Option<StuckRollback>,
}

impl FakeStack {
    pub(super) fn describe(&self) -> StackDescription {
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

    pub(super) fn resources(&self) -> BTreeMap<String, Resource> {
        self.content
            .as_ref()
            .map(|c| c.template.resources.clone())
            .unwrap_or_default()
    }

    pub(super) fn change_set_mut(&mut self, name: &str) -> Option<&mut FakeChangeSet> {
        self.change_sets.iter_mut().find(|cs| cs.name == name || cs.id == name)
    }

    pub(super) fn set_execution(&mut self, change_set: &str, status: ExecutionStatus) {
        if let Some(cs) = self.change_set_mut(change_set) {
            cs.execution_status = status;
        }
    }

    pub(super) fn in_progress_error(&self, verb: &str) -> AwsError {
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
pub(super) struct Failures {
    pub(super) create: HashMap<String, String>,
    pub(super) update: HashMap<String, String>,
    pub(super) update_rollback: HashMap<String, String>,
    pub(super) delete: HashMap<String, String>,
    pub(super) resources: HashMap<String, String>,
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) region: String,
    pub(super) stacks: HashMap<String, FakeStack>,
    /// Stack id -> name, for live stacks.
    pub(super) ids: HashMap<String, String>,
    /// Deleted stacks by id (DescribeStacks by id still finds them).
    pub(super) deleted: HashMap<String, FakeStack>,
    pub(super) templates_by_url: HashMap<String, String>,
    pub(super) change_set_delay: u32,
    pub(super) operation_steps: u32,
    pub(super) replacements: HashMap<String, String>,
    pub(super) failures: Failures,
    pub(super) injections: Vec<ErrorInjection>,
    /// Fault rates and their sequence state.
    pub(super) faults: Option<(FaultRates, u64)>,
    pub(super) fault_counts: FaultCounts,
    pub(super) detections: HashMap<String, Detection>,
    pub(super) drift_detection_delay: u32,
    pub(super) drift_failures: HashMap<String, String>,
    pub(super) record_calls: bool,
    pub(super) calls: Vec<Call>,
    pub(super) call_counts: HashMap<Action, usize>,
    pub(super) counter: u64,
}

impl State {
    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    pub(super) fn now(&mut self) -> DateTime<Utc> {
        let tick = self.next() as i64;
        DateTime::from_timestamp(EPOCH + tick, 0).unwrap_or(DateTime::UNIX_EPOCH)
    }

    pub(super) fn uuid(&mut self) -> String {
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

    /// Name of the live stack called `stack` (a name or an id).
    pub(super) fn resolve(&self, stack: &str) -> Option<String> {
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
    pub(super) fn stack_status(&mut self, name: &str, status: StackState, reason: Option<&str>) {
        if let Some(stack) = self.stacks.get_mut(name) {
            stack.status = status.clone();
            stack.status_reason = reason.map(str::to_string);
        }
        self.event(name, name, STACK_TYPE, status.as_str(), reason);
    }

    pub(super) fn resource_event(&mut self, name: &str, logical_id: &str, status: &str, reason: Option<&str>) {
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

    pub(super) fn set_execution(&mut self, name: &str, change_set: &str, status: ExecutionStatus) {
        if let Some(stack) = self.stacks.get_mut(name) {
            stack.set_execution(change_set, status);
        }
    }

    /// Moves a stack to the deleted set (DELETE_COMPLETE, findable by id).
    pub(super) fn remove(&mut self, name: &str) {
        if let Some(mut stack) = self.stacks.remove(name) {
            self.ids.remove(&stack.id);
            stack.status = StackState::DeleteComplete;
            stack.in_flight = None;
            stack.change_sets.clear();
            self.deleted.insert(stack.id.clone(), stack);
        }
    }

    pub(super) fn new_stack(&mut self, name: &str) -> String {
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

    pub(super) fn stack_mut(&mut self, name: &str) -> Option<&mut FakeStack> {
        let name = self.resolve(name)?;
        self.stacks.get_mut(&name)
    }

    pub(super) fn find_any(&self, stack: &str) -> Option<&FakeStack> {
        match self.resolve(stack) {
            Some(name) => self.stacks.get(&name),
            None => self.deleted.get(stack),
        }
    }

    /// The live stack, or the AWS "does not exist" error.
    pub(super) fn live_mut(&mut self, stack: &str) -> AwsResult<&mut FakeStack> {
        let name = self.resolve(stack).ok_or_else(|| stack_not_found(stack))?;
        self.stacks.get_mut(&name).ok_or_else(|| stack_not_found(stack))
    }

    /// One page of the bulk DescribeStacks, from `names`; time passes for
    /// each stack on it.
    pub(super) fn stacks_page(&mut self, names: &[String]) -> Vec<StackDescription> {
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
