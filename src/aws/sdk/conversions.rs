//! SDK types to the project's own and back, one pure function each, so an
//! SDK upgrade changes this file and not the domain types.

use aws_sdk_cloudformation::operation::describe_stack_drift_detection_status::DescribeStackDriftDetectionStatusOutput;
use aws_sdk_cloudformation::types as sdk;
use chrono::{DateTime, Utc};

use crate::aws::{
    ChangeSetRequest, ChangeSetStatus, DifferenceKind, DriftDetection, DriftDetectionStatus, ExecutionStatus,
    Parameter, PropertyDifference, ResourceChange, ResourceDrift, ResourceDriftStatus, StackDescription,
    StackDriftStatus, StackEvent, StackOutput, StackState,
};

/// The parts of a [`ChangeSetRequest`] that CreateChangeSet and UpdateStack
/// send alike, in the SDK's types.
pub(super) struct Settings {
    pub(super) parameters: Vec<sdk::Parameter>,
    pub(super) tags: Vec<sdk::Tag>,
    pub(super) capabilities: Vec<sdk::Capability>,
    pub(super) rollback: sdk::RollbackConfiguration,
}

impl Settings {
    pub(super) fn of(request: &ChangeSetRequest) -> Settings {
        let parameters = request
            .parameters
            .iter()
            .map(|p| {
                sdk::Parameter::builder()
                    .parameter_key(&p.key)
                    .parameter_value(&p.value)
                    .build()
            })
            .collect();
        let tags = request
            .options
            .tags
            .iter()
            .map(|(k, v)| sdk::Tag::builder().key(k).value(v).build())
            .collect();
        let capabilities = request
            .options
            .capabilities
            .iter()
            .map(|c| sdk::Capability::from(c.as_str()))
            .collect();
        let triggers = request
            .options
            .rollback_triggers
            .iter()
            .map(|t| {
                sdk::RollbackTrigger::builder()
                    .arn(&t.alarm_arn)
                    .r#type("AWS::CloudWatch::Alarm")
                    .build()
            })
            .collect();
        // No monitoring time means none, not "the previous one".
        let rollback = sdk::RollbackConfiguration::builder()
            .set_rollback_triggers(Some(triggers))
            .monitoring_time_in_minutes(request.options.rollback_monitoring_minutes.unwrap_or(0))
            .build();
        Settings {
            parameters,
            tags,
            capabilities,
            rollback,
        }
    }
}

fn to_chrono(time: &aws_sdk_cloudformation::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(time.secs(), time.subsec_nanos())
}

pub(super) fn drift_detection(detection_id: &str, output: &DescribeStackDriftDetectionStatusOutput) -> DriftDetection {
    DriftDetection {
        detection_id: output
            .stack_drift_detection_id()
            .filter(|id| !id.is_empty())
            .unwrap_or(detection_id)
            .to_string(),
        status: match output.detection_status() {
            Some(sdk::StackDriftDetectionStatus::DetectionInProgress) => DriftDetectionStatus::InProgress,
            Some(sdk::StackDriftDetectionStatus::DetectionComplete) => DriftDetectionStatus::Complete,
            // DETECTION_FAILED, and anything newer: never poll it forever.
            _ => DriftDetectionStatus::Failed,
        },
        stack_drift_status: stack_drift_status(output.stack_drift_status()),
        reason: output
            .detection_status_reason()
            .filter(|r| !r.is_empty())
            .map(str::to_string),
        drifted_resource_count: output
            .drifted_stack_resource_count()
            .map(|n| u32::try_from(n).unwrap_or(0)),
        timestamp: output.timestamp().and_then(to_chrono).unwrap_or(DateTime::UNIX_EPOCH),
    }
}

fn stack_drift_status(status: Option<&sdk::StackDriftStatus>) -> StackDriftStatus {
    match status {
        Some(sdk::StackDriftStatus::Drifted) => StackDriftStatus::Drifted,
        Some(sdk::StackDriftStatus::InSync) => StackDriftStatus::InSync,
        Some(sdk::StackDriftStatus::NotChecked) => StackDriftStatus::NotChecked,
        _ => StackDriftStatus::Unknown,
    }
}

