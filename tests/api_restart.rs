//! Kubernetes faults under a running operator: its connections to the API
//! server (watches included) being cut, and the API server itself being
//! killed and restarted. Either must end in a resync, not in lost work: the
//! operator keeps running, and Stacks created, changed or deleted while it
//! could not see them converge, with one stack per live object in AWS and
//! none left over (see tests/support/workload.rs for the checks).
//!
//! - `dropped_connections_...`: a TCP proxy between the operator and the
//!   shared test bed's API server drops every connection and refuses new
//!   ones for a few seconds, twice, while the test (connected directly)
//!   creates, updates and deletes Stacks.
//! - `api_server_restart_...`: a control plane of its own (`testbed/up.sh
//!   --no-aws` in a scratch dir; LocalStack from the shared test bed), whose
//!   kube-apiserver is killed (SIGKILL) and later stopped gracefully (SIGTERM)
//!   with `testbed/restart-apiserver.sh`, which keeps etcd and so every
//!   object. Changes are made the moment it is back, while the operator's
//!   watches are still backing off.
//!
//! `STACKPILOT_FAULT_API_CYCLES` (default 2) sets how many cuts and restarts
//! each test makes; `scripts/fault-test` runs more.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::workload::{Workload, audit, converge, raw_cloudformation};
use support::{Operator, TestBed, TestNamespace, install_crds, unique_suffix};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn cycles() -> u64 {
    knob("STACKPILOT_FAULT_API_CYCLES", 2)
}

/// How long everything may take to converge after the last fault.
fn settle() -> Duration {
    Duration::from_secs(knob("STACKPILOT_FAULT_CONVERGE_SECONDS", 120))
}

/// Asserts the operator process is still the one started (it must ride out
/// API server trouble, not exit).
async fn assert_alive(operator: &mut Operator, when: &str) {
    if let Some(status) = operator.wait_exit(Duration::from_millis(10)).await {
        panic!(
            "the operator exited ({status}, signal {:?}) {when}; log {}",
            status.signal(),
            operator.log.display()
        );
    }
}

/// One round of changes: new Stacks, new parameter values, deletions.
async fn changes(workload: &mut Workload, round: u64) -> String {
    workload.create_batch(round, 4).await;
    let updated = workload.update_half(round).await;
    let deleted = workload.delete_third(round).await;
    format!("round {round}: 4 created, {updated} updated, {deleted} deleted")
}

async fn finish(mut workload: Workload, operator: Operator, ns: TestNamespace, cfn: &aws_sdk_cloudformation::Client) {
    workload.delete_all().await;
    converge(&workload, Duration::from_secs(120), &operator.log).await;
    let (problems, _) = audit(&workload, cfn).await;
    assert!(
        problems.is_empty(),
        "after deleting everything:\n  {}",
        problems.join("\n  ")
    );
    operator.stop().await;
    ns.cleanup().await;
}

// ---------------------------------------------------------------- cut connections

