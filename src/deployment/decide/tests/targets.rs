//! Validation (Stalled, nothing written) and targets added or removed.

use super::*;

#[test]
fn invalid_specs_are_refused_without_writes() {
    type Change = Box<dyn Fn(&mut World)>;
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "two targets in the same account and region",
            Box::new(|w| w.spec.targets[1].region = "eu-west-1".into()),
            "DuplicateTarget",
        ),
        (
            "two account refs resolving to the same account id",
            Box::new(|w| {
                w.spec.targets[1].region = "eu-west-1".into();
                w.spec.targets[1].account_ref = Some(AccountRef {
                    name: "prod-alias".into(),
                });
                w.account_ids.insert("prod".into(), "111111111111".into());
                w.account_ids.insert("prod-alias".into(), "111111111111".into());
            }),
            "DuplicateTarget",
        ),
        (
            "a canary step naming an unknown target",
            Box::new(|w| w.spec.strategy = canary(vec![step(&["nope"], None, None)])),
            "UnknownCanaryTarget",
        ),
        (
            "an invalid percentage",
            Box::new(|w| w.spec.strategy = rolling(percent("150%"), None)),
            "InvalidStrategy",
        ),
        (
            "a percentage that is no number",
            Box::new(|w| w.spec.strategy = rolling(count(1), Some(percent("a lot")))),
            "InvalidStrategy",
        ),
        (
            "zero concurrency",
            Box::new(|w| w.spec.strategy = rolling(percent("0%"), None)),
            "InvalidStrategy",
        ),
        (
            "a canary percentage out of range",
            Box::new(|w| w.spec.strategy = canary(vec![step(&[], Some(0), None)])),
            "InvalidStrategy",
        ),
        (
            "rollbackTo an unknown revision",
            Box::new(|w| w.spec.rollback_to = Some(crate::api::RevisionRef { revision: "v9".into() })),
            "UnknownRevision",
        ),
        (
            "a bad duration",
            Box::new(|w| w.spec.health.bake_time = Some("5 days".into())),
            "InvalidDuration",
        ),
    ];
    for (name, change, reason) in cases {
        let mut world = World::new(2);
        change(&mut world);
        let plan = world.step();
        assert!(
            plan.writes.is_empty() && plan.create_revisions.is_empty(),
            "{name}: nothing written"
        );
        let (stalled, why, message) = world.condition("Stalled").unwrap_or_default();
        assert_eq!((stalled.as_str(), why.as_str()), ("True", reason), "{name}: {message}");
        assert_eq!(world.condition("Ready").unwrap().0, "False", "{name}");
        assert_eq!(world.status.phase, Some(DeploymentPhase::Invalid), "{name}");
        assert_eq!(plan.events.len(), 1, "{name}: one event");
        assert!(world.step().events.is_empty(), "{name}: not repeated");
    }
}

#[test]
fn an_added_target_gets_the_stable_revision() {
    let mut world = World::stable(2);
    let v1 = world.hash();
    world.spec.targets.push(target("t3", "ap-south-1"));
    world.settle();
    assert_eq!(world.applied("t3"), Some(v1));
    assert_eq!(world.status.targets.len(), 3);
    assert_eq!(world.target_phase("t3"), TargetPhase::Healthy);
}

#[test]
fn an_added_target_waits_for_its_wave_or_joins_the_current_one() {
    // Rolling one at a time over t1..t3; the rollout is on wave 2 (t2).
    let mut world = World::stable(3).with(|s| s.strategy = rolling(count(1), None));
    let v1 = world.hash();
    world.release("v2", "B");
    world.step();
    world.step();
    world.stacks_run();
    world.step();
    assert_eq!(world.status.rollout.as_ref().unwrap().wave, 1);
    // t0 comes first in target order: its wave is past, it joins wave 2.
    world.spec.targets.insert(0, target("t0", "sa-east-1"));
    // t9 comes last: it waits for the last wave with the stable revision.
    world.spec.targets.push(target("t9", "us-west-2"));
    let plan = world.step();
    assert!(world.status.waves[1].targets.contains(&"t0".to_string()));
    let t0 = plan.writes.iter().find(|w| w.target == "t0").unwrap();
    assert_eq!(t0.revision, world.hash());
    let t9 = plan.writes.iter().find(|w| w.target == "t9").unwrap();
    assert_eq!(t9.revision, v1);
    world.settle();
    assert_eq!(world.applied("t0"), Some(world.hash()));
    assert_eq!(world.applied("t9"), Some(world.hash()));
}

