//! Table-style tests of the Pipeline decision: a small world (spec, status,
//! annotations, source, children, Jobs, clock) that each test moves by hand,
//! feeding every plan's status back as the wiring would.

mod approvals;
mod executions;
mod failures;
mod jobs;
mod stages;
mod variables;

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;

use super::super::plan::*;
use super::{decide, deploy_revision, upper_snake};
use crate::api::{Artifact, PipelineSource, TemplateSpec};
use crate::runtime::conditions;

pub const UID: &str = "9d1c0e55-0000-4000-8000-00000000feed";
pub const T0: i64 = 1_800_000_000;

pub fn revision(label: &str) -> SourceRevision {
    SourceRevision {
        revision: label.into(),
        hash: format!("hash-{label}"),
    }
}

pub fn action(name: &str, order: i32) -> Action {
    Action {
        name: name.into(),
        run_order: order,
        ..Action::default()
    }
}

pub fn deploy(name: &str, order: i32) -> Action {
    Action {
        deploy: Some(DeployAction {
            stack: Some(StackTarget {
                region: "eu-west-1".into(),
                ..StackTarget::default()
            }),
            deployment: None,
        }),
        ..action(name, order)
    }
}

pub fn deploy_with(name: &str, order: i32, parameter: &str, value: &str) -> Action {
    let mut a = deploy(name, order);
    let stack = a.deploy.as_mut().unwrap().stack.as_mut().unwrap();
    stack.parameters.push(StackParameter {
        name: parameter.into(),
        value: Some(value.into()),
        value_from: None,
    });
    a
}

pub fn approval(name: &str, order: i32, timeout: Option<&str>) -> Action {
    Action {
        approval: Some(ApprovalAction {
            message: Some("check the dashboards".into()),
            timeout: timeout.map(str::to_string),
        }),
        ..action(name, order)
    }
}

pub fn wait(name: &str, order: i32, duration: &str) -> Action {
    Action {
        wait: Some(WaitAction {
            duration: duration.into(),
        }),
        ..action(name, order)
    }
}

pub fn test(name: &str, order: i32) -> Action {
    let container = Container {
        name: "smoke".into(),
        image: Some("curlimages/curl".into()),
        ..Container::default()
    };
    Action {
        test: Some(TestAction {
            job_template: JobTemplateSpec {
                metadata: None,
                spec: Some(JobSpec {
                    active_deadline_seconds: Some(300),
                    backoff_limit: Some(1),
                    template: PodTemplateSpec {
                        metadata: None,
                        spec: Some(PodSpec {
                            containers: vec![container],
                            restart_policy: Some("Never".into()),
                            ..PodSpec::default()
                        }),
                    },
                    ..JobSpec::default()
                }),
            },
        }),
        ..action(name, order)
    }
}

pub fn retries(mut a: Action, n: i32) -> Action {
    a.retries = n;
    a
}

pub fn stage(name: &str, actions: Vec<Action>) -> Stage {
    Stage {
        name: name.into(),
        actions,
        ..Stage::default()
    }
}

pub fn spec(stages: Vec<Stage>) -> PipelineSpec {
    PipelineSpec {
        source: PipelineSource {
            artifact: Some(Artifact {
                revision: "v1".into(),
                template: TemplateSpec {
                    body: Some("Resources: {}".into()),
                    ..TemplateSpec::default()
                },
                ..Artifact::default()
            }),
            ..PipelineSource::default()
        },
        execution_mode: ExecutionMode::Superseded,
        stages,
        execution_history_limit: 10,
        suspend: false,
    }
}

/// Everything decide looks at, moved by the test.
pub struct World {
    pub spec: PipelineSpec,
    pub generation: i64,
    pub status: PipelineStatus,
    pub annotations: BTreeMap<String, String>,
    pub source: SourceObserved,
    pub children: BTreeMap<String, ChildObserved>,
    pub jobs: BTreeMap<String, JobObserved>,
    pub now: i64,
}

impl World {
    pub fn new(spec: PipelineSpec) -> Self {
        Self {
            spec,
            generation: 1,
            status: PipelineStatus::default(),
            annotations: BTreeMap::new(),
            source: SourceObserved::Found(revision("v1")),
            children: BTreeMap::new(),
            jobs: BTreeMap::new(),
            now: T0,
        }
    }

