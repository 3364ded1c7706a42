//! Which Stacks to reconcile when something they read changes: a ConfigMap
//! or Secret they take a template or parameter from, a Stack they depend on,
//! or the AwsAccount they act through.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use crate::api::{FluxSourceKind, Stack};

use super::inputs::dependencies;

/// What changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    ConfigMap,
    Secret,
    Stack,
    AwsAccount,
    /// A Flux source object (`template.sourceRef`).
    Flux(FluxSourceKind),
}

/// Every source (kind, namespace, name) a Stack reads.
fn sources(stack: &Stack) -> Vec<SourceKey> {
    let spec = &stack.spec;
    let namespace = stack.namespace();
    let local = |source: Source, name: &str| SourceKey {
        source,
        namespace: namespace.clone(),
        name: name.to_string(),
    };
    let mut keys = Vec::new();
    if let Some(r) = &spec.template.config_map_ref {
        keys.push(local(Source::ConfigMap, &r.name));
    }
    if let Some(r) = &spec.template.source_ref {
        keys.push(SourceKey {
            source: Source::Flux(r.kind),
            namespace: r.namespace.clone().or_else(|| namespace.clone()),
            name: r.name.clone(),
        });
    }
    for from in spec.parameters.iter().filter_map(|p| p.value_from.as_ref()) {
        if let Some(r) = &from.config_map_key_ref {
            keys.push(local(Source::ConfigMap, &r.name));
        }
        if let Some(r) = &from.secret_key_ref {
            keys.push(local(Source::Secret, &r.name));
        }
    }
    keys.extend(dependencies(stack).iter().map(|d| local(Source::Stack, d)));
    if let Some(account) = &spec.account_ref {
        keys.push(SourceKey {
            source: Source::AwsAccount,
            namespace: None,
            name: account.name.clone(),
        });
    }
    keys.sort();
    keys.dedup();
    keys
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SourceKey {
    source: Source,
    namespace: Option<String>,
    name: String,
}

#[derive(Default)]
struct Index {
    readers: HashMap<SourceKey, HashSet<ObjectRef<Stack>>>,
    reads: HashMap<ObjectRef<Stack>, Vec<SourceKey>>,
}

/// Which Stacks read which sources, kept up to date from the Stack watch, so
/// that a Secret or ConfigMap change finds its Stacks without a scan.
#[derive(Clone, Default)]
pub struct Readers(Arc<Mutex<Index>>);

impl Readers {
    /// Records what `stack` reads now (its spec may have changed).
    pub fn update(&self, stack: &Stack) {
        let me = ObjectRef::from_obj(stack);
        let keys = if stack.meta().deletion_timestamp.is_some() {
            Vec::new()
        } else {
            sources(stack)
        };
        let mut index = self.0.lock().expect("readers lock");
        if index.reads.get(&me) == Some(&keys) {
            return;
        }
        for old in index.reads.remove(&me).unwrap_or_default() {
            if let Some(set) = index.readers.get_mut(&old) {
                set.remove(&me);
                if set.is_empty() {
                    index.readers.remove(&old);
                }
            }
        }
        for key in &keys {
            index.readers.entry(key.clone()).or_default().insert(me.clone());
        }
        if !keys.is_empty() {
            index.reads.insert(me, keys);
        }
    }

    /// The Stacks that read `name` of kind `source` (in `namespace`; `None`
    /// for the cluster-scoped AwsAccount). Stacks gone from `store` leave
    /// the index here.
    pub fn readers(
        &self,
        store: &Store<Stack>,
        source: Source,
        namespace: Option<&str>,
        name: &str,
    ) -> Vec<ObjectRef<Stack>> {
        let key = SourceKey {
            source,
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        };
        let mut index = self.0.lock().expect("readers lock");
        let found: Vec<ObjectRef<Stack>> = index.readers.get(&key).into_iter().flatten().cloned().collect();
        let (live, gone): (Vec<_>, Vec<_>) = found.into_iter().partition(|r| store.get(r).is_some());
        for stale in gone {
            index.reads.remove(&stale);
            if let Some(set) = index.readers.get_mut(&key) {
                set.remove(&stale);
            }
        }
        live
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AccountRef, KeyRef, LocalRef, ParameterSource, StackOutputRef, StackParameter, StackSpec};

    fn stack(namespace: &str, name: &str, spec: StackSpec) -> Arc<Stack> {
        let mut stack = Stack::new(name, spec);
        stack.metadata.namespace = Some(namespace.into());
        Arc::new(stack)
    }

    fn from(source: ParameterSource) -> StackParameter {
        StackParameter {
            name: "P".into(),
            value: None,
            value_from: Some(source),
        }
    }

    #[test]
    fn finds_the_readers_of_each_source_in_the_same_namespace_only() {
        let key = |name: &str| KeyRef {
            name: name.into(),
            key: "k".into(),
        };
        let a = StackSpec {
            template: crate::api::TemplateSpec {
                config_map_ref: Some(key("tpl")),
                ..Default::default()
            },
            parameters: vec![from(ParameterSource {
                secret_key_ref: Some(key("db")),
                ..Default::default()
            })],
            ..Default::default()
        };
        let b = StackSpec {
            depends_on: vec![LocalRef { name: "net".into() }],
            parameters: vec![from(ParameterSource {
                stack_output: Some(StackOutputRef {
                    stack: "vpc".into(),
                    output: "Id".into(),
                }),
                ..Default::default()
            })],
            account_ref: Some(AccountRef { name: "prod".into() }),
            ..Default::default()
        };
        let stacks = vec![stack("x", "a", a.clone()), stack("x", "b", b), stack("y", "a", a)];
        let (store, mut writer) = kube::runtime::reflector::store::<Stack>();
        let index = Readers::default();
        for s in &stacks {
            writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply((**s).clone()));
            index.update(s);
        }
        let readers = |source, ns, name| index.readers(&store, source, ns, name);
        let names = |refs: Vec<ObjectRef<Stack>>| {
            let mut names: Vec<String> = refs
                .into_iter()
                .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(readers(Source::ConfigMap, Some("x"), "tpl")), vec!["x/a"]);
        assert_eq!(names(readers(Source::Secret, Some("y"), "db")), vec!["y/a"]);
        assert_eq!(names(readers(Source::Secret, Some("x"), "other")), Vec::<String>::new());
        assert_eq!(names(readers(Source::Stack, Some("x"), "net")), vec!["x/b"]);
        assert_eq!(names(readers(Source::Stack, Some("x"), "vpc")), vec!["x/b"]);
        assert_eq!(names(readers(Source::AwsAccount, None, "prod")), vec!["x/b"]);

        // An edit that stops reading a source leaves its entry.
        let mut edited = (*stacks[0]).clone();
        edited.spec.template.config_map_ref = None;
        index.update(&edited);
        assert!(readers(Source::ConfigMap, Some("x"), "tpl").is_empty());
        assert_eq!(names(readers(Source::Secret, Some("x"), "db")), vec!["x/a"]);

        // A Stack gone from the cache is dropped when found.
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Delete((*stacks[2]).clone()));
        assert!(readers(Source::Secret, Some("y"), "db").is_empty());
    }
}
