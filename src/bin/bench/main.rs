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
//! # StackDeployments (see deployments.rs): 10 of 100 targets each
//! target/release/bench deployments --deployments 10 --targets 100
//! ```
//!
//! "First AWS write" is seen as the first `status.operation`: the operator
//! records that intent just before the write (CreateChangeSet), so it leads
//! the AWS call by one status write. With the fake, AWS state lives inside
//! the operator process and counts in its resident memory.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Parser;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;

mod cluster;
mod deployments;
mod measure;
mod metrics;
mod operator;
mod pipelines;
mod report;

use cluster::{cleanup, install_crds};
use measure::measure;
use operator::start_operator;
use report::{MIB, Report};

#[derive(Debug, Parser)]
#[command(name = "bench", about = "stackpilot at scale: AWS call budget, latency, memory")]
struct Args {
    #[command(subcommand)]
    mode: Option<Mode>,
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
    /// Skip the update round (every template changed once after the steady window).
    #[arg(long)]
    skip_update: bool,
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

#[derive(Debug, clap::Subcommand)]
enum Mode {
    /// StackDeployments instead of Stacks: wave hand-over, rollback, reads
    /// per poll interval, memory, steady status writes (fake AWS only).
    Deployments(DeploymentArgs),
    /// Pipelines of 3 stages at once instead of Stacks (needs KWOK; see pipelines.rs).
    Pipelines {
        #[arg(long, default_value_t = 100)]
        pipelines: usize,
    },
}

#[derive(Debug, Clone, clap::Args)]
struct DeploymentArgs {
    /// StackDeployments.
    #[arg(long, default_value_t = 10)]
    deployments: usize,
    /// Targets per deployment (one region each).
    #[arg(long, default_value_t = 100)]
    targets: usize,
    /// Targets per wave of the rolling update.
    #[arg(long, default_value_t = 10)]
    max_concurrent: usize,
    /// Deployments whose rollback is timed (one after the other).
    #[arg(long, default_value_t = 3)]
    rollbacks: usize,
}

/// LocalStack loads its CloudFormation provider on the first request (5 to
/// 8 s on the 2-core machine): every new Stack's first read waits for that
/// one, and it would be measured as the operator's apply -> first write.
/// One DescribeStacks before the first size takes it out, and says how long.
async fn warm_up_localstack() -> anyhow::Result<()> {
    use stackpilot::aws::{AwsTarget, CloudFormationProvider};
    let endpoint = std::env::var("STACKPILOT_TEST_AWS_ENDPOINT")
        .context("STACKPILOT_TEST_AWS_ENDPOINT (LocalStack) is not set: source the test bed's env")?;
    // The credentials are the test bed's (its env sets LocalStack's "test").
    let provider = stackpilot::aws::sdk::SdkProvider::from_env(Some(endpoint), Some("us-east-1".into())).await;
    let target = AwsTarget {
        region: "us-east-1".into(),
        ..AwsTarget::default()
    };
    let started = std::time::Instant::now();
    let listing = provider.client(&target).describe_all_stacks().await;
    println!(
        "LocalStack warm-up: the first DescribeStacks answered in {:.1} s ({}; not measured below)",
        started.elapsed().as_secs_f64(),
        if listing.is_ok() { "ok" } else { "failed" }
    );
    Ok(())
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
    if let Some(Mode::Deployments(d)) = &args.mode {
        if args.localstack {
            bail!("bench deployments runs on the fake AWS only");
        }
        let passed = deployments::run(&args, d, &client, &operator).await?;
        println!("bench deployments: {}", if passed { "PASS" } else { "FAIL" });
        std::process::exit(if passed { 0 } else { 1 });
    }
    if let Some(Mode::Pipelines { pipelines }) = args.mode {
        return run_pipelines(&args, &client, &operator, pipelines).await;
    }
    if args.localstack {
        warm_up_localstack().await?;
    }
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
    let mut child = start_operator(args, operator, &namespace, calls_per_second, &[]).await?;
    let pid = child.process.id().context("operator pid")?;
    let result = measure(args, client, &child, pid, &namespace, n, mode, settings).await;
    cleanup(client, &namespace, n).await;
    let _ = child.process.start_kill();
    let _ = child.process.wait().await;
    result
}

async fn run_pipelines(args: &Args, client: &Client, operator: &std::path::Path, n: usize) -> anyhow::Result<()> {
    let namespace = format!("bench-pipelines-{n}-{:x}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": namespace}}))?;
    namespaces.create(&PostParams::default(), &ns).await?;
    let mut child = start_operator(args, operator, &namespace, 2000.0, &[]).await?;
    let pid = child.process.id().context("operator pid")?;
    let steady = args.resync_seconds * u64::from(args.steady_intervals);
    let result = pipelines::run(client, &child, pid, &namespace, n, steady).await;
    pipelines::cleanup(client, &namespace).await;
    cleanup(client, &namespace, n).await;
    let _ = child.process.start_kill();
    let _ = child.process.wait().await;
    if result? {
        println!("bench: pipelines passed");
        Ok(())
    } else {
        println!("bench: pipelines failed");
        std::process::exit(1)
    }
}
