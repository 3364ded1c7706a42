//! Crash-resume: the decision reads only status and observations, so
//! deciding again repeats nothing, and a write lost in a crash is redone
//! with the same change set.

use super::*;

#[test]
fn deciding_twice_from_the_written_status_releases_nothing_twice() {
    let mut world = World::stable(3).with(|s| s.strategy = rolling(count(2), None));
    world.release("v2", "B");
    world.step();
    let first = world.step();
    assert_eq!(released(&first), vec!["t1", "t2"]);
    // Same status, same observations: nothing new to write, no new events.
    let again = world.decide();
    assert!(again.writes.is_empty(), "{:?}", again.writes);
    assert!(again.events.is_empty(), "{:?}", again.events);
    assert_eq!(again.status.rollout, world.status.rollout);
    assert_eq!(again.status.waves, world.status.waves);
}

#[test]
fn a_crash_between_status_and_child_writes_redoes_the_same_release() {
    let mut world = World::stable(2);
    world.release("v2", "B");
    world.step();
    // The decision releases both change sets; the operator dies after the
    // status write, before the child writes.
    let plan = world.decide();
    let names: Vec<Option<String>> = plan.writes.iter().map(|w| w.approve.clone()).collect();
    world.status = plan.status.clone();
    let resumed = world.decide();
    let again: Vec<Option<String>> = resumed.writes.iter().map(|w| w.approve.clone()).collect();
    assert_eq!(again, names, "the same change sets, not new ones");
    assert!(
        resumed.events.is_empty(),
        "no transition is reported twice: {:?}",
        resumed.events
    );
}

#[test]
fn no_wave_is_skipped_after_a_restart_mid_wave() {
    let mut world = World::stable(3).with(|s| s.strategy = rolling(count(1), None));
    world.release("v2", "B");
    world.step();
    world.step();
    // Restart: the children are not yet done; deciding again (many times)
    // must not move past wave 1.
    for _ in 0..3 {
        let plan = world.step();
        assert!(plan.writes.iter().all(|w| w.target == "t1"), "{:?}", plan.writes);
    }
    assert_eq!(world.status.rollout.as_ref().unwrap().wave, 0);
    world.stacks_run();
    world.settle();
    let order: Vec<&str> = world
        .log
        .iter()
        .filter(|w| w.approve.is_some())
        .map(|w| w.target.as_str())
        .collect();
    assert_eq!(
        order,
        vec!["t1", "t2", "t3"],
        "each target released once, in wave order"
    );
}

#[test]
fn the_rejection_survives_a_restart() {
    let mut world = World::stable(2);
    world.release("v2", "B");
    world.step();
    world.step();
    world.fail("t1", "Bucket", "exists");
    world.step();
    // Restart with a status read back from the API server.
    let json = serde_json::to_string(&world.status).unwrap();
    world.status = serde_json::from_str(&json).unwrap();
    let before = world.log.len();
    world.settle();
    assert_eq!(world.status.rejected_revisions.len(), 1);
    assert_eq!(world.status.phase, Some(DeploymentPhase::Rejected));
    let v2 = world.hash();
    assert!(
        world.log[before..].iter().all(|w| w.revision != v2),
        "{:?}",
        &world.log[before..]
    );
    assert_eq!(
        world.applied("t1"),
        world.status.stable_revision.as_ref().map(|s| s.hash.clone())
    );
}

#[test]
fn suspend_writes_nothing() {
    let mut world = World::stable(2);
    world.release("v2", "B");
    world.spec.suspend = true;
    let plan = world.step();
    assert!(plan.writes.is_empty() && plan.create_revisions.is_empty());
    assert_eq!(world.status.phase, Some(DeploymentPhase::Suspended));
}

#[test]
fn a_used_approval_the_child_cleared_is_not_written_again() {
    let mut world = World::stable(3).with(|s| s.strategy = rolling(count(3), None));
    world.release("v2", "B");
    world.step();
    world.step();
    world.stacks_run();
    // The Stack kind removes its approve annotation once it used it.
    for child in world.children.values_mut() {
        child.approved_change_set = None;
    }
    let plan = world.step();
    assert!(plan.writes.is_empty(), "no approve re-written: {:?}", plan.writes);
    world.settle();
    let approvals = world.log.iter().filter(|w| w.approve.is_some()).count();
    assert_eq!(approvals, 3, "one release per target: {:?}", world.log);
}
