//! Variables: validated up front, resolved from earlier outputs.

use super::*;
use crate::runtime::conditions::{READY, STALLED};

#[test]
fn bad_variables_stall_the_pipeline_before_anything_runs() {
    let cases = [
        ("#{dev.nope.Url}", "names no action"),
        ("#{prod.app.Url}", "does not run before"),
        ("#{dev.bake.Url}", "not a deploy action"),
        ("#{dev.api}", "is not of the form"),
        ("#{dev.api.Url", "without its closing"),
    ];
    for (value, problem) in cases {
        let mut world = World::new(spec(vec![
            stage("dev", vec![deploy("api", 1), wait("bake", 2, "1m")]),
            stage("prod", vec![deploy_with("app", 1, "Url", value)]),
        ]));
        let plan = world.step();
        assert!(world.status.current_execution.is_none(), "{value}");
        assert!(plan.child_writes.is_empty());
        let (status, reason, message) = condition(&plan, STALLED);
        assert_eq!((status.as_str(), reason.as_str()), ("True", "InvalidSpec"), "{value}");
        assert!(message.contains(problem), "{value}: {message}");
        assert!(message.contains("stage prod action app parameter Url"), "{message}");
        assert_eq!(condition(&plan, READY).0, "False");
        assert!(reasons(&plan).contains(&"InvalidSpec"));
        let plan = world.step();
        assert!(!reasons(&plan).contains(&"InvalidSpec"), "one Event, not one per look");
    }
}

#[test]
fn a_variable_in_the_same_stage_must_have_a_lower_run_order() {
    let world = World::new(spec(vec![stage(
        "dev",
        vec![deploy("api", 1), deploy_with("app", 1, "Url", "#{dev.api.Url}")],
    )]));
    let plan = world.look();
    assert!(condition(&plan, STALLED).2.contains("does not run before"));
    let world = World::new(spec(vec![stage(
        "dev",
        vec![deploy("api", 1), deploy_with("app", 2, "Url", "#{dev.api.Url}")],
    )]));
    let plan = world.look();
    assert!(conditions::find(&plan.status.conditions, STALLED).is_none());
}

#[test]
fn variables_resolve_from_outputs_of_earlier_deploys() {
    let mut world = World::new(spec(vec![
        stage("dev", vec![deploy("api", 1)]),
        stage(
            "prod",
            vec![deploy_with("app", 1, "HealthUrl", "#{dev.api.Url}/health")],
        ),
    ]));
    let plan = world.step();
    world.child_ready(write_for(&plan, "api"), &[("Url", "https://dev.example")]);
    let plan = world.step();
    let write = write_for(&plan, "app");
    assert_eq!(write.parameters[0].value.as_deref(), Some("https://dev.example/health"));
    // The resolved value is part of the child's revision.
    let unresolved = deploy_revision(&write.revision.hash, &write.deploy, &[]);
    assert_ne!(write.deploy_revision, unresolved);
    world.child_ready(write, &[]);
    world.step();
    let pass = world.status.passed_stages.iter().find(|p| p.stage == "prod").unwrap();
    assert_eq!(pass.variables["dev.api.Url"], "https://dev.example");
}

#[test]
fn a_missing_output_fails_the_action_without_retries() {
    let mut world = World::new(spec(vec![
        stage("dev", vec![deploy("api", 1)]),
        stage(
            "prod",
            vec![retries(deploy_with("app", 1, "HealthUrl", "#{dev.api.Url}"), 3)],
        ),
    ]));
    let plan = world.step();
    world.child_ready(write_for(&plan, "api"), &[("Endpoint", "https://dev.example")]);
    let plan = world.step();
    assert!(plan.child_writes.is_empty());
    let entry = world.entry("prod", "app");
    assert_eq!(entry.phase, ActionPhase::Failed);
    let message = entry.message.as_deref().unwrap();
    assert!(message.starts_with("UnknownOutput"), "{message}");
    assert!(message.contains("has no output Url (it has: Endpoint)"), "{message}");
    assert_eq!(world.execution().phase, ExecutionPhase::Failed);
    assert_eq!(condition(&plan, STALLED).0, "True");
}
