//! The scale benchmark: the real `stackpilot` binary (built next to this
//! one) against the real kube-apiserver of the test bed, with the in-memory
//! fake behind the AWS trait (`--fake-aws`), or LocalStack (`--localstack`).
//!
//! For each size N, in a namespace of its own: apply N Stacks (one SQS queue
//! each), time apply -> first AWS write and apply -> Ready per Stack, then
//! measure a steady window of whole poll intervals: AWS read calls per
//! interval, reconciles per second, status writes, API server requests per
//! second; and the operator's resident memory (peak and steady). Prints each
//! target with PASS or FAIL, deletes the Stacks and the namespace, and exits
//! non-zero if a target failed.
//!
//! ```sh
//! scripts/bench                       # its own test bed, N = 100, 1000, 5000
//! scripts/bench --quick               # N = 100, about 1.5 minutes
//! # with a test bed already up (source its env first):
//! cargo build --release --bins && target/release/bench --stacks 100,1000
//! ```
//!
//! "First AWS write" is seen as the first `status.operation`: the operator
//! records that intent just before the write (CreateChangeSet), so it leads
//! the AWS call by one status write. With the fake, AWS state lives inside
//! the operator process and counts in its resident memory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use stackpilot::api::Stack;
use tokio::process::{Child, Command};

const TEMPLATE: &str =
    "Resources:\n  Queue:\n    Type: AWS::SQS::Queue\nOutputs:\n  QueueUrl:\n    Value: !Ref Queue\n";
/// Read operations of the CloudFormation trait (everything else writes).
const READS: &[&str] = &[
    "DescribeStacks",
    "DescribeChangeSet",
    "DescribeStackEvents",
    "GetTemplate",
    "GetStackPolicy",
    "DescribeStackDriftDetectionStatus",
    "DescribeStackResourceDrifts",
];
const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Parser)]
#[command(name = "bench", about = "stackpilot at scale: AWS call budget, latency, memory")]
struct Args {
    /// Sizes to run, one after the other.
    #[arg(long, value_delimiter = ',', default_value = "100")]
    stacks: Vec<usize>,
    /// Against LocalStack (`STACKPILOT_TEST_AWS_ENDPOINT`) instead of the fake.
    #[arg(long)]
    localstack: bool,
    /// The operator's poll interval of settled stacks (`STACKPILOT_RESYNC_SECONDS`).
    #[arg(long, default_value_t = 20)]
    resync_seconds: u64,
    /// Poll intervals in the steady window.
    #[arg(long, default_value_t = 2)]
    steady_intervals: u32,
    /// The operator's reconcile concurrency (its default).
    #[arg(long, default_value_t = 48)]
    concurrency: u16,
    /// The operator's in-flight poll interval (its default).
    #[arg(long, default_value_t = 5)]
    in_flight_poll_seconds: u64,
    /// The operator's AWS call budget per account and region (default: 2000
    /// with the fake, to measure the operator rather than the budget; 50
    /// with LocalStack).
    #[arg(long)]
    aws_calls_per_second: Option<f64>,
    /// `spec.drift.interval` of every Stack. Default `0` (off): the fake's
    /// clock starts in 2024, so with drift on, the stackpilot drift schedule
    /// (due `interval` after the run's AWS timestamp) finds every check due
    /// again at each poll, and steady state never comes. Use `6h` to see it.
    #[arg(long, default_value = "0")]
    drift_interval: String,
    /// Stacks applied at the same time.
    #[arg(long, default_value_t = 32)]
    apply_concurrency: usize,
    /// Give up waiting for all Ready after this long.
    #[arg(long, default_value_t = 900)]
    ready_timeout_seconds: u64,
    /// The operator binary (default: `stackpilot` next to this one).
    #[arg(long)]
    operator: Option<PathBuf>,
    /// Where the operator's logs go.
    #[arg(long, default_value = "/tmp")]
    log_dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let operator = match &args.operator {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("stackpilot"),
    };
    if !operator.exists() {
        bail!(
            "{} not found: build it first (cargo build --release --bins)",
            operator.display()
        );
    }
    let client = Client::try_default()
        .await
        .context("kube client (is KUBECONFIG set? source the test bed's env)")?;
    install_crds(&client).await?;
    let mut reports = Vec::new();
    for &n in &args.stacks {
        let report = run_size(&args, &client, &operator, n).await?;
        report.print();
        reports.push(report);
    }
    println!("\nSummary");
    println!(
        "{:>6} {:>12} {:>8} {:>16} {:>11} {:>14} {:>16} {:>10} {:>8}",
        "N",
        "reads/intvl",
        "budget",
        "write p50/p99 s",
        "all Ready s",
        "reconciles/s",
        "RSS peak/steady",
        "apiserver/s",
        "result"
    );
    for r in &reports {
        println!(
            "{:>6} {:>12.1} {:>8} {:>16} {:>11.1} {:>14.1} {:>16} {:>10.1} {:>8}",
            r.n,
            r.reads_per_interval,
            r.read_budget,
            format!("{:.2}/{:.2}", r.write_p50, r.write_p99),
            r.all_ready,
            r.converge_reconciles_per_second,
            format!("{:.0}/{:.0} MiB", r.rss_peak / MIB, r.rss_steady / MIB),
            r.apiserver_per_second,
            if r.passed() { "PASS" } else { "FAIL" }
        );
    }
    if reports.iter().all(Report::passed) {
        println!("bench: {} passed, 0 failed", reports.len());
        Ok(())
    } else {
        let failed = reports.iter().filter(|r| !r.passed()).count();
        println!("bench: {} passed, {failed} failed", reports.len() - failed);
        std::process::exit(1)
    }
}

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
}

