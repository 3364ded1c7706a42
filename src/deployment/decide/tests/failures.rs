//! Failure: tolerance, rejection, automatic rollback, no restart by itself.

use super::*;

/// v1 stable on 4 targets; v2 rolling one target per wave.
fn rolling_v2(tolerance: Option<IntOrString>) -> World {
    let mut world = World::stable(4).with(|s| s.strategy = rolling(count(1), tolerance));
    world.release("v2", "B");
    world
}

/// Wave 1 runs; its target's update fails.
fn run_first_wave_and_fail(world: &mut World, target: &str) {
    world.step();
    world.step();
    world.stacks_run();
    world.fail(target, "Bucket", "Resource handler returned message: bucket exists");
}

#[test]
fn failure_beyond_tolerance_rejects_and_rolls_back() {
    let mut world = rolling_v2(None);
    let v1 = world.status.stable_revision.clone().unwrap();
    let v2 = world.hash();
    run_first_wave_and_fail(&mut world, "t1");
    let plan = world.step();
    assert_eq!(written(&plan), vec!["t1"], "only the target that took v2 goes back");
    assert_eq!(plan.writes[0].revision, v1.hash);
    let rejected = &world.status.rejected_revisions[0];
    assert_eq!(rejected.revision.hash, v2);
    assert_eq!(rejected.target.as_deref(), Some("t1"));
    assert_eq!(rejected.resource.as_deref(), Some("Bucket"));
    assert!(rejected.reason.contains("bucket exists"), "{}", rejected.reason);
    assert!(world.has_event("RevisionRejected") && world.has_event("RollbackStarted"));
    world.settle();
    for t in ["t1", "t2", "t3", "t4"] {
        assert_eq!(world.applied(t), Some(v1.hash.clone()), "{t} runs v1");
    }
    assert!(
        !world.log.iter().any(|w| w.revision == v2 && w.target != "t1"),
        "untouched targets stay untouched"
    );
    let (ready, reason, message) = world.condition("Ready").unwrap();
    assert_eq!((ready.as_str(), reason.as_str()), ("False", "RevisionRejected"));
    assert!(message.contains("t1") && message.contains("Bucket"), "{message}");
    assert!(message.contains("stackpilot.dev/retry="), "{message}");
    assert_eq!(world.condition("Stalled").unwrap().0, "True");
    assert_eq!(world.status.phase, Some(DeploymentPhase::Rejected));
    assert_eq!(world.status.history[0].outcome, RevisionOutcome::RolledBack);
    assert_eq!(world.status.stable_revision, Some(v1));
}

#[test]
fn a_rejected_revision_is_not_rolled_out_again_by_itself() {
    let mut world = rolling_v2(None);
    run_first_wave_and_fail(&mut world, "t1");
    world.settle();
    world.log.clear();
    // GitOps re-applies the same spec (a new generation, the same artifact).
    world.generation += 1;
    world.later(3600);
    let plan = world.step();
    assert!(plan.writes.is_empty(), "{:?}", plan.writes);
    assert!(plan.events.is_empty(), "{:?}", plan.events);
    assert_eq!(world.status.phase, Some(DeploymentPhase::Rejected));
    // A new label on the same content is still the rejected revision.
    world.spec.artifact.revision = "v2-again".into();
    assert!(world.step().writes.is_empty());
    // New content runs.
    world.release("v3", "C");
    let plan = world.step();
    assert_eq!(written(&plan), vec!["t1"]);
    assert_eq!(world.status.phase, Some(DeploymentPhase::Progressing));
}