#[test]
fn a_removed_target_has_its_stack_deleted() {
    let mut world = World::stable(3);
    world.spec.targets.retain(|t| t.name != "t2");
    let plan = world.step();
    assert_eq!(plan.deletes, vec!["web-t2"]);
    assert!(plan.writes.is_empty());
    assert_eq!(
        world.status.targets.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        vec!["t1", "t3"]
    );
    assert!(world.step().deletes.is_empty(), "deleted once");
}

#[test]
fn target_rows_show_account_region_revision_and_outputs() {
    let mut world = World::new(1);
    world.account_ids.insert("prod".into(), "123456789012".into());
    world.settle();
    world
        .children
        .get_mut("t1")
        .unwrap()
        .outputs
        .insert("Url".into(), "https://x".into());
    world.step();
    let row = &world.status.targets[0];
    assert_eq!(row.account.as_deref(), Some("123456789012"));
    assert_eq!(row.region, "eu-west-1");
    assert_eq!(row.stack, "web-t1");
    assert_eq!(row.revision, Some(world.hash()));
    assert_eq!(row.outputs.get("Url").map(String::as_str), Some("https://x"));
}

#[test]
fn a_removed_target_being_deleted_is_not_deleted_again() {
    let mut world = World::stable(2);
    world.spec.targets.retain(|t| t.name != "t2");
    world.children.get_mut("t2").unwrap().deleting = true;
    let plan = world.step();
    assert!(plan.deletes.is_empty() && plan.events.is_empty(), "{:?}", plan.events);
}

#[test]
fn a_child_stack_is_read_the_way_the_decision_needs_it() {
    use crate::api::{
        AppliedRevision, ChangeAction, ChangeSetKind, ChangeSetState, ChangeSetSummary, ExecutionState, FailureRecord,
        PlannedChange, Replacement, Stack, StackStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    let change = |action: ChangeAction, id: &str, replacement: Option<Replacement>| PlannedChange {
        action,
        logical_id: id.into(),
        resource_type: "AWS::S3::Bucket".into(),
        replacement,
        physical_id: None,
    };
    let failure = |id: &str, reason: &str| FailureRecord {
        time: Time(at(0)),
        logical_id: id.into(),
        resource_type: None,
        status: "UPDATE_FAILED".into(),
        reason: reason.into(),
    };
    let mut stack = Stack::new("web-t1", Default::default());
    stack.metadata.generation = Some(4);
    stack.metadata.annotations = Some(
        [
            (REVISION_ANNOTATION.to_string(), "abc".to_string()),
            (CHILD_APPROVE_ANNOTATION.to_string(), "cs-1".to_string()),
        ]
        .into_iter()
        .collect(),
    );
    stack.status = Some(StackStatus {
        observed_generation: Some(4),
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "Succeeded".into(),
            message: "ok".into(),
            observed_generation: Some(4),
            last_transition_time: Time(at(0)),
        }],
        applied: Some(AppliedRevision {
            generation: 4,
            fingerprint: "f".into(),
            revision: Some("abc".into()),
        }),
        change_set: Some(ChangeSetSummary {
            name: "cs-1".into(),
            change_type: ChangeSetKind::Update,
            status: Some(ChangeSetState::CreateComplete),
            execution_status: Some(ExecutionState::Available),
            generation: 4,
            changes: vec![
                change(ChangeAction::Add, "Queue", None),
                change(ChangeAction::Modify, "Bucket", Some(Replacement::True)),
                change(ChangeAction::Modify, "Role", Some(Replacement::False)),
            ],
            ..ChangeSetSummary::default()
        }),
        recent_failures: vec![
            failure("Topic", "Resource creation cancelled"),
            failure("Bucket", "already exists"),
        ],
        ..StackStatus::default()
    });
    let child = ObservedChild::from_stack(&stack);
    assert!(child.ready_at("abc"));
    assert_eq!(child.approved_change_set.as_deref(), Some("cs-1"));
    let set = child.available_change_set().expect("available");
    assert_eq!((set.adds, set.modifies, set.removes), (1, 2, 0));
    assert_eq!(set.replaced, vec!["Bucket"]);
    assert_eq!(
        child.failure.as_ref().map(|f| f.resource.as_str()),
        Some("Bucket"),
        "the cause, not the cancellation"
    );
    // A newer revision written but not yet applied: the Stack still echoes
    // the old one, so the child is not Ready at the new one.
    stack.metadata.generation = Some(5);
    stack
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(REVISION_ANNOTATION.to_string(), "def".to_string());
    let newer = ObservedChild::from_stack(&stack);
    assert_eq!(newer.applied_revision.as_deref(), Some("abc"));
    assert!(!newer.ready_at("def"));
}
