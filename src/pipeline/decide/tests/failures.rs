//! Failures: retries with backoff, manual retry (failed only or all), stop
//! and abandon, stage rollback.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::api::OnFailure;
use crate::runtime::conditions::{READY, RECONCILING, STALLED};

#[test]
fn a_failed_attempt_is_retried_with_growing_backoff() {
    let mut world = World::new(spec(vec![stage("dev", vec![retries(deploy("app", 1), 2)])]));
    let plan = world.step();
    let id = world.execution().id.clone();
    world.child_failed(write_for(&plan, "app"), "Bucket already exists");
    let plan = world.step();
    let entry = world.entry("dev", "app");
    assert_eq!(entry.phase, ActionPhase::Retrying);
    assert_eq!(entry.retry_at.as_ref().unwrap().0.as_second(), T0 + 30);
    assert_eq!(plan.requeue, Some(Duration::from_secs(30)));
    assert_eq!(condition(&plan, READY).1, "Retrying");
    world.advance(29);
    let plan = world.step();
    assert!(plan.child_writes.is_empty(), "not before the backoff");
    world.advance(1);
    let plan = world.step();
    let write = write_for(&plan, "app");
    assert_eq!(
        write.retry_request,
        format!("{id}/2"),
        "a new request makes the child try again"
    );
    assert_eq!(world.entry("dev", "app").attempts, 2);
    // The child still shows the first failure until it sees the new request.
    let plan = world.step();
    assert_eq!(world.entry("dev", "app").phase, ActionPhase::InProgress);
    world.child_failed(write_for(&plan, "app"), "Bucket already exists");
    world.step();
    let entry = world.entry("dev", "app");
    assert_eq!(entry.phase, ActionPhase::Retrying);
    assert_eq!(entry.retry_at.as_ref().unwrap().0.as_second(), world.now + 60);
    world.advance(60);
    let plan = world.step();
    world.child_failed(write_for(&plan, "app"), "Bucket already exists");
    let plan = world.step();
    assert_eq!(world.entry("dev", "app").phase, ActionPhase::Failed);
    assert_eq!(world.entry("dev", "app").attempts, 3);
    assert_eq!(world.execution().phase, ExecutionPhase::Failed);
    let (status, reason, message) = condition(&plan, STALLED);
    assert_eq!((status.as_str(), reason.as_str()), ("True", "ExecutionFailed"));
    assert!(message.contains("Bucket already exists"), "{message}");
    assert!(conditions::find(&plan.status.conditions, RECONCILING).is_none());
}

#[test]
fn an_old_child_failure_is_not_this_attempts_result() {
    let mut world = World::new(spec(vec![stage("dev", vec![deploy("app", 1)])]));
    let plan = world.step();
    let write = write_for(&plan, "app").clone();
    world.child_failed(&write, "old failure");
    if let Some(child) = world.children.get_mut(&write.name) {
        child.failure.as_mut().unwrap().since = Timestamp::from_second(T0 - 10).unwrap();
    }
    world.advance(5);
    world.step();
    assert_eq!(world.entry("dev", "app").phase, ActionPhase::InProgress);
}

/// A stage with two parallel deploys: `a` passes, `b` fails for good.
fn one_failed_of_two() -> World {
    let mut world = World::new(spec(vec![stage("dev", vec![deploy("a", 1), deploy("b", 1)])]));
    let plan = world.step();
    world.child_ready(write_for(&plan, "a"), &[]);
    world.child_failed(write_for(&plan, "b"), "quota exceeded");
    let plan = world.step();
    assert_eq!(world.execution().phase, ExecutionPhase::Failed);
    assert_eq!(condition(&plan, STALLED).0, "True");
    world
}

#[test]
fn retry_reruns_only_the_failed_actions() {
    let mut world = one_failed_of_two();
    let id = world.execution().id.clone();
    world.request(RETRY_ANNOTATION, json!({"id": "t1", "execution": id, "by": "carol"}));
    let plan = world.step();
    assert_eq!(world.execution().phase, ExecutionPhase::InProgress);
    let written: Vec<&str> = plan.child_writes.iter().map(|w| w.action.as_str()).collect();
    assert_eq!(written, vec!["b"]);
    assert_eq!(write_for(&plan, "b").retry_request, format!("{id}/2"));
    assert_eq!(world.entry("dev", "a").phase, ActionPhase::Succeeded);
    assert_eq!(world.entry("dev", "a").attempts, 1);
    world.child_ready(write_for(&plan, "b"), &[]);
    let plan = world.step();
    assert_eq!(world.execution().phase, ExecutionPhase::Succeeded);
    assert_eq!(condition(&plan, READY).0, "True");
    // The same request again does nothing.
    let plan = world.step();
    assert!(!reasons(&plan).contains(&"ExecutionRetried"));
}

#[test]
fn retry_all_reruns_the_whole_stage() {
    let mut world = one_failed_of_two();
    let id = world.execution().id.clone();
    world.request(RETRY_ANNOTATION, json!({"id": "t1", "execution": id, "all": true}));
    let plan = world.step();
    let mut written: Vec<&str> = plan.child_writes.iter().map(|w| w.action.as_str()).collect();
    written.sort();
    assert_eq!(written, vec!["a", "b"]);
    assert_eq!(world.entry("dev", "a").attempts, 2);
}

