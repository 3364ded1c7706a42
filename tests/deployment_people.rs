//! What people do with a StackDeployment, end to end on the test bed
//! (kube-apiserver and LocalStack): the fleet preview and a revision-bound
//! approval; the kept revision history, `spec.rollbackTo`, and the CLI
//! (the operator binary, also as the kubectl plugin `kubectl stackpilot`).
//! Stack contents are checked in LocalStack with the SDK.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use stackpilot::api::{DeploymentPhase, RolloutPhase, WavePhase};
use support::deployment::{
    Bed, OWN_ACCOUNT, REGIONS, condition, every_placement, targets, visibility, wait_visibility,
};
use support::{binary, unique_suffix};

/// A queue whose visibility timeout is the parameter: a parameter change
/// is one Modify in each target's change set.
const QUEUE: &str = "Parameters:\n  Visibility: {Type: Number}\nResources:\n  Queue:\n    Type: AWS::SQS::Queue\n    Properties: {VisibilityTimeout: !Ref Visibility}\n";

fn queue(revision: &str, visibility: &str) -> Value {
    json!({"revision": revision, "template": {"body": QUEUE},
        "parameters": [{"name": "Visibility", "value": visibility}]})
}

async fn executions(t: &Bed) -> f64 {
    t.operator
        .metric("stackpilot_aws_calls_total", &["ExecuteChangeSet", "\"ok\""])
        .await
}

#[tokio::test]
async fn manual_approval_previews_every_target_and_binds_to_one_revision() {
    let mut t = Bed::new("sdep-approve").await;
    let endpoint = t.endpoint();
    let (own, other) = t.two_accounts().await;
    let stack_name = format!("sdep-{}", unique_suffix());
    let spec = |artifact: Value, approval: &str| {
        json!({"artifact": artifact, "stackName": stack_name, "targets": targets(&own, &other),
            "approval": approval, "strategy": {"type": "Rolling", "rolling": {"maxConcurrent": 3}}})
    };
    t.apply("web", spec(queue("v1", "30"), "Automatic")).await;
    t.wait_phase("web", DeploymentPhase::Ready, "v1").await;
    wait_visibility(&endpoint, &stack_name, &every_placement(), "30").await;
    let executed = executions(&t).await;
    assert_eq!(executed, 6.0, "one execution per target for v1");

    // v2 under Manual: every target's change set is planned, none runs.
    t.apply("web", spec(queue("v2", "45"), "Manual")).await;
    let waiting = t
        .wait_status("web", "v2's preview complete", |s| {
            s.phase == Some(DeploymentPhase::WaitingForApproval)
                && s.preview
                    .as_ref()
                    .is_some_and(|p| p.revision.revision == "v2" && p.complete && p.targets.len() == 6)
        })
        .await;
    let (health, message) = support::gitops::argo_health(&waiting);
    assert_eq!(health, "Suspended", "Argo CD's check (the chart's Lua): {message}");
    let status = waiting.status.clone().unwrap();
    let preview = status.preview.as_ref().unwrap();
    for row in &preview.targets {
        assert!(row.change_set.is_some(), "{row:?}");
        assert_eq!((row.adds, row.modifies, row.removes), (0, 1, 0), "{row:?}");
    }
    assert_eq!(preview.modifies, 6);
    let a_hash = status.update_revision.clone().unwrap().hash;
    let approval = condition(&waiting, "ApprovalRequired").expect("ApprovalRequired");
    assert_eq!(approval.status, "True");
    assert!(approval.message.contains(&a_hash), "{}", approval.message);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(executions(&t).await, executed, "nothing executed before approval");
    for (key, region) in every_placement() {
        assert_eq!(
            visibility(&endpoint, key, region, &stack_name).await.as_deref(),
            Some("30")
        );
    }

    // The artifact changes while v2 waits; an approval of v2 does not
    // release v3.
    t.apply("web", spec(queue("v3", "60"), "Manual")).await;
    let waiting = t
        .wait_status("web", "v3's preview complete", |s| {
            s.phase == Some(DeploymentPhase::WaitingForApproval)
                && s.preview
                    .as_ref()
                    .is_some_and(|p| p.revision.revision == "v3" && p.complete)
        })
        .await;
    let b_hash = waiting.status.unwrap().update_revision.unwrap().hash;
    assert_ne!(a_hash, b_hash);
    t.annotate("web", "stackpilot.dev/approve-revision", Some(&a_hash))
        .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let d = t.get("web").await;
    let status = d.status.clone().unwrap();
    assert_eq!(status.phase, Some(DeploymentPhase::WaitingForApproval));
    assert!(!status.rollout.unwrap().approved);
    let approval = condition(&d, "ApprovalRequired").expect("ApprovalRequired");
    assert!(
        approval.message.contains(&a_hash) && approval.message.contains("not this one"),
        "{}",
        approval.message
    );
    assert_eq!(
        executions(&t).await,
        executed,
        "an approval of v2 executes nothing of v3"
    );
    for (key, region) in every_placement() {
        assert_eq!(
            visibility(&endpoint, key, region, &stack_name).await.as_deref(),
            Some("30")
        );
    }
    // The CLI refuses to approve a revision that does not wait.
    let refused = cli(&t, &["approve", "stackdeployment/web", "--revision", &a_hash]);
    assert!(!refused.ok && refused.err.contains("does not wait"), "{refused:?}");
    let approved = cli(&t, &["approve", "stackdeployment/web", "--revision", &b_hash]);
    assert!(approved.ok, "{approved:?}");
    let ready = t.wait_phase("web", DeploymentPhase::Ready, "v3").await;
    assert_eq!(ready.status.unwrap().stable_revision.unwrap().revision, "v3");
    wait_visibility(&endpoint, &stack_name, &every_placement(), "60").await;
    assert_eq!(
        executions(&t).await,
        executed + 6.0,
        "each target executed v3 once, v2 never"
    );
    t.finish().await;
}

