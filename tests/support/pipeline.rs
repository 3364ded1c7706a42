//! Helpers of the Pipeline end-to-end tests: apply a pipeline, wait for its
//! execution or conditions, run the CLI, read the Jobs it created and how
//! often the operator applied a child.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use stackpilot::api::{ActionPhase, Execution, Pipeline, StackDeployment};

use super::eventually;
use super::fixture::Fixture;

pub const TIMEOUT: Duration = Duration::from_secs(180);

pub const QUEUE_TEMPLATE: &str = r#"
Parameters:
  Visibility: {Type: Number, Default: 30}
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties: {VisibilityTimeout: !Ref Visibility}
Outputs:
  QueueUrl: {Value: !Ref Queue}
  QueueArn: {Value: !GetAtt Queue.Arn}
"#;

/// A test Job template whose Pod KWOK makes end as `result` says.
pub fn job_template(result: &str) -> Value {
    json!({"spec": {"backoffLimit": 0, "template": {
        "metadata": {"labels": {"stackpilot.dev/test-result": result}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "smoke", "image": "busybox:1.36", "command": ["true"]}]}}}})
}

pub fn pipelines(f: &Fixture) -> Api<Pipeline> {
    Api::namespaced(f.client.clone(), &f.ns.name)
}

pub fn deployments(f: &Fixture) -> Api<StackDeployment> {
    Api::namespaced(f.client.clone(), &f.ns.name)
}

pub async fn apply(f: &Fixture, name: &str, spec: Value) {
    let body = json!({"apiVersion": "stackpilot.dev/v1alpha1", "kind": "Pipeline",
        "metadata": {"name": name}, "spec": spec});
    pipelines(f)
        .patch(name, &PatchParams::apply("tests").force(), &Patch::Apply(&body))
        .await
        .expect("apply pipeline");
}

/// Sets one annotation on the pipeline (what the CLI does).
pub async fn annotate(f: &Fixture, name: &str, key: &str, value: &str) {
    let patch = json!({"metadata": {"annotations": {key: value}}});
    pipelines(f)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate pipeline");
}

/// Runs the CLI against the test bed; (success, stdout + stderr).
pub fn cli(f: &Fixture, args: &[&str]) -> (bool, String) {
    let output = Command::new(super::binary())
        .args(args)
        .args(["-n", &f.ns.name])
        .env("KUBECONFIG", &f.bed.kubeconfig)
        .env("USER", "alice")
        .output()
        .expect("run stackpilot");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Waits until the current execution satisfies `check`.
pub async fn wait_execution(f: &Fixture, name: &str, what: &str, check: impl Fn(&Execution) -> bool) -> Execution {
    let api = pipelines(f);
    eventually(TIMEOUT, what, || {
        let api = api.clone();
        let check = &check;
        async move {
            let pipeline = api.get(name).await.ok()?;
            let execution = pipeline.status?.current_execution?;
            check(&execution).then_some(execution)
        }
    })
    .await
}

/// Waits until the pipeline satisfies `check`.
pub async fn wait_pipeline(f: &Fixture, name: &str, what: &str, check: impl Fn(&Pipeline) -> bool) -> Pipeline {
    let api = pipelines(f);
    eventually(TIMEOUT, what, || {
        let api = api.clone();
        let check = &check;
        async move { api.get(name).await.ok().filter(|p| check(p)) }
    })
    .await
}

pub fn phase(execution: &Execution, stage: &str, action: &str) -> Option<ActionPhase> {
    execution
        .actions
        .iter()
        .find(|a| a.stage == stage && a.action == action)
        .map(|a| a.phase)
}

/// (status, reason, message) of one condition.
pub fn condition(pipeline: &Pipeline, type_: &str) -> Option<(String, String, String)> {
    let status = pipeline.status.as_ref()?;
    let c = status.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// The pipeline's status does not move for a few seconds: no hot loop.
pub async fn settled(f: &Fixture, name: &str) {
    let before = pipelines(f).get(name).await.unwrap().resource_version();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = pipelines(f).get(name).await.unwrap().resource_version();
    assert_eq!(before, after, "{name} keeps being rewritten");
}

pub async fn jobs(f: &Fixture, pipeline: &str) -> Vec<Job> {
    let api: Api<Job> = Api::namespaced(f.client.clone(), &f.ns.name);
    api.list(&ListParams::default().labels(&format!("stackpilot.dev/pipeline={pipeline}")))
        .await
        .expect("list jobs")
        .items
}

pub fn env_of(job: &Job) -> Vec<(String, String)> {
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    pod.containers[0]
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect()
}

/// How many times the operator whose log is `log` applied the child `child`.
pub fn child_writes_in(log: &std::path::Path, child: &str) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    without_colours(&text)
        .lines()
        .filter(|l| l.contains("child applied") && l.contains(&format!("child={child} ")))
        .count()
}

/// How many times the test's operator applied the child `child` (its log lines).
pub fn child_writes(f: &Fixture, child: &str) -> usize {
    child_writes_in(&f.operator.log, child)
}

/// The log without terminal colour codes.
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
