//! `bench deployments`: D StackDeployments of T targets each (a distinct
//! account and region per target: AWS has fewer regions than targets, so the
//! regions are made up, `xx-bench-<i>`, and allowed by the bench's
//! AwsAccounts, 50 each; the fake AWS with the health alarm in every region)
//! against the real kube-apiserver. Measures, from watches on
//! the child Stacks and the deployments:
//! - wave hand-over: from the last child of a wave seen Ready at the
//!   revision (the gate passes) to the first child of the next wave seen
//!   written at it (p50/p99 over every wave boundary of every deployment);
//! - rollback: from a deployment's status showing the rollback (the failure
//!   seen and recorded) to every child seen written back, at T targets;
//! - AWS reads per poll interval and status writes in a steady window;
//! - the operator's resident memory with D x T child Stacks.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use stackpilot::api::{DeploymentPhase, RolloutKind, Stack, StackDeployment};

use super::metrics::{apiserver_metrics, call_deltas, scrape, sum};
use super::operator::{rss, start_operator};
use super::report::MIB;
use super::{Args, DeploymentArgs};

const ALARM: &str = "bench-errors";
/// Regions one AwsAccount may list.
const REGIONS_PER_ACCOUNT: usize = 50;
const TEMPLATE: &str = "Parameters:\n  Visibility: {Type: Number}\nResources:\n  Queue:\n    Type: AWS::SQS::Queue\n    Properties: {VisibilityTimeout: !Ref Visibility}\n";

/// When each child was first seen written at, and Ready at, a revision hash.
#[derive(Default)]
struct Seen {
    /// When the child was last seen written at a revision: a rollback
    /// writes a revision the child had before, so this is the latest time.
    written: HashMap<(String, String), Instant>,
    /// The revision each child was last seen written at.
    at: HashMap<String, String>,
    ready: HashMap<(String, String), Instant>,
}

