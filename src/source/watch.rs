//! The watch on Flux source objects: a new artifact (or a source going away)
//! wakes the objects that read it at once, with no polling of Git. Source
//! status churn that changes neither the artifact nor readiness wakes
//! nothing. Without Flux's CRDs the watch retries quietly in the background
//! and the operator runs as before.

use std::collections::HashMap;

use futures::{Stream, StreamExt, stream};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};

use crate::api::{FluxSourceKind, SourceRef};

use super::flux;

/// One Flux source object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey {
    pub kind: FluxSourceKind,
    pub namespace: String,
    pub name: String,
}

/// Does `source` (on an object in `own_namespace`) name `key`?
pub fn names(source: &SourceRef, own_namespace: &str, key: &SourceKey) -> bool {
    source.kind == key.kind
        && source.name == key.name
        && source.namespace.as_deref().unwrap_or(own_namespace) == key.namespace
}

/// What of a source object matters to its readers.
fn signature(object: &DynamicObject) -> (Option<String>, Option<String>) {
    let status = object.data.get("status");
    let digest = status
        .and_then(|s| s.pointer("/artifact/digest"))
        .and_then(|d| d.as_str())
        .map(str::to_string);
    let ready = status
        .and_then(|s| s.get("conditions"))
        .and_then(|c| c.as_array())
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .map(|c| format!("{}/{}", c["status"], c["message"]));
    (digest, ready)
}

/// Changes of the Flux sources in `namespace` (all namespaces with `None`).
pub fn changes(client: kube::Client, namespace: Option<&str>) -> impl Stream<Item = SourceKey> + Send + 'static {
    let streams = FluxSourceKind::ALL.map(|kind| {
        let resource = flux::api_resource(kind);
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let mut seen: HashMap<(String, String), (Option<String>, Option<String>)> = HashMap::new();
        watcher(api, watcher::Config::default())
            .default_backoff()
            .filter_map(move |event| {
                let key = |o: &DynamicObject| (o.namespace().unwrap_or_default(), o.name_any());
                let changed = match event {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                        let signature = signature(&o);
                        let key = key(&o);
                        (seen.get(&key) != Some(&signature)).then(|| {
                            seen.insert(key.clone(), signature);
                            key
                        })
                    }
                    Ok(watcher::Event::Delete(o)) => {
                        let key = key(&o);
                        seen.remove(&key);
                        Some(key)
                    }
                    Ok(_) => None,
                    Err(error) => {
                        // Typically Flux not installed: 404 on every retry.
                        tracing::debug!(kind = kind.as_str(), %error, "Flux source watch");
                        None
                    }
                };
                std::future::ready(changed.map(|(namespace, name)| SourceKey { kind, namespace, name }))
            })
            .boxed()
    });
    stream::select_all(streams)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_names_its_own_namespace_by_default() {
        let source = SourceRef {
            kind: FluxSourceKind::GitRepository,
            name: "app".into(),
            path: "t.yaml".into(),
            ..SourceRef::default()
        };
        let key = |kind, ns: &str, name: &str| SourceKey {
            kind,
            namespace: ns.into(),
            name: name.into(),
        };
        assert!(names(&source, "a", &key(FluxSourceKind::GitRepository, "a", "app")));
        assert!(!names(&source, "a", &key(FluxSourceKind::GitRepository, "b", "app")));
        assert!(!names(&source, "a", &key(FluxSourceKind::Bucket, "a", "app")));
        let elsewhere = SourceRef {
            namespace: Some("flux-system".into()),
            ..source
        };
        assert!(names(
            &elsewhere,
            "a",
            &key(FluxSourceKind::GitRepository, "flux-system", "app")
        ));
    }
}
