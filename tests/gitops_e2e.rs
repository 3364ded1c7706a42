//! From a git commit to production and back, on the test bed: a Git
//! repository holds a Pipeline (dev: a Stack and a test Job; an approval;
//! prod: a StackDeployment to two regions), a Stack kept under
//! `deletionPolicy: Retain`, and their template. Flux (real source-controller
//! and kustomize-controller) applies them through a GitRepository and a
//! Kustomization with `wait: true`; the Pipeline reads its template from the
//! same GitRepository (`source.sourceRef`). Every step is checked in
//! LocalStack.
//!
//! Needs the whole test bed (`testbed/up.sh` without `--no-gitops`).

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use stackpilot::api::{Execution, ExecutionPhase, Pipeline, StackDeployment};
use support::eventually;
use support::fixture::{Fixture, TIMEOUT};
use support::gitops::{
    GitRepo, apply_git_repository, argo_health, field, flux_condition, git_repositories, kustomizations,
    request_reconcile, wait_artifact,
};
use support::workload::cloudformation_in;

const LONG: Duration = Duration::from_secs(240);

/// Revision `version`; with `bad`, a prod-only resource LocalStack refuses.
fn template(version: &str, bad: bool) -> String {
    let mut body = format!(
        "Parameters:\n  Env: {{Type: String, Default: dev}}\nConditions:\n  IsProd: !Equals [!Ref Env, prod]\nResources:\n  Queue: {{Type: AWS::SQS::Queue}}\nOutputs:\n  Version: {{Value: \"{version}\"}}\n"
    );
    if bad {
        body = body.replace(
            "Outputs:",
            "  Broken:\n    Type: AWS::SQS::Queue\n    Condition: IsProd\n    Properties: {QueueName: \"not a valid name!\"}\nOutputs:",
        );
    }
    body
}

/// The Pipeline kept in Git, as the GitOps demo part commits it too.
const PIPELINE: &str = include_str!("../examples/gitops/pipeline.yaml");

const KEPT: &str = r#"apiVersion: stackpilot.dev/v1alpha1
kind: Stack
metadata: {name: kept}
spec:
  region: us-east-1
  deletionPolicy: Retain
  template:
    sourceRef: {kind: GitRepository, name: app, path: templates/app.yaml}
"#;

/// Every stack of the flow and the Version output it has, per region;
/// `None` when it does not exist (or is deleted).
async fn versions(fx: &Fixture) -> Vec<(String, Option<String>)> {
    let ns = &fx.ns.name;
    let mut found = Vec::new();
    for (region, stack) in [
        ("us-east-1", format!("{ns}-release-dev-app")),
        ("us-east-1", format!("{ns}-release-prod-app")),
        ("us-west-2", format!("{ns}-release-prod-app")),
        ("us-east-1", format!("{ns}-kept")),
    ] {
        let cfn = cloudformation_in(&fx.bed.aws_endpoint, region).await;
        let version = match cfn.describe_stacks().stack_name(&stack).send().await {
            Ok(d) => d.stacks().first().and_then(|s| {
                if s.stack_status().map(|s| s.as_str()) == Some("DELETE_COMPLETE") {
                    return None;
                }
                s.outputs()
                    .iter()
                    .find(|o| o.output_key() == Some("Version"))
                    .and_then(|o| o.output_value())
                    .map(str::to_string)
            }),
            Err(_) => None,
        };
        found.push((format!("{region}/{stack}"), version));
    }
    found
}

fn only(versions: &[(String, Option<String>)], v: &[Option<&str>]) -> bool {
    versions.len() == v.len() && versions.iter().zip(v).all(|((_, a), b)| a.as_deref() == *b)
}

async fn wait_versions(fx: &Fixture, what: &str, want: &[Option<&str>]) {
    eventually(LONG, what, || async {
        let now = versions(fx).await;
        only(&now, want).then_some(())
    })
    .await;
}

