//! Watch plumbing shared by the controllers.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::{Predicate, WatchStreamExt, watcher};

/// The objects of a shared store's stream whose `predicate` property
/// changed (kube's predicate filter, which works on owned objects, over a
/// shared stream of `Arc`s).
pub fn changed_only<K, P>(
    stream: impl Stream<Item = Arc<K>> + Send + 'static,
    predicate: P,
) -> impl Stream<Item = Arc<K>>
where
    K: Resource + Clone + Send + Sync + 'static,
    P: Predicate<K> + Send + 'static,
{
    stream
        .map(|object| Ok::<K, watcher::Error>((*object).clone()))
        .predicate_filter(predicate, Default::default())
        .filter_map(|object| std::future::ready(object.ok().map(Arc::new)))
}

/// A fixed delay, for the controller's shared trigger backoff: each watch
/// backs off on its own, and the shared one would otherwise freeze every
/// watch, the cache's included, after one watch's errors.
pub struct ConstantBackoff(pub Duration);

impl Iterator for ConstantBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(self.0)
    }
}

impl kube::runtime::utils::Backoff for ConstantBackoff {
    fn reset(&mut self) {}
}

/// An API of a namespaced kind in `namespace`, or in every namespace.
pub fn scoped<K>(client: &kube::Client, namespace: Option<&str>) -> kube::Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => kube::Api::namespaced(client.clone(), ns),
        None => kube::Api::all(client.clone()),
    }
}