struct Report {
    n: usize,
    mode: String,
    settings: String,
    write_p50: f64,
    write_p99: f64,
    writes_seen: usize,
    ready_count: usize,
    all_ready: f64,
    drift_done: f64,
    converge_reconciles_per_second: f64,
    converge_aws_calls: f64,
    /// API server writes per Stack until all Ready, by verb and resource.
    converge_writes: BTreeMap<String, f64>,
    window: f64,
    intervals: f64,
    reads_per_interval: f64,
    read_budget: usize,
    in_flight: usize,
    steady_calls: BTreeMap<String, f64>,
    steady_reconciles_per_second: f64,
    status_written: f64,
    status_skipped: f64,
    apiserver_per_second: f64,
    apiserver_stackpilot_per_second: f64,
    rss_peak: f64,
    rss_steady: f64,
}

impl Report {
    fn checks(&self) -> Vec<(String, String, String, Option<bool>)> {
        let mut rows = Vec::new();
        rows.push((
            "all Stacks Ready".to_string(),
            format!("{}/{} in {:.1} s", self.ready_count, self.n, self.all_ready),
            "all".to_string(),
            Some(self.ready_count == self.n),
        ));
        rows.push((
            "AWS read calls per poll interval (steady)".to_string(),
            format!("{:.1}", self.reads_per_interval),
            format!("<= {} (ceil(N/100) + {} in flight)", self.read_budget, self.in_flight),
            Some(self.reads_per_interval <= self.read_budget as f64),
        ));
        rows.push((
            "apply -> first AWS write p50 / p99".to_string(),
            format!(
                "{:.2} s / {:.2} s ({} seen)",
                self.write_p50, self.write_p99, self.writes_seen
            ),
            if self.n <= 1000 {
                "p99 < 2 s"
            } else {
                "(target at 1,000)"
            }
            .to_string(),
            (self.n <= 1000).then_some(self.write_p99 < 2.0 && self.writes_seen == self.n),
        ));
        rows.push((
            "time to all Ready".to_string(),
            format!("{:.1} s", self.all_ready),
            String::new(),
            None,
        ));
        rows.push((
            "time to first drift checks done (all)".to_string(),
            format!("{:.1} s", self.drift_done),
            String::new(),
            None,
        ));
        rows.push((
            "reconciles/s converging / steady".to_string(),
            format!(
                "{:.1} / {:.1}",
                self.converge_reconciles_per_second, self.steady_reconciles_per_second
            ),
            String::new(),
            None,
        ));
        rows.push((
            "AWS calls to converge (per Stack)".to_string(),
            format!(
                "{:.0} ({:.1})",
                self.converge_aws_calls,
                self.converge_aws_calls / self.n as f64
            ),
            String::new(),
            None,
        ));
        let limit = if self.n <= 2000 {
            Some(150.0)
        } else if self.n <= 5000 {
            Some(400.0)
        } else {
            None
        };
        rows.push((
            "operator RSS peak / steady".to_string(),
            format!("{:.0} MiB / {:.0} MiB", self.rss_peak / MIB, self.rss_steady / MIB),
            limit.map_or(String::new(), |l| format!("peak < {l:.0} MiB")),
            limit.map(|l| self.rss_peak / MIB < l),
        ));
        rows.push((
            "API server requests/s (steady): all / stackpilot.dev".to_string(),
            format!(
                "{:.1} / {:.2}",
                self.apiserver_per_second, self.apiserver_stackpilot_per_second
            ),
            String::new(),
            None,
        ));
        rows.push((
            "status writes in steady window: written / skipped".to_string(),
            format!("{:.0} / {:.0}", self.status_written, self.status_skipped),
            "0 written".to_string(),
            Some(self.status_written == 0.0),
        ));
        rows
    }

