//! `writeOutputsTo`: mirrors stack outputs into a Secret or ConfigMap owned
//! by the Stack (so the garbage collector removes it with the Stack). Written
//! only when the outputs changed; sensitive outputs go only to a Secret.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::api::{OutputKind, Stack, WrittenOutputs};
use crate::aws::StackOutput;
use crate::runtime::error::Result;

use crate::runtime::events::Note;

const FIELD_MANAGER: &str = "stackpilot-outputs";

/// What to write: the outputs for the target kind, and their hash.
pub fn select(
    stack: &Stack,
    outputs: &[StackOutput],
) -> Option<(OutputKind, String, BTreeMap<String, String>, String)> {
    let target = stack.spec.write_outputs_to.as_ref()?;
    let data: BTreeMap<String, String> = outputs
        .iter()
        .filter(|o| target.kind == OutputKind::Secret || !stack.spec.sensitive_outputs.contains(&o.key))
        .map(|o| (o.key.clone(), o.value.clone()))
        .collect();
    let mut hasher = Sha256::new();
    for (k, v) in &data {
        hasher.update((k.len() as u64).to_be_bytes());
        hasher.update(k.as_bytes());
        hasher.update((v.len() as u64).to_be_bytes());
        hasher.update(v.as_bytes());
    }
    let hash = hex::encode(&hasher.finalize()[..8]);
    Some((target.kind, target.name.clone(), data, hash))
}

/// Writes the outputs if they changed since the last write. Returns the new
/// record, or a Note when the target belongs to someone else.
pub async fn sync(
    client: &kube::Client,
    stack: &Stack,
    outputs: &[StackOutput],
    written: Option<&WrittenOutputs>,
) -> Result<Result<Option<WrittenOutputs>, Note>> {
    let namespace = stack.namespace().unwrap_or_default();
    let Some((kind, name, data, hash)) = select(stack, outputs) else {
        if let Some(old) = written {
            remove(client, &namespace, old).await?;
        }
        return Ok(Ok(None));
    };
    let record = WrittenOutputs {
        kind,
        name: name.clone(),
        hash,
    };
    if written == Some(&record) {
        return Ok(Ok(Some(record)));
    }
    let owner = OwnerReference {
        api_version: "stackpilot.dev/v1alpha1".into(),
        kind: "Stack".into(),
        name: stack.name_any(),
        uid: stack.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let meta = ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(namespace.clone()),
        owner_references: Some(vec![owner]),
        labels: Some(BTreeMap::from([("stackpilot.dev/stack".to_string(), stack.name_any())])),
        ..Default::default()
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let uid = stack.uid();
    let owned_by_us =
        |owners: Option<&Vec<OwnerReference>>| owners.is_some_and(|o| o.iter().any(|r| Some(&r.uid) == uid.as_ref()));
    match kind {
        OutputKind::Secret => {
            let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
            if let Some(existing) = api.get_opt(&name).await?
                && !owned_by_us(existing.metadata.owner_references.as_ref())
            {
                return Ok(Err(not_ours("Secret", &name)));
            }
            let secret = Secret {
                metadata: meta,
                data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v.into_bytes()))).collect()),
                ..Default::default()
            };
            api.patch(&name, &params, &Patch::Apply(with_type(&secret, "v1", "Secret")))
                .await?;
        }
        OutputKind::ConfigMap => {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
            if let Some(existing) = api.get_opt(&name).await?
                && !owned_by_us(existing.metadata.owner_references.as_ref())
            {
                return Ok(Err(not_ours("ConfigMap", &name)));
            }
            let config_map = ConfigMap {
                metadata: meta,
                data: Some(data),
                ..Default::default()
            };
            api.patch(&name, &params, &Patch::Apply(with_type(&config_map, "v1", "ConfigMap")))
                .await?;
        }
    }
    // A previous target under another name or kind is removed.
    if let Some(old) = written.filter(|w| w.name != record.name || w.kind != record.kind) {
        remove(client, &namespace, old).await?;
    }
    Ok(Ok(Some(record)))
}

async fn remove(client: &kube::Client, namespace: &str, old: &WrittenOutputs) -> Result<()> {
    let result = match old.kind {
        OutputKind::Secret => Api::<Secret>::namespaced(client.clone(), namespace)
            .delete(&old.name, &DeleteParams::default())
            .await
            .map(|_| ()),
        OutputKind::ConfigMap => Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .delete(&old.name, &DeleteParams::default())
            .await
            .map(|_| ()),
    };
    match result {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        other => Ok(other?),
    }
}

fn not_ours(kind: &str, name: &str) -> Note {
    Note::warning(
        "OutputTargetNotOwned",
        format!(
            "{kind} {name} exists and is not owned by this Stack; outputs are not written to it. Choose another writeOutputsTo.name"
        ),
    )
}

fn with_type<K: Resource + serde::Serialize>(object: &K, api_version: &str, kind: &str) -> serde_json::Value {
    let mut value = serde_json::to_value(object).expect("serializable");
    value["apiVersion"] = api_version.into();
    value["kind"] = kind.into();
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{OutputTarget, StackSpec};

    fn output(key: &str, value: &str) -> StackOutput {
        StackOutput {
            key: key.into(),
            value: value.into(),
            description: None,
            export_name: None,
        }
    }

    #[test]
    fn sensitive_outputs_go_only_to_secrets() {
        let mut stack = Stack::new(
            "s",
            StackSpec {
                write_outputs_to: Some(OutputTarget {
                    kind: OutputKind::ConfigMap,
                    name: "out".into(),
                }),
                sensitive_outputs: vec!["Password".into()],
                ..Default::default()
            },
        );
        let outputs = [output("Url", "https://x"), output("Password", "hunter2")];
        let (_, _, data, config_hash) = select(&stack, &outputs).unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), vec!["Url"]);
        stack.spec.write_outputs_to.as_mut().unwrap().kind = OutputKind::Secret;
        let (_, _, data, secret_hash) = select(&stack, &outputs).unwrap();
        assert_eq!(data.len(), 2);
        assert_ne!(config_hash, secret_hash);
        assert!(!secret_hash.contains("hunter2"));
    }
}
