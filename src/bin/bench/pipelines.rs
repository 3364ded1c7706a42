//! `--pipelines N`: N Pipelines of 3 stages at once (dev: deploy a Stack;
//! test: a Job, which KWOK completes; prod: deploy a Stack), against the
//! real kube-apiserver, the Job controller and KWOK, with the in-memory fake
//! AWS in the operator.
//!
//! Measured with the bench's own watches (one on Stacks, one on Jobs, so
//! both ends of a hand-over are seen with the same watch delay):
//! hand-over = from an action's end being observable (the dev Stack Ready;
//! the test Job Complete) to the next action's first write (the test Job
//! created; the prod Stack created), p50/p99 over 2 N hand-overs; the
//! operator's RSS; API requests per second and per pipeline in a steady
//! window once every execution has succeeded.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use stackpilot::api::{ExecutionPhase, Pipeline, Stack};

use super::metrics::{apiserver_metrics, apiserver_requests, apiserver_writes};
use super::operator::{Operator, rss, sample_rss};

const TEMPLATE: &str = "Resources:\n  Queue:\n    Type: AWS::SQS::Queue\nOutputs:\n  QueueUrl: {Value: !Ref Queue}\n";

/// When the bench saw each event, by pipeline name.
#[derive(Default)]
struct Seen {
    dev_ready: BTreeMap<String, Instant>,
    job_created: BTreeMap<String, Instant>,
    job_complete: BTreeMap<String, Instant>,
    prod_created: BTreeMap<String, Instant>,
}

fn pipeline_of(name: &str, suffix: &str) -> Option<String> {
    name.strip_suffix(suffix).map(str::to_string)
}

async fn follow_stacks(api: Api<Stack>, seen: Arc<Mutex<Seen>>) {
    let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()).applied_objects());
    while let Some(event) = stream.next().await {
        let Ok(stack) = event else { continue };
        let now = Instant::now();
        let name = stack.name_any();
        let mut s = seen.lock().expect("seen");
        if let Some(p) = pipeline_of(&name, "-prod-app") {
            s.prod_created.entry(p).or_insert(now);
        } else if let Some(p) = pipeline_of(&name, "-dev-app") {
            let ready = stack.status.as_ref().is_some_and(|st| {
                st.observed_generation == stack.metadata.generation
                    && st.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
            });
            if ready {
                s.dev_ready.entry(p).or_insert(now);
            }
        }
    }
}