    fn passed(&self) -> bool {
        self.checks().iter().all(|(_, _, _, ok)| ok.unwrap_or(true))
    }

    fn print(&self) {
        println!("\n== N = {} Stacks, {} ==", self.n, self.mode);
        println!("{}", self.settings);
        println!(
            "steady window: {:.1} s = {:.2} poll intervals",
            self.window, self.intervals
        );
        println!("{:<52} {:<30} {:<38} result", "metric", "value", "target");
        for (metric, value, target, ok) in self.checks() {
            let result = match ok {
                Some(true) => "PASS",
                Some(false) => "FAIL",
                None => "",
            };
            println!("{metric:<52} {value:<30} {target:<38} {result}");
        }
        let writes: Vec<String> = self
            .converge_writes
            .iter()
            .map(|(k, v)| format!("{k}={v:.2}"))
            .collect();
        println!(
            "API server writes per Stack until all Ready (apply included): {}",
            writes.join(", ")
        );
        let calls: Vec<String> = self.steady_calls.iter().map(|(op, n)| format!("{op}={n:.0}")).collect();
        println!(
            "AWS calls in the steady window by operation/outcome: {}",
            if calls.is_empty() {
                "none".to_string()
            } else {
                calls.join(", ")
            }
        );
    }
}

async fn run_size(args: &Args, client: &Client, operator: &std::path::Path, n: usize) -> anyhow::Result<Report> {
    let namespace = format!("bench-{n}-{:x}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": namespace}}))?;
    namespaces.create(&PostParams::default(), &ns).await?;
    let calls_per_second = args
        .aws_calls_per_second
        .unwrap_or(if args.localstack { 50.0 } else { 2000.0 });
    let mode = if args.localstack {
        "LocalStack".to_string()
    } else {
        "in-memory fake AWS (--fake-aws)".to_string()
    };
    let settings = format!(
        "operator: concurrency {}, poll interval (resync) {} s, in-flight poll {} s, AWS budget {} calls/s per account+region; Stacks: drift.interval {}",
        args.concurrency, args.resync_seconds, args.in_flight_poll_seconds, calls_per_second, args.drift_interval
    );
    let mut child = start_operator(args, operator, &namespace, calls_per_second).await?;
    let pid = child.process.id().context("operator pid")?;
    let result = measure(args, client, &child, pid, &namespace, n, mode, settings).await;
    cleanup(client, &namespace, n).await;
    let _ = child.process.start_kill();
    let _ = child.process.wait().await;
    result
}

