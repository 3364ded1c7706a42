//! Health as GitOps tools read it, on the test bed:
//! - Flux: a Kustomization with `wait: true` (real kustomize-controller)
//!   over our Stacks and StackDeployments is Ready only once they are, and
//!   fails naming a Stalled one, with our reason (Pipelines: gitops_e2e.rs);
//! - Flux again, for AwsAccounts: an admin Kustomization (cluster-scoped
//!   objects, no targetNamespace) is Ready once they are verified;
//! - Argo CD: the chart's Lua health check (charts/stackpilot/argocd/health.lua),
//!   run by a real Lua 5.4, reads the Stacks the operator produced as
//!   Healthy, Degraded, Progressing and Suspended.
//!
//! Needs the whole test bed (`testbed/up.sh` without `--no-gitops`).

mod support;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::json;
use stackpilot::api::StackDeployment;
use support::eventually;
use support::fixture::{Fixture, TIMEOUT, condition};
use support::gitops::{
    FLUX_TIMEOUT, GitRepo, apply_git_repository, argo_health, field, flux_condition, kustomizations, request_reconcile,
    wait_artifact,
};

fn stack_manifest(name: &str, template: &str) -> String {
    let spec = json!({
        "apiVersion": "stackpilot.dev/v1alpha1", "kind": "Stack",
        "metadata": {"name": name},
        "spec": {"region": "us-east-1", "template": {"body": template}}
    });
    serde_json::to_string_pretty(&spec).unwrap()
}

/// A StackDeployment of the same template to `regions` (one target each).
fn deployment_manifest(name: &str, regions: &[&str]) -> String {
    let targets: Vec<_> = regions
        .iter()
        .enumerate()
        .map(|(i, region)| json!({"name": format!("t{i}"), "region": region}))
        .collect();
    let spec = json!({
        "apiVersion": "stackpilot.dev/v1alpha1", "kind": "StackDeployment",
        "metadata": {"name": name},
        "spec": {"artifact": {"revision": "v1", "template": {"body": QUEUE}}, "targets": targets}
    });
    serde_json::to_string_pretty(&spec).unwrap()
}

/// The Kustomization health rule for one of our kinds (see the chart README).
fn health_rule(kind: &str) -> serde_json::Value {
    json!({
        "apiVersion": "stackpilot.dev/v1alpha1", "kind": kind,
        "current": "has(status.conditions) && status.observedGeneration == metadata.generation && status.conditions.exists(e, e.type == 'Ready' && e.status == 'True')",
        "failed": "has(status.conditions) && status.conditions.exists(e, e.type == 'Stalled' && e.status == 'True')"
    })
}

const QUEUE: &str = "Resources:\n  Queue: {Type: AWS::SQS::Queue}\n";
/// Stalled at once, before any AWS call: IAM without CAPABILITY_IAM.
const ROLE: &str =
    "Resources:\n  Role:\n    Type: AWS::IAM::Role\n    Properties:\n      AssumeRolePolicyDocument: {}\n";