    pub fn at(&self) -> Timestamp {
        Timestamp::from_second(self.now).unwrap()
    }

    /// Decides without feeding the status back.
    pub fn look(&self) -> Plan {
        decide(&Observed {
            namespace: "team-a",
            name: "web",
            uid: UID,
            generation: self.generation,
            spec: &self.spec,
            annotations: &self.annotations,
            previous: &self.status,
            source: &self.source,
            children: &self.children,
            jobs: &self.jobs,
            now: self.at(),
            timing: Timing::default(),
        })
    }

    /// Decides and writes the plan's status back, as the wiring does.
    pub fn step(&mut self) -> Plan {
        let plan = self.look();
        self.status = plan.status.clone();
        plan
    }

    pub fn advance(&mut self, seconds: i64) {
        self.now += seconds;
    }

    pub fn new_revision(&mut self, label: &str) {
        self.source = SourceObserved::Found(revision(label));
    }

    /// The child applies a write: it carries the annotations and is Ready at
    /// the revision with these outputs.
    pub fn child_ready(&mut self, write: &ChildWrite, outputs: &[(&str, &str)]) {
        self.children.insert(
            write.name.clone(),
            ChildObserved {
                revision: Some(write.deploy_revision.clone()),
                retry_request: Some(write.retry_request.clone()),
                applied_revision: Some(write.deploy_revision.clone()),
                ready: true,
                failure: None,
                planned: None,
                outputs: outputs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            },
        );
    }

    /// The child took a write and is still working on it.
    pub fn child_working(&mut self, write: &ChildWrite) {
        self.children.insert(
            write.name.clone(),
            ChildObserved {
                revision: Some(write.deploy_revision.clone()),
                retry_request: Some(write.retry_request.clone()),
                ..ChildObserved::default()
            },
        );
    }

    /// The child took a write and failed it now.
    pub fn child_failed(&mut self, write: &ChildWrite, message: &str) {
        let now = self.at();
        self.children.insert(
            write.name.clone(),
            ChildObserved {
                revision: Some(write.deploy_revision.clone()),
                retry_request: Some(write.retry_request.clone()),
                failure: Some(ChildFailure {
                    reason: "UpdateRolledBack".into(),
                    message: message.into(),
                    since: now,
                }),
                ..ChildObserved::default()
            },
        );
    }

    /// Applies every write of a plan as Ready children without outputs.
    pub fn all_ready(&mut self, plan: &Plan) {
        for write in &plan.child_writes {
            self.child_ready(write, &[]);
        }
    }

    pub fn job_done(&mut self, name: &str) {
        self.jobs.insert(
            name.into(),
            JobObserved {
                complete: true,
                failed: None,
            },
        );
    }

    pub fn job_running(&mut self, name: &str) {
        self.jobs.insert(name.into(), JobObserved::default());
    }

    pub fn job_failed(&mut self, name: &str, reason: &str, message: &str) {
        self.jobs.insert(
            name.into(),
            JobObserved {
                complete: false,
                failed: Some((reason.into(), message.into())),
            },
        );
    }

    pub fn request(&mut self, annotation: &str, value: serde_json::Value) {
        self.annotations.insert(annotation.into(), value.to_string());
    }

    pub fn execution(&self) -> &Execution {
        self.status.current_execution.as_ref().expect("an execution")
    }

    pub fn entry(&self, stage: &str, action: &str) -> &ActionStatus {
        find_action(self.execution(), stage, action).unwrap_or_else(|| panic!("no status for {stage}/{action}"))
    }

    pub fn path(&self, stage: &str, action: &str) -> String {
        action_path(&self.execution().id, stage, action)
    }
}

/// (status, reason, message) of a condition in a plan.
pub fn condition(plan: &Plan, type_: &str) -> (String, String, String) {
    let c = conditions::find(&plan.status.conditions, type_).unwrap_or_else(|| panic!("no {type_} condition"));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

pub fn write_for<'p>(plan: &'p Plan, action: &str) -> &'p ChildWrite {
    plan.child_writes
        .iter()
        .find(|w| w.action == action)
        .unwrap_or_else(|| panic!("no write for {action} in {:?}", plan.child_writes))
}

pub fn reasons(plan: &Plan) -> Vec<&str> {
    plan.notes.iter().map(|n| n.reason.as_str()).collect()
}