/// A TCP proxy that can drop every connection through it and refuse new
/// ones for a while (TLS passes through untouched).
struct Cutter {
    port: u16,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Cutter {
    async fn start(upstream: String) -> Cutter {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (c, o) = (cut.clone(), open.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                o.lock().unwrap().push(task.abort_handle());
            }
        });
        Cutter { port, cut, open }
    }

    /// Drops every open connection; refuses new ones until `restore`.
    fn cut(&self) -> usize {
        self.cut.store(true, Ordering::SeqCst);
        let open: Vec<AbortHandle> = std::mem::take(&mut *self.open.lock().unwrap());
        let live = open.iter().filter(|h| !h.is_finished()).count();
        for handle in open {
            handle.abort();
        }
        live
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// The `host:port` of the API server a kubeconfig names.
fn server_of(kubeconfig: &Path) -> String {
    let text = std::fs::read_to_string(kubeconfig).expect("read kubeconfig");
    text.lines()
        .find_map(|l| l.trim().strip_prefix("server: https://"))
        .expect("a server in the kubeconfig")
        .to_string()
}

/// A copy of `kubeconfig` pointing at `127.0.0.1:<port>` instead.
fn redirect(kubeconfig: &Path, port: u16, to: &Path) {
    let text = std::fs::read_to_string(kubeconfig).expect("read kubeconfig");
    let replaced = text.replace(
        &format!("server: https://{}", server_of(kubeconfig)),
        &format!("server: https://127.0.0.1:{port}"),
    );
    std::fs::write(to, replaced).expect("write kubeconfig");
}

#[tokio::test]
async fn dropped_connections_and_watches_resync_without_lost_work() {
    let bed = TestBed::get();
    let client = bed.client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "api-cut").await;
    let kubeconfig = std::env::temp_dir().join(format!("{}.kubeconfig", ns.name));
    let cutter = Cutter::start(server_of(&bed.kubeconfig)).await;
    redirect(&bed.kubeconfig, cutter.port, &kubeconfig);
    let proxied = TestBed {
        kubeconfig: kubeconfig.clone(),
        aws_endpoint: bed.aws_endpoint.clone(),
        moto_endpoint: bed.moto_endpoint.clone(),
    };
    let mut operator = Operator::start(&proxied, &ns.name, &bed.aws_endpoint, &[]).await;
    let cfn = raw_cloudformation(&bed.aws_endpoint).await;
    let mut workload = Workload::new(&client, &ns.name);
    workload.create_batch(0, 6).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let started = Instant::now();
    for cycle in 1..=cycles() {
        let dropped = cutter.cut();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let done = changes(&mut workload, cycle).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        cutter.restore();
        println!("cut {cycle}: dropped {dropped} connections, 6 s without the API server; {done}");
        assert_alive(&mut operator, &format!("during cut {cycle}")).await;
        // Some work in between, to be cut off in the middle of the next.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    converge(&workload, settle(), &operator.log).await;
    let (problems, summary) = audit(&workload, &cfn).await;
    let log = std::fs::read_to_string(&operator.log).unwrap_or_default();
    let errors = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .count();
    println!(
        "connection cuts: {} cycles, converged {:.1?} after the first cut; {errors} warnings logged; {summary}",
        cycles(),
        started.elapsed()
    );
    assert!(problems.is_empty(), "after the cuts:\n  {}", problems.join("\n  "));
    assert!(
        errors > 0,
        "the cuts went unnoticed: is the operator really behind the proxy?"
    );
    assert_alive(&mut operator, "after the cuts").await;
    finish(workload, operator, ns, &cfn).await;
    let _ = std::fs::remove_file(kubeconfig);
}

// ---------------------------------------------------------------- restart the API server

/// A kube control plane of its own (etcd, kube-apiserver,
/// kube-controller-manager), stopped when dropped.
struct ControlPlane {
    dir: PathBuf,
}

fn testbed_script(name: &str) -> PathBuf {
    support::repo_path("testbed").join(name)
}

impl ControlPlane {
    async fn up() -> ControlPlane {
        let dir = std::env::temp_dir().join(format!("sp-restart-{}-{}", std::process::id(), unique_suffix()));
        let plane = ControlPlane { dir };
        let status = tokio::process::Command::new("bash")
            .arg(testbed_script("up.sh"))
            .arg("--no-aws")
            .env("STACKPILOT_TESTBED_DIR", &plane.dir)
            .status()
            .await
            .expect("run testbed/up.sh");
        assert!(status.success(), "testbed/up.sh --no-aws in {}", plane.dir.display());
        plane
    }

    async fn apiserver(&self, args: &[&str]) {
        let status = tokio::process::Command::new("bash")
            .arg(testbed_script("restart-apiserver.sh"))
            .args(args)
            .env("STACKPILOT_TESTBED_DIR", &self.dir)
            // A graceful stop closes the watches at once, but the process
            // can linger on open connections; it is killed after this.
            .env("STOP_TIMEOUT", "5")
            .status()
            .await
            .expect("run testbed/restart-apiserver.sh");
        assert!(status.success(), "restart-apiserver.sh {args:?}");
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Keep the logs when the test failed.
        let mut down = std::process::Command::new("bash");
        down.arg(testbed_script("down.sh"))
            .env("STACKPILOT_TESTBED_DIR", &self.dir);
        if std::thread::panicking() {
            down.arg("--keep");
            eprintln!("control plane logs kept in {}/logs", self.dir.display());
        }
        let _ = down.status();
    }
}

#[tokio::test]
async fn api_server_restart_loses_no_work() {
    let shared = TestBed::get();
    let plane = ControlPlane::up().await;
    let bed = TestBed {
        kubeconfig: plane.dir.join("kubeconfig"),
        aws_endpoint: shared.aws_endpoint.clone(),
        moto_endpoint: shared.moto_endpoint.clone(),
    };
    let client = bed.client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "api-restart").await;
    let mut operator = Operator::start(&bed, &ns.name, &bed.aws_endpoint, &[]).await;
    let cfn = raw_cloudformation(&bed.aws_endpoint).await;
    let mut workload = Workload::new(&client, &ns.name);
    workload.create_batch(0, 6).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let started = Instant::now();
    for cycle in 1..=cycles() {
        // Odd cycles: SIGKILL (connections just drop); even: SIGTERM.
        let how = if cycle % 2 == 1 { "--kill" } else { "--term" };
        let stop: &[&str] = if how == "--kill" {
            &["stop", "--kill"]
        } else {
            &["stop"]
        };
        let down = Instant::now();
        plane.apiserver(stop).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_alive(&mut operator, &format!("while the API server was down ({cycle})")).await;
        plane.apiserver(&["start"]).await;
        let outage = down.elapsed();
        // At once, while the operator's watches are still backing off.
        let done = changes(&mut workload, cycle).await;
        println!("restart {cycle} ({how}): API server down {outage:.1?}; {done}");
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    converge(&workload, settle(), &operator.log).await;
    let (problems, summary) = audit(&workload, &cfn).await;
    let log = std::fs::read_to_string(&operator.log).unwrap_or_default();
    let errors = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .count();
    println!(
        "API server restarts: {} cycles, converged {:.1?} after the first stop; {errors} warnings logged; {summary}",
        cycles(),
        started.elapsed()
    );
    assert!(problems.is_empty(), "after the restarts:\n  {}", problems.join("\n  "));
    assert_alive(&mut operator, "after the restarts").await;
    finish(workload, operator, ns, &cfn).await;
    drop(plane);
}