fn resource_drift_status(status: Option<&sdk::StackResourceDriftStatus>) -> ResourceDriftStatus {
    match status {
        Some(sdk::StackResourceDriftStatus::Modified) => ResourceDriftStatus::Modified,
        Some(sdk::StackResourceDriftStatus::Deleted) => ResourceDriftStatus::Deleted,
        Some(sdk::StackResourceDriftStatus::NotChecked) => ResourceDriftStatus::NotChecked,
        Some(sdk::StackResourceDriftStatus::InSync) => ResourceDriftStatus::InSync,
        Some(other) => ResourceDriftStatus::Unknown(other.as_str().to_string()),
        None => ResourceDriftStatus::Unknown(String::new()),
    }
}

pub(super) fn resource_drift(drift: &sdk::StackResourceDrift) -> ResourceDrift {
    ResourceDrift {
        logical_id: drift.logical_resource_id().unwrap_or_default().to_string(),
        physical_id: drift
            .physical_resource_id()
            .filter(|id| !id.is_empty())
            .map(str::to_string),
        resource_type: drift.resource_type().unwrap_or_default().to_string(),
        drift: resource_drift_status(drift.stack_resource_drift_status()),
        differences: drift
            .property_differences()
            .iter()
            .map(|d| PropertyDifference {
                path: d.property_path().unwrap_or_default().to_string(),
                expected: d.expected_value().unwrap_or_default().to_string(),
                actual: d.actual_value().unwrap_or_default().to_string(),
                kind: match d.difference_type() {
                    Some(sdk::DifferenceType::Add) => DifferenceKind::Add,
                    Some(sdk::DifferenceType::Remove) => DifferenceKind::Remove,
                    _ => DifferenceKind::NotEqual,
                },
            })
            .collect(),
    }
}

