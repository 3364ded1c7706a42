//! Git and Flux on the test bed: a working copy that pushes to the test
//! bed's Git server, and the Flux objects that follow it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use super::{eventually, unique_suffix};

pub const FLUX_TIMEOUT: Duration = Duration::from_secs(60);
pub const SOURCE_GROUP: &str = "source.toolkit.fluxcd.io";
pub const KUSTOMIZE_GROUP: &str = "kustomize.toolkit.fluxcd.io";

/// A variable of the test bed's env file (the environment wins), or a panic naming it.
pub fn bed_var(key: &str) -> String {
    if let Ok(value) = std::env::var(key) {
        return value;
    }
    let dir = std::env::var("STACKPILOT_TESTBED_DIR").unwrap_or_else(|_| "/tmp/stackpilot-testbed".into());
    let file = Path::new(&dir).join("env");
    let vars: HashMap<String, String> = std::fs::read_to_string(&file)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().trim_start_matches("export ").split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches(['"', '\'']).to_string()))
        .collect();
    vars.get(key).cloned().unwrap_or_else(|| {
        panic!(
            "{key} is not set and {} has no value for it: start the whole test bed (testbed/up.sh, without --no-gitops)",
            file.display()
        )
    })
}

/// The test bed's state directory (source-controller keeps artifacts under it).
pub fn bed_dir() -> PathBuf {
    PathBuf::from(std::env::var("STACKPILOT_TESTBED_DIR").unwrap_or_else(|_| "/tmp/stackpilot-testbed".into()))
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=testbed", "-c", "user.email=testbed@example.invalid"])
        .args(args)
        .output()
        .expect("git is on PATH");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// A working copy whose `main` is pushed to a new repository on the test
/// bed's Git server; removed when dropped.
pub struct GitRepo {
    pub work: PathBuf,
    /// The clone URL source-controller reads.
    pub url: String,
}

impl GitRepo {
    pub fn new(prefix: &str) -> GitRepo {
        let suffix = unique_suffix();
        let work = std::env::temp_dir().join(format!("stackpilot-{prefix}-{suffix}"));
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        let url = format!("{}/{prefix}-{suffix}.git", bed_var("STACKPILOT_TEST_GIT_URL"));
        GitRepo { work, url }
    }

    pub fn write(&self, path: &str, content: &str) {
        let file = self.work.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    }

    pub fn remove(&self, path: &str) {
        std::fs::remove_file(self.work.join(path)).unwrap();
    }

    /// Commits everything and pushes `main`; the new commit's sha.
    pub fn commit(&self, message: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "--allow-empty", "-m", message]);
        self.push()
    }

    pub fn push(&self) -> String {
        git(&self.work, &["push", "-q", "-f", &self.url, "main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

impl Drop for GitRepo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

pub fn flux_api(client: &Client, ns: &str, group: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind), plural);
    Api::namespaced_with(client.clone(), ns, &resource)
}

pub fn git_repositories(client: &Client, ns: &str) -> Api<DynamicObject> {
    flux_api(client, ns, SOURCE_GROUP, "GitRepository", "gitrepositories")
}

pub fn kustomizations(client: &Client, ns: &str) -> Api<DynamicObject> {
    flux_api(client, ns, KUSTOMIZE_GROUP, "Kustomization", "kustomizations")
}

/// A GitRepository following `main` of `url`.
pub async fn apply_git_repository(client: &Client, ns: &str, name: &str, url: &str) {
    let repo = json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": name},
        "spec": {"url": url, "interval": "10m", "ref": {"branch": "main"}}
    });
    git_repositories(client, ns)
        .patch(name, &PatchParams::apply("gitops-test"), &Patch::Apply(&repo))
        .await
        .expect("apply GitRepository");
}

/// Asks Flux to look at the object now (as `flux reconcile` does); the
/// token it echoes in `status.lastHandledReconcileAt` once done.
pub async fn request_reconcile(api: &Api<DynamicObject>, name: &str) -> String {
    let token = unique_suffix();
    let requested = json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": token}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&requested))
        .await
        .expect("request a reconcile");
    token
}

/// Pushed `sha` reaches the GitRepository's artifact (a reconcile is requested first).
pub async fn wait_artifact(client: &Client, ns: &str, name: &str, sha: &str) -> DynamicObject {
    let repos = git_repositories(client, ns);
    let token = request_reconcile(&repos, name).await;
    let revision = format!("main@sha1:{sha}");
    // The request handled too: source-controller rewrites the artifact file
    // then, so a test that tampers with it must not run before.
    eventually(FLUX_TIMEOUT, &format!("GitRepository {name} at {revision}"), || async {
        let object = repos.get(name).await.ok()?;
        let handled = field(&object, &["status", "lastHandledReconcileAt"])?.as_str()? == token;
        (handled && field(&object, &["status", "artifact", "revision"])?.as_str()? == revision).then_some(object)
    })
    .await
}

pub fn field<'a>(object: &'a DynamicObject, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(&object.data, |v, key| v.get(key))
}

/// The object's condition `type_`: (status, reason, message).
pub fn flux_condition(object: &DynamicObject, type_: &str) -> Option<(String, String, String)> {
    field(object, &["status", "conditions"])?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            let text = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (text("status"), text("reason"), text("message"))
        })
}

pub fn ready(object: &DynamicObject) -> Option<String> {
    flux_condition(object, "Ready").map(|(status, _, _)| status)
}

/// Argo CD's view of `object`: the chart's health check (Lua) run by a real
/// Lua 5.4 interpreter, as Argo CD runs it (the object as global `obj`).
/// Returns (status, message).
pub fn argo_health(object: &impl serde::Serialize) -> (String, String) {
    use mlua::LuaSerdeExt;
    let script = std::fs::read_to_string(super::repo_path("charts/stackpilot/argocd/health.lua"))
        .expect("the chart's Argo CD health check");
    let lua = mlua::Lua::new();
    let value = serde_json::to_value(object).expect("object as JSON");
    // JSON null is nil in Argo CD's Lua, not a sentinel value.
    let options = mlua::SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false);
    let obj = lua.to_value_with(&value, options).expect("object as Lua");
    lua.globals().set("obj", obj).unwrap();
    let health: mlua::Table = lua.load(&script).eval().expect("the health check runs");
    (
        health.get("status").expect("status"),
        health.get::<Option<String>>("message").unwrap().unwrap_or_default(),
    )
}
