//! `stackpilot approve`: approves the change set a Stack is waiting on, by
//! name, so an approval can never apply to a change set the user did not see.

use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::api::Stack;
use crate::runtime::conditions::{self, APPROVAL_REQUIRED};
use crate::stack::APPROVE_ANNOTATION;

/// Without `-n`, the namespace is the kubeconfig context's (as kubectl).
pub async fn approve(stack: &str, namespace: Option<&str>, change_set: Option<&str>) -> anyhow::Result<String> {
    let client = Client::try_default().await?;
    let namespace = namespace
        .map(str::to_string)
        .unwrap_or_else(|| client.default_namespace().to_string());
    let api: Api<Stack> = Api::namespaced(client, &namespace);
    let object = match api.get(stack).await {
        Err(kube::Error::Api(status)) if status.code == 404 => {
            anyhow::bail!("stack {stack} not found in namespace {namespace}")
        }
        other => other?,
    };
    let status = object.status.clone().unwrap_or_default();
    let pending = status.change_set.as_ref().map(|c| c.name.clone());
    let waiting = conditions::is_true(&status.conditions, APPROVAL_REQUIRED);
    let Some(pending) = pending.filter(|_| waiting) else {
        anyhow::bail!("stack {namespace}/{stack} is not waiting for an approval");
    };
    if let Some(asked) = change_set
        && asked != pending
    {
        anyhow::bail!(
            "stack {namespace}/{stack} waits on change set {pending}, not {asked}; look at it again before approving"
        );
    }
    let patch = json!({"metadata": {"annotations": {APPROVE_ANNOTATION: pending}}});
    api.patch(&object.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(format!("approved change set {pending} of stack {namespace}/{stack}"))
}
