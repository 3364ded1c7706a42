//! Test support for integration tests against the real test bed started by
//! `testbed/up.sh`: a kube-apiserver (with etcd and kube-controller-manager)
//! and LocalStack / moto on 127.0.0.1. Every test gets its own namespace.
#![allow(dead_code)]

pub mod deployment;
pub mod fixture;
pub mod gitops;
pub mod pipeline;
pub mod workload;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config, ResourceExt};
use tokio::process::{Child, Command};

/// The running test bed, read from `$STACKPILOT_TESTBED_DIR/env` (default
/// `/tmp/stackpilot-testbed/env`) or from the environment.
pub struct TestBed {
    pub kubeconfig: PathBuf,
    pub aws_endpoint: String,
    pub moto_endpoint: String,
}

impl TestBed {
    pub fn get() -> TestBed {
        let dir = std::env::var("STACKPILOT_TESTBED_DIR").unwrap_or_else(|_| "/tmp/stackpilot-testbed".into());
        let file = PathBuf::from(&dir).join("env");
        let mut vars: HashMap<String, String> = std::env::vars().collect();
        if let Ok(text) = std::fs::read_to_string(&file) {
            for line in text.lines() {
                let line = line.trim().trim_start_matches("export ");
                if let Some((k, v)) = line.split_once('=') {
                    vars.entry(k.to_string())
                        .or_insert_with(|| v.trim_matches(['"', '\'']).to_string());
                }
            }
        }
        let need = |key: &str| {
            vars.get(key).cloned().unwrap_or_else(|| {
                panic!(
                    "{key} is not set and {} has no value for it: start the test bed with testbed/up.sh",
                    file.display()
                )
            })
        };
        TestBed {
            kubeconfig: PathBuf::from(need("KUBECONFIG")),
            aws_endpoint: need("STACKPILOT_TEST_AWS_ENDPOINT"),
            moto_endpoint: need("STACKPILOT_TEST_MOTO_ENDPOINT"),
        }
    }

    pub async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("read kubeconfig");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig");
        Client::try_from(config).expect("client")
    }
}

/// Applies the generated CRDs (server-side) and waits for Established.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, crd) in stackpilot::api::crds() {
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply("stackpilot-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("apply CRD {name}: {e}"));
        let established = await_condition(api.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .unwrap_or_else(|_| panic!("CRD {name} not Established in 30s"))
            .expect("wait for CRD");
    }
}

/// A namespace of its own for one test; deleted by `cleanup`, or when
/// dropped (also when the test panics), so a failed test leaves nothing
/// running behind it.
pub struct TestNamespace {
    pub name: String,
    client: Client,
    kubeconfig: PathBuf,
    cleaned: bool,
}

impl TestNamespace {
    pub async fn new(client: &Client, prefix: &str) -> TestNamespace {
        let name = format!("{prefix}-{}", unique_suffix());
        let api: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"stackpilot.dev/test": "true"}}
        }))
        .unwrap();
        api.create(&PostParams::default(), &ns).await.expect("create namespace");
        TestNamespace {
            name,
            client: client.clone(),
            kubeconfig: TestBed::get().kubeconfig,
            cleaned: false,
        }
    }

    pub async fn cleanup(mut self) {
        self.cleaned = true;
        let api: Api<Namespace> = Api::all(self.client.clone());
        let _ = api.delete(&self.name, &DeleteParams::default()).await;
    }
}