async fn execution(fx: &Fixture, what: &str, check: impl Fn(&Execution) -> bool) -> Execution {
    let api: Api<Pipeline> = Api::namespaced(fx.client.clone(), &fx.ns.name);
    eventually(LONG, what, || {
        let api = api.clone();
        let check = &check;
        async move {
            let execution = api.get("release").await.ok()?.status?.current_execution?;
            check(&execution).then_some(execution)
        }
    })
    .await
}

fn waits_for_approval(e: &Execution) -> bool {
    e.stage.as_deref() == Some("approval")
        && e.phase == ExecutionPhase::InProgress
        && e.actions
            .iter()
            .any(|a| a.action == "gate" && format!("{:?}", a.phase) == "WaitingForApproval")
}

fn approve(fx: &Fixture) {
    let output = Command::new(support::binary())
        .args(["approve", "pipeline/release", "-n", &fx.ns.name, "--comment", "e2e"])
        .env("KUBECONFIG", &fx.bed.kubeconfig)
        .env("USER", "e2e")
        .output()
        .expect("run stackpilot approve");
    assert!(
        output.status.success(),
        "approve: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Commits, waits for the artifact; returns the Flux revision.
async fn push(fx: &Fixture, repo: &GitRepo, message: &str) -> String {
    let sha = repo.commit(message);
    wait_artifact(&fx.client, &fx.ns.name, "app", &sha).await;
    format!("main@sha1:{sha}")
}

#[tokio::test]
async fn from_git_commit_to_prod_and_back() {
    let fx = Fixture::new("gitops-e2e").await;
    let ns = fx.ns.name.clone();
    let started = Instant::now();
    let repo = GitRepo::new("e2e");
    repo.write("templates/app.yaml", &template("1", false));
    repo.write("deploy/pipeline.yaml", PIPELINE);
    repo.write("deploy/kept.yaml", KEPT);
    let sha = repo.commit("revision 1");
    apply_git_repository(&fx.client, &ns, "app", &repo.url).await;
    wait_artifact(&fx.client, &ns, "app", &sha).await;
    let rev1 = format!("main@sha1:{sha}");
    let kustomization = json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "app"},
        "spec": {
            "interval": "10m", "path": "./deploy", "prune": true, "wait": true, "timeout": "3m",
            "targetNamespace": ns, "sourceRef": {"kind": "GitRepository", "name": "app"}
        }
    });
    let ks = kustomizations(&fx.client, &ns);
    ks.patch("app", &PatchParams::apply("gitops-test"), &Patch::Apply(&kustomization))
        .await
        .expect("apply Kustomization");

    // Revision 1: dev and its test pass, the approval waits, prod follows it.
    let e1 = execution(&fx, "revision 1 waits for approval", |e| {
        e.revision == rev1 && waits_for_approval(e)
    })
    .await;
    wait_versions(
        &fx,
        "revision 1 in dev and kept, not in prod",
        &[Some("1"), None, None, Some("1")],
    )
    .await;
    let pipeline: Pipeline = Api::namespaced(fx.client.clone(), &ns).get("release").await.unwrap();
    assert_eq!(
        argo_health(&pipeline).0,
        "Suspended",
        "Argo CD: waiting for an approval"
    );
    approve(&fx);
    execution(&fx, "revision 1 succeeds", |e| {
        e.id == e1.id && e.phase == ExecutionPhase::Succeeded
    })
    .await;
    wait_versions(
        &fx,
        "revision 1 everywhere",
        &[Some("1"), Some("1"), Some("1"), Some("1")],
    )
    .await;
    eventually(LONG, "Kustomization Ready at revision 1", || async {
        let object = ks.get("app").await.ok()?;
        let ready = flux_condition(&object, "Ready")?.0 == "True";
        (ready && field(&object, &["status", "lastAppliedRevision"])?.as_str()? == rev1).then_some(())
    })
    .await;
    println!("revision 1 in prod after {:?}", started.elapsed());

    // Revision 2 fails in prod: the deployment rolls back and rejects it,
    // the execution fails, and the Kustomization's health says why.
    repo.write("templates/app.yaml", &template("2", true));
    let rev2 = push(&fx, &repo, "revision 2 (bad in prod)").await;
    execution(&fx, "revision 2 waits for approval", |e| {
        e.revision == rev2 && waits_for_approval(e)
    })
    .await;
    approve(&fx);
    let failed = execution(&fx, "revision 2 fails in prod", |e| {
        e.revision == rev2 && e.phase == ExecutionPhase::Failed
    })
    .await;
    println!("revision 2: {:?}", failed.message);
    let deployment: StackDeployment = Api::namespaced(fx.client.clone(), &ns)
        .get("release-prod-app")
        .await
        .expect("prod StackDeployment");
    let status = deployment.status.clone().unwrap_or_default();
    assert!(
        status.rejected_revisions.iter().any(|r| r.revision.revision == rev2),
        "revision 2 rejected: {:?}",
        status.rejected_revisions
    );
    wait_versions(
        &fx,
        "prod rolled back to 1, dev and kept at 2",
        &[Some("2"), Some("1"), Some("1"), Some("2")],
    )
    .await;
    let health = eventually(LONG, "Kustomization health fails on the Pipeline", || async {
        let object = ks.get("app").await.ok()?;
        let (status, reason, message) = flux_condition(&object, "Ready")?;
        (status == "False" && reason == "HealthCheckFailed").then_some(message)
    })
    .await;
    println!("Kustomization: {health}");
    assert!(health.contains("Pipeline/") && health.contains("release"), "{health}");
    let pipeline: Pipeline = Api::namespaced(fx.client.clone(), &ns).get("release").await.unwrap();
    let (argo, why) = argo_health(&pipeline);
    assert_eq!(argo, "Degraded", "{why}");
    assert!(why.starts_with("ExecutionFailed: "), "{why}");

    // git revert: the next execution passes; prod runs revision 1's content.
    support::gitops::git(&repo.work, &["revert", "--no-edit", "HEAD"]);
    let sha = repo.push();
    wait_artifact(&fx.client, &ns, "app", &sha).await;
    let rev3 = format!("main@sha1:{sha}");
    let e3 = execution(&fx, "the revert waits for approval", |e| {
        e.revision == rev3 && waits_for_approval(e)
    })
    .await;
    approve(&fx);
    execution(&fx, "the revert succeeds", |e| {
        e.id == e3.id && e.phase == ExecutionPhase::Succeeded
    })
    .await;
    wait_versions(
        &fx,
        "revision 1 everywhere again",
        &[Some("1"), Some("1"), Some("1"), Some("1")],
    )
    .await;
    eventually(LONG, "Kustomization Ready at the revert", || async {
        let object = ks.get("app").await.ok()?;
        let ready = flux_condition(&object, "Ready")?.0 == "True";
        (ready && field(&object, &["status", "lastAppliedRevision"])?.as_str()? == rev3).then_some(())
    })
    .await;

    // The manifests leave Git: Flux prunes the objects, stackpilot deletes
    // the pipeline's stacks and keeps the Retain one.
    repo.remove("deploy/pipeline.yaml");
    repo.remove("deploy/kept.yaml");
    repo.write("deploy/.keep", "");
    let sha = repo.commit("remove the manifests");
    request_reconcile(&git_repositories(&fx.client, &ns), "app").await;
    wait_artifact(&fx.client, &ns, "app", &sha).await;
    wait_versions(
        &fx,
        "pipeline stacks deleted, kept stays",
        &[None, None, None, Some("1")],
    )
    .await;
    let pipelines: Api<Pipeline> = Api::namespaced(fx.client.clone(), &ns);
    eventually(TIMEOUT, "Pipeline pruned", || async {
        pipelines.get_opt("release").await.ok()?.is_none().then_some(())
    })
    .await;
    fx.wait_gone("kept").await;
    println!("whole flow: {:?}", started.elapsed());
    fx.finish().await;
}
