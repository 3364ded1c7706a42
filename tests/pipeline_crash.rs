//! SIGKILLs of the operator in the middle of a Pipeline execution, end to
//! end (operator binary, kube-apiserver, Job controller + KWOK, LocalStack):
//! after each kill a new operator takes over from the status and the
//! cluster alone. Nothing may happen twice: no Job created twice (Job names
//! are deterministic; the Jobs are counted), no action re-run (attempts and
//! child applies counted over every operator's log), no approval lost (one
//! given while no operator runs is honoured by the next).
//!
//! Containers do not run under KWOK: the test Job's Pod stays Running for
//! the `stackpilot.dev/test-result-after` time, then succeeds.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use stackpilot::api::{ActionPhase, ExecutionPhase};
use support::fixture::Fixture;
use support::pipeline::*;
use support::{Operator, eventually};

async fn restart(f: &mut Fixture, logs: &mut Vec<PathBuf>) {
    let status = f.operator.sigkill().await;
    assert!(!status.success(), "the operator was running: {status}");
    f.operator = Operator::start(&f.bed, &f.ns.name, &f.bed.aws_endpoint, &[]).await;
    logs.push(f.operator.log.clone());
}

#[tokio::test]
async fn sigkills_mid_execution_repeat_nothing_and_lose_no_approval() {
    let mut f = Fixture::new("pipe-crash").await;
    let mut logs = vec![f.operator.log.clone()];
    let mut smoke = job_template("succeed");
    smoke["spec"]["template"]["metadata"]["annotations"] = json!({"stackpilot.dev/test-result-after": "8s"});
    let spec = json!({
        "source": {"artifact": {"revision": "v1", "template": {"body": QUEUE_TEMPLATE}}},
        "stages": [
            {"name": "dev", "actions": [
                {"name": "app", "deploy": {"stack": {"region": "us-east-1"}}},
                {"name": "smoke", "runOrder": 2, "test": {"jobTemplate": smoke}}]},
            {"name": "approval", "actions": [{"name": "gate", "approval": {}}]},
            {"name": "prod", "actions": [
                {"name": "app", "deploy": {"stack": {"region": "us-east-1"}}},
                {"name": "bake", "runOrder": 2, "wait": {"duration": "6s"}}]}]
    });
    apply(&f, "web", spec).await;

    // Kill 1: the dev Stack was just applied and is being created.
    eventually(TIMEOUT, "the dev Stack applied", || async {
        f.stacks().get_opt("web-dev-app").await.ok().flatten().map(|_| ())
    })
    .await;
    restart(&mut f, &mut logs).await;

    // Kill 2: the test Job exists and its Pod runs.
    let running = wait_execution(&f, "web", "the test runs", |e| {
        phase(e, "dev", "smoke") == Some(ActionPhase::InProgress)
    })
    .await;
    eventually(TIMEOUT, "the test Job exists", || async {
        (!jobs(&f, "web").await.is_empty()).then_some(())
    })
    .await;
    restart(&mut f, &mut logs).await;

    // Kill 3: the gate waits; approve while no operator runs.
    wait_execution(&f, "web", "the gate waits", |e| {
        phase(e, "approval", "gate") == Some(ActionPhase::WaitingForApproval)
    })
    .await;
    let status = f.operator.sigkill().await;
    assert!(!status.success());
    let request = json!({"id": "while-down", "target": format!("{}/approval/gate", running.id), "by": "carol"});
    annotate(&f, "web", "stackpilot.dev/approve", &request.to_string()).await;
    f.operator = Operator::start(&f.bed, &f.ns.name, &f.bed.aws_endpoint, &[]).await;
    logs.push(f.operator.log.clone());

    // Kill 4: during the bake after the prod deploy.
    wait_execution(&f, "web", "the bake runs", |e| {
        phase(e, "prod", "bake") == Some(ActionPhase::InProgress)
    })
    .await;
    restart(&mut f, &mut logs).await;

    let done = wait_execution(&f, "web", "the execution succeeds", |e| e.phase.is_finished()).await;
    assert_eq!(done.phase, ExecutionPhase::Succeeded, "{done:?}");
    assert_eq!(done.id, running.id, "one execution");
    for action in &done.actions {
        assert_eq!(
            action.attempts, 1,
            "{}/{} ran again: {action:?}",
            action.stage, action.action
        );
        assert_eq!(action.phase, ActionPhase::Succeeded, "{action:?}");
    }
    let gate = done.actions.iter().find(|a| a.action == "gate").unwrap();
    assert_eq!(gate.approval.as_ref().and_then(|r| r.by.as_deref()), Some("carol"));
    let bake = done.actions.iter().find(|a| a.action == "bake").unwrap();
    let baked = bake.finished_at.as_ref().unwrap().0.as_second() - bake.started_at.as_ref().unwrap().0.as_second();
    assert!(baked >= 6, "the bake kept its start across the kill: {baked} s");

    let created = jobs(&f, "web").await;
    assert_eq!(created.len(), 1, "one test Job");
    // No deploy action ran twice: each child's spec was written once (one
    // generation). A kill between the apply and the status write that records
    // it makes the next run apply the same spec again, which changes nothing.
    let stacks: kube::Api<stackpilot::api::Stack> = kube::Api::namespaced(f.client.clone(), &f.ns.name);
    for child in ["web-dev-app", "web-prod-app"] {
        let generation = stacks.get(child).await.unwrap().metadata.generation;
        let applies: usize = logs.iter().map(|log| child_writes_in(log, child)).sum();
        assert_eq!(
            generation,
            Some(1),
            "{child}: its spec changed after the first write ({applies} applies over {} operator runs)",
            logs.len()
        );
    }
    let pipeline = pipelines(&f).get("web").await.unwrap();
    let handled = pipeline.status.unwrap().requests;
    assert!(handled.iter().any(|r| r.id == "while-down"), "{handled:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!("pipeline crash: {} operator runs, 1 Job, 1 apply per child", logs.len());
    f.finish().await;
}
