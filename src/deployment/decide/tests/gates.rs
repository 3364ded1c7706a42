//! Health gates: Ready at the update revision, alarms, bake time, deadline.

use super::*;

fn two_waves() -> World {
    let mut world = World::stable(2).with(|s| {
        s.strategy = rolling(count(1), None);
        s.health.alarms = vec!["errors".into()];
    });
    world.alarms_ok("errors");
    world.release("v2", "B");
    world
}

#[test]
fn ready_at_the_old_revision_is_not_done() {
    let mut world = two_waves();
    world.step();
    // t1 is Ready (at v1) and its new change set was never executed.
    world.children.get_mut("t1").unwrap().ready = Some(cond("True", "Succeeded"));
    world.step();
    let plan = world.step();
    assert!(
        !written(&plan).contains(&"t2".to_string()),
        "wave 2 must wait for t1 at v2"
    );
    assert_eq!(world.status.waves[1].phase, WavePhase::Pending);
}

#[test]
fn bake_time_holds_the_next_wave() {
    let mut world = two_waves().with(|s| s.health.bake_time = Some("5m".into()));
    world.settle();
    assert_eq!(world.status.waves[0].phase, WavePhase::Baking);
    assert_eq!(world.target_phase("t1"), TargetPhase::Baking);
    assert_ne!(world.child_rev("t2"), Some(world.hash()));
    world.later(301);
    world.settle();
    assert_eq!(world.applied("t2"), Some(world.hash()));
}

#[test]
fn alarm_gates_fail_the_target() {
    let read_error: AlarmReading = Err("AccessDenied".into());
    let cases: Vec<(&str, Option<AlarmReading>, bool, bool)> = vec![
        (
            "alarm in ALARM",
            Some(Ok(state(AlarmValue::Alarm, "Threshold Crossed"))),
            false,
            true,
        ),
        (
            "alarm in ALARM even when read failures are ignored",
            Some(Ok(state(AlarmValue::Alarm, "x"))),
            true,
            true,
        ),
        ("alarm missing", None, false, true),
        ("alarm missing, ignored", None, true, false),
        ("alarm unreadable", Some(read_error.clone()), false, true),
        ("alarm unreadable, ignored", Some(read_error), true, false),
        (
            "insufficient data is not ALARM",
            Some(Ok(state(AlarmValue::InsufficientData, "x"))),
            false,
            false,
        ),
    ];
    for (name, reading, ignore, fails) in cases {
        let mut world = two_waves().with(|s| s.health.ignore_alarm_read_failure = ignore);
        let placement = Placement::of(&world.spec.targets[0]);
        let alarms = world.alarms.entry(placement).or_default();
        match reading {
            Some(r) => alarms.insert("errors".into(), r),
            None => alarms.remove("errors"),
        };
        world.settle();
        // Alarms are read once t1's wave runs, after t1 was written (its
        // change set not released): a failed t1 is written back at once.
        let failed = matches!(world.target_phase("t1"), TargetPhase::Failed | TargetPhase::RolledBack);
        assert_eq!(failed, fails, "{name}");
        if fails {
            let rejected = &world.status.rejected_revisions[0];
            assert_eq!(rejected.alarm.as_deref(), Some("errors"), "{name}");
            assert!(rejected.reason.contains("alarm errors"), "{name}: {}", rejected.reason);
            assert_eq!(
                world.applied("t2"),
                world.status.stable_revision.as_ref().map(|s| s.hash.clone()),
                "{name}: t2 untouched"
            );
        } else {
            assert_eq!(world.applied("t2"), Some(world.hash()), "{name}");
        }
    }
}

#[test]
fn an_alarm_during_the_bake_fails_the_wave() {
    let mut world = two_waves().with(|s| s.health.bake_time = Some("10m".into()));
    world.settle();
    assert_eq!(world.status.waves[0].phase, WavePhase::Baking);
    world.later(120);
    world.alarm("t1", "errors", Ok(state(AlarmValue::Alarm, "5xx above 1%")));
    world.settle();
    assert_eq!(world.target_phase("t1"), TargetPhase::RolledBack);
    assert!(world.status.rejected_revisions[0].reason.contains("5xx above 1%"));
}

