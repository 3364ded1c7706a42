//! The Pipeline controller end to end: the operator binary against the real
//! kube-apiserver, kube-controller-manager's Job controller, kube-scheduler +
//! KWOK, and LocalStack. Each test has its own namespace and operator.
//!
//! Containers do not really run under KWOK: a test Job's Pod succeeds or
//! fails as its `stackpilot.dev/test-result` label says (testbed/README.md).
//! What these tests check of a test Job is what the pipeline put in it (its
//! environment) and how the pipeline follows the Job's outcome.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use stackpilot::api::{ActionPhase, Execution, ExecutionPhase, Stack};
use support::fixture::Fixture;
use support::pipeline::*;

/// The prod regions of the pipeline's StackDeployment.
const PROD_REGIONS: [(&str, &str); 2] = [("east", "us-east-1"), ("west", "eu-west-1")];

/// The prod stage: a StackDeployment to two regions, then a bake.
fn prod_stage() -> Value {
    let targets: Vec<Value> = PROD_REGIONS
        .iter()
        .map(|(name, region)| json!({"name": name, "region": region}))
        .collect();
    json!({"name": "prod", "actions": [
        {"name": "app", "deploy": {"deployment": {"targets": targets, "strategy": {"type": "AllAtOnce"}}}},
        {"name": "bake", "runOrder": 2, "wait": {"duration": "2s"}}]})
}

/// dev (deploy `app`, then test `smoke`) -> approval (`gate`) -> prod
/// (a StackDeployment `app` to two regions, then `bake`).
fn spec(revision: &str, visibility: &str, test_result: &str) -> Value {
    json!({
        "source": {"artifact": {"revision": revision, "template": {"body": QUEUE_TEMPLATE},
            "parameters": [{"name": "Visibility", "value": visibility}]}},
        "stages": [
            {"name": "dev", "actions": [
                {"name": "app", "deploy": {"stack": {"region": "us-east-1"}}},
                {"name": "smoke", "runOrder": 2, "test": {"jobTemplate": job_template(test_result)}}]},
            {"name": "approval", "actions": [{"name": "gate", "approval": {"message": "to prod?"}}]},
            prod_stage()
        ]
    })
}

fn waiting_at_gate(e: &Execution) -> bool {
    phase(e, "approval", "gate") == Some(ActionPhase::WaitingForApproval)
}