struct Operator {
    process: Child,
    admin: String,
}

async fn start_operator(
    args: &Args,
    binary: &std::path::Path,
    namespace: &str,
    calls_per_second: f64,
) -> anyhow::Result<Operator> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log_path = args.log_dir.join(format!("bench-operator-{namespace}.log"));
    let log = std::fs::File::create(&log_path)?;
    let mut command = Command::new(binary);
    command
        .arg("run")
        .env("STACKPILOT_NAMESPACE", namespace)
        .env("STACKPILOT_ADMIN_ADDR", format!("127.0.0.1:{port}"))
        .env("STACKPILOT_RESYNC_SECONDS", args.resync_seconds.to_string())
        .env(
            "STACKPILOT_IN_FLIGHT_POLL_SECONDS",
            args.in_flight_poll_seconds.to_string(),
        )
        .env("STACKPILOT_CONCURRENCY", args.concurrency.to_string())
        .env("STACKPILOT_AWS_CALLS_PER_SECOND", calls_per_second.to_string())
        .env("STACKPILOT_AWS_CALL_BURST", calls_per_second.max(20.0).to_string())
        .env("STACKPILOT_ACCOUNT_CONTROLLER", "false")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    if args.localstack {
        let endpoint = std::env::var("STACKPILOT_TEST_AWS_ENDPOINT")
            .context("STACKPILOT_TEST_AWS_ENDPOINT (LocalStack) is not set: source the test bed's env")?;
        command.env("AWS_ENDPOINT_URL", endpoint);
    } else {
        command.env("STACKPILOT_FAKE_AWS", "true");
    }
    let process = command.spawn().context("start the operator")?;
    let operator = Operator {
        process,
        admin: format!("127.0.0.1:{port}"),
    };
    for _ in 0..600 {
        if let Ok((200, _)) = http_get(&operator.admin, "/readyz").await {
            return Ok(operator);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("operator not ready within 60 s; see {}", log_path.display())
}

#[allow(clippy::too_many_arguments)]
async fn measure(
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
    let converge_writes: BTreeMap<String, f64> = writes_after
        .into_iter()
        .map(|(k, v)| {
            let d = (v - writes_before.get(&k).copied().unwrap_or(0.0)) / n as f64;
            (k, d)
        })
        .filter(|(_, d)| *d >= 0.01)
        .collect();
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
    sampler.abort();
    watch.abort();

    let intervals = window_seconds / interval.as_secs_f64();
    let reads: f64 = READS
        .iter()
        .map(|op| {
            let filter = format!("operation=\"{op}\"");
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

async fn apply(api: &Api<Stack>, track: &Mutex<Track>, name: &str, drift_interval: &str) -> anyhow::Result<()> {
    let object = json!({
        "apiVersion": "stackpilot.dev/v1alpha1",
        "kind": "Stack",
        "metadata": {"name": name},
        "spec": {"region": "us-east-1", "template": {"body": TEMPLATE}, "drift": {"interval": drift_interval}},
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
                track.lock().expect("track").applied.insert(name.to_string(), at);
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
            t.ready.entry(name).or_insert(now);
        }
    }
}

/// Samples the operator's resident memory, keeping the highest.
async fn sample_rss(pid: u32, peak: Arc<Mutex<u64>>) {
    loop {
        if let Some((now, _)) = rss(pid) {
            let mut p = peak.lock().expect("memory");
            *p = (*p).max(now);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// (VmRSS, VmHWM) in bytes.
fn rss(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|kib| kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// Sum of the samples of `name` whose labels contain every fragment.
fn sum(metrics: &str, name: &str, fragments: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| fragments.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// AWS calls between two scrapes, by `operation/outcome`.
fn call_deltas(a: &str, b: &str) -> BTreeMap<String, f64> {
    let parse = |text: &str| -> BTreeMap<String, f64> {
        text.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("stackpilot_aws_calls_total{")?;
                let (labels, value) = rest.split_once("} ")?;
                let label = |key: &str| {
                    let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
                    let end = labels[start..].find('"')? + start;
                    Some(labels[start..end].to_string())
                };
                Some((
                    format!("{}/{}", label("operation")?, label("outcome")?),
                    value.parse().ok()?,
                ))
            })
            .collect()
    };
    let (before, after) = (parse(a), parse(b));
    after
        .into_iter()
        .map(|(k, v)| {
            let d = v - before.get(&k).copied().unwrap_or(0.0);
            (k, d)
        })
        .filter(|(_, d)| *d > 0.0)
        .collect()
}

async fn scrape(admin: &str) -> anyhow::Result<String> {
    let (status, body) = http_get(admin, "/metrics").await?;
    if status != 200 {
        bail!("operator /metrics answered {status}");
    }
    Ok(body)
}

/// `apiserver_request_total` summed: (all, group stackpilot.dev).
async fn apiserver_requests(client: &Client) -> anyhow::Result<(f64, f64)> {
    let text = apiserver_metrics(client).await?;
    Ok((
        sum(&text, "apiserver_request_total", &[]),
        sum(&text, "apiserver_request_total", &["group=\"stackpilot.dev\""]),
    ))
}

async fn apiserver_metrics(client: &Client) -> anyhow::Result<String> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    Ok(client.request_text(request).await?)
}

/// Writes to the API server (`apiserver_request_total` other than reads),
/// by `VERB resource[/subresource]`.
fn apiserver_writes(text: &str) -> BTreeMap<String, f64> {
    let mut writes = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |key: &str| {
            let start = labels
                .find(&format!(",{key}=\""))
                .map(|i| i + 1)
                .or_else(|| labels.starts_with(&format!("{key}=\"")).then_some(0))?
                + key.len()
                + 2;
            let end = labels[start..].find('"')? + start;
            Some(labels[start..end].to_string())
        };
        let verb = label("verb").unwrap_or_default();
        if matches!(verb.as_str(), "GET" | "LIST" | "WATCH") {
            continue;
        }
        let mut key = format!("{verb} {}", label("resource").unwrap_or_default());
        if let Some(sub) = label("subresource").filter(|s| !s.is_empty()) {
            key = format!("{key}/{sub}");
        }
        *writes.entry(key).or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
    }
    writes
}

/// A minimal HTTP/1.1 GET over loopback: (status, body).
async fn http_get(host: &str, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

async fn install_crds(client: &Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, crd) in stackpilot::api::crds() {
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply("stackpilot-bench").force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("apply CRD {name}"))?;
        let established = await_condition(api.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .with_context(|| format!("CRD {name} not Established"))??;
    }
    Ok(())
}

/// Deletes the Stacks (the operator, still running, deletes their stacks and
/// releases them) and the namespace; whatever is left after a while loses
/// its finalizer.
async fn cleanup(client: &Client, namespace: &str, n: usize) {
    let api: Api<Stack> = Api::namespaced(client.clone(), namespace);
    let started = Instant::now();
    let _ = api
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    let deadline = started + Duration::from_secs(60 + n as u64 / 20);
    while Instant::now() < deadline {
        match api.list_metadata(&ListParams::default().limit(1)).await {
            Ok(list) if list.items.is_empty() => break,
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    if let Ok(left) = api.list_metadata(&ListParams::default()).await {
        if !left.items.is_empty() {
            eprintln!(
                "{} Stacks not deleted in time; removing their finalizers",
                left.items.len()
            );
        }
        for stack in left.items {
            let patch = json!({"metadata": {"finalizers": null}});
            let _ = api
                .patch(&stack.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                .await;
        }
    }
    eprintln!("deleted {n} Stacks in {:.1} s", started.elapsed().as_secs_f64());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(namespace, &DeleteParams::default()).await;
}
