//! Executions: start, re-apply, supersede, queue, and the source.

use super::*;
use crate::runtime::conditions::{READY, RECONCILING, STALLED};

fn two_stages() -> PipelineSpec {
    spec(vec![
        stage("dev", vec![deploy("app", 1)]),
        stage("prod", vec![deploy("app", 1)]),
    ])
}

#[test]
fn a_new_revision_starts_an_execution_with_a_deterministic_id() {
    let mut world = World::new(two_stages());
    let plan = world.step();
    let execution = world.execution();
    assert_eq!(execution.id, execution_id(UID, &revision("v1"), 1));
    assert_eq!(execution.phase, ExecutionPhase::InProgress);
    assert_eq!(execution.stage.as_deref(), Some("dev"));
    let write = write_for(&plan, "app");
    assert_eq!(write.name, "web-dev-app");
    assert_eq!(write.kind, ChildKind::Stack);
    assert_eq!(write.revision, revision("v1"));
    assert_eq!(write.retry_request, format!("{}/1", execution.id));
    assert_eq!(
        plan.snapshots,
        vec![Snapshot {
            revision: revision("v1")
        }]
    );
    assert!(reasons(&plan).contains(&"ExecutionStarted"));
    assert_eq!(condition(&plan, READY).0, "Unknown");
    assert_eq!(condition(&plan, RECONCILING).0, "True");
    // Another pipeline (uid) or sequence gives another id.
    assert_ne!(execution.id, execution_id("other-uid", &revision("v1"), 1));
    assert_ne!(execution.id, execution_id(UID, &revision("v1"), 2));
}

#[test]
fn the_same_spec_applied_again_starts_nothing() {
    let mut world = World::new(two_stages());
    let plan = world.step();
    world.all_ready(&plan);
    let plan = world.step();
    world.all_ready(&plan);
    let plan = world.step();
    assert_eq!(world.execution().phase, ExecutionPhase::Succeeded);
    assert_eq!(condition(&plan, READY).0, "True");
    // A GitOps tool applies the same spec again, later.
    world.generation += 1;
    world.advance(3600);
    let plan = world.step();
    assert_eq!(world.status.execution_count, 1);
    assert!(plan.child_writes.is_empty(), "{:?}", plan.child_writes);
    assert!(plan.snapshots.is_empty());
    assert!(!reasons(&plan).contains(&"ExecutionStarted"));
    assert_eq!(condition(&plan, READY).0, "True");
}

#[test]
fn a_newer_revision_supersedes_at_the_next_stage_boundary() {
    let mut world = World::new(two_stages());
    let first = world.step();
    let v1 = world.execution().id.clone();
    world.child_working(write_for(&first, "app"));
    world.new_revision("v2");
    let plan = world.step();
    // The running stage is not interrupted.
    assert_eq!(world.execution().id, v1);
    assert_eq!(world.execution().phase, ExecutionPhase::InProgress);
    assert_eq!(world.status.queued_revisions, vec![revision("v2")]);
    assert!(reasons(&plan).contains(&"RevisionWaiting"));
    // dev passes: at the boundary v2 replaces v1 and starts from dev.
    world.child_ready(write_for(&first, "app"), &[]);
    let plan = world.step();
    let current = world.execution();
    assert_eq!(current.revision, "v2");
    assert_ne!(current.id, v1);
    let old = &world.status.history[0];
    assert_eq!(old.id, v1);
    assert_eq!(old.phase, ExecutionPhase::Superseded);
    assert_eq!(old.message.as_deref(), Some("superseded by revision v2"));
    assert!(world.status.queued_revisions.is_empty());
    let write = write_for(&plan, "app");
    assert_eq!((write.stage.as_str(), write.revision.hash.as_str()), ("dev", "hash-v2"));
    assert!(
        plan.notes
            .iter()
            .any(|n| n.reason == "ExecutionSuperseded" && n.message.contains("v2"))
    );
}

#[test]
fn superseding_withdraws_a_pending_approval_at_once() {
    let mut world = World::new(spec(vec![
        stage("dev", vec![deploy("app", 1)]),
        stage("prod", vec![approval("gate", 1, None), deploy("app", 2)]),
    ]));
    let plan = world.step();
    world.all_ready(&plan);
    world.step();
    assert_eq!(world.entry("prod", "gate").phase, ActionPhase::WaitingForApproval);
    let gate = world.path("prod", "gate");
    world.new_revision("v2");
    let plan = world.step();
    let old = &world.status.history[0];
    assert_eq!(old.phase, ExecutionPhase::Superseded);
    let entry = find_action(old, "prod", "gate").unwrap();
    assert_eq!(entry.phase, ActionPhase::Withdrawn);
    let record = entry.approval.as_ref().unwrap();
    assert_eq!(record.decision, ApprovalDecision::Withdrawn);
    assert_eq!(record.comment.as_deref(), Some("superseded by revision v2"));
    assert_eq!(plan.withdrawn_approvals, vec![gate]);
    assert!(
        plan.notes
            .iter()
            .any(|n| n.reason == "ApprovalWithdrawn" && n.message.contains("v2"))
    );
    assert_eq!(world.execution().revision, "v2");
    assert_eq!(condition(&plan, conditions::APPROVAL_REQUIRED).0, "False");
}

