//! Table-style tests of the pure Stack decision: no cluster, no AWS, a fixed
//! clock. Each builds an observation the way production does (the same read
//! choices and `Observed` builder) and checks steps, conditions and notes;
//! the cases are grouped by concern, the builders are here.

use std::collections::BTreeMap;

use chrono::TimeZone;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::decide;
use crate::api::{
    Adoption, AppliedRevision, Approval, ChangeSetKind, ChangeSetSummary, CreateFailureAction, CreateFailures,
    DeleteFailureAction, DeletionPolicy, DriftState, ExecutionState, Operation, OperationAction, Stack, StackSpec,
    StackStatus,
};
use crate::aws::{
    ChangeSetDescription, ChangeSetStatus, ExecutionStatus, ResourceChange, StackDescription, StackEvent, StackOptions,
    StackState as Cfn, TemplateSource,
};
use crate::runtime::conditions::{self, APPROVAL_REQUIRED, READY, RECONCILING, STALLED};
use crate::runtime::problem::Problem;
use crate::stack::desired::{DesiredStack, ResolvedParameter};
use crate::stack::observe::{AwsReads, FollowUpInputs, StackRead, first_reads, follow_ups, observed};
use crate::stack::plan::{
    APPROVE_ANNOTATION, DriftObservation, Plan, RECONCILE_REQUESTED_AT, Step, TAG_UID, Timing, change_set_name,
    execution_started,
};

mod change_sets;
mod deletion;
mod drift;
mod failures;
mod imports;
mod inputs;
mod outside_changes;
mod recreate;
mod settings;

pub(super) const UID: &str = "3f2b5c1e-0000-4000-8000-000000000001";
pub(super) const NOW: i64 = 1_800_000_000;

pub(super) fn desired() -> DesiredStack {
    DesiredStack {
        stack_name: "team-a-web".into(),
        template: TemplateSource::Body("Resources:\n  Q: {Type: AWS::SQS::Queue}\n".into()),
        parameters: vec![ResolvedParameter {
            name: "Password".into(),
            value: "s3cret".into(),
            secret: true,
        }],
        options: StackOptions {
            tags: BTreeMap::from([(TAG_UID.to_string(), UID.to_string())]),
            ..StackOptions::default()
        },
        termination_protection: false,
        stack_policy: None,
        upload: None,
        deployment_mode: None,
        source_revision: None,
        fingerprint: String::new(),
    }
    .seal("")
}

pub(super) fn stack(status: Cfn) -> StackDescription {
    StackDescription {
        stack_id: "arn:aws:cloudformation:us-east-1:123456789012:stack/team-a-web/1".into(),
        stack_name: "team-a-web".into(),
        status,
        status_reason: None,
        parameters: vec![],
        tags: BTreeMap::from([(TAG_UID.to_string(), UID.to_string())]),
        outputs: vec![],
        capabilities: vec![],
        role_arn: None,
        notification_arns: vec![],
        rollback_triggers: vec![],
        rollback_monitoring_minutes: None,
        termination_protection: false,
        creation_time: None,
        last_updated_time: None,
    }
}

pub(super) fn change_set(name: &str, status: ChangeSetStatus, execution: ExecutionStatus) -> ChangeSetDescription {
    ChangeSetDescription {
        change_set_id: format!("arn:cs/{name}"),
        change_set_name: name.into(),
        stack_id: None,
        status,
        status_reason: None,
        execution_status: execution,
        changes: vec![ResourceChange {
            action: "Add".into(),
            logical_id: "Q".into(),
            physical_id: None,
            resource_type: "AWS::SQS::Queue".into(),
            replacement: None,
        }],
    }
}

pub(super) fn failure_event(id: &str, second: i64, logical: &str, status: &str, reason: &str) -> StackEvent {
    StackEvent {
        event_id: id.into(),
        timestamp: chrono::Utc.timestamp_opt(second, 0).unwrap(),
        logical_id: logical.into(),
        physical_id: None,
        resource_type: "AWS::SQS::Queue".into(),
        status: status.into(),
        reason: Some(reason.into()),
    }
}

pub(super) fn operation(
    action: OperationAction,
    change_set: Option<&str>,
    fingerprint: &str,
    started: i64,
) -> Operation {
    Operation {
        action,
        change_set_name: change_set.map(str::to_string),
        client_token: "token".into(),
        generation: 1,
        fingerprint: Some(fingerprint.into()),
        revision: None,
        started_at: Time(Timestamp::from_second(started).unwrap()),
    }
}

/// One observation with sensible defaults, adjusted per case.
pub(super) struct Case {
    pub(super) spec: StackSpec,
    pub(super) previous: StackStatus,
    pub(super) desired: Result<DesiredStack, Problem>,
    pub(super) stack: Option<StackDescription>,
    pub(super) change_set: Option<ChangeSetDescription>,
    pub(super) events: Vec<StackEvent>,
    pub(super) approval: Option<String>,
    pub(super) requested: Option<String>,
    pub(super) drift: DriftObservation,
    pub(super) live_template: Option<String>,
    pub(super) deleting: bool,
    pub(super) generation: i64,
    pub(super) now: i64,
    /// When the Stack was created (default: long ago).
    pub(super) created: Timestamp,
    /// The endpoint said it has no drift detection.
    pub(super) drift_unsupported: Option<String>,
}

