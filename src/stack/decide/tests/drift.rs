//! drift.

use k8s_openapi::jiff::SignedDuration;

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

/// A new stack has not drifted: its first check is not right after its first
/// Ready but at a time within the first interval fixed by its uid, so Stacks
/// created together spread their first checks over the interval.
#[test]
fn a_new_stack_is_first_checked_at_a_spread_time_within_the_interval() {
    let mut new = steady();
    new.created = Timestamp::from_second(NOW - 1).unwrap();
    let plan = new.decide();
    assert!(plan.steps.is_empty(), "not right after the create: {:?}", plan.steps);
    assert!(new.reads().live_template.is_none() && plan.status.drift.is_none());
    let schedule = crate::stack::decide::drift::Schedule {
        uid: UID,
        created: new.created,
    };
    let first = schedule.first_check(std::time::Duration::from_secs(3600));
    assert!(first > new.created && first < new.created + SignedDuration::from_hours(1));
    new.now = first.as_second() + 1;
    assert_eq!(new.decide().steps, vec![Step::DetectDrift]);

    // Spread: a hundred uids created at once fall in every tenth of the hour.
    let uids: Vec<String> = (0..100).map(|i| format!("uid-{i}")).collect();
    let mut tenths = std::collections::BTreeSet::new();
    for uid in &uids {
        let at = crate::stack::decide::drift::Schedule {
            uid,
            created: new.created,
        }
        .first_check(std::time::Duration::from_secs(3600));
        tenths.insert(at.duration_since(new.created).as_secs() / 360);
    }
    assert_eq!(tenths.len(), 10, "{tenths:?}");
}

/// Where the endpoint said it has no drift detection, a due check makes no
/// call and no Event (the account and region were told once); the stack
/// notes why and looks again an interval later.
#[test]
fn no_drift_call_where_the_endpoint_has_none() {
    let mut case = steady();
    case.drift_unsupported = Some("drift detection is not available at this endpoint".into());
    let plan = case.decide();
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    assert!(
        !plan.notes.iter().any(|n| n.reason.starts_with("Drift")),
        "{:?}",
        plan.notes
    );
    let drift = plan.status.drift.as_ref().unwrap();
    assert_eq!(drift.status, DriftState::Unknown);
    assert!(drift.reason.as_deref().unwrap().contains("not available"));
    let mut later = case;
    later.previous = plan.status.clone();
    later.now = NOW + 60;
    let again = later.decide();
    assert!(again.steps.is_empty() && !crate::runtime::status::changed(&later.previous, &again.status));
}

/// One rule for the DRIFTED column: blank only with checks off; with checks
/// on, Unknown until a check says True or False (set with the first Ready).
#[test]
fn the_drifted_condition_is_unknown_until_checked_and_absent_only_when_off() {
    let mut on = steady();
    on.created = Timestamp::from_second(NOW - 1).unwrap();
    let plan = on.decide();
    let (status, reason, message) = condition(&plan, conditions::DRIFTED).expect("a Drifted condition");
    assert_eq!((status, reason), ("Unknown", "NotChecked"));
    assert!(message.contains("next drift check is at"), "{message}");
    // Deciding again changes nothing (no write).
    let mut again = on;
    again.previous = plan.status.clone();
    again.now = NOW + 5;
    assert!(!crate::runtime::status::changed(
        &again.previous,
        &again.decide().status
    ));

    let mut off = steady();
    off.spec.drift.interval = Some("0".into());
    assert!(condition(&off.decide(), conditions::DRIFTED).is_none());
    // A configuration drift repaired with checks off leaves the column blank, not False.
    off.previous
        .conditions
        .push(k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: conditions::DRIFTED.into(),
            status: "True".into(),
            reason: "ConfigurationDrift".into(),
            message: "parameters changed".into(),
            observed_generation: Some(1),
            last_transition_time: Time(Timestamp::from_second(NOW - 60).unwrap()),
        });
    assert!(condition(&off.decide(), conditions::DRIFTED).is_none());
}
