//! Every manifest in examples/ is accepted by the real API server
//! (server-side dry run against the generated CRDs). `scripts/demo` runs them
//! for real.

mod support;

use std::process::Command;

use support::{TestBed, TestNamespace, install_crds};

#[tokio::test]
async fn every_example_is_valid() {
    let bed = TestBed::get();
    let client = bed.client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "examples").await;
    let dir = support::repo_path("examples");
    let output = Command::new("kubectl")
        .args([
            "--kubeconfig",
            bed.kubeconfig.to_str().unwrap(),
            "apply",
            "--dry-run=server",
            "-n",
            &ns.name,
            "-f",
            dir.to_str().unwrap(),
        ])
        .output()
        .expect("kubectl");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    for name in [
        "orders-dlq",
        "billing-events",
        "alerts",
        "sandbox-queue",
        "example-bucket",
        "orders-events",
        "payments-queue",
    ] {
        assert!(
            stdout.contains(&format!("stack.stackpilot.dev/{name}")),
            "{name} not applied: {stdout}"
        );
    }
    assert!(stdout.contains("awsaccount.stackpilot.dev/sandbox"));
    ns.cleanup().await;
}
