//! The Pipeline commands: `approve`, `reject`, `retry`, `stop`, `get` and
//! `history` of `pipeline/<name>`. Requests go through the pipeline's
//! annotations as JSON with a fresh id; the controller handles each once.

use std::fmt::Write as _;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde_json::json;

use crate::api::{ActionPhase, ActionStatus, Execution, Pipeline, PipelineStatus};
use crate::pipeline::plan::{
    APPROVE_ANNOTATION, ApprovalRequest, REJECT_ANNOTATION, RETRY_ANNOTATION, RetryRequest, STOP_ANNOTATION,
    StopRequest, action_path,
};

/// The pipeline and the API to write it, in `namespace` or the kubeconfig's.
async fn open(name: &str, namespace: Option<&str>) -> anyhow::Result<(Api<Pipeline>, Pipeline, String)> {
    let client = Client::try_default().await?;
    let namespace = namespace
        .map(str::to_string)
        .unwrap_or_else(|| client.default_namespace().to_string());
    let api: Api<Pipeline> = Api::namespaced(client, &namespace);
    let Some(pipeline) = api.get_opt(name).await? else {
        anyhow::bail!("pipeline {namespace}/{name} not found");
    };
    Ok((api, pipeline, namespace))
}

fn request_id() -> String {
    format!("{}-{:08x}", Timestamp::now(), rand::random::<u32>())
}

/// Who asks: the user the API server authenticated (a SelfSubjectReview,
/// as `kubectl auth whoami`), or `$USER` where the server cannot tell.
async fn who(api: &Api<Pipeline>) -> Option<String> {
    let reviews: Api<SelfSubjectReview> = Api::all(api.clone().into());
    let review = reviews
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await;
    let username = review
        .ok()
        .and_then(|r| r.status?.user_info?.username)
        .filter(|u| !u.is_empty());
    username.or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
}

