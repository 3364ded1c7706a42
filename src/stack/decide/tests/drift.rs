//! drift.

use super::*;

#[test]
fn drift_detection_starts_when_due_and_not_before() {
    let plan = steady().decide();
    assert_eq!(plan.steps, vec![Step::DetectDrift]);
    let drift = plan.status.drift.as_ref().unwrap();
    assert_eq!(drift.status, DriftState::Checking);
    assert_eq!(
        condition(&plan, READY).unwrap().0,
        "True",
        "a drift check does not make the stack unready"
    );

    let mut recent = steady();
    recent.previous.drift = Some(crate::api::DriftReport {
        status: DriftState::InSync,
        // Scheduled from our own start time; AWS's checked_at may be skewed.
        started_at: Some(Time(Timestamp::from_second(NOW - 600).unwrap())),
        checked_at: Some(Time(Timestamp::from_second(NOW - 86_400).unwrap())),
        ..Default::default()
    });
    let plan = recent.decide();
    assert!(plan.steps.is_empty(), "checked ten minutes ago, interval one hour");
    assert!(plan.requeue <= std::time::Duration::from_secs(3600));

    recent.now = NOW + 3600;
    assert_eq!(recent.decide().steps, vec![Step::DetectDrift]);

    // A requested reconcile asks for a check now, once per request value.
    let mut asked = steady();
    asked.previous.drift = recent.previous.drift.clone();
    let requested = "2026-11-21T10:00:00Z".to_string();
    asked.requested = Some(requested.clone());
    let plan = asked.decide();
    assert_eq!(plan.steps, vec![Step::DetectDrift]);
    assert_eq!(
        plan.status.drift.unwrap().requested.as_deref(),
        Some(requested.as_str())
    );
}

#[test]
fn a_finished_detection_reports_drifted_resources_with_secrets_masked() {
    use crate::aws::{
        DifferenceKind, DriftDetectionStatus, PropertyDifference, ResourceDrift, ResourceDriftStatus, StackDriftStatus,
    };
    let mut case = steady();
    case.previous.drift = Some(crate::api::DriftReport {
        status: DriftState::Checking,
        detection_id: Some("d-1".into()),
        started_at: Some(Time(Timestamp::from_second(NOW - 10).unwrap())),
        ..Default::default()
    });
    case.drift.detection = Some(detection(
        DriftDetectionStatus::InProgress,
        StackDriftStatus::NotChecked,
    ));
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    assert_eq!(plan.status.drift.as_ref().unwrap().status, DriftState::Checking);
    assert_eq!(plan.requeue, Timing::default().in_flight);

    case.drift.detection = Some(detection(DriftDetectionStatus::Complete, StackDriftStatus::Drifted));
    case.drift.resources = Some(vec![ResourceDrift {
        logical_id: "Q".into(),
        physical_id: Some("queue-1".into()),
        resource_type: "AWS::SQS::Queue".into(),
        drift: ResourceDriftStatus::Modified,
        differences: vec![PropertyDifference {
            path: "/Tags/0/Value".into(),
            expected: "\"s3cret\"".into(),
            actual: "\"changed\"".into(),
            kind: DifferenceKind::NotEqual,
        }],
    }]);
    let plan = case.decide();
    let drift = plan.status.drift.as_ref().unwrap();
    assert_eq!(drift.status, DriftState::Drifted);
    assert_eq!(drift.resources[0].logical_id, "Q");
    assert_eq!(
        drift.resources[0].differences[0].expected, "\"****\"",
        "Secret value masked"
    );
    assert_eq!(drift.resources[0].differences[0].actual, "\"changed\"");
    let (status, reason, message) = condition(&plan, conditions::DRIFTED).unwrap();
    assert_eq!((status, reason), ("True", "ResourceDrift"));
    assert!(message.contains("\"Q\""));
    assert!(plan.notes.iter().any(|n| n.warning && n.reason == "ResourceDrift"));
    assert!(!serde_json::to_string(&plan.status).unwrap().contains("s3cret"));
    assert!(!drift.revert_pending, "Report is the default remediation");

    case.spec.drift.remediation = crate::api::DriftRemediation::Revert;
    let plan = case.decide();
    assert!(plan.status.drift.as_ref().unwrap().revert_pending);
    assert!(plan.notes.iter().any(|n| n.reason == "RevertingDrift"));

    // Back in sync: the condition clears with an event.
    let mut clean = steady();
    clean.previous = plan.status.clone();
    clean.previous.drift.as_mut().unwrap().status = DriftState::Checking;
    clean.drift.detection = Some(detection(DriftDetectionStatus::Complete, StackDriftStatus::InSync));
    clean.drift.resources = Some(vec![]);
    let plan = clean.decide();
    assert_eq!(condition(&plan, conditions::DRIFTED).unwrap().0, "False");
    assert!(plan.notes.iter().any(|n| n.reason == "DriftCleared"));
}

#[test]
fn no_drift_check_while_an_operation_runs_or_when_turned_off() {
    let mut busy = steady();
    busy.stack = Some(stack(Cfn::UpdateInProgress));
    busy.previous.drift = Some(crate::api::DriftReport {
        status: DriftState::Checking,
        ..Default::default()
    });
    let plan = busy.decide();
    assert!(plan.steps.is_empty());
    assert_eq!(plan.status.drift.as_ref().unwrap().status, DriftState::Skipped);

    let mut off = steady();
    off.spec.drift.interval = Some("0".into());
    assert!(off.decide().steps.is_empty());
}
