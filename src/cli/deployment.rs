//! `stackpilot status|approve|promote|pause|resume|abort|retry|rollback|history
//! stackdeployment/<name>`: read a StackDeployment, or set the request
//! annotation the controller acts on (with a request token, so the same
//! request twice is two requests). Each command refuses what does not apply.

use std::fmt::Write as _;

use anyhow::{Context, bail};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::api::{StackDeployment, StackDeploymentStatus};
use crate::deployment::plan::{
    ABORT_ANNOTATION, APPROVE_REVISION_ANNOTATION, DeploymentPhase, PAUSE_ANNOTATION, PROMOTE_ANNOTATION,
    PROMOTE_FULL_ANNOTATION, RETRY_ANNOTATION, ROLLBACK_TO_ANNOTATION, RolloutPhase, WavePhase,
};

/// What to do with it.
#[derive(Debug, Clone)]
pub enum Request {
    Status,
    History,
    /// Approve the revision waiting (only `revision`, when given).
    Approve {
        revision: Option<String>,
    },
    Promote {
        full: bool,
    },
    Pause,
    Resume,
    Abort,
    Retry,
    RollbackTo(String),
}

pub async fn run(name: &str, namespace: Option<&str>, request: Request) -> anyhow::Result<String> {
    let client = Client::try_default().await.context("no Kubernetes connection")?;
    let namespace = namespace
        .map(str::to_string)
        .unwrap_or_else(|| client.default_namespace().to_string());
    let api: Api<StackDeployment> = Api::namespaced(client, &namespace);
    let object = match api.get_opt(name).await {
        Ok(Some(object)) => object,
        Ok(None) => bail!("stackdeployment {namespace}/{name} not found"),
        Err(kube::Error::Api(status)) => bail!("stackdeployment {namespace}/{name}: {}", status.message),
        Err(error) => bail!("stackdeployment {namespace}/{name}: {error}"),
    };
    let status = object.status.clone().unwrap_or_default();
    let who = format!("stackdeployment {namespace}/{name}");
    let (key, value, done) = match request {
        Request::Status => return Ok(tree(&object, &status)),
        Request::History => return Ok(history(&status)),
        other => annotation(&object, &status, &who, other)?,
    };
    let patch = json!({"metadata": {"annotations": {key: value}}});
    api.patch(&object.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("{who}: could not set {key}"))?;
    Ok(done)
}

/// A fresh request token.
fn token() -> String {
    Timestamp::now().to_string()
}

/// The annotation to set for `request`, or why it does not apply now.
fn annotation(
    object: &StackDeployment,
    status: &StackDeploymentStatus,
    who: &str,
    request: Request,
) -> anyhow::Result<(&'static str, Value, String)> {
    let rollout = status.rollout.as_ref();
    let active = rollout.filter(|r| r.phase.is_active());
    let paused = object.annotations().contains_key(PAUSE_ANNOTATION);
    Ok(match request {
        Request::Approve { revision } => {
            let Some(r) = rollout.filter(|r| r.phase == RolloutPhase::WaitingForApproval) else {
                bail!("{who}: no revision waits for approval (phase {})", phase(status));
            };
            if let Some(wanted) = revision.filter(|w| w != &r.revision.hash && w != &r.revision.revision) {
                bail!(
                    "{who}: revision {wanted} does not wait for approval; {} ({}) does",
                    r.revision.revision,
                    r.revision.hash
                );
            }
            (
                APPROVE_REVISION_ANNOTATION,
                json!(r.revision.hash),
                format!("{who}: approved {} ({})", r.revision.revision, short(&r.revision.hash)),
            )
        }
        Request::Promote { full: false } => {
            // A wave pauses; the rollout stays active (Progressing) meanwhile.
            let wave = active.and_then(|r| status.waves.get(usize::try_from(r.wave).unwrap_or(usize::MAX)));
            if wave.is_none_or(|w| w.phase != WavePhase::Paused) {
                bail!("{who}: nothing is paused (phase {})", phase(status));
            }
            (PROMOTE_ANNOTATION, json!(token()), format!("{who}: promoted"))
        }
        Request::Promote { full: true } => {
            if active.is_none() {
                bail!("{who}: no rollout is running (phase {})", phase(status));
            }
            (
                PROMOTE_FULL_ANNOTATION,
                json!(token()),
                format!("{who}: fully promoted"),
            )
        }
        Request::Pause => {
            if paused {
                bail!("{who}: already paused");
            }
            (PAUSE_ANNOTATION, json!("true"), format!("{who}: paused"))
        }
        Request::Resume => {
            if !paused {
                bail!("{who}: not paused by request (stackpilot pause sets that)");
            }
            (PAUSE_ANNOTATION, Value::Null, format!("{who}: resumed"))
        }
        Request::Abort => {
            let Some(r) = active else {
                bail!("{who}: no rollout is running (phase {})", phase(status));
            };
            let value = format!("{}@{}", r.revision.hash, token());
            (
                ABORT_ANNOTATION,
                json!(value),
                format!("{who}: aborting {}", r.revision.revision),
            )
        }
        Request::Retry => {
            let update = status.update_revision.as_ref();
            let Some(rejected) = status
                .rejected_revisions
                .iter()
                .find(|r| update.is_some_and(|u| u.hash == r.revision.hash))
            else {
                bail!("{who}: the current revision is not rejected, nothing to retry");
            };
            let value = format!("{}@{}", rejected.revision.hash, token());
            (
                RETRY_ANNOTATION,
                json!(value),
                format!("{who}: retrying {}", rejected.revision.revision),
            )
        }
        Request::RollbackTo(wanted) => {
            let kept = status
                .history
                .iter()
                .find(|h| h.hash == wanted)
                .or_else(|| status.history.iter().find(|h| h.revision == wanted));
            let Some(kept) = kept else {
                let labels: Vec<&str> = status.history.iter().map(|h| h.revision.as_str()).collect();
                bail!("{who}: revision {wanted} is not kept (kept: {})", labels.join(", "));
            };
            let value = format!("{}@{}", kept.hash, token());
            let message = format!("{who}: rolling back to {}", kept.revision);
            (ROLLBACK_TO_ANNOTATION, json!(value), message)
        }
        Request::Status | Request::History => unreachable!("read-only requests set no annotation"),
    })
}