impl Case {
    pub(super) fn new() -> Case {
        Case {
            spec: StackSpec {
                region: "us-east-1".into(),
                // Drift detection has tests of its own below.
                drift: crate::api::DriftSpec {
                    interval: Some("0".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
            previous: StackStatus::default(),
            desired: Ok(desired()),
            stack: None,
            change_set: None,
            events: vec![],
            approval: None,
            requested: None,
            drift: Default::default(),
            live_template: None,
            deleting: false,
            generation: 1,
            now: NOW,
            created: Timestamp::UNIX_EPOCH,
            drift_unsupported: None,
        }
    }

    /// The Stack object this case is about.
    pub(super) fn object(&self) -> Stack {
        let mut object = Stack::new("web", self.spec.clone());
        object.metadata.namespace = Some("team-a".into());
        object.metadata.uid = Some(UID.into());
        object.metadata.generation = Some(self.generation);
        let annotations = object.metadata.annotations.get_or_insert_with(BTreeMap::new);
        if let Some(approval) = &self.approval {
            annotations.insert(APPROVE_ANNOTATION.into(), approval.clone());
        }
        if let Some(requested) = &self.requested {
            annotations.insert(RECONCILE_REQUESTED_AT.into(), requested.clone());
        }
        object.metadata.creation_timestamp = Some(Time(self.created));
        if self.deleting {
            object.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(self.now - 1).unwrap()));
        }
        object.status = Some(self.previous.clone());
        object
    }

    /// What production would have read of this case's AWS state: the same
    /// read choices (`first_reads`, `follow_ups`) and the same builder.
    pub(super) fn reads(&self) -> AwsReads {
        let first = first_reads(&self.previous, &self.spec, self.deleting, self.desired.is_ok());
        if first.stack == StackRead::Skip {
            return AwsReads::default();
        }
        let mut reads = AwsReads {
            asked: true,
            stack: self.stack.clone(),
            drift_unsupported: self.drift_unsupported.clone(),
            ..Default::default()
        };
        if first.drift_detection.is_some() {
            reads.drift = self.drift.clone();
        }
        let Some(found) = &self.stack else {
            return reads;
        };
        let inputs = FollowUpInputs {
            previous: &self.previous,
            spec: &self.spec,
            desired: &self.desired,
            deleting: self.deleting,
            requested: self.requested.as_deref(),
            schedule: crate::stack::decide::drift::Schedule {
                uid: UID,
                created: self.created,
            },
            now: Timestamp::from_second(self.now).unwrap(),
        };
        let more = follow_ups(&inputs, found);
        reads.change_set = self
            .change_set
            .clone()
            .filter(|cs| more.change_set.as_deref() == Some(cs.change_set_name.as_str()));
        if more.events {
            reads.events = self.events.clone();
        }
        if more.template {
            reads.live_template = self.live_template.clone();
        }
        reads
    }

    pub(super) fn decide(&self) -> Plan {
        let object = self.object();
        let reads = self.reads();
        let now = Timestamp::from_second(self.now).unwrap();
        decide(&observed(
            &object,
            &self.previous,
            &self.desired,
            "team-a-web",
            &reads,
            now,
            Timing::default(),
        ))
    }
}

pub(super) fn fingerprint() -> String {
    desired().fingerprint
}

pub(super) fn wanted() -> String {
    change_set_name(1, &fingerprint())
}

pub(super) fn condition<'a>(plan: &'a Plan, type_: &str) -> Option<(&'a str, &'a str, &'a str)> {
    conditions::find(&plan.status.conditions, type_).map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()))
}

pub(super) fn pending(name: &str, kind: ChangeSetKind) -> ChangeSetSummary {
    ChangeSetSummary {
        name: name.into(),
        change_type: kind,
        generation: 1,
        ..Default::default()
    }
}

/// A refusal must survive the next reconcile, which starts from the status
/// the refusal wrote (found end to end: the stack id used to be recorded,
/// and `ownership` trusts it).
pub(super) fn steady() -> Case {
    let mut case = Case::new();
    case.spec.drift.interval = Some("1h".into());
    case.previous.applied = Some(AppliedRevision {
        generation: 1,
        fingerprint: fingerprint(),
        revision: None,
    });
    case.stack = Some(stack(Cfn::UpdateComplete));
    case
}

pub(super) fn detection(
    status: crate::aws::DriftDetectionStatus,
    stack: crate::aws::StackDriftStatus,
) -> crate::aws::DriftDetection {
    crate::aws::DriftDetection {
        detection_id: "d-1".into(),
        status,
        stack_drift_status: stack,
        reason: None,
        drifted_resource_count: Some(1),
        timestamp: chrono::Utc.timestamp_opt(NOW - 5, 0).unwrap(),
    }
}
