//! Fleet preview and approval bound to the revision hash.

use super::*;

fn manual_v2() -> World {
    let mut world = World::stable(3).with(|s| {
        s.approval = Approval::Manual;
        s.strategy = rolling(count(1), None);
    });
    world.release("v2", "B");
    world
}

fn replace(world: &mut World, target: &str, resource: &str) {
    let set = world.children.get_mut(target).unwrap().change_set.as_mut().unwrap();
    set.replaced.push(resource.into());
}

#[test]
fn manual_plans_every_target_before_any_executes() {
    let mut world = manual_v2();
    let plan = world.step();
    assert_eq!(written(&plan), vec!["t1", "t2", "t3"], "every target is planned");
    assert!(plan.writes.iter().all(|w| w.approve.is_none()));
    replace(&mut world, "t2", "Database");
    let plan = world.step();
    assert!(
        plan.writes.is_empty(),
        "nothing is released before approval: {:?}",
        plan.writes
    );
    let preview = world.status.preview.clone().unwrap();
    assert!(preview.complete);
    assert_eq!(
        (preview.adds, preview.modifies, preview.removes, preview.replacements),
        (3, 6, 0, 1)
    );
    assert_eq!(preview.targets[1].replaced, vec!["Database"]);
    assert_eq!(world.status.phase, Some(DeploymentPhase::WaitingForApproval));
    let (status, _, message) = world.condition("ApprovalRequired").unwrap();
    assert_eq!(status, "True");
    let hash = world.hash();
    assert!(
        message.contains(&format!(
            "kubectl annotate stackdeployment/web -n team stackpilot.dev/approve-revision={hash}"
        )),
        "{message}"
    );
    assert!(
        message.contains("stackpilot approve stackdeployment/web -n team"),
        "{message}"
    );
    assert!(message.contains("t2: Database"), "{message}");
    assert!(world.has_event("ReplacementsPlanned"));
}

#[test]
fn approval_releases_wave_by_wave() {
    let mut world = manual_v2();
    world.step();
    world.step();
    world.annotate(APPROVE_REVISION_ANNOTATION, &world.hash());
    let plan = world.step();
    assert_eq!(released(&plan), vec!["t1"], "only the first wave is released");
    assert!(world.has_event("RevisionApproved"));
    assert!(world.condition("ApprovalRequired").is_none());
    world.settle();
    for t in ["t1", "t2", "t3"] {
        assert_eq!(world.applied(t), Some(world.hash()), "{t}");
    }
}

#[test]
fn an_approval_of_one_revision_never_releases_another() {
    let mut world = manual_v2();
    world.step();
    let approved_v2 = world.hash();
    world.release("v3", "C");
    world.annotate(APPROVE_REVISION_ANNOTATION, &approved_v2);
    world.settle();
    assert!(
        world.log.iter().all(|w| w.approve.is_none()),
        "v3 is not released by v2's approval"
    );
    assert_eq!(world.status.phase, Some(DeploymentPhase::WaitingForApproval));
    let message = world.condition("ApprovalRequired").unwrap().2;
    assert!(message.contains("not this one"), "{message}");
    world.annotate(APPROVE_REVISION_ANNOTATION, &world.hash());
    world.settle();
    assert_eq!(world.applied("t3"), Some(world.hash()));
}

#[test]
fn automatic_shows_first_wave_replacements_before_they_run() {
    let mut world = World::stable(2).with(|s| s.strategy = rolling(count(1), None));
    world.release("v2", "B");
    world.step();
    replace(&mut world, "t1", "LoadBalancer");
    let plan = world.step();
    // The same plan releases t1 and records the replacement: the status is
    // written before the child, so it shows before the change set runs.
    assert_eq!(released(&plan), vec!["t1"]);
    let preview = plan.status.preview.clone().unwrap();
    assert_eq!(preview.targets.len(), 1, "the first wave only");
    assert_eq!(preview.targets[0].replaced, vec!["LoadBalancer"]);
    assert!(
        plan.events
            .iter()
            .any(|e| e.reason == "ReplacementsPlanned" && e.message.contains("LoadBalancer"))
    );
}

#[test]
fn a_change_set_still_being_planned_leaves_the_preview_incomplete() {
    let mut world = manual_v2();
    world.step();
    // The Stack names its change set before CloudFormation has listed the
    // changes: the preview must not count it as known (with 0 changes).
    let set = world.children.get_mut("t2").unwrap().change_set.as_mut().unwrap();
    set.state = ChangeSetState::Planning;
    let plan = world.step();
    let preview = plan.status.preview.clone().unwrap();
    assert!(!preview.complete, "{preview:?}");
    assert_eq!(preview.targets[1].change_set, None);
    let (_, _, message) = world.condition("ApprovalRequired").unwrap();
    assert!(message.contains("is being planned"), "{message}");
}
