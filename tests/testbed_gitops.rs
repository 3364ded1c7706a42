//! The test bed's Pod and GitOps parts, through kube-rs, as the operator's tests will use them:
//! - a Job whose Pod carries `stackpilot.dev/test-result: succeed` ends Complete and one with
//!   `fail` ends Failed, through the real Job controller, kube-scheduler and KWOK (no container
//!   runs: KWOK writes the Pod status), and a `run` Pod stays Running;
//! - a git push to the test bed's Git server is picked up by a Flux GitRepository
//!   (`status.artifact.revision` is `main@sha1:<sha>`, the artifact's sha256 is its digest);
//! - a Flux Kustomization applies a ConfigMap from that repository and becomes Ready.
//!
//! Needs the whole test bed (`testbed/up.sh` without `--no-gitops`).

mod support;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::gitops::{bed_var, field, flux_api, git, ready};
use support::{TestBed, TestNamespace, eventually, unique_suffix};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `body` in a namespace of its own, then deletes the namespace whether it passed or not.
async fn in_namespace<F, Fut>(prefix: &str, body: F)
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let client = TestBed::get().client().await;
    let ns = TestNamespace::new(&client, prefix).await;
    let result = AssertUnwindSafe(body(client, ns.name.clone())).catch_unwind().await;
    ns.cleanup().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn job(name: &str, result: &str) -> Job {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": {"stackpilot.dev/test-result": result}},
                "spec": {
                    "restartPolicy": "Never",
                    // Never pulled: KWOK runs nothing.
                    "containers": [{"name": "main", "image": "example.invalid/never-pulled:1"}]
                }
            }
        }
    }))
    .unwrap()
}

/// The types of the Job's conditions that are True, once it has Complete or Failed.
async fn finished_conditions(jobs: &Api<Job>, name: &str) -> Vec<String> {
    eventually(TIMEOUT, &format!("Job {name} Complete or Failed"), || async {
        let job = jobs.get(name).await.ok()?;
        let types: Vec<String> = job
            .status?
            .conditions?
            .into_iter()
            .filter(|c| c.status == "True")
            .map(|c| c.type_)
            .collect();
        types.iter().any(|t| t == "Complete" || t == "Failed").then_some(types)
    })
    .await
}

