//! Approvals: bound to execution, stage and action; rejected; timed out;
//! what the approver sees; kept in history.

use serde_json::json;

use super::*;
use crate::runtime::conditions::{APPROVAL_REQUIRED, READY, STALLED};

/// dev deploys, prod waits for `gate` then deploys `app`; returns the world
/// with the gate waiting.
fn at_the_gate(timeout: Option<&str>) -> World {
    let mut world = World::new(spec(vec![
        stage("dev", vec![deploy("app", 1)]),
        stage("prod", vec![approval("gate", 1, timeout), deploy("app", 2)]),
    ]));
    let plan = world.step();
    world.all_ready(&plan);
    world.step();
    assert_eq!(world.entry("prod", "gate").phase, ActionPhase::WaitingForApproval);
    world
}

#[test]
fn the_approver_sees_the_message_and_what_the_next_deploy_plans() {
    let mut world = at_the_gate(None);
    world.children.insert(
        child_name("web", "prod", "app"),
        ChildObserved {
            planned: Some(PlannedChanges {
                add: 2,
                modify: 1,
                remove: 0,
                replace: 1,
            }),
            ..ChildObserved::default()
        },
    );
    let plan = world.step();
    let (status, reason, message) = condition(&plan, APPROVAL_REQUIRED);
    assert_eq!((status.as_str(), reason.as_str()), ("True", "WaitingForApproval"));
    assert!(message.contains(&world.path("prod", "gate")), "{message}");
    assert!(message.contains("check the dashboards"), "{message}");
    assert!(
        message.contains("deploy prod/app: 2 to add, 1 to modify, 0 to remove, 1 replacements"),
        "{message}"
    );
    assert_eq!(condition(&plan, READY).1, "WaitingForApproval");
}

#[test]
fn an_approval_bound_to_the_action_releases_it_once() {
    let mut world = at_the_gate(None);
    let gate = world.path("prod", "gate");
    world.request(
        APPROVE_ANNOTATION,
        json!({"id": "r1", "target": gate, "by": "alice", "comment": "dashboards green"}),
    );
    let plan = world.step();
    let entry = world.entry("prod", "gate");
    assert_eq!(entry.phase, ActionPhase::Succeeded);
    let record = entry.approval.as_ref().unwrap();
    assert_eq!(record.decision, ApprovalDecision::Approved);
    assert_eq!(record.by.as_deref(), Some("alice"));
    assert_eq!(record.comment.as_deref(), Some("dashboards green"));
    assert_eq!(write_for(&plan, "app").name, "web-prod-app");
    assert_eq!(condition(&plan, APPROVAL_REQUIRED).0, "False");
    assert_eq!(world.status.requests[0].outcome, RequestOutcome::Applied);
    assert!(reasons(&plan).contains(&"Approved"));
    // The annotation stays; it does not act again.
    let plan = world.step();
    assert!(!reasons(&plan).contains(&"Approved"));
    assert!(!reasons(&plan).contains(&"RequestIgnored"));
}

#[test]
fn an_approval_naming_another_execution_is_ignored_and_status_says_so() {
    let mut world = at_the_gate(None);
    world.request(
        APPROVE_ANNOTATION,
        json!({"id": "r1", "target": "e7-00000000/prod/gate", "by": "mallory"}),
    );
    let plan = world.step();
    assert_eq!(world.entry("prod", "gate").phase, ActionPhase::WaitingForApproval);
    let request = &world.status.requests[0];
    assert_eq!(request.outcome, RequestOutcome::Ignored);
    assert!(request.message.contains("e7-00000000"), "{}", request.message);
    assert!(request.message.contains(&world.execution().id));
    let (status, _, message) = condition(&plan, APPROVAL_REQUIRED);
    assert_eq!(status, "True");
    assert!(message.contains("ignored"), "{message}");
    assert!(plan.notes.iter().any(|n| n.warning && n.reason == "RequestIgnored"));
}

#[test]
fn a_rejection_fails_the_execution_with_the_comment() {
    let mut world = at_the_gate(None);
    let gate = world.path("prod", "gate");
    world.request(
        REJECT_ANNOTATION,
        json!({"id": "r2", "target": gate, "by": "bob", "comment": "error rate too high"}),
    );
    let plan = world.step();
    let entry = world.entry("prod", "gate");
    assert_eq!(entry.phase, ActionPhase::Failed);
    assert_eq!(entry.approval.as_ref().unwrap().decision, ApprovalDecision::Rejected);
    assert_eq!(world.execution().phase, ExecutionPhase::Failed);
    assert!(plan.child_writes.is_empty(), "prod/app never starts");
    let (status, reason, message) = condition(&plan, STALLED);
    assert_eq!((status.as_str(), reason.as_str()), ("True", "ExecutionFailed"));
    assert!(message.contains("rejected by bob: error rate too high"), "{message}");
}

#[test]
fn an_approval_times_out() {
    let mut world = at_the_gate(Some("1h"));
    let plan = world.step();
    assert!(plan.requeue.unwrap() <= std::time::Duration::from_secs(3600));
    world.advance(3599);
    world.step();
    assert_eq!(world.entry("prod", "gate").phase, ActionPhase::WaitingForApproval);
    world.advance(1);
    let plan = world.step();
    let entry = world.entry("prod", "gate");
    assert_eq!(entry.phase, ActionPhase::Failed);
    assert_eq!(entry.approval.as_ref().unwrap().decision, ApprovalDecision::TimedOut);
    assert_eq!(world.execution().phase, ExecutionPhase::Failed);
    assert!(condition(&plan, STALLED).2.contains("ApprovalTimedOut"));
}

#[test]
fn who_approved_stays_in_history() {
    let mut world = at_the_gate(None);
    let gate = world.path("prod", "gate");
    world.request(APPROVE_ANNOTATION, json!({"id": "r1", "target": gate, "by": "alice"}));
    let plan = world.step();
    world.all_ready(&plan);
    world.step();
    assert_eq!(world.execution().phase, ExecutionPhase::Succeeded);
    world.new_revision("v2");
    world.step();
    let old = &world.status.history[0];
    assert_eq!(old.revision, "v1");
    let record = find_action(old, "prod", "gate").unwrap().approval.clone().unwrap();
    assert_eq!(record.by.as_deref(), Some("alice"));
}

#[test]
fn an_unreadable_request_is_reported_once() {
    let mut world = at_the_gate(None);
    world.annotations.insert(APPROVE_ANNOTATION.into(), "yes please".into());
    let plan = world.step();
    assert_eq!(world.status.requests[0].outcome, RequestOutcome::Ignored);
    assert!(world.status.requests[0].message.contains("not a valid request"));
    assert!(reasons(&plan).contains(&"RequestIgnored"));
    let plan = world.step();
    assert!(!reasons(&plan).contains(&"RequestIgnored"));
    assert_eq!(world.entry("prod", "gate").phase, ActionPhase::WaitingForApproval);
}
