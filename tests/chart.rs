//! The Helm chart against the real API server: it renders, every object is
//! accepted by a server-side dry-run, and its RBAC is enough to run the
//! operator: the operator binary runs impersonating the chart's
//! ServiceAccount and takes a Stack through create and delete on LocalStack.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use stackpilot::api::Stack;
use support::{Operator, TestBed, TestNamespace, eventually, install_crds};

fn helm_template(namespace: &str, release: &str, sets: &[&str]) -> String {
    let chart = support::repo_path("charts/stackpilot");
    let mut command = Command::new("helm");
    command
        .arg("template")
        .arg(release)
        .arg(&chart)
        .args(["--namespace", namespace, "--include-crds"]);
    for set in sets {
        command.args(["--set", set]);
    }
    let output = command
        .output()
        .expect("helm is on PATH (scripts/test puts the test bed's helm there)");
    assert!(
        output.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn kubectl_apply(bed: &TestBed, manifest: &str, dry_run: bool) -> String {
    let mut args = vec![
        "--kubeconfig",
        bed.kubeconfig.to_str().unwrap(),
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "-",
    ];
    if dry_run {
        args.push("--dry-run=server");
    }
    let mut child = Command::new("kubectl")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    child.stdin.take().unwrap().write_all(manifest.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "kubectl apply refused the chart: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn only_kinds(manifest: &str, kinds: &[&str]) -> String {
    manifest
        .split("\n---")
        .filter(|doc| kinds.iter().any(|k| doc.contains(&format!("\nkind: {k}\n"))))
        .map(|doc| format!("---{doc}\n"))
        .collect()
}

#[tokio::test]
async fn chart_renders_and_the_api_server_accepts_it() {
    let bed = TestBed::get();
    let client = bed.client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "chart").await;
    let release = format!("sp{}", &ns.name[6..12]);

    let defaults = helm_template(&ns.name, &release, &[]);
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "CustomResourceDefinition",
    ] {
        assert!(
            defaults.contains(&format!("kind: {kind}\n")),
            "default render lacks a {kind}"
        );
    }
    assert!(defaults.contains("readOnlyRootFilesystem: true") && defaults.contains("runAsNonRoot: true"));
    let applied = kubectl_apply(&bed, &defaults, true);
    assert!(
        applied.contains("deployment.apps/") && applied.contains("(server dry run)"),
        "{applied}"
    );

    let namespaced = helm_template(
        &ns.name,
        &release,
        &[&format!("watchNamespace={}", ns.name), "replicas=2"],
    );
    assert!(namespaced.contains("kind: Role\n"), "watchNamespace renders a Role");
    assert!(
        namespaced.contains("coordination.k8s.io"),
        "replicas=2 renders the lease Role"
    );
    kubectl_apply(&bed, &namespaced, true);
    ns.cleanup().await;
}

#[tokio::test]
async fn the_chart_rbac_is_enough_to_run_the_operator() {
    let bed = TestBed::get();
    let client = bed.client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "rbac").await;
    let release = format!("sp{}", &ns.name[5..11]);
    let manifest = helm_template(&ns.name, &release, &["allowOperatorCredentials=true"]);
    let rbac = only_kinds(
        &manifest,
        &[
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
        ],
    );
    kubectl_apply(&bed, &rbac, false);

    // A kubeconfig that acts as the chart's ServiceAccount.
    let mut config: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&bed.kubeconfig).unwrap()).unwrap();
    let user = &mut config["users"][0]["user"];
    user["as"] = format!("system:serviceaccount:{}:{release}-stackpilot", ns.name).into();
    let impersonating = std::env::temp_dir().join(format!("kubeconfig-{}", ns.name));
    std::fs::write(&impersonating, serde_yaml_ng::to_string(&config).unwrap()).unwrap();
    let as_sa = TestBed {
        kubeconfig: impersonating.clone(),
        aws_endpoint: bed.aws_endpoint.clone(),
        moto_endpoint: bed.moto_endpoint.clone(),
    };
    let operator = Operator::start(&as_sa, &ns.name, &bed.aws_endpoint, &[]).await;

    let stacks: Api<Stack> = Api::namespaced(client.clone(), &ns.name);
    let object = json!({"apiVersion": "stackpilot.dev/v1alpha1", "kind": "Stack", "metadata": {"name": "rbac"},
        "spec": {"region": "us-east-1", "template": {"body": "Resources:\n  Q: {Type: AWS::SQS::Queue}\n"}}});
    stacks
        .patch("rbac", &PatchParams::apply("chart-test"), &Patch::Apply(&object))
        .await
        .unwrap();
    eventually(Duration::from_secs(120), "Stack Ready under the chart's RBAC", || {
        let stacks = stacks.clone();
        async move {
            let stack = stacks.get("rbac").await.ok()?;
            let ready = stack
                .status?
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ready.then_some(())
        }
    })
    .await;
    stacks.delete("rbac", &DeleteParams::default()).await.unwrap();
    eventually(Duration::from_secs(120), "Stack deleted under the chart's RBAC", || {
        let stacks = stacks.clone();
        async move { stacks.get_opt("rbac").await.ok()?.is_none().then_some(()) }
    })
    .await;
    let errors = operator.metric("stackpilot_reconcile_errors_total", &[]).await;
    assert_eq!(errors, 0.0, "the operator hit errors (missing permissions?)");
    operator.stop().await;

    // Cluster-scoped leftovers of this release.
    let cleanup = only_kinds(&manifest, &["ClusterRole", "ClusterRoleBinding"]);
    let mut child = Command::new("kubectl")
        .args([
            "--kubeconfig",
            bed.kubeconfig.to_str().unwrap(),
            "delete",
            "--ignore-not-found",
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(cleanup.as_bytes()).unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_file(impersonating);
    ns.cleanup().await;
}