fn phase(status: &StackDeploymentStatus) -> String {
    status
        .phase
        .map_or_else(|| "unknown".to_string(), |p: DeploymentPhase| format!("{p:?}"))
}

fn short(hash: &str) -> &str {
    hash.get(..8).unwrap_or(hash)
}

/// Waves and targets, with phase, revision, stack status and planned changes.
pub fn tree(object: &StackDeployment, status: &StackDeploymentStatus) -> String {
    let mut out = String::new();
    let revision = |r: &Option<crate::api::RevisionId>| {
        r.as_ref()
            .map_or("-".to_string(), |r| format!("{} ({})", r.revision, short(&r.hash)))
    };
    let _ = writeln!(out, "StackDeployment {}: {}", object.name_any(), phase(status));
    let _ = writeln!(out, "  update revision: {}", revision(&status.update_revision));
    let _ = writeln!(out, "  stable revision: {}", revision(&status.stable_revision));
    if let Some(r) = &status.rollout {
        let _ = writeln!(
            out,
            "  rollout: {:?} of {} {:?}, wave {}{}",
            r.kind,
            r.revision.revision,
            r.phase,
            r.wave,
            r.reason.as_deref().map(|x| format!(": {x}")).unwrap_or_default()
        );
    }
    if let Some(c) = status.conditions.iter().find(|c| c.type_ == "Ready") {
        let _ = writeln!(out, "  Ready={} {}: {}", c.status, c.reason, c.message);
    }
    let row = |name: &str| status.targets.iter().find(|t| t.name == name);
    let preview = |name: &str| {
        status
            .preview
            .as_ref()
            .and_then(|p| p.targets.iter().find(|t| t.name == name))
            .map(|t| {
                format!(
                    " plan +{} ~{} -{} ({} replaced)",
                    t.adds, t.modifies, t.removes, t.replacements
                )
            })
            .unwrap_or_default()
    };
    let mut listed = Vec::new();
    for wave in &status.waves {
        let _ = writeln!(out, "  wave {} [{:?}]", wave.index, wave.phase);
        for name in &wave.targets {
            listed.push(name.clone());
            target_line(&mut out, name, row(name), &preview(name));
        }
    }
    let rest: Vec<_> = status.targets.iter().filter(|t| !listed.contains(&t.name)).collect();
    if !rest.is_empty() {
        let _ = writeln!(out, "  targets");
        for t in rest {
            target_line(&mut out, &t.name, Some(t), &preview(&t.name));
        }
    }
    for r in &status.rejected_revisions {
        let _ = writeln!(
            out,
            "  rejected {} ({}): {}",
            r.revision.revision,
            short(&r.revision.hash),
            r.reason
        );
    }
    out.trim_end().to_string()
}

fn target_line(out: &mut String, name: &str, row: Option<&crate::api::TargetStatus>, preview: &str) {
    let Some(t) = row else {
        let _ = writeln!(out, "    {name}");
        return;
    };
    let _ = writeln!(
        out,
        "    {name} {:?} {}/{} revision {}{}{}",
        t.phase,
        t.account.as_deref().unwrap_or("-"),
        t.region,
        t.revision.as_deref().map_or("-", short),
        preview,
        t.message.as_deref().map(|m| format!(" - {m}")).unwrap_or_default()
    );
}

/// Kept revisions, newest first, with outcomes.
pub fn history(status: &StackDeploymentStatus) -> String {
    let mut out = format!(
        "{:<20} {:<10} {:<12} {:<26} CONTROLLERREVISION\n",
        "REVISION", "HASH", "OUTCOME", "DEPLOYED"
    );
    for h in &status.history {
        let deployed = h.deployed_at.as_ref().map_or("-".to_string(), |t| t.0.to_string());
        let _ = writeln!(
            out,
            "{:<20} {:<10} {:<12} {:<26} {}",
            h.revision,
            short(&h.hash),
            format!("{:?}", h.outcome),
            deployed,
            h.controller_revision
        );
    }
    out.trim_end().to_string()
}
