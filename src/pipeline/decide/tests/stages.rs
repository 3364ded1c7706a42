//! Stages: run orders, passing, disabled transitions, Ready.

use std::time::Duration;

use super::*;
use crate::api::{DeploymentTargets, DisabledTransition};
use crate::runtime::conditions::READY;

#[test]
fn the_same_run_order_runs_in_parallel_and_lower_orders_first() {
    let mut world = World::new(spec(vec![stage(
        "dev",
        vec![wait("bake", 2, "1m"), deploy("api", 1), deploy("db", 1)],
    )]));
    let plan = world.step();
    let mut written: Vec<&str> = plan.child_writes.iter().map(|w| w.action.as_str()).collect();
    written.sort();
    assert_eq!(written, vec!["api", "db"]);
    assert!(find_action(world.execution(), "dev", "bake").is_none());
    world.child_ready(write_for(&plan, "api"), &[]);
    world.step();
    assert!(
        find_action(world.execution(), "dev", "bake").is_none(),
        "db has not passed"
    );
    world.child_ready(write_for(&plan, "db"), &[]);
    let plan = world.step();
    assert_eq!(world.entry("dev", "bake").phase, ActionPhase::InProgress);
    assert_eq!(
        plan.requeue,
        Some(Duration::from_secs(30)),
        "child polling is sooner than the bake"
    );
    world.advance(59);
    let plan = world.step();
    assert_eq!(world.entry("dev", "bake").phase, ActionPhase::InProgress);
    assert_eq!(plan.requeue, Some(Duration::from_secs(1)));
    world.advance(1);
    let plan = world.step();
    assert_eq!(world.entry("dev", "bake").phase, ActionPhase::Succeeded);
    assert_eq!(world.execution().phase, ExecutionPhase::Succeeded);
    assert_eq!(condition(&plan, READY).0, "True");
}

#[test]
fn a_passed_stage_leads_into_the_next_in_the_same_decision() {
    let mut world = World::new(spec(vec![
        stage("dev", vec![deploy("app", 1)]),
        stage("prod", vec![deploy("app", 1)]),
    ]));
    let plan = world.step();
    world.all_ready(&plan);
    let plan = world.step();
    assert_eq!(world.execution().stage.as_deref(), Some("prod"));
    assert_eq!(write_for(&plan, "app").name, "web-prod-app");
    assert_eq!(world.status.passed_stages[0].stage, "dev");
    assert_eq!(world.status.passed_stages[0].revision, revision("v1"));
    assert!(reasons(&plan).contains(&"StagePassed"));
}

#[test]
fn a_disabled_transition_holds_executions_until_enabled() {
    let mut prod = stage("prod", vec![deploy("app", 1)]);
    prod.transition_disabled = Some(DisabledTransition {
        reason: "change freeze until Monday".into(),
    });
    let mut world = World::new(spec(vec![stage("dev", vec![deploy("app", 1)]), prod]));
    let plan = world.step();
    world.all_ready(&plan);
    let plan = world.step();
    assert!(plan.child_writes.is_empty());
    let execution = world.execution();
    assert_eq!(execution.stage.as_deref(), Some("prod"));
    assert!(
        execution
            .message
            .as_deref()
            .unwrap()
            .contains("change freeze until Monday")
    );
    let (status, reason, message) = condition(&plan, READY);
    assert_eq!((status.as_str(), reason.as_str()), ("False", "TransitionDisabled"));
    assert!(message.contains("change freeze"));
    assert_eq!(reasons(&plan).iter().filter(|r| **r == "TransitionDisabled").count(), 1);
    let plan = world.step();
    assert!(
        !reasons(&plan).contains(&"TransitionDisabled"),
        "one Event per transition"
    );
    // Enabled again.
    world.spec.stages[1].transition_disabled = None;
    world.generation += 1;
    let plan = world.step();
    assert_eq!(write_for(&plan, "app").name, "web-prod-app");
    assert_eq!(world.execution().message, None);
}

#[test]
fn a_newer_revision_replaces_an_execution_held_at_a_disabled_transition() {
    let mut prod = stage("prod", vec![deploy("app", 1)]);
    prod.transition_disabled = Some(DisabledTransition {
        reason: "freeze".into(),
    });
    let mut world = World::new(spec(vec![stage("dev", vec![deploy("app", 1)]), prod]));
    let plan = world.step();
    world.all_ready(&plan);
    world.step();
    world.new_revision("v2");
    let plan = world.step();
    assert_eq!(world.status.history[0].phase, ExecutionPhase::Superseded);
    assert_eq!(world.execution().revision, "v2");
    assert_eq!(write_for(&plan, "app").stage, "dev");
}

#[test]
fn a_deployment_action_owns_a_stack_deployment() {
    let mut rollout = deploy("fleet", 1);
    rollout.deploy = Some(DeployAction {
        stack: None,
        deployment: Some(DeploymentTargets::default()),
    });
    let mut world = World::new(spec(vec![stage("prod", vec![rollout])]));
    let plan = world.step();
    let write = write_for(&plan, "fleet");
    assert_eq!(write.kind, ChildKind::StackDeployment);
    // Ready at an older revision is not done.
    world.children.insert(
        write.name.clone(),
        ChildObserved {
            revision: Some(write.deploy_revision.clone()),
            retry_request: Some(write.retry_request.clone()),
            applied_revision: Some("an-older-one".into()),
            ready: true,
            ..ChildObserved::default()
        },
    );
    world.step();
    assert_eq!(world.entry("prod", "fleet").phase, ActionPhase::InProgress);
    world.child_ready(write, &[]);
    world.step();
    assert_eq!(world.entry("prod", "fleet").phase, ActionPhase::Succeeded);
}

#[test]
fn a_changed_deploy_setting_is_a_new_child_revision() {
    let base = deploy("app", 1);
    let mut moved = deploy("app", 1);
    moved.deploy.as_mut().unwrap().stack.as_mut().unwrap().region = "us-east-1".into();
    let a = deploy_revision("hash-v1", base.deploy.as_ref().unwrap(), &[]);
    let b = deploy_revision("hash-v1", moved.deploy.as_ref().unwrap(), &[]);
    let c = deploy_revision("hash-v2", base.deploy.as_ref().unwrap(), &[]);
    assert_ne!(a, b);
    assert_ne!(a, c);
    assert_eq!(a, deploy_revision("hash-v1", base.deploy.as_ref().unwrap(), &[]));
}

#[test]
fn a_suspended_pipeline_does_nothing() {
    let mut world = World::new(spec(vec![stage("dev", vec![deploy("app", 1)])]));
    world.spec.suspend = true;
    let plan = world.step();
    assert!(world.status.current_execution.is_none());
    assert!(plan.child_writes.is_empty());
    assert_eq!(plan.requeue, None);
}