pub(super) async fn run(
    args: &Args,
    d: &DeploymentArgs,
    client: &Client,
    binary: &std::path::Path,
) -> anyhow::Result<bool> {
    let namespace = format!("bench-sdep-{:x}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": namespace}}))?,
        )
        .await?;
    // Targets need distinct (account, region) pairs: made-up regions,
    // which only an AwsAccount's allowedRegions lets through.
    let accounts: Api<stackpilot::api::AwsAccount> = Api::all(client.clone());
    let account_count = d.targets.div_ceil(REGIONS_PER_ACCOUNT);
    for k in 0..account_count {
        // Distinct region names across accounts too: the fake AWS keys its
        // stacks by region only.
        let first = k * REGIONS_PER_ACCOUNT;
        let regions: Vec<String> = (first..first + REGIONS_PER_ACCOUNT).map(region).collect();
        let account = json!({"apiVersion": "stackpilot.dev/v1alpha1", "kind": "AwsAccount",
            "metadata": {"name": account_name(k)},
            "spec": {"accountId": format!("{:012}", 100 + k), "namespaceSelector": {}, "allowedRegions": regions}});
        let applied = accounts
            .patch(
                &account_name(k),
                &PatchParams::apply("bench").force(),
                &Patch::Apply(&account),
            )
            .await?;
        // The fake AWS has no STS and the bench runs no account controller:
        // the bench writes the verdict that controller would write.
        let verified = json!({"apiVersion": "stackpilot.dev/v1alpha1", "kind": "AwsAccount",
            "status": {"observedGeneration": applied.metadata.generation,
                "conditions": [{"type": "Ready", "status": "True", "reason": "Verified",
                    "message": "bench", "observedGeneration": applied.metadata.generation,
                    "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
        accounts
            .patch_status(
                &account_name(k),
                &PatchParams::apply("bench").force(),
                &Patch::Apply(&verified),
            )
            .await?;
    }
    let env = [("STACKPILOT_FAKE_AWS_ALARMS", ALARM)];
    let calls_per_second = args.aws_calls_per_second.unwrap_or(2000.0);
    let mut operator = start_operator(args, binary, &namespace, calls_per_second, &env).await?;
    let pid = operator.process.id().context("operator pid")?;
    let result = measure(args, d, client, &operator.admin, pid, &namespace).await;
    let api: Api<StackDeployment> = Api::namespaced(client.clone(), &namespace);
    let _ = api
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    super::cluster::cleanup(client, &namespace, d.deployments * d.targets).await;
    let _ = operator.process.start_kill();
    let _ = operator.process.wait().await;
    for k in 0..account_count {
        let _ = accounts.delete(&account_name(k), &DeleteParams::default()).await;
    }
    result
}

fn region(i: usize) -> String {
    format!("xx-bench-{i}")
}

fn account_name(k: usize) -> String {
    format!("bench-fleet-{k}")
}

fn spec(d: &DeploymentArgs, revision: &str, visibility: u32, strategy: Value, bake: &str) -> Value {
    let targets: Vec<Value> = (0..d.targets)
        .map(|i| {
            json!({"name": format!("t{i:03}"), "region": region(i),
                   "accountRef": {"name": account_name(i / REGIONS_PER_ACCOUNT)}})
        })
        .collect();
    json!({"artifact": {"revision": revision, "template": {"body": TEMPLATE},
            "parameters": [{"name": "Visibility", "value": visibility.to_string()}]},
        "targets": targets, "strategy": strategy,
        "health": {"alarms": [ALARM], "bakeTime": bake}})
}

async fn apply_all(api: &Api<StackDeployment>, names: &[String], spec: &Value) -> anyhow::Result<()> {
    for name in names {
        let object = json!({"apiVersion": "stackpilot.dev/v1alpha1", "kind": "StackDeployment",
            "metadata": {"name": name}, "spec": spec});
        api.patch(name, &PatchParams::apply("bench").force(), &Patch::Apply(&object))
            .await?;
    }
    Ok(())
}

/// Waits until every deployment passes `check`; returns them.
async fn wait_all<F>(
    api: &Api<StackDeployment>,
    what: &str,
    timeout: Duration,
    check: F,
) -> anyhow::Result<Vec<StackDeployment>>
where
    F: Fn(&StackDeployment) -> bool,
{
    let deadline = Instant::now() + timeout;
    loop {
        let list = api.list(&ListParams::default()).await?.items;
        if !list.is_empty() && list.iter().all(&check) {
            return Ok(list);
        }
        if Instant::now() > deadline {
            let done = list.iter().filter(|d| check(d)).count();
            bail!("{what}: only {done}/{} after {timeout:?}", list.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ready_at(revision: &str) -> impl Fn(&StackDeployment) -> bool + '_ {
    move |d| {
        d.status.as_ref().is_some_and(|s| {
            s.observed_generation == d.metadata.generation
                && s.phase == Some(DeploymentPhase::Ready)
                && s.update_revision.as_ref().is_some_and(|r| r.revision == revision)
        })
    }
}

fn hash_of(d: &StackDeployment) -> String {
    d.status
        .as_ref()
        .and_then(|s| s.update_revision.as_ref())
        .map(|r| r.hash.clone())
        .unwrap_or_default()
}

async fn follow(api: Api<Stack>, seen: Arc<Mutex<Seen>>) {
    let stream = watcher(api, watcher::Config::default()).applied_objects();
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        let Ok(stack) = event else { continue };
        let now = Instant::now();
        let name = stack.name_any();
        let mut seen = seen.lock().expect("seen");
        if let Some(revision) = stack.annotations().get("stackpilot.dev/revision")
            && seen.at.get(&name) != Some(revision)
        {
            seen.at.insert(name.clone(), revision.clone());
            seen.written.insert((name.clone(), revision.clone()), now);
        }
        let Some(status) = stack.status.as_ref() else { continue };
        let ready = status.observed_generation == stack.metadata.generation
            && status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
        if let Some(revision) = status
            .applied
            .as_ref()
            .filter(|_| ready)
            .and_then(|a| a.revision.clone())
        {
            seen.ready.entry((name, revision)).or_insert(now);
        }
    }
}

/// `at` on the wall clock (UTC), as the operator's log prints it.
fn wall_clock(at: Instant) -> String {
    let ago = Instant::now().saturating_duration_since(at);
    let then = std::time::SystemTime::now() - ago;
    let timestamp = k8s_openapi::jiff::Timestamp::try_from(then).unwrap_or_default();
    timestamp.to_string()
}

fn percentile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return f64::NAN;
    }
    let index = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1;
    values[index]
}

async fn measure(
    args: &Args,
    d: &DeploymentArgs,
    client: &Client,
    admin: &str,
    pid: u32,
    namespace: &str,
) -> anyhow::Result<bool> {
    let api: Api<StackDeployment> = Api::namespaced(client.clone(), namespace);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let watch = tokio::spawn(follow(Api::namespaced(client.clone(), namespace), seen.clone()));
    let names: Vec<String> = (0..d.deployments).map(|i| format!("d{i:02}")).collect();
    let children = d.deployments * d.targets;
    let timeout = Duration::from_secs(args.ready_timeout_seconds);
    let rss_peak = Arc::new(Mutex::new(0u64));
    let sampler = tokio::spawn(super::operator::sample_rss(pid, rss_peak.clone()));
    println!(
        "\n== {} StackDeployments x {} targets = {children} child Stacks (fake AWS, poll interval {} s)",
        d.deployments, d.targets, args.resync_seconds
    );

    // v1 everywhere at once: the fleet exists.
    let started = Instant::now();
    apply_all(&api, &names, &spec(d, "v1", 30, json!({"type": "AllAtOnce"}), "0s")).await?;
    wait_all(&api, "v1 Ready", timeout, ready_at("v1")).await?;
    println!(
        "v1 on {children} targets: all Ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Steady state: AWS reads per poll interval, status writes, memory.
    tokio::time::sleep(Duration::from_secs(args.resync_seconds)).await;
    let window = Duration::from_secs(args.resync_seconds * u64::from(args.steady_intervals));
    let before = scrape(admin).await?;
    tokio::time::sleep(window).await;
    let after = scrape(admin).await?;
    let intervals = f64::from(args.steady_intervals);
    let calls = call_deltas(&before, &after);
    let per_interval = |op: &str| {
        calls
            .iter()
            .filter(|(k, _)| k.starts_with(op))
            .map(|(_, v)| v)
            .sum::<f64>()
            / intervals
    };
    // Written deployment statuses and child Stack writes; skipped ones (nothing
    // but timestamps changed) are not writes.
    let writes = |text: &str| {
        ["\"written\"", "\"child\""]
            .iter()
            .map(|outcome| sum(text, "stackpilot_status_writes_total", &["StackDeployment", outcome]))
            .sum::<f64>()
    };
    let steady_writes = writes(&after) - writes(&before);
    let (rss_now, _) = rss(pid).unwrap_or_default();
    let placements = d.targets; // one account, one region per target
    // Child Stacks per region: one per deployment.
    let expected_stack_reads = placements * d.deployments.div_ceil(100);
    let expected_alarm_reads = placements * d.deployments;
    let stack_reads = per_interval("DescribeStacks");
    let alarm_reads = per_interval("DescribeAlarms");
    println!(
        "steady window: {} poll intervals of {} s",
        args.steady_intervals, args.resync_seconds
    );
    println!("  AWS calls in the window: {calls:?}");
    println!(
        "  reads per poll interval: DescribeStacks {stack_reads:.1} (expected ceil(stacks/100) per account and region = {expected_stack_reads}), DescribeAlarms {alarm_reads:.1} (at most one per account and region per gating deployment = {expected_alarm_reads}; none while no wave bakes)"
    );
    println!("  StackDeployment status + child writes in the window: {steady_writes} (target 0)");
    println!(
        "  operator RSS with {children} child Stacks: {:.0} MiB (target < 150 MiB)",
        rss_now as f64 / MIB
    );

    // v2 in waves of maxConcurrent: gate passing -> next wave's writes.
    let waves_of = d.max_concurrent;
    let metrics_before = scrape(admin).await?;
    let child_writes_before = sum(
        &metrics_before,
        "stackpilot_status_writes_total",
        &["StackDeployment", "\"child\""],
    );
    let revision_lists = async || -> anyhow::Result<f64> {
        let text = apiserver_metrics(client).await?;
        let labels = ["verb=\"LIST\"", "resource=\"controllerrevisions\""];
        Ok(sum(&text, "apiserver_request_total", &labels))
    };
    let lists_before = revision_lists().await?;
    let rolling = json!({"type": "Rolling", "rolling": {"maxConcurrent": waves_of}});
    let started = Instant::now();
    apply_all(&api, &names, &spec(d, "v2", 45, rolling, "0s")).await?;
    let done = wait_all(&api, "v2 Ready", timeout, ready_at("v2")).await?;
    println!(
        "v2 in waves of {waves_of}: all Ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let metrics_after = scrape(admin).await?;
    let lists = revision_lists().await? - lists_before;
    let child_writes = sum(
        &metrics_after,
        "stackpilot_status_writes_total",
        &["StackDeployment", "\"child\""],
    ) - child_writes_before;
    // Where a hand-over's time can go: how often each controller ran and
    // how long one run took on average.
    for kind in ["StackDeployment", "Stack"] {
        let delta = |series: &str| {
            let label = format!("kind=\"{kind}\"");
            sum(&metrics_after, series, &[&label]) - sum(&metrics_before, series, &[&label])
        };
        let runs = delta("stackpilot_reconcile_duration_seconds_count");
        let seconds = delta("stackpilot_reconcile_duration_seconds_sum");
        println!(
            "  {kind} reconciles during v2: {runs:.0} ({:.1} per child Stack), mean {:.0} ms",
            runs / children as f64,
            if runs > 0.0 { seconds / runs * 1000.0 } else { 0.0 }
        );
        if kind == "StackDeployment" {
            println!("  ControllerRevision LISTs during v2: {lists:.0} (the cache serves the rest)");
        }
    }
    let mut handovers = Vec::new();
    // The slowest boundaries, with wall-clock times to find them in the
    // operator's log: (seconds, deployment, wave, gate passed at).
    let mut slowest: Vec<(f64, String, usize, Instant)> = Vec::new();
    {
        let seen = seen.lock().expect("seen");
        for deployment in &done {
            let hash = hash_of(deployment);
            let waves = &deployment.status.as_ref().expect("status").waves;
            for (index, pair) in waves.windows(2).enumerate() {
                let child = |t: &String| (format!("{}-{t}", deployment.name_any()), hash.clone());
                let gate = pair[0].targets.iter().filter_map(|t| seen.ready.get(&child(t))).max();
                let next = pair[1].targets.iter().filter_map(|t| seen.written.get(&child(t))).min();
                if let (Some(gate), Some(next)) = (gate, next) {
                    let seconds = next.saturating_duration_since(*gate).as_secs_f64();
                    handovers.push(seconds);
                    slowest.push((seconds, deployment.name_any(), index + 1, *gate));
                }
            }
        }
    }
    slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (seconds, name, wave, gate) in slowest.iter().take(3) {
        println!(
            "  slow hand-over: {name} wave {wave} started {seconds:.3} s after the gate passed at {}",
            wall_clock(*gate)
        );
    }
    let boundaries = handovers.len();
    let p50 = percentile(&mut handovers, 0.50);
    let p99 = percentile(&mut handovers, 0.99);
    println!(
        "  wave hand-over (gate passed -> next wave written): p50 {p50:.3} s, p99 {p99:.3} s over {boundaries} boundaries (target p99 < 1 s)"
    );
    println!(
        "  child Stack writes for v2: {child_writes} for {children} targets ({:.2} per target: the new revision, then the release of its change set)",
        child_writes / children as f64
    );

    // Rollback at T targets: every target takes v3 and bakes; an abort (the
    // failure) sends all of them back to v2.
    apply_all(&api, &names, &spec(d, "v3", 60, json!({"type": "AllAtOnce"}), "1h")).await?;
    wait_all(&api, "v3 baking on every target", timeout, |dep| {
        dep.status.as_ref().is_some_and(|s| {
            s.update_revision.as_ref().is_some_and(|r| r.revision == "v3")
                && s.updated.as_deref() == Some(format!("{}/{}", d.targets, d.targets).as_str())
        })
    })
    .await?;
    let mut rollbacks = Vec::new();
    for name in names.iter().take(d.rollbacks) {
        let deployment = api.get(name).await?;
        let bad = hash_of(&deployment);
        let patch = json!({"metadata": {"annotations": {"stackpilot.dev/abort": format!("{bad}@bench")}}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        let rolling_back = wait_all(
            &Api::namespaced(client.clone(), namespace),
            "rollback recorded",
            timeout,
            |dep| {
                dep.name_any() != *name
                    || dep
                        .status
                        .as_ref()
                        .and_then(|s| s.rollout.as_ref())
                        .is_some_and(|r| r.kind == RolloutKind::Rollback)
            },
        )
        .await?;
        let seen_at = Instant::now();
        let stable = rolling_back
            .iter()
            .find(|dep| dep.name_any() == *name)
            .and_then(|dep| dep.status.as_ref()?.stable_revision.as_ref().map(|r| r.hash.clone()))
            .unwrap_or_default();
        let deadline = Instant::now() + timeout;
        let last = loop {
            let last = {
                let seen = seen.lock().expect("seen");
                let times: Vec<Instant> = (0..d.targets)
                    .filter_map(|i| seen.written.get(&(format!("{name}-t{i:03}"), stable.clone())).copied())
                    .filter(|t| *t >= seen_at - Duration::from_secs(5))
                    .collect();
                (times.len() == d.targets).then(|| times.into_iter().max().expect("targets"))
            };
            if let Some(last) = last {
                break last;
            }
            if Instant::now() > deadline {
                bail!("rollback writes of {name} not all seen");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        rollbacks.push(last.saturating_duration_since(seen_at).as_secs_f64());
    }
    let count = rollbacks.len();
    let max = rollbacks.iter().copied().fold(0.0, f64::max);
    let median = percentile(&mut rollbacks, 0.5);
    println!(
        "  rollback (status shows it -> every child written back), {count} deployments of {} targets: median {median:.3} s, max {max:.3} s (target < 2 s)",
        d.targets
    );
    let peak = *rss_peak.lock().expect("peak") as f64 / MIB;
    println!("  operator RSS peak over the run: {peak:.0} MiB");
    sampler.abort();
    watch.abort();
    let checks: BTreeMap<&str, bool> = BTreeMap::from([
        ("hand-over p99 < 1 s", p99 < 1.0),
        ("rollback max < 2 s", max < 2.0),
        ("RSS < 150 MiB", (rss_now as f64 / MIB) < 150.0),
        ("steady status writes 0", steady_writes == 0.0),
    ]);
    for (check, ok) in &checks {
        println!("  {check}: {}", if *ok { "PASS" } else { "FAIL" });
    }
    Ok(checks.values().all(|ok| *ok))
}