#[test]
fn retry_of_another_execution_is_ignored() {
    let mut world = one_failed_of_two();
    world.request(RETRY_ANNOTATION, json!({"id": "t1", "execution": "e9-ffffffff"}));
    let plan = world.step();
    assert_eq!(world.execution().phase, ExecutionPhase::Failed);
    assert!(plan.child_writes.is_empty());
    assert_eq!(world.status.requests[0].outcome, RequestOutcome::Ignored);
}

/// `a` deploys (running) next to an approval; a later stage waits.
fn running_with_gate() -> (World, Plan) {
    let mut world = World::new(spec(vec![
        stage("dev", vec![deploy("a", 1), approval("gate", 1, None)]),
        stage("prod", vec![deploy("a", 1)]),
    ]));
    let plan = world.step();
    world.child_working(write_for(&plan, "a"));
    world.step();
    (world, plan)
}

#[test]
fn stop_lets_running_actions_finish() {
    let (mut world, first) = running_with_gate();
    let id = world.execution().id.clone();
    world.request(
        STOP_ANNOTATION,
        json!({"id": "s1", "execution": id, "by": "dave", "reason": "incident"}),
    );
    let plan = world.step();
    assert_eq!(world.execution().phase, ExecutionPhase::Stopping);
    assert_eq!(world.entry("dev", "a").phase, ActionPhase::InProgress);
    assert_eq!(world.entry("dev", "gate").phase, ActionPhase::Withdrawn);
    assert_eq!(plan.withdrawn_approvals.len(), 1);
    world.child_ready(write_for(&first, "a"), &[]);
    let plan = world.step();
    assert_eq!(world.entry("dev", "a").phase, ActionPhase::Succeeded);
    assert_eq!(world.execution().phase, ExecutionPhase::Stopped);
    assert!(plan.child_writes.is_empty(), "prod never starts");
    let (_, reason, message) = condition(&plan, STALLED);
    assert_eq!(reason, "ExecutionStopped");
    assert!(message.contains("stopped by dave: incident"), "{message}");
}

#[test]
fn stop_abandon_leaves_running_actions_at_once() {
    let (mut world, _) = running_with_gate();
    let id = world.execution().id.clone();
    world.request(STOP_ANNOTATION, json!({"id": "s1", "execution": id, "abandon": true}));
    let plan = world.step();
    assert_eq!(world.execution().phase, ExecutionPhase::Stopped);
    assert_eq!(world.entry("dev", "a").phase, ActionPhase::Abandoned);
    assert!(plan.child_writes.is_empty());
    world.advance(600);
    let plan = world.step();
    assert!(plan.child_writes.is_empty(), "an abandoned action is not followed");
}

#[test]
fn a_failed_stage_rolls_back_to_the_revision_that_last_passed_it() {
    let mut dev = stage("dev", vec![deploy("a", 1), deploy("b", 2)]);
    dev.on_failure = OnFailure::Rollback;
    let mut world = World::new(spec(vec![dev]));
    let plan = world.step();
    world.all_ready(&plan);
    let plan = world.step();
    world.all_ready(&plan);
    world.step();
    assert_eq!(world.execution().phase, ExecutionPhase::Succeeded);
    let v1_a = world.children["web-dev-a"].revision.clone();
    // v2: a passes, b fails.
    world.new_revision("v2");
    let plan = world.step();
    world.child_ready(write_for(&plan, "a"), &[]);
    let plan = world.step();
    world.child_failed(write_for(&plan, "b"), "health check failed");
    let plan = world.step();
    let id = world.execution().id.clone();
    assert_eq!(world.execution().phase, ExecutionPhase::RollingBack);
    let rollback = world.execution().rollback.clone().unwrap();
    assert_eq!(rollback.revision, revision("v1"));
    assert!(reasons(&plan).contains(&"RollbackStarted"));
    let a = write_for(&plan, "a");
    assert_eq!(a.revision, revision("v1"));
    assert_eq!(Some(a.deploy_revision.clone()), v1_a);
    assert_eq!(a.retry_request, format!("{id}/rollback"));
    assert_eq!(condition(&plan, READY).1, "RollingBack");
    world.all_ready(&plan);
    let plan = world.step();
    let execution = world.execution();
    assert_eq!(execution.phase, ExecutionPhase::Failed);
    assert!(
        execution
            .message
            .as_deref()
            .unwrap()
            .contains("rolled back to revision v1")
    );
    assert_eq!(execution.rollback.as_ref().unwrap().phase, RollbackPhase::Succeeded);
    assert_eq!(world.entry("dev", "a").phase, ActionPhase::RolledBack);
    assert!(condition(&plan, STALLED).2.contains("health check failed"));
}

#[test]
fn a_rollback_with_nothing_to_go_back_to_fails_the_execution() {
    let mut dev = stage("dev", vec![deploy("a", 1)]);
    dev.on_failure = OnFailure::Rollback;
    let mut world = World::new(spec(vec![dev]));
    let plan = world.step();
    world.child_failed(write_for(&plan, "a"), "boom");
    world.step();
    let execution = world.execution();
    assert_eq!(execution.phase, ExecutionPhase::Failed);
    assert!(
        execution
            .message
            .as_deref()
            .unwrap()
            .contains("nothing to roll back to")
    );
    assert!(execution.rollback.is_none());
}