impl Drop for TestNamespace {
    /// The test's runtime may be unwinding: kubectl needs none.
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let _ = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["delete", "namespace", &self.name, "--wait=false", "--ignore-not-found"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A path in this checkout. Read when the test runs (cargo sets
/// CARGO_MANIFEST_DIR then), not when it was compiled: a test binary reused
/// from a shared cargo cache may have been built in another checkout.
pub fn repo_path(relative: &str) -> std::path::PathBuf {
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    std::path::Path::new(&root).join(relative)
}

pub fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:04x}", nanos % 0xffff_ffff, rand::random::<u16>())
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The operator binary, running against the test bed and watching one
/// namespace. Killed when dropped.
pub struct Operator {
    child: Child,
    pub admin: String,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl Operator {
    pub async fn start(bed: &TestBed, namespace: &str, aws_endpoint: &str, extra_env: &[(&str, &str)]) -> Operator {
        let operator = Self::spawn(bed, namespace, aws_endpoint, extra_env);
        operator.wait_ready().await;
        operator
    }

    /// Like `start`, without waiting for `/readyz` (to kill it while it starts).
    pub fn spawn(bed: &TestBed, namespace: &str, aws_endpoint: &str, extra_env: &[(&str, &str)]) -> Operator {
        let port = free_port();
        let log_dir =
            std::env::var("STACKPILOT_TEST_LOG_DIR").unwrap_or_else(|_| std::env::temp_dir().display().to_string());
        let log_path = PathBuf::from(log_dir).join(format!("operator-{namespace}-{port}.log"));
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut command = Command::new(binary());
        command
            .arg("run")
            .env("KUBECONFIG", &bed.kubeconfig)
            .env("STACKPILOT_NAMESPACE", namespace)
            .env("AWS_ENDPOINT_URL", aws_endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("STACKPILOT_ADMIN_ADDR", format!("127.0.0.1:{port}"))
            .env("STACKPILOT_IN_FLIGHT_POLL_SECONDS", "1")
            .env("STACKPILOT_RECREATE_BACKOFF_SECONDS", "2")
            // Settled stacks are looked at every 2 s (the default is 300 s),
            // so a "no more calls" window of a few seconds covers several
            // polls and can fail.
            .env("STACKPILOT_RESYNC_SECONDS", "2")
            // Most tests use LocalStack's credentials directly (off by default).
            .env("STACKPILOT_ALLOW_OPERATOR_CREDENTIALS", "true")
            // Each test's operator verifies only the AwsAccounts its test labels.
            .env(
                "STACKPILOT_ACCOUNT_SELECTOR",
                format!("stackpilot.dev/test-namespace={namespace}"),
            )
            .env("RUST_LOG", "info,stackpilot=debug")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        for (k, v) in extra_env {
            command.env(k, v);
        }
        let child = command.spawn().expect("start operator");
        Operator {
            child,
            admin: format!("http://127.0.0.1:{port}"),
            log: log_path,
        }
    }

    pub async fn wait_ready(&self) {
        for _ in 0..300 {
            if let Ok(body) = http_get(&format!("{}/readyz", self.admin)).await
                && body.0 == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("operator not ready within 30s");
    }

    /// The value of one metric sample (sum over lines that contain every
    /// fragment; 0 when none has been counted yet). Panics when the operator
    /// has no such metric family at all, so a renamed metric cannot make a
    /// "no calls" check pass by reading 0.
    pub async fn metric(&self, name: &str, fragments: &[&str]) -> f64 {
        let (_, body) = http_get(&format!("{}/metrics", self.admin)).await.expect("metrics");
        stackpilot::runtime::admin::sample_sum(&body, name, fragments)
            .unwrap_or_else(|| panic!("the operator exposes no metric family for {name}"))
    }

    /// The process id, for sending signals.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("operator still running")
    }

    /// Waits up to `timeout` for the process to exit: its status, or None
    /// while it still runs.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait()).await.ok()?.ok()
    }

    /// SIGKILL, no chance to clean up; waits for the exit and returns how the
    /// process ended (not by signal 9 if it had already exited on its own).
    pub async fn kill(mut self) -> std::process::ExitStatus {
        // tokio's start_kill sends SIGKILL on Unix.
        let _ = self.child.start_kill();
        self.child.wait().await.expect("wait for the killed operator")
    }

    /// SIGKILL without giving the process up (a new one can take its place).
    pub async fn sigkill(&mut self) -> std::process::ExitStatus {
        let _ = self.child.start_kill();
        self.child.wait().await.expect("wait for the killed operator")
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The operator binary under test: cargo's build of this tree, or
/// `STACKPILOT_TEST_BINARY` (a build kept apart, e.g. when several work
/// trees share one cargo target directory and its `target/debug`).
pub fn binary() -> String {
    std::env::var("STACKPILOT_TEST_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_stackpilot").to_string())
}

/// A plain HTTP GET over loopback (status, body): the operator's own.
pub use stackpilot::runtime::admin::http_get;

/// Polls `check` until it returns Some, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