#[test]
fn progress_deadline_fails_a_slow_target() {
    let cases = [
        (None, 29 * 60, false),
        (None, 31 * 60, true),
        (Some("5m"), 6 * 60, true),
    ];
    for (deadline, wait, fails) in cases {
        let mut world = two_waves().with(|s| s.health.progress_deadline = deadline.map(String::from));
        world.step();
        world.later(wait);
        world.step();
        let failed = world.status.rejected_revisions.first().map(|r| r.reason.clone());
        assert_eq!(failed.is_some(), fails, "{deadline:?} after {wait}s");
        if let Some(reason) = failed {
            assert!(reason.contains("progressDeadline"), "{reason}");
        }
    }
}

#[test]
fn alarms_are_read_in_each_targets_own_account_and_region() {
    let mut world = two_waves();
    // t2's region is in ALARM, but t2 is not in the running wave yet.
    world.alarm("t2", "errors", Ok(state(AlarmValue::Alarm, "t2 region")));
    world.step();
    world.step();
    assert!(world.status.rejected_revisions.is_empty(), "t1's own region is OK");
    assert_eq!(world.target_phase("t1"), TargetPhase::Deploying);
    // Once t2's wave runs, its region's alarm fails t2, not t1.
    world.settle();
    let rejected = &world.status.rejected_revisions[0];
    assert_eq!(rejected.target.as_deref(), Some("t2"));
    assert!(rejected.reason.contains("t2 region"), "{}", rejected.reason);
    let t1 = world.status.targets.iter().find(|t| t.name == "t1").unwrap();
    assert!(t1.failure.is_none());
}

#[test]
fn alarms_are_read_only_where_the_running_update_wave_lives() {
    let mut world = two_waves();
    let of = |world: &World, i: usize| Placement::of(&world.spec.targets[i]);
    let read = |world: &World| alarm_placements(&world.spec, Some(&world.status));
    world.status.rollout = None;
    assert!(read(&world).is_empty(), "nothing rolls out");
    let mut world = two_waves();
    world.step();
    assert_eq!(
        read(&world),
        [of(&world, 0)].into(),
        "wave 1: t1's account and region only"
    );
    world.settle();
    // t1 passed, t2's wave ran and passed too: the rollout is over.
    assert_eq!(world.applied("t2"), Some(world.hash()));
    assert!(read(&world).is_empty(), "a finished rollout reads no alarms");
    let no_alarms = two_waves().with(|s| s.health.alarms.clear());
    let mut no_alarms = no_alarms;
    no_alarms.step();
    assert!(read(&no_alarms).is_empty(), "no alarms named, none read");
}

#[test]
fn a_ready_target_whose_alarms_were_not_read_waits_and_is_looked_at_again_at_once() {
    let mut world = two_waves();
    let t1 = world.spec.targets[0].clone();
    // t1's account and region read nothing: t1 runs v2 and still waits.
    world.alarms.remove(&Placement::of(&t1));
    for _ in 0..5 {
        world.step();
        world.stacks_run();
    }
    assert!(world.children["t1"].ready_at(&world.hash()), "t1 runs v2");
    world.alarms_ok("errors");
    // The wiring read no alarm in t1's account and region (the wave began
    // after the read): t1 neither passes nor fails the gate.
    let mut observed_alarms = world.alarms.clone();
    observed_alarms.remove(&Placement::of(&t1));
    let plan = decide(&Observed {
        alarms: &observed_alarms,
        ..world.observed()
    });
    assert!(
        plan.status.rejected_revisions.is_empty(),
        "an unread alarm is not a missing one"
    );
    assert_eq!(plan.status.waves[0].phase, WavePhase::Running);
    assert!(!written(&plan).contains(&"t2".to_string()), "wave 2 waits");
    assert_eq!(plan.requeue, std::time::Duration::from_secs(1));
    // Read, the gate passes.
    world.settle();
    assert_eq!(world.applied("t2"), Some(world.hash()));
}
