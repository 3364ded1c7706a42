//! Strategies -> waves, and the rollout moving through them.

use super::*;
use crate::deployment::decide::plan_waves;

fn waves_of(world: &World) -> Result<Vec<Vec<String>>, String> {
    plan_waves(&world.spec).map(|w| w.into_iter().map(|w| w.targets).collect())
}

fn names(list: &[&[&str]]) -> Vec<Vec<String>> {
    list.iter().map(|w| w.iter().map(|t| t.to_string()).collect()).collect()
}

#[test]
fn strategies_lay_out_waves_in_target_order() {
    let cases: Vec<(&str, Strategy, usize, Vec<Vec<String>>)> = vec![
        ("all at once", Strategy::default(), 3, names(&[&["t1", "t2", "t3"]])),
        (
            "rolling by count",
            rolling(count(2), None),
            5,
            names(&[&["t1", "t2"], &["t3", "t4"], &["t5"]]),
        ),
        (
            "rolling by percentage rounds up",
            rolling(percent("25%"), None),
            5,
            names(&[&["t1", "t2"], &["t3", "t4"], &["t5"]]),
        ),
        (
            "rolling 100%",
            rolling(percent("100%"), None),
            3,
            names(&[&["t1", "t2", "t3"]]),
        ),
        (
            "canary named then percentage then the rest",
            canary(vec![step(&["t3"], None, Some("")), step(&[], Some(60), Some("5m"))]),
            5,
            names(&[&["t3"], &["t1", "t2"], &["t4", "t5"]]),
        ),
        (
            "canary percentages are cumulative",
            canary(vec![step(&[], Some(20), None), step(&[], Some(40), None)]),
            5,
            names(&[&["t1"], &["t2"], &["t3", "t4", "t5"]]),
        ),
        (
            "canary covering every target has no last wave",
            canary(vec![step(&["t2"], None, None), step(&["t1"], None, None)]),
            2,
            names(&[&["t2"], &["t1"]]),
        ),
    ];
    for (name, strategy, n, expected) in cases {
        let world = World::new(n).with(|s| s.strategy = strategy);
        assert_eq!(waves_of(&world), Ok(expected), "{name}");
    }
}

#[test]
fn canary_pauses_follow_their_step() {
    let world = World::new(3).with(|s| s.strategy = canary(vec![step(&["t1"], None, Some("10m"))]));
    let waves = plan_waves(&world.spec).unwrap();
    assert_eq!(waves[0].pause.as_ref().and_then(|p| p.duration.as_deref()), Some("10m"));
    assert_eq!(
        waves[1].pause, None,
        "the targets no step names go last, without a pause"
    );
}

#[test]
fn first_rollout_writes_only_the_first_wave() {
    let mut world = World::new(4).with(|s| s.strategy = rolling(count(2), None));
    let plan = world.step();
    assert_eq!(written(&plan), vec!["t1", "t2"]);
    assert!(
        plan.writes.iter().all(|w| w.approve.is_none()),
        "no change set planned yet"
    );
    assert_eq!(plan.create_revisions.len(), 1);
    assert_eq!(world.status.phase, Some(DeploymentPhase::Progressing));
    assert_eq!(world.condition("Progressing").unwrap().1, "Wave1");
    assert_eq!(world.condition("Ready").unwrap().0, "Unknown");
    // The children planned their change sets: the deployment releases them.
    let plan = world.step();
    assert_eq!(released(&plan), vec!["t1", "t2"]);
    assert_eq!(world.child_rev("t3"), None, "later waves are not written");
}

#[test]
fn rolling_moves_wave_by_wave_to_stable() {
    let mut world = World::stable(4).with(|s| s.strategy = rolling(count(2), None));
    world.release("v2", "B");
    let v2 = world.hash();
    world.step();
    assert_eq!(world.child_rev("t1"), Some(v2.clone()));
    assert_ne!(world.child_rev("t3"), Some(v2.clone()), "second wave waits");
    world.step();
    world.stacks_run();
    let plan = world.step();
    assert_eq!(written(&plan), vec!["t3", "t4"], "wave 1 done: wave 2 written");
    assert!(world.has_event("WaveSucceeded") && world.has_event("WaveStarted"));
    world.settle();
    assert_eq!(world.status.stable_revision.as_ref().unwrap().hash, v2);
    assert_eq!(world.status.updated.as_deref(), Some("4/4"));
    assert_eq!(world.status.phase, Some(DeploymentPhase::Ready));
    assert_eq!(world.condition("Ready").unwrap().0, "True");
    assert_eq!(world.status.history[0].outcome, RevisionOutcome::Succeeded);
    assert_eq!(world.status.history[0].revision, "v2", "history is newest first");
}

#[test]
fn canary_waits_in_a_manual_pause_until_promoted() {
    let mut world = World::stable(3).with(|s| s.strategy = canary(vec![step(&["t2"], None, Some(""))]));
    world.release("v2", "B");
    world.settle();
    assert_eq!(world.status.phase, Some(DeploymentPhase::Paused));
    let (ready, reason, message) = world.condition("Ready").unwrap();
    assert_eq!((ready.as_str(), reason.as_str()), ("False", "Paused"));
    assert!(
        message.contains("kubectl annotate stackdeployment/web -n team stackpilot.dev/promote="),
        "{message}"
    );
    assert_eq!(world.applied("t2"), Some(world.hash()));
    assert_ne!(world.applied("t1"), Some(world.hash()), "the canary holds the rest");
    world.annotate(PROMOTE_ANNOTATION, "1");
    world.settle();
    assert_eq!(world.applied("t1"), Some(world.hash()));
    assert_eq!(world.status.phase, Some(DeploymentPhase::Ready));
}

#[test]
fn canary_timed_pause_ends_by_itself() {
    let mut world = World::stable(2).with(|s| s.strategy = canary(vec![step(&["t1"], None, Some("10m"))]));
    world.release("v2", "B");
    world.settle();
    assert_eq!(world.status.phase, Some(DeploymentPhase::Paused));
    let plan = world.decide();
    assert!(plan.requeue <= std::time::Duration::from_secs(600) && plan.requeue > std::time::Duration::ZERO);
    world.later(599);
    world.settle();
    assert_eq!(world.status.phase, Some(DeploymentPhase::Paused), "not yet");
    world.later(601);
    world.settle();
    assert_eq!(world.status.phase, Some(DeploymentPhase::Ready));
}
