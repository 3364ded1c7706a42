//! The operator under test: started as a child process with the bench's
//! settings, and its resident memory sampled from /proc.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

use super::Args;
use stackpilot::runtime::admin::http_get;

pub(super) struct Operator {
    pub(super) process: Child,
    pub(super) admin: String,
}

pub(super) async fn start_operator(
    args: &Args,
    binary: &std::path::Path,
    namespace: &str,
    calls_per_second: f64,
    extra_env: &[(&str, &str)],
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
        .env("STACKPILOT_ALLOW_OPERATOR_CREDENTIALS", "true")
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
        // STACKPILOT_BENCH_OPERATOR_LOG: the operator's RUST_LOG, to see
        // where a run's time goes (for example stackpilot::deployment=debug).
        .env(
            "RUST_LOG",
            std::env::var("STACKPILOT_BENCH_OPERATOR_LOG").unwrap_or_else(|_| "warn".into()),
        )
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
    command.envs(extra_env.iter().copied());
    let process = command.spawn().context("start the operator")?;
    let operator = Operator {
        process,
        admin: format!("127.0.0.1:{port}"),
    };
    for _ in 0..600 {
        if let Ok((200, _)) = http_get(&format!("http://{}/readyz", operator.admin)).await {
            return Ok(operator);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("operator not ready within 60 s; see {}", log_path.display())
}

/// Samples the operator's resident memory, keeping the highest.
pub(super) async fn sample_rss(pid: u32, peak: Arc<Mutex<u64>>) {
    loop {
        if let Some((now, _)) = rss(pid) {
            let mut p = peak.lock().expect("memory");
            *p = (*p).max(now);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// (VmRSS, VmHWM) in bytes.
pub(super) fn rss(pid: u32) -> Option<(u64, u64)> {
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
