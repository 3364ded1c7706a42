//! Which Stacks to reconcile when something they read changes: a ConfigMap
//! or Secret they take a template or parameter from, a Stack they depend on,
//! or the AwsAccount they act through.

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::api::Stack;

use super::inputs::dependencies;

/// What changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    ConfigMap,
    Secret,
    Stack,
    AwsAccount,
}

fn reads(stack: &Stack, source: Source, name: &str) -> bool {
    let spec = &stack.spec;
    let from = || spec.parameters.iter().filter_map(|p| p.value_from.as_ref());
    match source {
        Source::ConfigMap => {
            spec.template.config_map_ref.as_ref().is_some_and(|r| r.name == name)
                || from().any(|f| f.config_map_key_ref.as_ref().is_some_and(|r| r.name == name))
        }
        Source::Secret => from().any(|f| f.secret_key_ref.as_ref().is_some_and(|r| r.name == name)),
        Source::Stack => dependencies(stack).iter().any(|d| d == name),
        Source::AwsAccount => spec.account_ref.as_ref().is_some_and(|a| a.name == name),
    }
}

/// The Stacks that read `name` of kind `source` (in `namespace`, or in any
/// namespace for the cluster-scoped AwsAccount).
pub fn readers(stacks: &[Arc<Stack>], source: Source, namespace: Option<&str>, name: &str) -> Vec<ObjectRef<Stack>> {
    stacks
        .iter()
        .filter(|s| source == Source::AwsAccount || s.namespace().as_deref() == namespace)
        .filter(|s| reads(s, source, name))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
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
        let names = |refs: Vec<ObjectRef<Stack>>| {
            refs.into_iter()
                .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(readers(&stacks, Source::ConfigMap, Some("x"), "tpl")),
            vec!["x/a"]
        );
        assert_eq!(names(readers(&stacks, Source::Secret, Some("y"), "db")), vec!["y/a"]);
        assert_eq!(
            names(readers(&stacks, Source::Secret, Some("x"), "other")),
            Vec::<String>::new()
        );
        assert_eq!(names(readers(&stacks, Source::Stack, Some("x"), "net")), vec!["x/b"]);
        assert_eq!(names(readers(&stacks, Source::Stack, Some("x"), "vpc")), vec!["x/b"]);
        assert_eq!(names(readers(&stacks, Source::AwsAccount, None, "prod")), vec!["x/b"]);
    }
}
