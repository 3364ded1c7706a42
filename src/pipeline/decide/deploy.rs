//! Deploy actions: one child Stack or StackDeployment per action, written at
//! the execution's revision and passed when the child is Ready at it.
//!
//! The child's `stackpilot.dev/revision` is a hash of the artifact's content
//! hash, the action's deploy settings and its resolved parameters, so a
//! changed setting or variable is never mistaken for "already there". Every
//! attempt also sets the child's `reconcile-requested-at` to a value of its
//! own, so a child that failed before tries again, and an observation of the
//! child that predates the write is never read as this attempt's result.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use super::super::plan::{
    Action, ActionCheck, ChildKind, ChildWrite, DeployAction, Execution, Observed, Plan, SourceRevision,
    StackParameter, child_name, short_hash,
};
use super::variables;

/// The kind of child a deploy action owns.
pub fn child_kind(deploy: &DeployAction) -> ChildKind {
    if deploy.deployment.is_some() {
        ChildKind::StackDeployment
    } else {
        ChildKind::Stack
    }
}

/// The value of the child's revision annotation for these inputs.
pub fn deploy_revision(hash: &str, deploy: &DeployAction, parameters: &[StackParameter]) -> String {
    let settings = serde_json::to_string(deploy).unwrap_or_default();
    let parameters = serde_json::to_string(parameters).unwrap_or_default();
    short_hash(&[hash, &settings, &parameters], 16)
}

/// What one write asks of a child.
pub struct Target<'a> {
    pub stage: &'a str,
    pub action: &'a Action,
    pub revision: &'a SourceRevision,
    pub parameters: Vec<StackParameter>,
    /// The `reconcile-requested-at` value of this attempt.
    pub request: String,
    /// When this attempt started: older child failures are not its own.
    pub since: Timestamp,
}

/// Resolves the action's parameters against the execution's outputs.
pub fn parameters(action: &Action, execution: &Execution) -> Result<Vec<StackParameter>, String> {
    let values = variables::execution_outputs(execution);
    variables::resolve(variables::deploy_parameters(action.deploy.as_ref()), &values).map(|(p, _)| p)
}

/// The variable values the action's parameters use in this execution.
pub fn variables_used(action: &Action, execution: &Execution) -> BTreeMap<String, String> {
    let values = variables::execution_outputs(execution);
    variables::resolve(variables::deploy_parameters(action.deploy.as_ref()), &values)
        .map(|(_, used)| used)
        .unwrap_or_default()
}

/// The request value of one attempt.
pub fn attempt_request(execution: &str, attempt: i32) -> String {
    format!("{execution}/{attempt}")
}

/// Writes the child when it is not yet at the target, and says how the
/// target stands.
pub fn drive(o: &Observed, target: Target<'_>, plan: &mut Plan) -> ActionCheck {
    let Some(deploy) = target.action.deploy.as_ref() else {
        return ActionCheck::failed("NotADeployAction", "the action has no deploy settings", false);
    };
    let name = child_name(o.name, target.stage, &target.action.name);
    let wanted = deploy_revision(&target.revision.hash, deploy, &target.parameters);
    let child = o.children.get(&name);
    let written = child.is_some_and(|c| {
        c.revision.as_deref() == Some(wanted.as_str()) && c.retry_request.as_deref() == Some(target.request.as_str())
    });
    if !written {
        plan.child_writes.retain(|w| w.name != name);
        plan.child_writes.push(ChildWrite {
            stage: target.stage.into(),
            action: target.action.name.clone(),
            name,
            kind: child_kind(deploy),
            revision: target.revision.clone(),
            deploy_revision: wanted,
            deploy: deploy.clone(),
            parameters: target.parameters,
            retry_request: target.request,
        });
        plan.requeue_after(o.timing.in_flight);
        return ActionCheck::Running;
    }
    let child = child.expect("written implies observed");
    if child.ready && child.applied_revision.as_deref() == Some(wanted.as_str()) {
        return ActionCheck::Passed {
            outputs: child.outputs.clone(),
        };
    }
    if let Some(failure) = child.failure.as_ref().filter(|f| f.since >= target.since) {
        return ActionCheck::failed(
            &failure.reason,
            format!("{} {name}: {}", kind_word(deploy), failure.message),
            true,
        );
    }
    plan.requeue_after(o.timing.in_flight);
    ActionCheck::Running
}

fn kind_word(deploy: &DeployAction) -> &'static str {
    match child_kind(deploy) {
        ChildKind::Stack => "Stack",
        ChildKind::StackDeployment => "StackDeployment",
    }
}

/// Starts or follows one attempt of a deploy action of the execution.
pub fn check(
    o: &Observed,
    execution: &Execution,
    stage: &str,
    action: &Action,
    attempt: i32,
    since: Timestamp,
    plan: &mut Plan,
) -> ActionCheck {
    let parameters = match parameters(action, execution) {
        Ok(parameters) => parameters,
        Err(problem) => return ActionCheck::failed("UnknownOutput", problem, false),
    };
    let revision = SourceRevision {
        revision: execution.revision.clone(),
        hash: execution.hash.clone(),
    };
    drive(
        o,
        Target {
            stage,
            action,
            revision: &revision,
            parameters,
            request: attempt_request(&execution.id, attempt),
            since,
        },
        plan,
    )
}