async fn follow_jobs(api: Api<Job>, seen: Arc<Mutex<Seen>>) {
    let config = watcher::Config::default().labels(stackpilot::pipeline::plan::LABEL_PIPELINE);
    let mut stream = std::pin::pin!(watcher(api, config).applied_objects());
    while let Some(event) = stream.next().await {
        let Ok(job) = event else { continue };
        let now = Instant::now();
        let Some(p) = job.labels().get(stackpilot::pipeline::plan::LABEL_PIPELINE).cloned() else {
            continue;
        };
        let mut s = seen.lock().expect("seen");
        s.job_created.entry(p.clone()).or_insert(now);
        let complete = job
            .status
            .as_ref()
            .and_then(|st| st.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Complete" && c.status == "True"));
        if complete {
            s.job_complete.entry(p).or_insert(now);
        }
    }
}

fn spec() -> serde_json::Value {
    let job = json!({"spec": {"backoffLimit": 0, "template": {
        "metadata": {"labels": {"stackpilot.dev/test-result": "succeed"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "t", "image": "busybox", "command": ["true"]}]}}}});
    json!({"source": {"artifact": {"revision": "v1", "template": {"body": TEMPLATE}}},
        "stages": [
            {"name": "dev", "actions": [{"name": "app", "deploy": {"stack": {"region": "us-east-1"}}}]},
            {"name": "test", "actions": [{"name": "smoke", "test": {"jobTemplate": job}}]},
            {"name": "prod", "actions": [{"name": "app", "deploy": {"stack": {"region": "us-east-1"}}}]}]})
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// Runs N pipelines at once and prints the numbers; Err when they do not all succeed in time.
pub(super) async fn run(
    client: &Client,
    operator: &Operator,
    pid: u32,
    namespace: &str,
    n: usize,
    steady_seconds: u64,
) -> anyhow::Result<bool> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stacks: Api<Stack> = Api::namespaced(client.clone(), namespace);
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), namespace);
    let watches = [
        tokio::spawn(follow_stacks(stacks, seen.clone())),
        tokio::spawn(follow_jobs(jobs, seen.clone())),
    ];
    let peak = Arc::new(Mutex::new(0u64));
    let sampler = tokio::spawn(sample_rss(pid, peak.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;

    let started = Instant::now();
    let body = spec();
    let mut applies = futures::stream::iter((0..n).map(|i| {
        let pipelines = pipelines.clone();
        let name = format!("p{i:04}");
        let object = json!({"apiVersion": "stackpilot.dev/v1alpha1", "kind": "Pipeline",
            "metadata": {"name": name}, "spec": body});
        async move {
            pipelines
                .patch(&name, &PatchParams::apply("bench").force(), &Patch::Apply(&object))
                .await
        }
    }))
    .buffer_unordered(32);
    while let Some(result) = applies.next().await {
        result?;
    }
    let applied = started.elapsed().as_secs_f64();
    let deadline = started + Duration::from_secs(600);
    let succeeded = loop {
        let list = pipelines.list(&Default::default()).await?;
        let done = list
            .items
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.current_execution.as_ref())
                    .is_some_and(|e| e.phase == ExecutionPhase::Succeeded)
            })
            .count();
        if done == n {
            break started.elapsed().as_secs_f64();
        }
        if Instant::now() > deadline {
            bail!("{done}/{n} pipelines succeeded within 600 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let rss_peak = *peak.lock().expect("peak") as f64;

    // Steady state: every execution over; what does the operator still ask of the API server?
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (before, _) = apiserver_requests(client).await?;
    let writes_before = apiserver_writes(&apiserver_metrics(client).await?);
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(steady_seconds)).await;
    let (after, _) = apiserver_requests(client).await?;
    let writes_after = apiserver_writes(&apiserver_metrics(client).await?);
    let seconds = window.elapsed().as_secs_f64();
    let per_second = (after - before) / seconds;
    let writes: f64 = writes_after.values().sum::<f64>() - writes_before.values().sum::<f64>();
    // Which writes (verb and resource): the operator's, or the Job controller's and KWOK's?
    let mut by_resource: Vec<(String, f64)> = writes_after
        .iter()
        .map(|(key, after)| (key.clone(), after - writes_before.get(key).copied().unwrap_or(0.0)))
        .filter(|(_, n)| *n > 0.0)
        .collect();
    by_resource.sort_by(|a, b| b.1.total_cmp(&a.1));
    let rss_steady = rss(pid).map(|(now, _)| now as f64).unwrap_or(f64::NAN);
    sampler.abort();
    for w in watches {
        w.abort();
    }

    let aws = super::metrics::scrape(&operator.admin).await.unwrap_or_default();
    let aws_calls = super::metrics::sum(&aws, "stackpilot_aws_calls_total", &[]);
    let s = seen.lock().expect("seen");
    let mut handovers = Vec::new();
    let mut missing = 0;
    for i in 0..n {
        let p = format!("p{i:04}");
        for (end, next) in [(&s.dev_ready, &s.job_created), (&s.job_complete, &s.prod_created)] {
            match (end.get(&p), next.get(&p)) {
                (Some(a), Some(b)) => handovers.push(b.saturating_duration_since(*a).as_secs_f64()),
                _ => missing += 1,
            }
        }
    }
    handovers.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&handovers, 0.50), percentile(&handovers, 0.99));
    let mib = 1024.0 * 1024.0;
    drop(s);
    println!("\nPipelines: N = {n}, 3 stages each (deploy Stack -> test Job -> deploy Stack), fake AWS, KWOK");
    println!("  applied all in {applied:.1} s; all executions Succeeded {succeeded:.1} s after the first apply");
    println!(
        "  hand-over (action end observed -> next action's first write): p50 {p50:.3} s, p99 {p99:.3} s over {} hand-overs ({missing} not seen){}",
        handovers.len(),
        if p99 < 1.0 {
            "  [target p99 < 1 s: PASS]"
        } else {
            "  [target p99 < 1 s: FAIL]"
        }
    );
    println!(
        "  operator RSS: peak {:.0} MiB, steady {:.0} MiB",
        rss_peak / mib,
        rss_steady / mib
    );
    println!(
        "  steady state ({seconds:.0} s, every execution over): {per_second:.2} API requests/s in all ({:.4} per pipeline per s), {writes:.0} API writes",
        per_second / n as f64
    );
    for (key, count) in by_resource.iter().take(8) {
        println!("    {count:>6.0}  {key}");
    }
    println!(
        "  AWS calls (fake) over the run: {aws_calls:.0} ({:.1} per pipeline)",
        aws_calls / n as f64
    );
    Ok(missing == 0 && p99 < 1.0)
}

/// Deletes the pipelines (the operator deletes their Stacks first); any left
/// after a while lose their finalizer.
pub(super) async fn cleanup(client: &Client, namespace: &str) {
    let api: Api<Pipeline> = Api::namespaced(client.clone(), namespace);
    let _ = api.delete_collection(&Default::default(), &Default::default()).await;
    for _ in 0..120 {
        match api.list_metadata(&Default::default()).await {
            Ok(list) if list.items.is_empty() => return,
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    if let Ok(left) = api.list_metadata(&Default::default()).await {
        for pipeline in left.items {
            let patch = json!({"metadata": {"finalizers": null}});
            let _ = api
                .patch(&pipeline.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                .await;
        }
    }
}