#[tokio::test]
async fn job_pods_succeed_or_fail_by_their_test_result_marker() {
    let node = bed_var("STACKPILOT_TEST_KWOK_NODE");
    in_namespace("tb-jobs", |client, ns| async move {
        let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        for (marker, condition, phase, exit_code) in
            [("succeed", "Complete", "Succeeded", 0), ("fail", "Failed", "Failed", 1)]
        {
            let name = format!("job-{marker}");
            jobs.create(&PostParams::default(), &job(&name, marker))
                .await
                .expect("create Job");
            let conditions = finished_conditions(&jobs, &name).await;
            assert!(
                conditions.iter().any(|c| c == condition),
                "Job {name}: expected condition {condition}, True conditions are {conditions:?}"
            );
            let other = if condition == "Complete" { "Failed" } else { "Complete" };
            assert!(
                !conditions.iter().any(|c| c == other),
                "Job {name} is also {other}: {conditions:?}"
            );

            let list = pods
                .list(&ListParams::default().labels(&format!("job-name={name}")))
                .await
                .unwrap();
            assert_eq!(list.items.len(), 1, "backoffLimit 0: one Pod for {name}");
            let pod = &list.items[0];
            let spec = pod.spec.as_ref().unwrap();
            assert_eq!(
                spec.node_name.as_deref(),
                Some(node.as_str()),
                "{name}'s Pod is on the KWOK node"
            );
            let status = pod.status.as_ref().unwrap();
            assert_eq!(status.phase.as_deref(), Some(phase), "{name}'s Pod phase");
            let terminated = status.container_statuses.as_ref().unwrap()[0]
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .unwrap_or_else(|| panic!("{name}'s container is not terminated: {status:?}"));
            assert_eq!(terminated.exit_code, exit_code, "{name}'s container exit code");
        }

        // `run` keeps a Pod Running (past the 1 s the succeed/fail rules wait).
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "runs", "labels": {"stackpilot.dev/test-result": "run"}},
            "spec": {"containers": [{"name": "main", "image": "example.invalid/never-pulled:1"}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.expect("create Pod");
        let phase = |p: Pod| p.status.and_then(|s| s.phase);
        eventually(TIMEOUT, "Pod runs is Running", || async {
            (phase(pods.get("runs").await.ok()?).as_deref() == Some("Running")).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            phase(pods.get("runs").await.unwrap()).as_deref(),
            Some("Running"),
            "a run Pod stays Running"
        );
    })
    .await;
}

/// Commits deploy/cm.yaml (a ConfigMap `from-git` with `value`), pushes it, returns the sha.
fn commit_and_push(work: &Path, repo_url: &str, value: &str) -> String {
    std::fs::create_dir_all(work.join("deploy")).unwrap();
    std::fs::write(
        work.join("deploy/cm.yaml"),
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: from-git}}\ndata: {{value: \"{value}\"}}\n"),
    )
    .unwrap();
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", &format!("value {value}")]);
    git(work, &["push", "-q", repo_url, "main"]);
    git(work, &["rev-parse", "HEAD"])
}

/// GET over HTTP/1.0 (no chunking), for the artifact's bytes.
async fn download(url: &str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("an http:// artifact URL");
    let (host, path) = rest.split_once('/').expect("a path");
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .expect("connect to the artifact server");
    stream
        .write_all(format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP headers");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "GET {url}: {head}"
    );
    response[split + 4..].to_vec()
}

#[tokio::test]
async fn git_push_reaches_flux_source_and_kustomize_controllers() {
    let git_url = bed_var("STACKPILOT_TEST_GIT_URL");
    let storage_url = bed_var("STACKPILOT_TEST_FLUX_STORAGE_URL");
    let suffix = unique_suffix();
    // The working copy goes when this test ends, passed or not.
    let work = WorkDir(std::env::temp_dir().join(format!("stackpilot-gitops-{suffix}")));
    let repo_url = format!("{git_url}/tb-{suffix}.git");
    let work_for_body = work.0.clone();
    in_namespace("tb-gitops", |client, ns| async move {
        let work = work_for_body;
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        let first = commit_and_push(&work, &repo_url, "one");

        let repos = flux_api(
            &client,
            &ns,
            "source.toolkit.fluxcd.io",
            "GitRepository",
            "gitrepositories",
        );
        let repo = json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": "app"},
            "spec": {"url": repo_url, "interval": "10m", "ref": {"branch": "main"}}
        });
        repos
            .patch("app", &PatchParams::apply("testbed-gitops"), &Patch::Apply(&repo))
            .await
            .expect("apply GitRepository");
        let revision_is = |sha: String| {
            let repos = repos.clone();
            async move {
                eventually(TIMEOUT, &format!("GitRepository revision main@sha1:{sha}"), || async {
                    let object = repos.get("app").await.ok()?;
                    (field(&object, &["status", "artifact", "revision"])?.as_str()? == format!("main@sha1:{sha}"))
                        .then_some(object)
                })
                .await
            }
        };
        revision_is(first.clone()).await;

        // A second push; a reconcile request instead of waiting out the interval.
        let second = commit_and_push(&work, &repo_url, "two");
        assert_ne!(first, second);
        let requested = json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": suffix}}});
        repos
            .patch("app", &PatchParams::default(), &Patch::Merge(&requested))
            .await
            .expect("request a reconcile");
        let object = revision_is(second.clone()).await;

        let url = field(&object, &["status", "artifact", "url"])
            .and_then(Value::as_str)
            .expect("artifact url");
        let digest = field(&object, &["status", "artifact", "digest"])
            .and_then(Value::as_str)
            .expect("artifact digest");
        assert!(
            url.starts_with(&format!("{storage_url}/")),
            "artifact {url} is served by {storage_url}"
        );
        let bytes = download(url).await;
        assert!(!bytes.is_empty(), "artifact {url} is empty");
        assert_eq!(
            format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
            digest,
            "digest of {url}"
        );
        assert_eq!(ready(&object).as_deref(), Some("True"), "GitRepository Ready");

        let kustomizations = flux_api(
            &client,
            &ns,
            "kustomize.toolkit.fluxcd.io",
            "Kustomization",
            "kustomizations",
        );
        let kustomization = json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": "app"},
            "spec": {
                "interval": "10m", "path": "./deploy", "prune": true, "targetNamespace": ns,
                "sourceRef": {"kind": "GitRepository", "name": "app"}
            }
        });
        kustomizations
            .patch(
                "app",
                &PatchParams::apply("testbed-gitops"),
                &Patch::Apply(&kustomization),
            )
            .await
            .expect("apply Kustomization");
        let applied = eventually(TIMEOUT, "Kustomization Ready", || async {
            let object = kustomizations.get("app").await.ok()?;
            (ready(&object).as_deref() == Some("True")).then_some(object)
        })
        .await;
        assert_eq!(
            field(&applied, &["status", "lastAppliedRevision"]).and_then(Value::as_str),
            Some(format!("main@sha1:{second}").as_str()),
            "Kustomization {} applied the pushed revision",
            applied.name_any()
        );
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let cm = configmaps.get("from-git").await.expect("ConfigMap from-git applied");
        assert_eq!(
            cm.data.unwrap_or_default().get("value").map(String::as_str),
            Some("two")
        );
    })
    .await;
}

struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
