//! Table-driven tests of the StackDeployment decision over a small world:
//! a spec, the status the last decision wrote, kept revisions, and child
//! Stacks that behave like the Stack kind (a write plans a change set; an
//! approved change set executes; Ready at the revision once applied).

mod failures;
mod gates;
mod people;
mod preview;
mod resume;
mod revisions;
mod strategies;
mod targets;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use crate::api::{
    AccountRef, CanaryStep, CanaryStrategy, DeploymentTarget, Pause, RollingStrategy, StackParameter, Strategy,
    TemplateSpec,
};
use crate::deployment::decide::{alarm_placements, decide};
use crate::deployment::plan::*;

pub const REGIONS: [&str; 6] = [
    "eu-west-1",
    "us-east-1",
    "ap-south-1",
    "eu-central-1",
    "us-west-2",
    "sa-east-1",
];

pub fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).unwrap()
}

pub fn artifact(label: &str, body: &str) -> Artifact {
    Artifact {
        revision: label.into(),
        template: TemplateSpec {
            body: Some(body.into()),
            ..TemplateSpec::default()
        },
        parameters: vec![StackParameter {
            name: "Size".into(),
            value: Some("1".into()),
            value_from: None,
        }],
        ..Artifact::default()
    }
}

pub fn target(name: &str, region: &str) -> DeploymentTarget {
    DeploymentTarget {
        name: name.into(),
        region: region.into(),
        account_ref: Some(AccountRef { name: "prod".into() }),
        parameters: Vec::new(),
    }
}

pub fn rolling(max: IntOrString, tolerance: Option<IntOrString>) -> Strategy {
    Strategy {
        strategy_type: StrategyType::Rolling,
        rolling: Some(RollingStrategy {
            max_concurrent: max,
            failure_tolerance: tolerance,
        }),
        canary: None,
    }
}

pub fn canary(steps: Vec<CanaryStep>) -> Strategy {
    Strategy {
        strategy_type: StrategyType::Canary,
        rolling: None,
        canary: Some(CanaryStrategy { steps }),
    }
}

pub fn step(targets: &[&str], percentage: Option<i32>, pause: Option<&str>) -> CanaryStep {
    CanaryStep {
        targets: targets.iter().map(|t| t.to_string()).collect(),
        percentage,
        pause: pause.map(|d| Pause {
            duration: (!d.is_empty()).then(|| d.to_string()),
        }),
    }
}

pub fn count(n: i32) -> IntOrString {
    IntOrString::Int(n)
}

pub fn percent(text: &str) -> IntOrString {
    IntOrString::String(text.into())
}

/// A deployment, its last status, and its children, moved step by step.
pub struct World {
    pub spec: StackDeploymentSpec,
    pub annotations: BTreeMap<String, String>,
    pub status: StackDeploymentStatus,
    pub revisions: Vec<KeptRevision>,
    pub children: BTreeMap<String, ObservedChild>,
    pub alarms: BTreeMap<Placement, BTreeMap<String, AlarmReading>>,
    pub account_ids: BTreeMap<String, String>,
    pub now: Timestamp,
    pub generation: i64,
    /// Every child write ever applied, in order (target, revision, approve).
    pub log: Vec<ChildWrite>,
    pub events: Vec<Note>,
}

impl World {
    /// `n` targets `t1..tn`, one region each, artifact `v1`, AllAtOnce.
    pub fn new(n: usize) -> Self {
        let targets = (1..=n)
            .map(|i| target(&format!("t{i}"), REGIONS[(i - 1) % REGIONS.len()]))
            .collect();
        Self {
            spec: StackDeploymentSpec {
                artifact: artifact("v1", "A"),
                targets,
                revision_history_limit: 3,
                ..StackDeploymentSpec::default()
            },
            annotations: BTreeMap::new(),
            status: StackDeploymentStatus::default(),
            revisions: Vec::new(),
            children: BTreeMap::new(),
            alarms: BTreeMap::new(),
            account_ids: BTreeMap::new(),
            now: at(0),
            generation: 1,
            log: Vec::new(),
            events: Vec::new(),
        }
    }

    pub fn with(mut self, change: impl FnOnce(&mut StackDeploymentSpec)) -> Self {
        change(&mut self.spec);
        self
    }

    /// v1 rolled out everywhere (the stable revision).
    pub fn stable(n: usize) -> Self {
        let mut world = Self::new(n);
        world.settle();
        assert_eq!(
            world.status.stable_revision.as_ref().map(|s| s.revision.as_str()),
            Some("v1")
        );
        world.events.clear();
        world.log.clear();
        world
    }

