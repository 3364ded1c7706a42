//! One size end to end: apply N Stacks, follow them to Ready, measure a
//! steady window of whole poll intervals, then change every template once
//! and follow the update to Ready (unless `--skip-update`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use stackpilot::api::Stack;

use super::Args;
use super::metrics::{answer_times, apiserver_metrics, apiserver_requests, apiserver_writes, call_deltas, scrape, sum};
use super::operator::{Operator, rss, sample_rss};
use super::report::{Phase, Report};

const TEMPLATE: &str =
    "Resources:\n  Queue:\n    Type: AWS::SQS::Queue\nOutputs:\n  QueueUrl:\n    Value: !Ref Queue\n";

/// The update: the same queue with a property set.
const UPDATED_TEMPLATE: &str = "Resources:\n  Queue:\n    Type: AWS::SQS::Queue\n    Properties:\n      VisibilityTimeout: 45\nOutputs:\n  QueueUrl:\n    Value: !Ref Queue\n";

/// When each Stack was applied, first showed an operation, became Ready.
#[derive(Default)]
struct Track {
    applied: HashMap<String, Instant>,
    first_write: HashMap<String, Instant>,
    ready: HashMap<String, Instant>,
    /// With an operation or a drift detection run under way.
    in_flight: HashSet<String>,
    /// Whose first drift detection (right after create) is over.
    drift_checked: HashSet<String>,
    /// The newest generation each Stack was Ready at.
    ready_generation: HashMap<String, i64>,
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn measure(
    args: &Args,
    client: &Client,
    operator: &Operator,
    pid: u32,
    namespace: &str,
    n: usize,
    mode: String,
    settings: String,
) -> anyhow::Result<Report> {
    let api: Api<Stack> = Api::namespaced(client.clone(), namespace);
    let track = Arc::new(Mutex::new(Track::default()));
    let watch = tokio::spawn(follow(api.clone(), track.clone()));
    let memory = Arc::new(Mutex::new(0u64));
    let sampler = tokio::spawn(sample_rss(pid, memory.clone()));

    // Apply N Stacks, a bounded number at a time.
    let before = scrape(&operator.admin).await?;
    let writes_before = apiserver_writes(&apiserver_metrics(client).await?);
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let (api, track) = (api.clone(), track.clone());
            let drift = args.drift_interval.as_str();
            async move { apply(&api, &track, &format!("s{i:05}"), drift).await }
        })
        .buffer_unordered(args.apply_concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    let applied_in = started.elapsed();
    eprintln!("N={n}: applied in {:.1} s, waiting for Ready", applied_in.as_secs_f64());

    let deadline = started + Duration::from_secs(args.ready_timeout_seconds);
    loop {
        let ready = track.lock().expect("track").ready.len();
        if ready >= n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let converged = scrape(&operator.admin).await?;
    let writes_after = apiserver_writes(&apiserver_metrics(client).await?);
    let converge_writes = per_stack(deltas(&writes_before, writes_after), n);
    let (ready_count, all_ready, write_p50, write_p99, writes_seen) = {
        let t = track.lock().expect("track");
        let last_ready = t.ready.values().max().copied().unwrap_or(started);
        let mut writes: Vec<f64> = t
            .first_write
            .iter()
            .filter_map(|(name, at)| Some(at.saturating_duration_since(*t.applied.get(name)?).as_secs_f64()))
            .collect();
        writes.sort_by(f64::total_cmp);
        (
            t.ready.len(),
            last_ready.duration_since(started).as_secs_f64(),
            percentile(&writes, 0.50),
            percentile(&writes, 0.99),
            writes.len(),
        )
    };
    let converge_seconds = started.elapsed().as_secs_f64();
    let converge_calls = per_stack(call_deltas(&before, &converged), n);
    // Every Stack checks drift once right after its create: steady state
    // starts when those runs are over.
    eprintln!("N={n}: {ready_count} Ready after {all_ready:.1} s; waiting for the first drift checks");
    let quiet_deadline = Instant::now() + Duration::from_secs(args.ready_timeout_seconds);
    let drift_checked = loop {
        let (checked, busy) = {
            let t = track.lock().expect("track");
            (t.drift_checked.len(), t.in_flight.len())
        };
        let drift_on = args.drift_interval != "0";
        if ((checked >= n || !drift_on) && busy == 0) || Instant::now() > quiet_deadline {
            break checked;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let drift_seconds = started.elapsed().as_secs_f64();
    eprintln!("N={n}: {drift_checked} drift checks done after {drift_seconds:.1} s; settling for one poll interval");

    // Settle for one poll interval, then start the window right after a
    // bulk read, so it holds whole intervals.
    let interval = Duration::from_secs(args.resync_seconds);
    tokio::time::sleep(interval).await;
    let mark = sum(&scrape(&operator.admin).await?, "stackpilot_aws_calls_total", &[]);
    let align_deadline = Instant::now() + interval * 2;
    while Instant::now() < align_deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if sum(&scrape(&operator.admin).await?, "stackpilot_aws_calls_total", &[]) > mark {
            tokio::time::sleep(Duration::from_millis(500)).await;
            break;
        }
    }
    let in_flight = track.lock().expect("track").in_flight.len();
    let a = scrape(&operator.admin).await?;
    let api_a = apiserver_requests(client).await?;
    let window_start = Instant::now();
    let window = interval * args.steady_intervals;
    eprintln!("N={n}: steady window of {} s", window.as_secs());
    tokio::time::sleep(window).await;
    let b = scrape(&operator.admin).await?;
    let api_b = apiserver_requests(client).await?;
    let window_seconds = window_start.elapsed().as_secs_f64();
    let rss_steady = rss(pid).map(|(now, _)| now).unwrap_or(0) as f64;
    let rss_peak = rss(pid)
        .map(|(_, peak)| peak)
        .unwrap_or(0)
        .max(*memory.lock().expect("memory")) as f64;
    let update = if args.skip_update {
        None
    } else {
        Some(update_all(args, client, operator, &api, &track, n).await?)
    };
    sampler.abort();
    watch.abort();

    let intervals = window_seconds / interval.as_secs_f64();
    let reads: f64 = stackpilot::aws::Action::ALL
        .iter()
        .filter(|op| !op.is_write())
        .map(|op| {
            let filter = format!("operation=\"{}\"", op.as_str());
            sum(&b, "stackpilot_aws_calls_total", &[&filter]) - sum(&a, "stackpilot_aws_calls_total", &[&filter])
        })
        .sum();
    let steady_calls = call_deltas(&a, &b);
    let delta = |name: &str, filter: &[&str]| sum(&b, name, filter) - sum(&a, name, filter);
    let converge_delta = |name: &str| sum(&converged, name, &[]) - sum(&before, name, &[]);
    Ok(Report {
        n,
        mode,
        settings,
        write_p50,
        write_p99,
        writes_seen,
        ready_count,
        all_ready,
        drift_done: drift_seconds,
        converge_reconciles_per_second: converge_delta("stackpilot_reconciles_total") / converge_seconds,
        converge_aws_calls: converge_delta("stackpilot_aws_calls_total"),
        converge_calls,
        converge_answers: answer_times(&before, &converged),
        converge_budget_wait: converge_delta("stackpilot_aws_budget_wait_seconds_total"),
        update,
        converge_writes,
        window: window_seconds,
        intervals,
        reads_per_interval: reads / f64::from(args.steady_intervals),
        read_budget: n.div_ceil(100) + in_flight,
        in_flight,
        steady_calls,
        steady_reconciles_per_second: delta("stackpilot_reconciles_total", &[]) / window_seconds,
        status_written: delta("stackpilot_status_writes_total", &["outcome=\"written\""]),
        status_skipped: delta("stackpilot_status_writes_total", &["outcome=\"skipped\""]),
        apiserver_per_second: (api_b.0 - api_a.0) / window_seconds,
        apiserver_stackpilot_per_second: (api_b.1 - api_a.1) / window_seconds,
        rss_peak,
        rss_steady,
    })
}

/// Changes every Stack's template once (a queue property: an in-place
/// update) and follows them to Ready at the new generation: the API server
/// writes and AWS calls of one update, per Stack.
async fn update_all(
    args: &Args,
    client: &Client,
    operator: &Operator,
    api: &Api<Stack>,
    track: &Arc<Mutex<Track>>,
    n: usize,
) -> anyhow::Result<Phase> {
    let before = scrape(&operator.admin).await?;
    let writes_before = apiserver_writes(&apiserver_metrics(client).await?);
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let (api, track) = (api.clone(), track.clone());
            let drift = args.drift_interval.as_str();
            async move { apply_template(&api, &track, &format!("s{i:05}"), drift, UPDATED_TEMPLATE).await }
        })
        .buffer_unordered(args.apply_concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    eprintln!("N={n}: updated every template, waiting for Ready at generation 2");
    let deadline = started + Duration::from_secs(args.ready_timeout_seconds);
    let ready = loop {
        let ready = {
            let t = track.lock().expect("track");
            t.ready_generation.values().filter(|g| **g >= 2).count()
        };
        if ready >= n || Instant::now() > deadline {
            break ready;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    let after = scrape(&operator.admin).await?;
    let writes_after = apiserver_writes(&apiserver_metrics(client).await?);
    Ok(Phase {
        ready,
        seconds,
        calls: per_stack(call_deltas(&before, &after), n),
        writes: per_stack(deltas(&writes_before, writes_after), n),
    })
}

fn deltas(before: &BTreeMap<String, f64>, after: BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .into_iter()
        .map(|(k, v)| {
            let d = v - before.get(&k).copied().unwrap_or(0.0);
            (k, d)
        })
        .collect()
}

/// Counts divided by N, dropping the ones below 0.01 per Stack.
fn per_stack(counts: BTreeMap<String, f64>, n: usize) -> BTreeMap<String, f64> {
    counts
        .into_iter()
        .map(|(k, v)| (k, v / n as f64))
        .filter(|(_, v)| *v >= 0.01)
        .collect()
}

async fn apply(api: &Api<Stack>, track: &Mutex<Track>, name: &str, drift_interval: &str) -> anyhow::Result<()> {
    apply_template(api, track, name, drift_interval, TEMPLATE).await
}

async fn apply_template(
    api: &Api<Stack>,
    track: &Mutex<Track>,
    name: &str,
    drift_interval: &str,
    template: &str,
) -> anyhow::Result<()> {
    let object = json!({
        "apiVersion": "stackpilot.dev/v1alpha1",
        "kind": "Stack",
        "metadata": {"name": name},
        "spec": {"region": "us-east-1", "template": {"body": template}, "drift": {"interval": drift_interval}},
    });
    let mut attempt = 0;
    loop {
        let at = Instant::now();
        match api
            .patch(
                name,
                &PatchParams::apply("stackpilot-bench").force(),
                &Patch::Apply(&object),
            )
            .await
        {
            Ok(_) => {
                track
                    .lock()
                    .expect("track")
                    .applied
                    .entry(name.to_string())
                    .or_insert(at);
                return Ok(());
            }
            Err(error) if attempt < 5 => {
                attempt += 1;
                eprintln!("apply {name}: {error}; retrying");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(error) => return Err(error).context(format!("apply {name}")),
        }
    }
}

/// Watches the Stacks and records when each first shows an operation (the
/// intent recorded before the first AWS write) and when it is Ready.
async fn follow(api: Api<Stack>, track: Arc<Mutex<Track>>) {
    let stream = watcher(api, watcher::Config::default()).applied_objects();
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        let Ok(stack) = event else { continue };
        let now = Instant::now();
        let name = stack.name_any();
        let Some(status) = stack.status.as_ref() else { continue };
        let mut t = track.lock().expect("track");
        if status.operation.is_some() {
            t.first_write.entry(name.clone()).or_insert(now);
        }
        let checking = status
            .drift
            .as_ref()
            .is_some_and(|d| d.status == stackpilot::api::DriftState::Checking);
        if status.operation.is_some() || checking {
            t.in_flight.insert(name.clone());
        } else {
            t.in_flight.remove(&name);
        }
        if status
            .drift
            .as_ref()
            .is_some_and(|d| d.status != stackpilot::api::DriftState::Checking)
        {
            t.drift_checked.insert(name.clone());
        }
        let ready = status.observed_generation == stack.metadata.generation
            && status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
        if ready {
            let generation = stack.metadata.generation.unwrap_or(0);
            let newest = t.ready_generation.entry(name.clone()).or_insert(generation);
            *newest = (*newest).max(generation);
            t.ready.entry(name).or_insert(now);
        }
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}
