//! Revisions: the content hash, labels, ControllerRevisions and history.

use super::*;
use crate::deployment::decide::artifact_hash;

#[test]
fn the_hash_is_the_content_not_the_label() {
    let base = artifact("v1", "A");
    type Change = Box<dyn Fn(&mut Artifact)>;
    let cases: Vec<(&str, Change, bool)> = vec![
        ("label", Box::new(|a| a.revision = "v2".into()), false),
        ("template", Box::new(|a| a.template.body = Some("B".into())), true),
        (
            "parameter",
            Box::new(|a| a.parameters[0].value = Some("2".into())),
            true,
        ),
        (
            "tag",
            Box::new(|a| {
                a.tags.insert("team".into(), "web".into());
            }),
            true,
        ),
        (
            "capability",
            Box::new(|a| a.capabilities.push(crate::api::Capability::Iam)),
            true,
        ),
    ];
    for (name, change, differs) in cases {
        let mut changed = base.clone();
        change(&mut changed);
        assert_eq!(artifact_hash(&changed) != artifact_hash(&base), differs, "{name}");
    }
    assert_eq!(artifact_hash(&base).len(), 16);
}

#[test]
fn a_new_label_on_the_same_content_starts_nothing() {
    let mut world = World::stable(2);
    world.spec.artifact.revision = "v1-renamed".into();
    world.generation += 1;
    let plan = world.step();
    assert!(plan.writes.is_empty() && plan.create_revisions.is_empty());
    assert_eq!(world.status.phase, Some(DeploymentPhase::Ready));
    assert_eq!(world.status.update_revision.as_ref().unwrap().revision, "v1-renamed");
}

#[test]
fn changed_content_under_the_same_label_is_a_new_revision_with_an_event() {
    let mut world = World::stable(2);
    world.release("v1", "A-but-different");
    let plan = world.step();
    assert_eq!(plan.create_revisions.len(), 1);
    assert_eq!(plan.create_revisions[0].number, 2);
    let event = plan
        .events
        .iter()
        .find(|e| e.reason == "RevisionContentChanged")
        .expect("event");
    assert!(event.warning && event.message.contains("v1"));
    assert_eq!(written(&plan), vec!["t1", "t2"]);
}

#[test]
fn history_is_trimmed_to_the_limit_but_keeps_the_stable_revision() {
    let mut world = World::stable(1).with(|s| s.revision_history_limit = 1);
    for (label, body) in [("v2", "B"), ("v3", "C"), ("v4", "D")] {
        world.release(label, body);
        world.settle();
    }
    let kept: Vec<&str> = world.revisions.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(kept, vec!["v3", "v4"], "the current one and one more");
    let history: Vec<(&str, RevisionOutcome)> = world
        .status
        .history
        .iter()
        .map(|h| (h.revision.as_str(), h.outcome))
        .collect();
    assert_eq!(
        history,
        vec![("v4", RevisionOutcome::Succeeded), ("v3", RevisionOutcome::Succeeded)]
    );
    assert_eq!(world.status.history[0].controller_revision, world.revisions[1].name);
    // A stable revision is never trimmed while a newer one is rolling out.
    let mut world = World::stable(1).with(|s| {
        s.revision_history_limit = 0;
        s.approval = Approval::Manual;
    });
    world.release("v2", "B");
    world.settle();
    let kept: Vec<&str> = world.revisions.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(kept, vec!["v1", "v2"]);
}