    pub fn observed(&self) -> Observed<'_> {
        Observed {
            namespace: "team",
            name: "web",
            generation: self.generation,
            spec: &self.spec,
            annotations: &self.annotations,
            previous: &self.status,
            revisions: &self.revisions,
            children: &self.children,
            alarms: &self.alarms,
            account_ids: &self.account_ids,
            now: self.now,
            timing: Timing::default(),
        }
    }

    /// Decides from the alarms the wiring reads: those of the accounts and
    /// regions of the running wave's targets only.
    pub fn decide(&self) -> Plan {
        let wanted = alarm_placements(&self.spec, Some(&self.status));
        let read: BTreeMap<_, _> = self
            .alarms
            .iter()
            .filter(|(p, _)| wanted.contains(*p))
            .map(|(p, r)| (p.clone(), r.clone()))
            .collect();
        decide(&Observed {
            alarms: &read,
            ..self.observed()
        })
    }

    /// Decides and applies the plan the way the wiring does.
    pub fn step(&mut self) -> Plan {
        let plan = self.decide();
        self.apply(&plan);
        plan
    }

    pub fn apply(&mut self, plan: &Plan) {
        for new in &plan.create_revisions {
            self.revisions.push(KeptRevision {
                name: new.name.clone(),
                hash: new.hash.clone(),
                label: new.label.clone(),
                number: new.number,
                created: self.now,
            });
        }
        self.status = plan.status.clone();
        for write in &plan.writes {
            self.write_child(write);
            self.log.push(write.clone());
        }
        for name in &plan.deletes {
            self.children.retain(|target, _| format!("web-{target}") != *name);
        }
        self.revisions.retain(|r| !plan.delete_revisions.contains(&r.name));
        self.events.extend(plan.events.iter().cloned());
    }

    /// The Stack kind's answer to a write: a new revision plans a change set.
    fn write_child(&mut self, write: &ChildWrite) {
        let child = self.children.entry(write.target.clone()).or_default();
        if child.revision.as_deref() != Some(write.revision.as_str()) {
            child.generation += 1;
            child.observed_generation = Some(child.generation);
            child.revision = Some(write.revision.clone());
            child.stalled = None;
            child.failure = None;
            if child.applied_revision.as_deref() == Some(write.revision.as_str()) {
                child.change_set = None;
                child.ready = Some(cond("True", "Succeeded"));
            } else {
                child.change_set = Some(ChildChangeSet {
                    name: format!("cs-{}-g{}", write.target, child.generation),
                    generation: child.generation,
                    state: ChangeSetState::Available,
                    adds: 1,
                    modifies: 2,
                    removes: 0,
                    replaced: Vec::new(),
                });
                child.ready = Some(cond("False", "ChangeSetPending"));
            }
        }
        child.approved_change_set = write.approve.clone();
    }

    /// Every child Stack executes the change set it was approved.
    pub fn stacks_run(&mut self) {
        for child in self.children.values_mut() {
            let Some(set) = child.change_set.as_mut() else { continue };
            if set.state == ChangeSetState::Available && child.approved_change_set.as_deref() == Some(set.name.as_str())
            {
                set.state = ChangeSetState::Executed;
                child.applied_revision = child.revision.clone();
                child.ready = Some(cond("True", "Succeeded"));
            }
        }
    }

    /// Steps and lets the Stacks run until nothing changes (at most 30 rounds).
    pub fn settle(&mut self) {
        for _ in 0..30 {
            let before = (self.status.clone(), self.children.clone());
            self.step();
            self.stacks_run();
            if (self.status.clone(), self.children.clone()) == before {
                return;
            }
        }
    }

    /// A child's update fails: Stalled at its revision, a failed resource.
    pub fn fail(&mut self, target: &str, resource: &str, reason: &str) {
        let child = self.children.get_mut(target).expect("child exists");
        child.stalled = Some(cond("True", "UpdateFailed"));
        child.ready = Some(cond("False", "UpdateFailed"));
        child.failure = Some(ChildFailure {
            resource: resource.into(),
            reason: reason.into(),
        });
        if let Some(set) = child.change_set.as_mut() {
            set.state = ChangeSetState::Failed;
        }
    }

    pub fn alarm(&mut self, target: &str, name: &str, reading: AlarmReading) {
        let spec_target = self.spec.targets.iter().find(|t| t.name == target).expect("target");
        self.alarms
            .entry(Placement::of(spec_target))
            .or_default()
            .insert(name.into(), reading);
    }

    /// Every target's alarm `name` reads OK.
    pub fn alarms_ok(&mut self, name: &str) {
        let names: Vec<String> = self.spec.targets.iter().map(|t| t.name.clone()).collect();
        for t in names {
            self.alarm(&t, name, Ok(state(AlarmValue::Ok, "fine")));
        }
    }

    pub fn later(&mut self, seconds: i64) {
        self.now = at(self.now.as_second() - at(0).as_second() + seconds);
    }

    pub fn annotate(&mut self, key: &str, value: &str) {
        self.annotations.insert(key.into(), value.into());
    }

    pub fn release(&mut self, label: &str, body: &str) {
        self.spec.artifact = artifact(label, body);
        self.generation += 1;
    }

    pub fn hash(&self) -> String {
        crate::deployment::decide::artifact_hash(&self.spec.artifact)
    }

    pub fn child_rev(&self, target: &str) -> Option<String> {
        self.children.get(target).and_then(|c| c.revision.clone())
    }

    pub fn applied(&self, target: &str) -> Option<String> {
        self.children.get(target).and_then(|c| c.applied_revision.clone())
    }

    pub fn condition(&self, type_: &str) -> Option<(String, String, String)> {
        self.status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    }

    pub fn has_event(&self, reason: &str) -> bool {
        self.events.iter().any(|e| e.reason == reason)
    }

    pub fn target_phase(&self, name: &str) -> TargetPhase {
        self.status
            .targets
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.phase)
            .expect("target row")
    }
}

pub fn cond(status: &str, reason: &str) -> ChildCondition {
    ChildCondition {
        status: status.into(),
        reason: reason.into(),
        message: format!("{reason} message"),
    }
}

pub fn state(value: AlarmValue, reason: &str) -> AlarmState {
    AlarmState {
        value,
        reason: reason.into(),
        changed_at: at(0),
    }
}

/// Target names of the writes of a plan.
pub fn written(plan: &Plan) -> Vec<String> {
    plan.writes.iter().map(|w| w.target.clone()).collect()
}

/// Target names of the writes that release a change set.
pub fn released(plan: &Plan) -> Vec<String> {
    plan.writes
        .iter()
        .filter(|w| w.approve.is_some())
        .map(|w| w.target.clone())
        .collect()
}