/// The `Visibility` parameter of a settled stack in `region`.
async fn visibility_in(f: &Fixture, region: &str, stack: &str) -> Option<String> {
    let cfn = support::workload::cloudformation_in(&f.bed.aws_endpoint, region).await;
    support::workload::settled_parameter(&cfn, stack, "Visibility").await
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
        deployments(&f).get_opt("web-prod-app").await.unwrap().is_none(),
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
    // Who approved is the user the API server authenticated (the CLI ran
    // with USER=alice, which is only the fallback).
    let reviews: Api<SelfSubjectReview> = Api::all(f.client.clone());
    let me = reviews
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await;
    let me = me
        .expect("SelfSubjectReview")
        .status
        .and_then(|s| s.user_info?.username);
    let me = me.expect("the test bed's user has a name");
    assert_ne!(me, "alice");
    assert_eq!(record.by.as_deref(), Some(me.as_str()));
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

    assert_eq!(phase(&done, "prod", "app"), Some(ActionPhase::Succeeded));
    assert_eq!(phase(&done, "prod", "bake"), Some(ActionPhase::Succeeded));
    // The prod action passed once its StackDeployment was Ready at v1 (stable = update).
    let prod = deployments(&f).get("web-prod-app").await.expect("prod StackDeployment");
    let prod_status = prod.status.clone().expect("status");
    assert_eq!(
        prod_status.stable_revision.as_ref().map(|r| r.revision.as_str()),
        Some("v1")
    );
    assert_eq!(prod_status.updated.as_deref(), Some("2/2"));
    let app = done
        .actions
        .iter()
        .find(|a| a.stage == "prod" && a.action == "app")
        .unwrap();
    let bake = done
        .actions
        .iter()
        .find(|a| a.stage == "prod" && a.action == "bake")
        .unwrap();
    assert!(bake.started_at.as_ref().unwrap().0 >= app.finished_at.as_ref().unwrap().0);

    // The stacks exist in LocalStack at v1's parameters: dev, and prod in both regions.
    let dev_name = format!("{}-web-dev-app", f.ns.name);
    let prod_name = format!("{}-web-prod-app", f.ns.name);
    assert_eq!(visibility_in(&f, "us-east-1", &dev_name).await.as_deref(), Some("30"));
    for (_, region) in PROD_REGIONS {
        let seen = visibility_in(&f, region, &prod_name).await;
        assert_eq!(seen.as_deref(), Some("30"), "{prod_name} in {region}");
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
    assert!(deployments(&f).get_opt("web-prod-app").await.unwrap().is_none());
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

#[tokio::test]
async fn queued_revisions_run_one_at_a_time_in_order() {
    let f = Fixture::new("pipe-queued").await;
    let spec = |revision: &str, visibility: &str| {
        json!({"executionMode": "Queued",
            "source": {"artifact": {"revision": revision, "template": {"body": QUEUE_TEMPLATE},
                "parameters": [{"name": "Visibility", "value": visibility}]}},
            "stages": [
                {"name": "approval", "actions": [{"name": "gate", "approval": {}}]},
                {"name": "dev", "actions": [{"name": "app", "deploy": {"stack": {"region": "us-east-1"}}}]}]})
    };
    let queued = |p: &stackpilot::api::Pipeline| -> Vec<String> {
        p.status
            .as_ref()
            .map(|s| s.queued_revisions.iter().map(|r| r.revision.clone()).collect())
            .unwrap_or_default()
    };
    apply(&f, "web", spec("v1", "31")).await;
    wait_execution(&f, "web", "v1 waits at the gate", waiting_at_gate).await;
    apply(&f, "web", spec("v2", "32")).await;
    wait_pipeline(&f, "web", "v2 queued", |p| queued(p) == ["v2"]).await;
    apply(&f, "web", spec("v3", "33")).await;
    let pipeline = wait_pipeline(&f, "web", "v3 queued after v2", |p| queued(p) == ["v2", "v3"]).await;
    let current = pipeline.status.unwrap().current_execution.unwrap();
    assert_eq!(current.revision, "v1", "the running execution is not replaced");
    assert!(waiting_at_gate(&current));

    let dev = format!("{}-web-dev-app", f.ns.name);
    for (revision, visibility, rest) in [("v1", "31", vec!["v3"]), ("v2", "32", vec![]), ("v3", "33", vec![])] {
        let waiting = wait_execution(&f, "web", &format!("{revision} at the gate"), |e| {
            e.revision == revision && waiting_at_gate(e)
        })
        .await;
        let (ok, out) = cli(&f, &["approve", "pipeline/web"]);
        assert!(ok && out.contains(&waiting.id), "{out}");
        // The next queued revision starts as this one ends: look in the history too.
        wait_pipeline(&f, "web", &format!("{revision} succeeds"), |p| {
            let status = p.status.as_ref();
            let mut all = status
                .into_iter()
                .flat_map(|s| s.current_execution.iter().chain(&s.history));
            all.any(|e| e.id == waiting.id && e.phase == ExecutionPhase::Succeeded)
        })
        .await;
        let seen = visibility_in(&f, "us-east-1", &dev).await;
        assert_eq!(seen.as_deref(), Some(visibility), "{revision} deployed in LocalStack");
        if revision == "v1" {
            // v2 started from the queue; v3 still waits behind it.
            let pipeline = wait_pipeline(&f, "web", "v2 started", |p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.current_execution.as_ref())
                    .is_some_and(|e| e.revision == "v2")
            })
            .await;
            assert_eq!(queued(&pipeline), rest);
        }
    }
    let status = pipelines(&f).get("web").await.unwrap().status.unwrap();
    assert!(status.queued_revisions.is_empty());
    let mut order: Vec<&Execution> = status.history.iter().collect();
    order.reverse();
    order.push(status.current_execution.as_ref().unwrap());
    let revisions: Vec<&str> = order.iter().map(|e| e.revision.as_str()).collect();
    assert_eq!(revisions, ["v1", "v2", "v3"]);
    for pair in order.windows(2) {
        let ended = pair[0].finished_at.as_ref().expect("finished").0;
        assert!(
            pair[1].started_at.0 >= ended,
            "one at a time: {:?} then {:?}",
            pair[0],
            pair[1]
        );
        assert_eq!(pair[0].phase, ExecutionPhase::Succeeded);
    }
    f.finish().await;
}
