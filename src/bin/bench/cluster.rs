//! The test bed's cluster around a run: CRDs installed first, a size's
//! Stacks and namespace deleted after.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, ResourceExt};
use serde_json::json;
use stackpilot::api::Stack;

pub(super) async fn install_crds(client: &Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, crd) in stackpilot::api::crds() {
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply("stackpilot-bench").force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("apply CRD {name}"))?;
        let established = await_condition(api.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .with_context(|| format!("CRD {name} not Established"))??;
    }
    Ok(())
}

/// Deletes the Stacks (the operator, still running, deletes their stacks and
/// releases them) and the namespace; whatever is left after a while loses
/// its finalizer.
pub(super) async fn cleanup(client: &Client, namespace: &str, n: usize) {
    let api: Api<Stack> = Api::namespaced(client.clone(), namespace);
    let started = Instant::now();
    // What is there (a pipeline makes several Stacks; `n` only sizes the wait).
    let count = api
        .list_metadata(&ListParams::default())
        .await
        .map_or(n, |l| l.items.len());
    let _ = api
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    let deadline = started + Duration::from_secs(60 + n.max(count) as u64 / 20);
    while Instant::now() < deadline {
        match api.list_metadata(&ListParams::default().limit(1)).await {
            Ok(list) if list.items.is_empty() => break,
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    if let Ok(left) = api.list_metadata(&ListParams::default()).await {
        if !left.items.is_empty() {
            eprintln!(
                "{} Stacks not deleted in time; removing their finalizers",
                left.items.len()
            );
        }
        for stack in left.items {
            let patch = json!({"metadata": {"finalizers": null}});
            let _ = api
                .patch(&stack.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                .await;
        }
    }
    eprintln!("deleted {count} Stacks in {:.1} s", started.elapsed().as_secs_f64());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(namespace, &DeleteParams::default()).await;
}
