//! Test actions: one Job per execution and attempt, named deterministically
//! and created once; its containers get the outputs of the deploy actions
//! that passed earlier in the execution. The result is the Job's own
//! `Complete` or `Failed` condition (which already honours the template's
//! `activeDeadlineSeconds` and `backoffLimit`).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::api::core::v1::{Container, EnvVar};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;

use super::super::plan::{
    ActionCheck, ActionPhase, ENV_EXECUTION, ENV_REVISION, Execution, Job, LABEL_ACTION, LABEL_ATTEMPT,
    LABEL_EXECUTION, LABEL_PIPELINE, LABEL_STAGE, Observed, Plan, TestAction, job_name, later,
};

/// `myApi` + `ApiURL` -> `MY_API_API_URL`: words split at case changes,
/// dashes, dots and spaces; anything else not alphanumeric becomes `_`.
pub fn upper_snake(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_alphanumeric() {
            let previous = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1);
            let boundary = c.is_ascii_uppercase()
                && previous.is_some_and(|p| {
                    p.is_ascii_lowercase()
                        || p.is_ascii_digit()
                        || (p.is_ascii_uppercase() && next.is_some_and(|n| n.is_ascii_lowercase()))
                });
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_uppercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_string()
}

/// The environment of a test Job: `<ACTION>_<OUTPUT>` for every output of a
/// deploy action that passed in this execution (a later action wins a
/// clash), then the revision and the execution id.
pub fn environment(execution: &Execution) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for entry in execution.actions.iter().filter(|a| a.phase == ActionPhase::Succeeded) {
        for (output, value) in &entry.outputs {
            let name = format!("{}_{}", upper_snake(&entry.action), upper_snake(output));
            if env.insert(name.clone(), value.clone()).is_none() {
                order.push(name);
            }
        }
    }
    let mut out: Vec<(String, String)> = order
        .into_iter()
        .map(|name| {
            let value = env[&name].clone();
            (name, value)
        })
        .collect();
    out.push((ENV_REVISION.into(), execution.revision.clone()));
    out.push((ENV_EXECUTION.into(), execution.id.clone()));
    out
}

fn with_env(container: &mut Container, env: &[(String, String)]) {
    let list = container.env.get_or_insert_with(Vec::new);
    list.retain(|e| !env.iter().any(|(name, _)| *name == e.name));
    list.extend(env.iter().map(|(name, value)| EnvVar {
        name: name.clone(),
        value: Some(value.clone()),
        value_from: None,
    }));
}

/// The Job of one attempt, owned by the pipeline.
pub fn job(o: &Observed, execution: &Execution, stage: &str, action: &str, attempt: i32, test: &TestAction) -> Job {
    let name = job_name(o.name, &execution.id, stage, action, attempt);
    let env = environment(execution);
    let template = &test.job_template;
    let mut spec: JobSpec = template.spec.clone().unwrap_or_default();
    if let Some(pod) = spec.template.spec.as_mut() {
        for container in pod.containers.iter_mut() {
            with_env(container, &env);
        }
        for container in pod.init_containers.iter_mut().flatten() {
            with_env(container, &env);
        }
    }
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    for (key, value) in [
        (LABEL_PIPELINE, o.name.to_string()),
        (LABEL_EXECUTION, execution.id.clone()),
        (LABEL_STAGE, stage.to_string()),
        (LABEL_ACTION, action.to_string()),
        (LABEL_ATTEMPT, attempt.to_string()),
    ] {
        labels.insert(key.to_string(), value);
    }
    Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(o.namespace.to_string()),
            labels: Some(labels),
            annotations: template.metadata.as_ref().and_then(|m| m.annotations.clone()),
            owner_references: Some(vec![OwnerReference {
                api_version: "stackpilot.dev/v1alpha1".into(),
                kind: "Pipeline".into(),
                name: o.name.to_string(),
                uid: o.uid.to_string(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Plans the Job of a new attempt.
pub fn start(
    o: &Observed,
    execution: &Execution,
    stage: &str,
    action: &str,
    attempt: i32,
    test: &TestAction,
    plan: &mut Plan,
) -> String {
    let job = job(o, execution, stage, action, attempt, test);
    let name = job.metadata.name.clone().unwrap_or_default();
    plan.job_creates.push(job);
    plan.requeue_after(o.timing.in_flight);
    name
}

/// How the attempt's Job stands. A Job missing longer than the grace period
/// after its create was recorded was deleted: the attempt failed (its name
/// is never created again).
pub fn check(o: &Observed, name: &str, started: Timestamp, plan: &mut Plan) -> ActionCheck {
    match o.jobs.get(name) {
        Some(job) if job.complete => ActionCheck::passed(),
        Some(job) => match &job.failed {
            Some((reason, message)) => ActionCheck::failed(
                if reason.is_empty() { "JobFailed" } else { reason },
                format!("Job {name} failed: {message}"),
                true,
            ),
            None => {
                plan.requeue_after(o.timing.in_flight);
                ActionCheck::Running
            }
        },
        None => {
            let lost_at = later(started, o.timing.job_grace);
            if o.now >= lost_at {
                ActionCheck::failed("JobLost", format!("Job {name} disappeared before it finished"), true)
            } else {
                plan.requeue_at(o.now, lost_at);
                ActionCheck::Running
            }
        }
    }
}