#[test]
fn superseded_mode_keeps_only_the_newest_waiting_revision() {
    let mut world = World::new(two_stages());
    world.step();
    world.new_revision("v2");
    world.step();
    world.new_revision("v3");
    let plan = world.step();
    assert_eq!(world.status.queued_revisions, vec![revision("v3")]);
    assert!(
        plan.notes
            .iter()
            .any(|n| n.reason == "RevisionSkipped" && n.message.contains("revision v2"))
    );
    assert_eq!(plan.keep_snapshots, vec!["hash-v1".to_string(), "hash-v3".to_string()]);
}

#[test]
fn queued_mode_runs_every_revision_in_order() {
    let mut world = World::new(spec(vec![stage("dev", vec![deploy("app", 1)])]));
    world.spec.execution_mode = ExecutionMode::Queued;
    let first = world.step();
    world.new_revision("v2");
    world.step();
    world.new_revision("v3");
    world.step();
    assert_eq!(world.status.queued_revisions, vec![revision("v2"), revision("v3")]);
    assert_eq!(world.execution().revision, "v1");
    world.all_ready(&first);
    let plan = world.step();
    assert_eq!(world.status.history[0].phase, ExecutionPhase::Succeeded);
    assert_eq!(world.execution().revision, "v2");
    assert_eq!(world.status.queued_revisions, vec![revision("v3")]);
    assert_eq!(condition(&plan, READY).0, "Unknown");
    world.all_ready(&plan);
    let plan = world.step();
    assert_eq!(world.execution().revision, "v3");
    world.all_ready(&plan);
    let plan = world.step();
    assert_eq!(world.execution().phase, ExecutionPhase::Succeeded);
    assert_eq!(world.status.execution_count, 3);
    assert_eq!(condition(&plan, READY).0, "True");
}

#[test]
fn a_missing_source_is_a_condition_not_a_failed_execution() {
    let mut world = World::new(two_stages());
    world.source = SourceObserved::Problem {
        reason: "ConfigMapNotFound".into(),
        message: "ConfigMap team-a/web-artifact not found".into(),
    };
    let plan = world.step();
    assert!(world.status.current_execution.is_none());
    let (status, reason, message) = condition(&plan, READY);
    assert_eq!((status.as_str(), reason.as_str()), ("False", "ConfigMapNotFound"));
    assert!(message.contains("web-artifact"));
    assert!(conditions::find(&plan.status.conditions, STALLED).is_none());
    assert!(plan.requeue.unwrap() <= std::time::Duration::from_secs(30));
    // The ConfigMap appears: the execution starts.
    world.new_revision("v1");
    let plan = world.step();
    assert_eq!(world.execution().revision, "v1");
    assert_eq!(plan.child_writes.len(), 1);
    // It disappears mid-execution: the execution runs on from its snapshot.
    world.source = SourceObserved::Problem {
        reason: "ConfigMapNotFound".into(),
        message: "gone".into(),
    };
    let plan = world.step();
    assert_eq!(world.execution().phase, ExecutionPhase::InProgress);
    assert_eq!(write_for(&plan, "app").revision, revision("v1"));
}

#[test]
fn history_is_trimmed_to_the_limit_and_drops_outputs() {
    let mut world = World::new(spec(vec![stage("dev", vec![deploy("app", 1)])]));
    world.spec.execution_history_limit = 2;
    for label in ["v1", "v2", "v3", "v4"] {
        world.new_revision(label);
        let plan = world.step();
        world.child_ready(write_for(&plan, "app"), &[("Url", "https://x")]);
        world.step();
        assert_eq!(world.entry("dev", "app").outputs.len(), 1);
    }
    let kept: Vec<&str> = world.status.history.iter().map(|e| e.revision.as_str()).collect();
    assert_eq!(kept, vec!["v3", "v2"]);
    assert!(
        world
            .status
            .history
            .iter()
            .all(|e| e.actions.iter().all(|a| a.outputs.is_empty()))
    );
}
