//! Drift detection: a run snapshots the drift set by the test, completes
//! after some status reads, and then becomes the stack's drift results.

use chrono::{DateTime, Utc};

use crate::aws::{
    AwsError, AwsErrorKind, AwsResult, DriftDetection, DriftDetectionStatus, ResourceDrift, StackDriftStatus,
};

use super::errors::stack_not_found;
use super::model::State;

/// One drift detection run.
#[derive(Clone, Debug)]
pub(super) struct Detection {
    pub(super) stack: String,
    /// Status reads left that still see DETECTION_IN_PROGRESS.
    pub(super) remaining: u32,
    pub(super) timestamp: DateTime<Utc>,
    /// The drifted resources when the run started.
    pub(super) results: Vec<ResourceDrift>,
    pub(super) failure: Option<String>,
    /// Whether `results` became the stack's latest drift results.
    pub(super) published: bool,
}

impl State {
    pub(super) fn detect_stack_drift(&mut self, stack: &str) -> AwsResult<String> {
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

    pub(super) fn drift_detection_status(&mut self, detection_id: &str) -> AwsResult<DriftDetection> {
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
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::fixtures::{TEMPLATE, request, status};
    use super::super::{Action, FakeCloudFormation};
    use crate::aws::{
        AwsErrorKind, ChangeSetType, CloudFormation, DeploymentMode, DriftDetectionStatus, ResourceDrift,
        ResourceDriftStatus, StackDriftStatus, StackState,
    };

    fn drift(logical_id: &str, drift: ResourceDriftStatus) -> ResourceDrift {
        ResourceDrift {
            logical_id: logical_id.into(),
            physical_id: None,
            resource_type: String::new(),
            drift,
            differences: vec![crate::aws::PropertyDifference {
                path: "/QueueName".into(),
                expected: "\"a\"".into(),
                actual: "\"b\"".into(),
                kind: crate::aws::DifferenceKind::NotEqual,
            }],
        }
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
        plain.options.tags = BTreeMap::new();
        fake.create_change_set(&plain).await.unwrap();
        assert!(
            fake.describe_change_set("s1", "plain")
                .await
                .unwrap()
                .unwrap()
                .is_empty_failure()
        );
        let mut revert = request("s1", "revert", ChangeSetType::Update, TEMPLATE);
        revert.options.tags = BTreeMap::new();
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
        assert_eq!(fake.call_count(Action::DetectStackDrift), 3);
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
        assert_eq!(fake.call_count(Action::DescribeStackResourceDrifts), 2, "two pages");

        fake.set_status("s1", StackState::UpdateInProgress, None);
        let err = fake.detect_stack_drift("s1").await.unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::InProgress, "{err}");
    }
}