pub(super) fn stack_description(stack: &sdk::Stack) -> StackDescription {
    StackDescription {
        stack_id: stack.stack_id().unwrap_or_default().to_string(),
        stack_name: stack.stack_name().unwrap_or_default().to_string(),
        status: StackState::parse(stack.stack_status().map(|s| s.as_str()).unwrap_or_default()),
        status_reason: stack.stack_status_reason().map(str::to_string),
        parameters: stack
            .parameters()
            .iter()
            .map(|p| Parameter {
                key: p.parameter_key().unwrap_or_default().to_string(),
                value: p.parameter_value().unwrap_or_default().to_string(),
            })
            .collect(),
        tags: stack
            .tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        outputs: stack
            .outputs()
            .iter()
            .map(|o| StackOutput {
                key: o.output_key().unwrap_or_default().to_string(),
                value: o.output_value().unwrap_or_default().to_string(),
                description: o.description().map(str::to_string),
                export_name: o.export_name().map(str::to_string),
            })
            .collect(),
        capabilities: stack.capabilities().iter().map(|c| c.as_str().to_string()).collect(),
        role_arn: stack.role_arn().map(str::to_string),
        notification_arns: stack.notification_arns().to_vec(),
        rollback_triggers: stack
            .rollback_configuration()
            .map(|r| {
                r.rollback_triggers()
                    .iter()
                    .filter_map(|t| t.arn().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        rollback_monitoring_minutes: stack
            .rollback_configuration()
            .and_then(|r| r.monitoring_time_in_minutes()),
        termination_protection: stack.enable_termination_protection().unwrap_or(false),
        creation_time: stack.creation_time().and_then(to_chrono),
        last_updated_time: stack.last_updated_time().and_then(to_chrono),
    }
}

pub(super) fn change_set_status(status: Option<&sdk::ChangeSetStatus>) -> ChangeSetStatus {
    match status {
        Some(sdk::ChangeSetStatus::CreatePending) => ChangeSetStatus::CreatePending,
        Some(sdk::ChangeSetStatus::CreateInProgress) => ChangeSetStatus::CreateInProgress,
        Some(sdk::ChangeSetStatus::CreateComplete) => ChangeSetStatus::CreateComplete,
        Some(sdk::ChangeSetStatus::DeletePending) => ChangeSetStatus::DeletePending,
        Some(sdk::ChangeSetStatus::DeleteInProgress) => ChangeSetStatus::DeleteInProgress,
        Some(sdk::ChangeSetStatus::DeleteComplete) => ChangeSetStatus::DeleteComplete,
        Some(sdk::ChangeSetStatus::DeleteFailed) => ChangeSetStatus::DeleteFailed,
        Some(sdk::ChangeSetStatus::Failed) => ChangeSetStatus::Failed,
        Some(other) => ChangeSetStatus::Other(other.as_str().to_string()),
        None => ChangeSetStatus::Other(String::new()),
    }
}

pub(super) fn execution_status(status: Option<&sdk::ExecutionStatus>) -> ExecutionStatus {
    match status {
        Some(sdk::ExecutionStatus::Unavailable) => ExecutionStatus::Unavailable,
        Some(sdk::ExecutionStatus::Available) => ExecutionStatus::Available,
        Some(sdk::ExecutionStatus::ExecuteInProgress) => ExecutionStatus::ExecuteInProgress,
        Some(sdk::ExecutionStatus::ExecuteComplete) => ExecutionStatus::ExecuteComplete,
        Some(sdk::ExecutionStatus::ExecuteFailed) => ExecutionStatus::ExecuteFailed,
        Some(sdk::ExecutionStatus::Obsolete) => ExecutionStatus::Obsolete,
        Some(other) => ExecutionStatus::Other(other.as_str().to_string()),
        None => ExecutionStatus::Other(String::new()),
    }
}

pub(super) fn resource_change(change: &sdk::Change) -> Option<ResourceChange> {
    let rc = change.resource_change()?;
    Some(ResourceChange {
        action: rc.action().map(|a| a.as_str().to_string()).unwrap_or_default(),
        logical_id: rc.logical_resource_id().unwrap_or_default().to_string(),
        physical_id: rc.physical_resource_id().map(str::to_string),
        resource_type: rc.resource_type().unwrap_or_default().to_string(),
        replacement: rc.replacement().map(|r| r.as_str().to_string()),
    })
}

pub(super) fn stack_event(event: &sdk::StackEvent) -> StackEvent {
    StackEvent {
        event_id: event.event_id().unwrap_or_default().to_string(),
        timestamp: event.timestamp().and_then(to_chrono).unwrap_or(DateTime::UNIX_EPOCH),
        logical_id: event.logical_resource_id().unwrap_or_default().to_string(),
        physical_id: event
            .physical_resource_id()
            .filter(|id| !id.is_empty())
            .map(str::to_string),
        resource_type: event.resource_type().unwrap_or_default().to_string(),
        status: event
            .resource_status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        reason: event.resource_status_reason().map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(secs: i64) -> aws_sdk_cloudformation::primitives::DateTime {
        aws_sdk_cloudformation::primitives::DateTime::from_secs(secs)
    }

    #[test]
    fn drift_detection_status_is_mapped() {
        let output = |status: sdk::StackDriftDetectionStatus, drift: Option<sdk::StackDriftStatus>| {
            DescribeStackDriftDetectionStatusOutput::builder()
                .stack_id("arn:stack")
                .stack_drift_detection_id("d-1")
                .detection_status(status)
                .set_stack_drift_status(drift)
                .drifted_stack_resource_count(2)
                .detection_status_reason("one resource could not be checked")
                .timestamp(time(1_700_000_000))
                .build()
        };
        let done = drift_detection(
            "asked",
            &output(
                sdk::StackDriftDetectionStatus::DetectionComplete,
                Some(sdk::StackDriftStatus::Drifted),
            ),
        );
        assert_eq!(
            done,
            DriftDetection {
                detection_id: "d-1".into(),
                status: DriftDetectionStatus::Complete,
                stack_drift_status: StackDriftStatus::Drifted,
                reason: Some("one resource could not be checked".into()),
                drifted_resource_count: Some(2),
                timestamp: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            }
        );
        let cases = [
            (
                sdk::StackDriftDetectionStatus::DetectionInProgress,
                Some(sdk::StackDriftStatus::InSync),
                DriftDetectionStatus::InProgress,
                StackDriftStatus::InSync,
            ),
            (
                sdk::StackDriftDetectionStatus::DetectionFailed,
                Some(sdk::StackDriftStatus::NotChecked),
                DriftDetectionStatus::Failed,
                StackDriftStatus::NotChecked,
            ),
            (
                sdk::StackDriftDetectionStatus::from("SOMETHING_NEW"),
                Some(sdk::StackDriftStatus::UnknownValue),
                DriftDetectionStatus::Failed,
                StackDriftStatus::Unknown,
            ),
            (
                sdk::StackDriftDetectionStatus::DetectionComplete,
                None,
                DriftDetectionStatus::Complete,
                StackDriftStatus::Unknown,
            ),
        ];
        for (status, drift, want_status, want_drift) in cases {
            let mapped = drift_detection("asked", &output(status, drift));
            assert_eq!((mapped.status, mapped.stack_drift_status), (want_status, want_drift));
        }
        let bare = DescribeStackDriftDetectionStatusOutput::builder().build();
        let mapped = drift_detection("asked", &bare);
        assert_eq!(mapped.detection_id, "asked");
        assert_eq!(mapped.drifted_resource_count, None);
        assert_eq!(mapped.timestamp, DateTime::UNIX_EPOCH);
    }

    #[test]
    fn resource_drifts_are_mapped_with_their_differences() {
        let drift = sdk::StackResourceDrift::builder()
            .stack_id("arn:stack")
            .logical_resource_id("Queue")
            .physical_resource_id("https://sqs/q")
            .resource_type("AWS::SQS::Queue")
            .stack_resource_drift_status(sdk::StackResourceDriftStatus::Modified)
            .timestamp(time(1))
            .property_differences(
                sdk::PropertyDifference::builder()
                    .property_path("/DelaySeconds")
                    .expected_value("0")
                    .actual_value("5")
                    .difference_type(sdk::DifferenceType::NotEqual)
                    .build(),
            )
            .property_differences(
                sdk::PropertyDifference::builder()
                    .property_path("/Tags/0")
                    .expected_value("")
                    .actual_value("{\"Key\":\"x\",\"Value\":\"y\"}")
                    .difference_type(sdk::DifferenceType::Add)
                    .build(),
            )
            .property_differences(
                sdk::PropertyDifference::builder()
                    .property_path("/RedrivePolicy")
                    .expected_value("{}")
                    .difference_type(sdk::DifferenceType::Remove)
                    .build(),
            )
            .build();
        let mapped = resource_drift(&drift);
        assert_eq!(mapped.logical_id, "Queue");
        assert_eq!(mapped.physical_id.as_deref(), Some("https://sqs/q"));
        assert_eq!(mapped.resource_type, "AWS::SQS::Queue");
        assert_eq!(mapped.drift, ResourceDriftStatus::Modified);
        assert_eq!(
            mapped.differences,
            [
                PropertyDifference {
                    path: "/DelaySeconds".into(),
                    expected: "0".into(),
                    actual: "5".into(),
                    kind: DifferenceKind::NotEqual,
                },
                PropertyDifference {
                    path: "/Tags/0".into(),
                    expected: String::new(),
                    actual: "{\"Key\":\"x\",\"Value\":\"y\"}".into(),
                    kind: DifferenceKind::Add,
                },
                PropertyDifference {
                    path: "/RedrivePolicy".into(),
                    expected: "{}".into(),
                    actual: String::new(),
                    kind: DifferenceKind::Remove,
                },
            ]
        );
        let statuses = [
            (sdk::StackResourceDriftStatus::Deleted, ResourceDriftStatus::Deleted),
            (sdk::StackResourceDriftStatus::InSync, ResourceDriftStatus::InSync),
            (
                sdk::StackResourceDriftStatus::NotChecked,
                ResourceDriftStatus::NotChecked,
            ),
            (
                sdk::StackResourceDriftStatus::UnknownValue,
                ResourceDriftStatus::Unknown("UNKNOWN".into()),
            ),
            (
                sdk::StackResourceDriftStatus::Unsupported,
                ResourceDriftStatus::Unknown("UNSUPPORTED".into()),
            ),
        ];
        for (status, want) in statuses {
            assert_eq!(resource_drift_status(Some(&status)), want);
        }
        assert!(ResourceDriftStatus::Deleted.is_drifted());
        assert!(!ResourceDriftStatus::InSync.is_drifted());
        let deleted = sdk::StackResourceDrift::builder()
            .logical_resource_id("Topic")
            .physical_resource_id("")
            .stack_resource_drift_status(sdk::StackResourceDriftStatus::Deleted)
            .build();
        assert_eq!(resource_drift(&deleted).physical_id, None);
    }
}