#[test]
fn within_tolerance_the_rollout_goes_on_degraded() {
    for tolerance in [count(1), percent("25%")] {
        let mut world = rolling_v2(Some(tolerance.clone()));
        run_first_wave_and_fail(&mut world, "t1");
        world.step();
        assert!(world.status.rejected_revisions.is_empty(), "{tolerance:?}");
        let (degraded, reason, message) = world.condition("Degraded").unwrap();
        assert_eq!((degraded.as_str(), reason.as_str()), ("True", "TargetsFailed"));
        assert!(message.contains("t1"), "{message}");
        world.settle();
        assert_eq!(
            world.applied("t4"),
            Some(world.hash()),
            "{tolerance:?}: the rollout went on"
        );
        assert_eq!(world.status.phase, Some(DeploymentPhase::Degraded));
        assert_ne!(
            world.status.stable_revision.as_ref().map(|s| s.hash.clone()),
            Some(world.hash()),
            "not stable: t1 failed"
        );
        let plan = world.step();
        assert!(plan.writes.is_empty(), "a finished rollout does not start again");
    }
}

#[test]
fn second_failure_past_tolerance_rolls_back_every_target_that_took_it() {
    let mut world = rolling_v2(Some(count(1)));
    let v1 = world.status.stable_revision.clone().unwrap().hash;
    run_first_wave_and_fail(&mut world, "t1");
    world.step(); // t1 failed within tolerance; wave 2 (t2) starts
    world.step(); // t2 released
    world.fail("t2", "Queue", "limit exceeded");
    let plan = world.step();
    let mut back = written(&plan);
    back.sort();
    assert_eq!(back, vec!["t1", "t2"]);
    assert!(plan.writes.iter().all(|w| w.revision == v1));
    assert_eq!(
        world.status.rejected_revisions[0].target.as_deref(),
        Some("t1"),
        "the first failed target"
    );
    assert_ne!(world.child_rev("t3"), Some(world.hash()));
}

#[test]
fn without_automatic_rollback_the_targets_stay() {
    let mut world = rolling_v2(None).with(|s| s.rollback.automatic = false);
    run_first_wave_and_fail(&mut world, "t1");
    let plan = world.step();
    assert!(plan.writes.is_empty());
    assert_eq!(world.child_rev("t1"), Some(world.hash()));
    let message = world.condition("Ready").unwrap().2;
    assert!(message.contains("rollback.automatic is off"), "{message}");
    assert_eq!(world.status.phase, Some(DeploymentPhase::Rejected));
}

#[test]
fn the_spec_back_at_the_stable_revision_brings_the_targets_back() {
    // Without automatic rollback t1 stays at the rejected v2; the spec then
    // asks for v1 again (a Pipeline rolling its stage back).
    let mut world = rolling_v2(None).with(|s| s.rollback.automatic = false);
    let v1 = world.status.stable_revision.clone().unwrap();
    run_first_wave_and_fail(&mut world, "t1");
    world.settle();
    assert_ne!(world.child_rev("t1"), Some(v1.hash.clone()));
    world.release("v1", "A");
    assert_eq!(world.hash(), v1.hash, "the same content as v1");
    world.settle();
    for t in ["t1", "t2", "t3", "t4"] {
        assert_eq!(world.applied(t), Some(v1.hash.clone()), "{t} runs v1");
    }
    assert_eq!(world.condition("Ready").unwrap().0, "True");
}

#[test]
fn a_failed_first_rollout_has_nothing_to_roll_back_to() {
    let mut world = World::new(2);
    world.step();
    world.step();
    world.fail("t1", "Role", "not authorized");
    let plan = world.step();
    assert!(plan.writes.is_empty());
    assert!(world.has_event("NoStableRevision"));
    assert!(world.condition("Ready").unwrap().2.contains("No stable revision"));
}

#[test]
fn a_failed_rollback_stalls() {
    let mut world = rolling_v2(None);
    run_first_wave_and_fail(&mut world, "t1");
    world.step(); // rollback of t1 starts
    world.step(); // released
    world.fail("t1", "Bucket", "cannot delete");
    world.step();
    let (_, reason, message) = world.condition("Ready").unwrap();
    assert_eq!(reason, "RevisionRejected");
    assert!(message.contains("The rollback failed"), "{message}");
    assert!(world.has_event("RollbackFailed"));
}
