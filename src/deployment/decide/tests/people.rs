//! People's requests: promote, promote-full, pause, abort, retry, rollback.

use super::*;

fn paused_canary() -> World {
    let mut world = World::stable(3).with(|s| s.strategy = canary(vec![step(&["t1"], None, Some(""))]));
    world.release("v2", "B");
    world.settle();
    assert_eq!(world.status.phase, Some(DeploymentPhase::Paused));
    world.events.clear();
    world
}

fn refusal(world: &World) -> String {
    world
        .events
        .iter()
        .find(|e| e.reason == "RequestRefused")
        .map(|e| e.message.clone())
        .unwrap_or_default()
}

#[test]
fn promote_is_refused_when_nothing_is_paused_and_not_kept_for_later() {
    let mut world = World::stable(3).with(|s| {
        s.strategy = canary(vec![step(&["t1"], None, Some(""))]);
        s.health.bake_time = Some("10m".into());
    });
    world.release("v2", "B");
    world.settle();
    assert_eq!(world.status.waves[0].phase, WavePhase::Baking);
    world.annotate(PROMOTE_ANNOTATION, "2024-01-01T00:00:00Z");
    world.step();
    assert!(refusal(&world).contains("nothing is paused"), "{}", refusal(&world));
    assert!(refusal(&world).contains("Baking"));
    world.events.clear();
    world.step();
    assert!(
        world.events.is_empty(),
        "an old request is not refused twice: {:?}",
        world.events
    );
    world.later(601);
    world.settle();
    assert_eq!(
        world.status.phase,
        Some(DeploymentPhase::Paused),
        "the old promote does not end the later pause"
    );
}

#[test]
fn promote_refused_without_a_rollout() {
    let mut world = World::stable(2);
    world.annotate(PROMOTE_ANNOTATION, "1");
    world.annotate(PROMOTE_FULL_ANNOTATION, "1");
    world.step();
    let refused: Vec<&str> = world
        .events
        .iter()
        .filter(|e| e.reason == "RequestRefused")
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
}

#[test]
fn promote_full_skips_remaining_pauses_and_bakes() {
    let mut world = World::stable(4).with(|s| {
        s.strategy = canary(vec![step(&["t1"], None, Some("")), step(&["t2"], None, Some("1h"))]);
        s.health.bake_time = Some("30m".into());
    });
    world.release("v2", "B");
    world.settle();
    assert_eq!(world.status.waves[0].phase, WavePhase::Baking);
    world.annotate(PROMOTE_FULL_ANNOTATION, "now");
    world.settle();
    assert!(world.has_event("PromotedFull"));
    for t in ["t1", "t2", "t3", "t4"] {
        assert_eq!(world.applied(t), Some(world.hash()), "{t}");
    }
    assert_eq!(world.status.phase, Some(DeploymentPhase::Ready));
}

#[test]
fn pause_holds_new_waves_and_releases_until_removed() {
    for via_spec in [false, true] {
        let mut world = World::stable(2).with(|s| s.strategy = rolling(count(1), None));
        world.release("v2", "B");
        world.step(); // wave 1 written
        if via_spec {
            world.spec.paused = true;
        } else {
            world.annotate(PAUSE_ANNOTATION, "true");
        }
        let plan = world.step();
        assert!(released(&plan).is_empty(), "paused: nothing released");
        assert_eq!(world.status.phase, Some(DeploymentPhase::Paused));
        assert_eq!(world.condition("Progressing").unwrap().1, "Paused");
        world.settle();
        assert_ne!(world.applied("t1"), Some(world.hash()));
        world.spec.paused = false;
        world.annotations.remove(PAUSE_ANNOTATION);
        world.settle();
        assert_eq!(world.applied("t2"), Some(world.hash()), "resumed");
    }
}

#[test]
fn abort_rolls_back_now_and_is_bound_to_the_revision() {
    let mut world = paused_canary();
    let v1 = world.status.stable_revision.clone().unwrap().hash;
    world.annotate(ABORT_ANNOTATION, "0123456789abcdef");
    world.step();
    assert!(refusal(&world).contains("0123456789abcdef"), "{}", refusal(&world));
    assert_eq!(world.status.phase, Some(DeploymentPhase::Paused));
    world.annotate(ABORT_ANNOTATION, &format!("{}@1", world.hash()));
    let plan = world.step();
    assert_eq!(written(&plan), vec!["t1"]);
    assert_eq!(plan.writes[0].revision, v1);
    assert_eq!(world.status.rejected_revisions[0].reason, "aborted by request");
    world.settle();
    assert_eq!(world.applied("t1"), Some(v1));
    assert_eq!(world.status.phase, Some(DeploymentPhase::Rejected));
}

#[test]
fn retry_runs_a_rejected_revision_again() {
    let mut world = paused_canary();
    let v2 = world.hash();
    world.annotate(ABORT_ANNOTATION, &v2);
    world.settle();
    world.annotate(RETRY_ANNOTATION, "ffffffffffffffff");
    world.step();
    assert!(refusal(&world).contains("is not rejected"));
    world.annotate(RETRY_ANNOTATION, &format!("{v2}@2"));
    world.step();
    assert!(world.has_event("RetryAccepted"));
    assert!(world.status.rejected_revisions.is_empty());
    world.settle();
    assert_eq!(world.applied("t1"), Some(v2.clone()));
    assert_eq!(
        world.status.phase,
        Some(DeploymentPhase::Paused),
        "the retried rollout pauses after its canary again"
    );
}

#[test]
fn rollback_to_a_kept_revision_and_refused_for_one_no_longer_kept() {
    let mut world = World::stable(2);
    world.release("v2", "B");
    world.settle();
    world.annotate(ROLLBACK_TO_ANNOTATION, "v0");
    world.step();
    assert!(refusal(&world).contains("no longer kept"), "{}", refusal(&world));
    world.annotate(ROLLBACK_TO_ANNOTATION, "v1");
    world.settle();
    let v1 = world.status.stable_revision.clone().unwrap();
    assert_eq!(v1.revision, "v1", "v1 runs everywhere again and is stable");
    assert_eq!(world.applied("t2"), Some(v1.hash));
    assert_eq!(
        world.status.phase,
        Some(DeploymentPhase::Rejected),
        "v2 is not rolled out again by itself"
    );
    assert!(world.condition("Ready").unwrap().2.contains("rolled back to v1"));
}

#[test]
fn spec_rollback_to_runs_the_kept_revision_until_cleared() {
    let mut world = World::stable(2);
    let v1 = world.hash();
    world.release("v2", "B");
    world.settle();
    world.spec.rollback_to = Some(crate::api::RevisionRef { revision: "v1".into() });
    world.settle();
    assert_eq!(world.applied("t1"), Some(v1.clone()));
    assert_eq!(world.status.phase, Some(DeploymentPhase::Ready));
    world.spec.rollback_to = None;
    world.settle();
    assert_eq!(
        world.applied("t1"),
        Some(world.hash()),
        "cleared: the artifact runs again"
    );
}
