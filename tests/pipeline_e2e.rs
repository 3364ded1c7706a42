//! The Pipeline controller end to end: the operator binary against the real
//! kube-apiserver, kube-controller-manager's Job controller, kube-scheduler +
//! KWOK, and LocalStack. Each test has its own namespace and operator.
//!
//! Containers do not really run under KWOK: a test Job's Pod succeeds or
//! fails as its `stackpilot.dev/test-result` label says (testbed/README.md).
//! What these tests check of a test Job is what the pipeline put in it (its
//! environment) and how the pipeline follows the Job's outcome.
//!
//! The prod stage deploys a Stack, not a StackDeployment: the StackDeployment
//! controller is not on this branch yet.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use stackpilot::api::{ActionPhase, Execution, ExecutionPhase, Pipeline, Stack};
use support::eventually;
use support::fixture::Fixture;
use support::workload::raw_cloudformation;

const TIMEOUT: Duration = Duration::from_secs(150);

const QUEUE_TEMPLATE: &str = r#"
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
fn job_template(result: &str) -> Value {
    json!({"spec": {"backoffLimit": 0, "template": {
        "metadata": {"labels": {"stackpilot.dev/test-result": result}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "smoke", "image": "busybox:1.36", "command": ["true"]}]}}}})
}

/// dev (deploy `app`, then test `smoke`) -> approval (`gate`) -> prod (deploy `app`).
fn spec(revision: &str, visibility: &str, test_result: &str) -> Value {
    let template = QUEUE_TEMPLATE.replace("Default: 30", &format!("Default: {visibility}"));
    json!({
        "source": {"artifact": {"revision": revision, "template": {"body": template}}},
        "stages": [
            {"name": "dev", "actions": [
                {"name": "app", "deploy": {"stack": {"region": "us-east-1"}}},
                {"name": "smoke", "runOrder": 2, "test": {"jobTemplate": job_template(test_result)}}]},
            {"name": "approval", "actions": [{"name": "gate", "approval": {"message": "to prod?"}}]},
            {"name": "prod", "actions": [{"name": "app", "deploy": {"stack": {"region": "us-east-1"}}}]}
        ]
    })
}

fn pipelines(f: &Fixture) -> Api<Pipeline> {
    Api::namespaced(f.client.clone(), &f.ns.name)
}

async fn apply(f: &Fixture, name: &str, spec: Value) {
    let body = json!({"apiVersion": "stackpilot.dev/v1alpha1", "kind": "Pipeline",
        "metadata": {"name": name}, "spec": spec});
    pipelines(f)
        .patch(name, &PatchParams::apply("tests").force(), &Patch::Apply(&body))
        .await
        .expect("apply pipeline");
}