#[tokio::test]
async fn a_waiting_kustomization_follows_stack_health_and_argo_reads_it_too() {
    let fx = Fixture::new("gitops-health").await;
    let ns = fx.ns.name.clone();
    let repo = GitRepo::new("health");
    repo.write("deploy/good.yaml", &stack_manifest("good", QUEUE));
    repo.write(
        "deploy/fleet.yaml",
        &deployment_manifest("fleet", &["us-east-1", "us-west-2"]),
    );
    let first = repo.commit("good stack");
    apply_git_repository(&fx.client, &ns, "app", &repo.url).await;
    wait_artifact(&fx.client, &ns, "app", &first).await;

    let kustomization = json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "app"},
        "spec": {
            "interval": "10m", "path": "./deploy", "prune": true, "wait": true, "timeout": "90s",
            "targetNamespace": ns, "sourceRef": {"kind": "GitRepository", "name": "app"},
            // kstatus takes an object with no status yet for Current: without
            // this, the Kustomization is Ready before stackpilot saw the Stack.
            "healthCheckExprs": [health_rule("Stack"), health_rule("StackDeployment")]
        }
    });
    let ks = kustomizations(&fx.client, &ns);
    ks.patch("app", &PatchParams::apply("gitops-test"), &Patch::Apply(&kustomization))
        .await
        .expect("apply Kustomization");
    let applied = eventually(TIMEOUT, "Kustomization Ready at the first commit", || async {
        let object = ks.get("app").await.ok()?;
        let (status, _, _) = flux_condition(&object, "Ready")?;
        let revision = field(&object, &["status", "lastAppliedRevision"])?.as_str()?;
        (status == "True" && revision == format!("main@sha1:{first}")).then_some(object)
    })
    .await;
    let ready_at = Timestamp::now();
    let good = fx.stacks().get("good").await.expect("Flux applied the Stack");
    let good_ready = condition(&good, "Ready").expect("good has Ready");
    assert_eq!(good_ready.status, "True", "Kustomization Ready only once the Stack is");
    assert!(good_ready.last_transition_time.0 <= ready_at);
    let deployments: kube::Api<StackDeployment> = kube::Api::namespaced(fx.client.clone(), &ns);
    let fleet = deployments
        .get("fleet")
        .await
        .expect("Flux applied the StackDeployment");
    let fleet_ready = fleet
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .expect("fleet has Ready");
    assert_eq!(
        fleet_ready.status, "True",
        "Kustomization Ready only once the StackDeployment is"
    );
    assert!(fleet_ready.last_transition_time.0 <= ready_at);
    println!(
        "Kustomization Ready: {:?}",
        flux_condition(&applied, "Ready").map(|c| c.2)
    );
    assert_eq!(
        argo_health(&good).0,
        "Healthy",
        "Argo CD reads a Ready Stack as Healthy"
    );

    // A Stalled StackDeployment (two targets on one stack) fails the
    // Kustomization's health check, naming it with our reason.
    repo.write(
        "deploy/twin.yaml",
        &deployment_manifest("twin", &["us-east-1", "us-east-1"]),
    );
    let twin_commit = repo.commit("twin targets");
    request_reconcile(&support::gitops::git_repositories(&fx.client, &ns), "app").await;
    let failed = wait_failed(
        &ks,
        "app",
        &twin_commit,
        "Kustomization fails on the Stalled StackDeployment",
    )
    .await;
    println!("Kustomization Ready=False: {failed:?}");
    assert_eq!(failed.0, "HealthCheckFailed", "{failed:?}");
    assert!(
        failed.1.contains("StackDeployment/") && failed.1.contains("twin"),
        "names the StackDeployment: {failed:?}"
    );
    let twin = deployments.get("twin").await.unwrap();
    let (health, message) = argo_health(&twin);
    assert_eq!(health, "Degraded");
    assert!(message.starts_with("DuplicateTarget: "), "{message}");
    repo.remove("deploy/twin.yaml");

    // A Stalled Stack fails the Kustomization's health check.
    repo.write("deploy/bad.yaml", &stack_manifest("bad", ROLE));
    let second = repo.commit("bad stack");
    request_reconcile(&support::gitops::git_repositories(&fx.client, &ns), "app").await;
    let failed = wait_failed(&ks, "app", &second, "Kustomization fails on the Stalled Stack").await;
    println!("Kustomization Ready=False: {failed:?}");
    assert_eq!(failed.0, "HealthCheckFailed", "{failed:?}");
    assert!(
        failed.1.contains("Stack/") && failed.1.contains("bad"),
        "names the Stack: {failed:?}"
    );
    let bad = fx.wait_condition("bad", "Stalled", "True").await;
    assert_eq!(condition(&bad, "Stalled").unwrap().reason, "InsufficientCapabilities");
    let (health, message) = argo_health(&bad);
    assert_eq!(health, "Degraded");
    assert!(message.starts_with("InsufficientCapabilities: "), "{message}");

    // Outside Flux: a suspended Stack, one waiting for approval, one waiting
    // for a dependency.
    fx.apply(
        "paused",
        json!({"region": "us-east-1", "suspend": true, "template": {"body": QUEUE}}),
    )
    .await;
    let paused = fx.wait_condition("paused", "Ready", "False").await;
    assert_eq!(argo_health(&paused).0, "Suspended");
    fx.apply(
        "gated",
        json!({"region": "us-east-1", "changes": {"approval": "Manual"}, "template": {"body": QUEUE}}),
    )
    .await;
    let gated = eventually(TIMEOUT, "gated waits for approval", || async {
        let stack = fx.stacks().get("gated").await.ok()?;
        (condition(&stack, "Ready")?.reason == "ApprovalRequired").then_some(stack)
    })
    .await;
    let (health, message) = argo_health(&gated);
    assert_eq!(health, "Suspended", "{message}");
    assert!(message.starts_with("Waiting for approval"), "{message}");
    fx.apply(
        "waits",
        json!({"region": "us-east-1", "dependsOn": [{"name": "not-there"}], "template": {"body": QUEUE}}),
    )
    .await;
    let waits = eventually(TIMEOUT, "waits waits for its dependency", || async {
        let stack = fx.stacks().get("waits").await.ok()?;
        (condition(&stack, "Ready")?.reason == "DependencyNotReady").then_some(stack)
    })
    .await;
    let (health, message) = argo_health(&waits);
    assert_eq!(health, "Progressing");
    assert!(message.contains("DependencyNotReady"), "{message}");
    // Before the operator has written any status.
    let mut fresh = waits.clone();
    fresh.status = None;
    assert_eq!(argo_health(&fresh).0, "Progressing");

    // Fixing Git fixes the Kustomization.
    repo.remove("deploy/bad.yaml");
    let third = repo.commit("drop the bad stack");
    request_reconcile(&support::gitops::git_repositories(&fx.client, &ns), "app").await;
    eventually(TIMEOUT, "Kustomization Ready again", || async {
        let object = ks.get("app").await.ok()?;
        let (status, _, _) = flux_condition(&object, "Ready")?;
        let revision = field(&object, &["status", "lastAppliedRevision"])?.as_str()?;
        (status == "True" && revision == format!("main@sha1:{third}")).then_some(())
    })
    .await;
    fx.wait_gone("bad").await;
    fx.finish().await;
}