async fn annotate(api: &Api<Pipeline>, name: &str, key: &str, request: &impl Serialize) -> anyhow::Result<()> {
    let value = serde_json::to_string(request)?;
    let patch = json!({"metadata": {"annotations": {key: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

fn current(status: &PipelineStatus) -> Option<&Execution> {
    status.current_execution.as_ref()
}

/// Approves (or rejects) the action waiting for approval now.
pub async fn decide(
    name: &str,
    namespace: Option<&str>,
    approve: bool,
    comment: Option<String>,
) -> anyhow::Result<String> {
    let (api, pipeline, namespace) = open(name, namespace).await?;
    let status = pipeline.status.unwrap_or_default();
    let execution = current(&status).filter(|e| !e.phase.is_finished());
    let waiting: Vec<(&Execution, &ActionStatus)> = execution
        .into_iter()
        .flat_map(|e| e.actions.iter().map(move |a| (e, a)))
        .filter(|(_, a)| a.phase == ActionPhase::WaitingForApproval)
        .collect();
    let [(execution, action)] = waiting.as_slice() else {
        if waiting.is_empty() {
            anyhow::bail!("pipeline {namespace}/{name} has no action waiting for approval");
        }
        anyhow::bail!("pipeline {namespace}/{name} has more than one action waiting for approval");
    };
    let target = action_path(&execution.id, &action.stage, &action.action);
    let request = ApprovalRequest {
        id: request_id(),
        target: target.clone(),
        by: who(&api).await,
        comment,
    };
    let (key, word) = if approve {
        (APPROVE_ANNOTATION, "approved")
    } else {
        (REJECT_ANNOTATION, "rejected")
    };
    annotate(&api, name, key, &request).await?;
    Ok(format!(
        "{word} {target} (revision {}) of pipeline {namespace}/{name}",
        execution.revision
    ))
}

/// Retries the failed (or every, with `all`) action of the stage where the
/// current execution failed or stopped.
pub async fn retry(name: &str, namespace: Option<&str>, all: bool) -> anyhow::Result<String> {
    let (api, pipeline, namespace) = open(name, namespace).await?;
    let status = pipeline.status.unwrap_or_default();
    let Some(execution) = current(&status) else {
        anyhow::bail!("pipeline {namespace}/{name} has no execution to retry");
    };
    let request = RetryRequest {
        id: request_id(),
        execution: execution.id.clone(),
        all,
        by: who(&api).await,
    };
    annotate(&api, name, RETRY_ANNOTATION, &request).await?;
    let what = if all { "every action" } else { "the failed actions" };
    let stage = execution.stage.as_deref().unwrap_or("-");
    Ok(format!(
        "asked to retry {what} of stage {stage} of execution {} of pipeline {namespace}/{name}",
        execution.id
    ))
}

/// Stops the running execution.
pub async fn stop(
    name: &str,
    namespace: Option<&str>,
    abandon: bool,
    reason: Option<String>,
) -> anyhow::Result<String> {
    let (api, pipeline, namespace) = open(name, namespace).await?;
    let status = pipeline.status.unwrap_or_default();
    let Some(execution) = current(&status).filter(|e| !e.phase.is_finished()) else {
        anyhow::bail!("pipeline {namespace}/{name} has no running execution");
    };
    let request = StopRequest {
        id: request_id(),
        execution: execution.id.clone(),
        abandon,
        reason,
        by: who(&api).await,
    };
    annotate(&api, name, STOP_ANNOTATION, &request).await?;
    let how = if abandon { "abandoning" } else { "finishing" };
    Ok(format!(
        "asked to stop execution {} of pipeline {namespace}/{name} ({how} running actions)",
        execution.id
    ))
}

/// `1h2m`, `3m4s`, `5s`.
pub fn duration(seconds: i64) -> String {
    let seconds = seconds.max(0);
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m"),
    }
}

fn took(started: Option<Timestamp>, finished: Option<Timestamp>, now: Timestamp) -> String {
    match started {
        Some(started) => duration(finished.unwrap_or(now).as_second() - started.as_second()),
        None => "-".into(),
    }
}

/// The tree of the current execution: stages, action groups (runOrder),
/// actions with their phase and duration.
pub fn tree(pipeline: &Pipeline, now: Timestamp) -> String {
    let mut out = String::new();
    let status = pipeline.status.clone().unwrap_or_default();
    let name = kube::ResourceExt::name_any(pipeline);
    let Some(execution) = current(&status) else {
        let _ = writeln!(out, "pipeline/{name}: no execution yet");
        return out;
    };
    let _ = writeln!(
        out,
        "pipeline/{name}  execution {}  revision {}  {:?}  {}",
        execution.id,
        execution.revision,
        execution.phase,
        took(
            Some(execution.started_at.0),
            execution.finished_at.as_ref().map(|t| t.0),
            now
        )
    );
    if let Some(message) = &execution.message {
        let _ = writeln!(out, "  {message}");
    }
    for stage in &pipeline.spec.stages {
        let marker = if execution.stage.as_deref() == Some(stage.name.as_str()) {
            " <"
        } else {
            ""
        };
        let disabled = stage
            .transition_disabled
            .as_ref()
            .map(|d| format!("  (transition disabled: {})", d.reason))
            .unwrap_or_default();
        let _ = writeln!(out, "├─ stage {}{marker}{disabled}", stage.name);
        let mut orders: Vec<i32> = stage.actions.iter().map(|a| a.run_order).collect();
        orders.sort();
        orders.dedup();
        for order in orders {
            let _ = writeln!(out, "│  ├─ runOrder {order}");
            for action in stage.actions.iter().filter(|a| a.run_order == order) {
                let entry = execution
                    .actions
                    .iter()
                    .find(|a| a.stage == stage.name && a.action == action.name);
                let (phase, time, detail) = match entry {
                    Some(a) => (
                        format!("{:?}", a.phase),
                        took(
                            a.started_at.as_ref().map(|t| t.0),
                            a.finished_at.as_ref().map(|t| t.0),
                            now,
                        ),
                        a.message.clone().or_else(|| a.object.clone()).unwrap_or_default(),
                    ),
                    None => ("Pending".into(), "-".into(), String::new()),
                };
                let _ = writeln!(out, "│  │  ├─ {:<20} {:<18} {:>7}  {detail}", action.name, phase, time);
            }
        }
    }
    out
}

/// One line per execution, newest first.
pub fn history(pipeline: &Pipeline, now: Timestamp) -> String {
    let status = pipeline.status.clone().unwrap_or_default();
    let mut out = format!(
        "{:<16} {:<12} {:<12} {:<10} {:<25} {:>8}  {}\n",
        "EXECUTION", "REVISION", "PHASE", "STAGE", "STARTED", "DURATION", "APPROVED BY"
    );
    for execution in status.current_execution.iter().chain(status.history.iter()) {
        let approvers: Vec<String> = execution
            .actions
            .iter()
            .filter_map(|a| a.approval.as_ref())
            .map(|r| format!("{:?}:{}", r.decision, r.by.as_deref().unwrap_or("unknown")))
            .collect();
        let _ = writeln!(
            out,
            "{:<16} {:<12} {:<12} {:<10} {:<25} {:>8}  {}",
            execution.id,
            execution.revision,
            format!("{:?}", execution.phase),
            execution.stage.clone().unwrap_or_else(|| "-".into()),
            execution.started_at.0.to_string(),
            took(
                Some(execution.started_at.0),
                execution.finished_at.as_ref().map(|t| t.0),
                now
            ),
            approvers.join(",")
        );
    }
    out
}

/// `get pipeline/<name>`.
pub async fn get(name: &str, namespace: Option<&str>) -> anyhow::Result<String> {
    let (_, pipeline, _) = open(name, namespace).await?;
    Ok(tree(&pipeline, Timestamp::now()))
}

/// `history pipeline/<name>`.
pub async fn show_history(name: &str, namespace: Option<&str>) -> anyhow::Result<String> {
    let (_, pipeline, _) = open(name, namespace).await?;
    Ok(history(&pipeline, Timestamp::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(65), "1m5s");
        assert_eq!(duration(3720), "1h2m");
    }
}