/// What the binary printed, and whether it succeeded.
#[derive(Debug)]
struct Ran {
    ok: bool,
    out: String,
    err: String,
}

fn cli(t: &Bed, args: &[&str]) -> Ran {
    run(std::process::Command::new(binary()), t, args)
}

fn run(mut command: std::process::Command, t: &Bed, args: &[&str]) -> Ran {
    let output = command
        .args(args)
        .args(["-n", &t.ns.name])
        .env("KUBECONFIG", &t.bed.kubeconfig)
        .output()
        .expect("run the CLI");
    Ran {
        ok: output.status.success(),
        out: String::from_utf8_lossy(&output.stdout).into_owned(),
        err: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Waits until every target's stack shows `want`.
async fn at(endpoint: &str, stack: &str, want: &str) {
    let placements: Vec<(&str, &str)> = REGIONS[..2].iter().map(|r| (OWN_ACCOUNT, *r)).collect();
    wait_visibility(endpoint, stack, &placements, want).await;
}

#[tokio::test]
async fn history_rollback_and_the_cli() {
    let mut t = Bed::new("sdep-history").await;
    let endpoint = t.endpoint();
    let own = t.account("own", json!({"accountId": OWN_ACCOUNT})).await;
    let list: Vec<Value> = REGIONS[..2]
        .iter()
        .map(|r| json!({"name": r.replace('-', ""), "region": r, "accountRef": {"name": own}}))
        .collect();
    let stack_name = format!("sdep-{}", unique_suffix());
    let spec = |artifact: Value, extra: Value| {
        let mut spec = json!({"artifact": artifact, "stackName": stack_name, "targets": list});
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            spec[k] = v;
        }
        spec
    };
    // Five revisions: three kept besides the current one.
    for n in 1..=5 {
        let revision = format!("v{n}");
        t.apply("web", spec(queue(&revision, &format!("{}", 10 * n)), json!({})))
            .await;
        t.wait_phase("web", DeploymentPhase::Ready, &revision).await;
    }
    at(&endpoint, &stack_name, "50").await;
    let kept = t.controller_revisions().await;
    let mut labels: Vec<String> = kept
        .iter()
        .filter_map(|r| r.metadata.labels.as_ref()?.get("stackpilot.dev/revision").cloned())
        .collect();
    labels.sort();
    assert_eq!(labels, ["v2", "v3", "v4", "v5"], "3 besides the current");
    let d = t.get("web").await;
    let history: Vec<String> = d.status.unwrap().history.into_iter().map(|h| h.revision).collect();
    assert_eq!(history, ["v5", "v4", "v3", "v2"], "newest first");
    let shown = cli(&t, &["history", "stackdeployment/web"]);
    assert!(shown.ok, "{shown:?}");
    let lines: Vec<&str> = shown.out.lines().collect();
    for label in ["v5", "v4", "v3", "v2"] {
        assert!(lines.iter().any(|l| l.contains(label)), "{label} in:\n{}", shown.out);
    }

    // The CLI refuses what does not apply, in one line.
    let promote = cli(&t, &["promote", "stackdeployment/web"]);
    assert!(!promote.ok, "{promote:?}");
    assert_eq!(promote.err.trim().lines().count(), 1, "{promote:?}");
    assert!(promote.err.contains("nothing is paused"), "{promote:?}");
    let unknown = cli(&t, &["rollback", "stackdeployment/web", "--to", "v1"]);
    assert!(!unknown.ok && unknown.err.contains("v1 is not kept"), "{unknown:?}");
    assert_eq!(unknown.err.trim().lines().count(), 1, "{unknown:?}");

    // spec.rollbackTo (GitOps): every stack goes back to v3; clearing it
    // rolls the artifact (v5) out again.
    t.apply(
        "web",
        spec(queue("v5", "50"), json!({"rollbackTo": {"revision": "v3"}})),
    )
    .await;
    t.wait_status("web", "rolled back to v3 from Git", |s| {
        s.stable_revision.as_ref().is_some_and(|r| r.revision == "v3")
            && s.rollout.as_ref().is_some_and(|r| r.phase == RolloutPhase::Succeeded)
    })
    .await;
    at(&endpoint, &stack_name, "30").await;
    t.apply("web", spec(queue("v5", "50"), json!({}))).await;
    t.wait_phase("web", DeploymentPhase::Ready, "v5").await;
    at(&endpoint, &stack_name, "50").await;

    // `stackpilot rollback --to v4`: v5 is rejected, every stack runs v4.
    let rolled = cli(&t, &["rollback", "stackdeployment/web", "--to", "v4"]);
    assert!(rolled.ok, "{rolled:?}");
    let d = t
        .wait_status("web", "rolled back to v4 by the CLI", |s| {
            s.phase == Some(DeploymentPhase::Rejected)
                && s.stable_revision.as_ref().is_some_and(|r| r.revision == "v4")
                && s.rollout.as_ref().is_some_and(|r| r.phase == RolloutPhase::Succeeded)
        })
        .await;
    assert_eq!(d.status.unwrap().rejected_revisions[0].revision.revision, "v5");
    at(&endpoint, &stack_name, "40").await;

    // v6 one target at a time with a manual pause after the first: status
    // shows the tree, pause holds the next wave, promote ends the pause.
    let canary = json!({"type": "Canary", "canary": {"steps": [{"targets": ["useast1"], "pause": {}}]}});
    t.apply("web", spec(queue("v6", "60"), json!({"strategy": canary})))
        .await;
    t.wait_status("web", "v6's canary paused", |s| {
        s.phase == Some(DeploymentPhase::Paused) && s.waves.first().is_some_and(|w| w.phase == WavePhase::Paused)
    })
    .await;
    let status = cli(&t, &["status", "stackdeployment/web"]);
    assert!(status.ok, "{status:?}");
    for words in [
        "StackDeployment web: Paused",
        "wave 0 [Paused]",
        "useast1",
        "euwest1",
        "rejected v5",
    ] {
        assert!(status.out.contains(words), "{words:?} in:\n{}", status.out);
    }
    assert!(cli(&t, &["pause", "stackdeployment/web"]).ok);
    let again = cli(&t, &["pause", "stackdeployment/web"]);
    assert!(!again.ok && again.err.contains("already paused"), "{again:?}");
    assert!(cli(&t, &["promote", "stackdeployment/web"]).ok);
    // Promoted, but paused by request: the second wave does not start.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let d = t.get("web").await;
    let waves = d.status.unwrap().waves;
    assert_eq!(waves[1].phase, WavePhase::Pending, "{waves:?}");
    assert_eq!(
        visibility(&endpoint, OWN_ACCOUNT, "eu-west-1", &stack_name)
            .await
            .as_deref(),
        Some("40")
    );
    // As a kubectl plugin.
    let dir = tempdir();
    std::os::unix::fs::symlink(binary(), dir.join("kubectl-stackpilot")).expect("symlink");
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut kubectl = std::process::Command::new("kubectl");
    kubectl.env("PATH", path);
    let resumed = run(kubectl, &t, &["stackpilot", "resume", "stackdeployment/web"]);
    assert!(resumed.ok && resumed.out.contains("resumed"), "{resumed:?}");
    t.wait_phase("web", DeploymentPhase::Ready, "v6").await;
    at(&endpoint, &stack_name, "60").await;
    let _ = std::fs::remove_dir_all(&dir);
    t.finish().await;
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sdep-plugin-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