/// Waits until the Kustomization `name` has tried `commit` and is not Ready
/// for a reason other than Progressing; its (reason, message).
async fn wait_failed(ks: &Api<DynamicObject>, name: &str, commit: &str, what: &str) -> (String, String) {
    eventually(FLUX_TIMEOUT * 3, what, || async {
        let object = ks.get(name).await.ok()?;
        let (status, reason, message) = flux_condition(&object, "Ready")?;
        let attempted = field(&object, &["status", "lastAttemptedRevision"])?.as_str()?;
        (status == "False" && attempted == format!("main@sha1:{commit}") && reason != "Progressing")
            .then_some((reason, message))
    })
    .await
}

/// An AwsAccount manifest labelled for this test's operator (cluster-scoped,
/// so named after the test namespace).
fn account_manifest(name: &str, ns: &str, account_id: &str) -> String {
    let account = json!({
        "apiVersion": "stackpilot.dev/v1alpha1", "kind": "AwsAccount",
        "metadata": {"name": name, "labels": {"stackpilot.dev/test-namespace": ns}},
        "spec": {"accountId": account_id}
    });
    serde_json::to_string_pretty(&account).unwrap()
}

/// AwsAccounts are cluster-scoped, so an admin's Kustomization of its own
/// (no targetNamespace) applies them: it is Ready once LocalStack's STS
/// verified them, and fails naming an account whose id is wrong.
#[tokio::test]
async fn a_kustomization_of_aws_accounts_follows_their_verification() {
    let fx = Fixture::new("gitops-acct").await;
    let ns = fx.ns.name.clone();
    let (good, wrong) = (format!("{ns}-good"), format!("{ns}-wrong"));
    let repo = GitRepo::new("accounts");
    // LocalStack puts the operator's own credentials in 000000000000.
    repo.write("accounts/good.yaml", &account_manifest(&good, &ns, "000000000000"));
    let first = repo.commit("good account");
    apply_git_repository(&fx.client, &ns, "admin", &repo.url).await;
    wait_artifact(&fx.client, &ns, "admin", &first).await;
    let kustomization = json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "accounts"},
        "spec": {
            "interval": "10m", "path": "./accounts", "prune": true, "wait": true, "timeout": "90s",
            "sourceRef": {"kind": "GitRepository", "name": "admin"},
            "healthCheckExprs": [health_rule("AwsAccount")]
        }
    });
    let ks = kustomizations(&fx.client, &ns);
    ks.patch(
        "accounts",
        &PatchParams::apply("gitops-test"),
        &Patch::Apply(&kustomization),
    )
    .await
    .expect("apply Kustomization");
    eventually(TIMEOUT, "Kustomization Ready once the account is verified", || async {
        let object = ks.get("accounts").await.ok()?;
        let (status, _, _) = flux_condition(&object, "Ready")?;
        let revision = field(&object, &["status", "lastAppliedRevision"])?.as_str()?;
        (status == "True" && revision == format!("main@sha1:{first}")).then_some(())
    })
    .await;
    let accounts: kube::Api<stackpilot::api::AwsAccount> = kube::Api::all(fx.client.clone());
    let verified = accounts.get(&good).await.expect("Flux applied the AwsAccount");
    assert_eq!(argo_health(&verified).0, "Healthy");

    repo.write("accounts/wrong.yaml", &account_manifest(&wrong, &ns, "123456789012"));
    let second = repo.commit("wrong account id");
    request_reconcile(&support::gitops::git_repositories(&fx.client, &ns), "admin").await;
    let failed = wait_failed(&ks, "accounts", &second, "Kustomization fails on the wrong account").await;
    println!("Kustomization Ready=False: {failed:?}");
    assert_eq!(failed.0, "HealthCheckFailed", "{failed:?}");
    assert!(
        failed.1.contains("AwsAccount/") && failed.1.contains(&wrong),
        "names the AwsAccount: {failed:?}"
    );
    let refused = accounts.get(&wrong).await.unwrap();
    let (health, message) = argo_health(&refused);
    assert_eq!(health, "Degraded");
    assert!(message.starts_with("WrongAccount: "), "{message}");

    // Deleting the Kustomization prunes what it applied (prune: true).
    ks.delete("accounts", &Default::default())
        .await
        .expect("delete Kustomization");
    eventually(TIMEOUT, "the accounts pruned", || async {
        let left = accounts.get_opt(&good).await.ok()?.is_some() || accounts.get_opt(&wrong).await.ok()?.is_some();
        (!left).then_some(())
    })
    .await;
    fx.finish().await;
}