/// Runs the CLI against the test bed; (success, stdout + stderr).
fn cli(f: &Fixture, args: &[&str]) -> (bool, String) {
    let output = Command::new(support::binary())
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
async fn wait_execution(f: &Fixture, name: &str, what: &str, check: impl Fn(&Execution) -> bool) -> Execution {
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

fn phase(execution: &Execution, stage: &str, action: &str) -> Option<ActionPhase> {
    execution
        .actions
        .iter()
        .find(|a| a.stage == stage && a.action == action)
        .map(|a| a.phase)
}

fn waiting_at_gate(e: &Execution) -> bool {
    phase(e, "approval", "gate") == Some(ActionPhase::WaitingForApproval)
}

async fn jobs(f: &Fixture, pipeline: &str) -> Vec<Job> {
    let api: Api<Job> = Api::namespaced(f.client.clone(), &f.ns.name);
    api.list(&ListParams::default().labels(&format!("stackpilot.dev/pipeline={pipeline}")))
        .await
        .expect("list jobs")
        .items
}

fn env_of(job: &Job) -> Vec<(String, String)> {
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    pod.containers[0]
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect()
}

/// How many times the operator applied the child `child` (its log lines).
fn child_writes(f: &Fixture, child: &str) -> usize {
    let log = std::fs::read_to_string(&f.operator.log).unwrap_or_default();
    let plain = without_colours(&log);
    plain
        .lines()
        .filter(|l| l.contains("child applied") && l.contains(&format!("child={child} ")))
        .count()
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

#[tokio::test]
async fn dev_test_approval_prod_with_the_cli() {
    let f = Fixture::new("pipe-happy").await;
    apply(&f, "web", spec("v1", "30", "succeed")).await;
    let started = Instant::now();
    let execution = wait_execution(&f, "web", "the gate waits for approval", waiting_at_gate).await;
    let dev_seconds = started.elapsed().as_secs_f64();
    assert_eq!(execution.revision, "v1");
    assert_eq!(phase(&execution, "dev", "app"), Some(ActionPhase::Succeeded));
    assert_eq!(phase(&execution, "dev", "smoke"), Some(ActionPhase::Succeeded));

    // The test Job carries the dev stack's outputs, the revision and the execution id.
    let dev: Stack = f.stacks().get("web-dev-app").await.expect("dev stack");
    let outputs = dev.status.clone().unwrap().outputs;
    let jobs_now = jobs(&f, "web").await;
    assert_eq!(jobs_now.len(), 1, "one test Job");
    let env = env_of(&jobs_now[0]);
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("APP_QUEUE_URL"), outputs.get("QueueUrl").cloned());
    assert_eq!(get("APP_QUEUE_ARN"), outputs.get("QueueArn").cloned());
    assert!(get("APP_QUEUE_URL").is_some_and(|u| !u.is_empty()));
    assert_eq!(get("PIPELINE_REVISION").as_deref(), Some("v1"));
    assert_eq!(get("PIPELINE_EXECUTION"), Some(execution.id.clone()));
    assert!(
        f.stacks().get_opt("web-prod-app").await.unwrap().is_none(),
        "prod waits for the approval"
    );

    // The next action starts as soon as the Job completed (the Job watch wakes the pipeline).
    let job = &jobs_now[0];
    let completed = job
        .status
        .as_ref()
        .and_then(|s| s.completion_time.clone())
        .expect("completed");
    let gate = execution.actions.iter().find(|a| a.action == "gate").unwrap();
    let gate_started = gate.started_at.clone().expect("gate started");
    let lag = gate_started.0.as_second() - completed.0.as_second();
    assert!((0..=1).contains(&lag), "gate started {lag} s after the Job completed");

    let (ok, out) = cli(&f, &["get", "pipeline/web"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("stage approval") && out.contains("WaitingForApproval"),
        "{out}"
    );
    let (ok, out) = cli(&f, &["approve", "pipeline/web", "--comment", "dev is green"]);
    assert!(ok, "{out}");
    let target = format!("{}/approval/gate", execution.id);
    assert!(out.contains(&format!("approved {target} (revision v1)")), "{out}");

    let done = wait_execution(&f, "web", "the execution succeeds", |e| {
        e.phase == ExecutionPhase::Succeeded
    })
    .await;
    let gate = done.actions.iter().find(|a| a.action == "gate").unwrap();
    let record = gate.approval.clone().expect("approval recorded");
    assert_eq!(record.by.as_deref(), Some("alice"));
    assert_eq!(record.comment.as_deref(), Some("dev is green"));
    let pipeline = pipelines(&f).get("web").await.unwrap();
    let ready = pipeline
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready");
    assert_eq!(ready.map(|c| c.status.as_str()), Some("True"));

    // Both stacks exist in LocalStack.
    let cfn = raw_cloudformation(&f.bed.aws_endpoint).await;
    for stage in ["dev", "prod"] {
        let name = format!("{}-web-{stage}-app", f.ns.name);
        let found = cfn.describe_stacks().stack_name(&name).send().await.expect("describe");
        let status = found.stacks()[0].stack_status().unwrap().as_str().to_string();
        assert!(
            status.ends_with("_COMPLETE") && !status.contains("ROLLBACK"),
            "{name}: {status}"
        );
    }
    assert_eq!(child_writes(&f, "web-dev-app"), 1, "one apply per deploy action");
    assert_eq!(child_writes(&f, "web-prod-app"), 1, "one apply per deploy action");
    let (ok, out) = cli(&f, &["history", "pipeline/web"]);
    assert!(ok && out.contains(&execution.id) && out.contains("Succeeded"), "{out}");
    let (ok, out) = cli(&f, &["get", "pipeline/nope"]);
    assert!(
        !ok && out.contains("pipeline") && out.contains("nope") && out.contains("not found"),
        "{out}"
    );
    assert_eq!(out.trim().lines().count(), 1, "one-line error: {out}");
    println!(
        "measured: dev stage to approval {dev_seconds:.1} s; gate started {lag} s after the Job completed; child writes dev={} prod={}",
        child_writes(&f, "web-dev-app"),
        child_writes(&f, "web-prod-app")
    );
    f.finish().await;
}

#[tokio::test]
async fn a_failed_test_retried_alone_turns_green() {
    let f = Fixture::new("pipe-retry").await;
    apply(&f, "web", spec("v1", "30", "fail")).await;
    let failed = wait_execution(&f, "web", "the execution fails at the test", |e| {
        e.phase == ExecutionPhase::Failed
    })
    .await;
    assert_eq!(phase(&failed, "dev", "app"), Some(ActionPhase::Succeeded));
    assert_eq!(phase(&failed, "dev", "smoke"), Some(ActionPhase::Failed));
    assert_eq!(jobs(&f, "web").await.len(), 1);
    let pipeline = pipelines(&f).get("web").await.unwrap();
    let stalled = pipeline
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled");
    assert_eq!(
        stalled.map(|c| c.status.as_str()),
        Some("True"),
        "{:?}",
        pipeline.status
    );
    let dev_generation = f.stacks().get("web-dev-app").await.unwrap().metadata.generation;
    let writes_before = child_writes(&f, "web-dev-app");
    assert_eq!(writes_before, 1);

    // Fix the test, then retry the failed action alone.
    apply(&f, "web", spec("v1", "30", "succeed")).await;
    let (ok, out) = cli(&f, &["retry", "pipeline/web"]);
    assert!(ok && out.contains(&failed.id), "{out}");
    let execution = wait_execution(&f, "web", "the retried test passes", waiting_at_gate).await;
    assert_eq!(execution.id, failed.id, "the same execution goes on");
    let smoke = execution.actions.iter().find(|a| a.action == "smoke").unwrap();
    let app = execution.actions.iter().find(|a| a.action == "app").unwrap();
    assert_eq!(smoke.attempts, 2);
    assert_eq!(app.attempts, 1, "the passed deploy does not run again");
    assert_eq!(
        jobs(&f, "web").await.len(),
        2,
        "one more Job, for the retried test alone"
    );
    assert_eq!(
        child_writes(&f, "web-dev-app"),
        writes_before,
        "no Stack write for the retry"
    );
    assert_eq!(
        f.stacks().get("web-dev-app").await.unwrap().metadata.generation,
        dev_generation
    );
    f.finish().await;
}

fn condition(pipeline: &Pipeline, type_: &str) -> Option<(String, String, String)> {
    let status = pipeline.status.as_ref()?;
    let c = status.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until the pipeline satisfies `check`.
async fn wait_pipeline(f: &Fixture, name: &str, what: &str, check: impl Fn(&Pipeline) -> bool) -> Pipeline {
    let api = pipelines(f);
    eventually(TIMEOUT, what, || {
        let api = api.clone();
        let check = &check;
        async move { api.get(name).await.ok().filter(|p| check(p)) }
    })
    .await
}

/// The pipeline's status does not move for a few seconds: no hot loop.
async fn settled(f: &Fixture, name: &str) {
    let before = pipelines(f).get(name).await.unwrap().resource_version();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = pipelines(f).get(name).await.unwrap().resource_version();
    assert_eq!(before, after, "{name} keeps being rewritten");
}

#[tokio::test]
async fn a_new_revision_withdraws_the_waiting_approval() {
    let f = Fixture::new("pipe-supersede").await;
    apply(&f, "web", spec("v1", "30", "succeed")).await;
    let old = wait_execution(&f, "web", "v1 waits at the gate", waiting_at_gate).await;
    apply(&f, "web", spec("v2", "40", "succeed")).await;
    let new = wait_execution(&f, "web", "v2 waits at the gate", |e| {
        e.revision == "v2" && waiting_at_gate(e)
    })
    .await;
    assert_ne!(new.id, old.id);
    let pipeline = pipelines(&f).get("web").await.unwrap();
    let history = &pipeline.status.as_ref().unwrap().history;
    let replaced = history.iter().find(|e| e.id == old.id).expect("v1 in history");
    assert_eq!(replaced.phase, ExecutionPhase::Superseded);
    assert_eq!(phase(replaced, "approval", "gate"), Some(ActionPhase::Withdrawn));

    // An approval of the old execution's gate does nothing.
    let request = json!({"id": "late-1", "target": format!("{}/approval/gate", old.id), "by": "bob"});
    let patch = json!({"metadata": {"annotations": {"stackpilot.dev/approve": request.to_string()}}});
    pipelines(&f)
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let pipeline = wait_pipeline(&f, "web", "the late approval is handled", |p| {
        p.status
            .as_ref()
            .is_some_and(|s| s.requests.iter().any(|r| r.id == "late-1"))
    })
    .await;
    let status = pipeline.status.unwrap();
    let handled = status.requests.iter().find(|r| r.id == "late-1").unwrap();
    assert_eq!(handled.outcome, stackpilot::api::RequestOutcome::Ignored, "{handled:?}");
    assert!(waiting_at_gate(status.current_execution.as_ref().unwrap()));
    assert!(f.stacks().get_opt("web-prod-app").await.unwrap().is_none());
    assert_eq!(jobs(&f, "web").await.len(), 2, "one test Job per execution");
    f.finish().await;
}

#[tokio::test]
async fn a_disabled_transition_holds_the_execution_until_enabled() {
    let f = Fixture::new("pipe-hold").await;
    let template = QUEUE_TEMPLATE;
    let with = |disabled: bool| {
        let mut prod =
            json!({"name": "prod", "actions": [{"name": "app", "deploy": {"stack": {"region": "us-east-1"}}}]});
        if disabled {
            prod["transitionDisabled"] = json!({"reason": "change freeze until Monday"});
        }
        json!({"source": {"artifact": {"revision": "v1", "template": {"body": template}}},
            "stages": [{"name": "dev", "actions": [{"name": "app", "deploy": {"stack": {"region": "us-east-1"}}}]}, prod]})
    };
    apply(&f, "web", with(true)).await;
    let held = wait_pipeline(&f, "web", "held before prod", |p| {
        condition(p, "Ready").is_some_and(|c| c.1 == "TransitionDisabled")
    })
    .await;
    let execution = held.status.clone().unwrap().current_execution.unwrap();
    assert_eq!(execution.stage.as_deref(), Some("prod"));
    assert!(
        condition(&held, "Ready")
            .unwrap()
            .2
            .contains("change freeze until Monday")
    );
    settled(&f, "web").await;
    assert!(f.stacks().get_opt("web-prod-app").await.unwrap().is_none());
    apply(&f, "web", with(false)).await;
    wait_execution(&f, "web", "prod deployed once enabled", |e| {
        e.phase == ExecutionPhase::Succeeded
    })
    .await;
    assert!(f.stacks().get_opt("web-prod-app").await.unwrap().is_some());
    f.finish().await;
}

#[tokio::test]
async fn an_approval_times_out() {
    let f = Fixture::new("pipe-timeout").await;
    let spec = json!({"source": {"artifact": {"revision": "v1", "template": {"body": QUEUE_TEMPLATE}}},
        "stages": [{"name": "approval", "actions": [{"name": "gate", "approval": {"timeout": "3s"}}]}]});
    apply(&f, "web", spec).await;
    let failed = wait_execution(&f, "web", "the approval times out", |e| {
        e.phase == ExecutionPhase::Failed
    })
    .await;
    let gate = failed.actions.iter().find(|a| a.action == "gate").unwrap();
    assert_eq!(
        gate.approval.as_ref().map(|r| r.decision),
        Some(stackpilot::api::ApprovalDecision::TimedOut)
    );
    let waited = failed.finished_at.unwrap().0.as_second() - failed.started_at.0.as_second();
    assert!((3..=5).contains(&waited), "timed out after {waited} s");
    let pipeline = pipelines(&f).get("web").await.unwrap();
    let stalled = condition(&pipeline, "Stalled").unwrap();
    assert_eq!(stalled.0, "True");
    assert!(stalled.2.contains("ApprovalTimedOut"), "{stalled:?}");
    f.finish().await;
}

#[tokio::test]
async fn bad_input_is_a_clear_condition() {
    let f = Fixture::new("pipe-bad").await;
    let artifact = json!({"revision": "v1", "template": {"body": QUEUE_TEMPLATE}});
    // A Job template the API server refuses: a container without an image.
    let mut no_image = job_template("succeed");
    no_image["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("image");
    apply(
        &f,
        "bad-job",
        json!({"source": {"artifact": artifact},
        "stages": [{"name": "dev", "actions": [{"name": "smoke", "test": {"jobTemplate": no_image}}]}]}),
    )
    .await;
    apply(
        &f,
        "bad-variable",
        json!({"source": {"artifact": artifact},
        "stages": [{"name": "dev", "actions": [{"name": "app", "deploy": {"stack": {"region": "us-east-1",
            "parameters": [{"name": "Visibility", "value": "#{dev.nope.Url}"}]}}}]}]}),
    )
    .await;
    apply(
        &f,
        "no-configmap",
        json!({"source": {"artifactRef": {"configMap": "missing"}},
        "stages": [{"name": "dev", "actions": [{"name": "app", "deploy": {"stack": {"region": "us-east-1"}}}]}]}),
    )
    .await;

    let job = wait_pipeline(&f, "bad-job", "the refused Job fails the test", |p| {
        condition(p, "Stalled").is_some_and(|c| c.0 == "True")
    })
    .await;
    let execution = job.status.clone().unwrap().current_execution.unwrap();
    let smoke = execution.actions.iter().find(|a| a.action == "smoke").unwrap();
    let message = smoke.message.clone().unwrap_or_default();
    assert!(
        message.contains("image") && message.contains("Required value"),
        "{message}"
    );
    assert!(jobs(&f, "bad-job").await.is_empty());

    let variable = wait_pipeline(&f, "bad-variable", "the unknown variable stalls", |p| {
        condition(p, "Stalled").is_some_and(|c| c.1 == "InvalidSpec")
    })
    .await;
    assert!(condition(&variable, "Stalled").unwrap().2.contains("names no action"));
    assert!(variable.status.as_ref().unwrap().current_execution.is_none());

    let missing = wait_pipeline(&f, "no-configmap", "the missing ConfigMap is a condition", |p| {
        condition(p, "Ready").is_some_and(|c| c.1 == "SourceNotFound")
    })
    .await;
    assert!(condition(&missing, "Ready").unwrap().2.contains("ConfigMap missing"));
    assert!(missing.status.as_ref().unwrap().current_execution.is_none());
    for name in ["bad-job", "bad-variable", "no-configmap"] {
        settled(&f, name).await;
    }
    assert!(f.stacks().list(&ListParams::default()).await.unwrap().items.is_empty());

    // Creating the ConfigMap starts an execution at once (its watch wakes the pipeline).
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(f.client.clone(), &f.ns.name);
    let config_map = serde_json::from_value(json!({"metadata": {"name": "missing"},
        "data": {"template": QUEUE_TEMPLATE, "parameters.json": r#"[{"name":"Visibility","value":"45"}]"#}}))
    .unwrap();
    config_maps.create(&Default::default(), &config_map).await.unwrap();
    let created = Instant::now();
    let running = wait_pipeline(&f, "no-configmap", "an execution starts", |p| {
        p.status.as_ref().is_some_and(|s| s.current_execution.is_some())
    })
    .await;
    assert!(
        created.elapsed() < Duration::from_secs(10),
        "took {:?}",
        created.elapsed()
    );
    let revision = running.status.unwrap().current_execution.unwrap().revision;
    assert!(revision.starts_with("cm-"), "{revision}");
    f.finish().await;
}
