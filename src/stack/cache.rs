//! The one Stack cache and watch: a shared reflector that the Stack
//! controller, its dependency and input lookups, and the controllers that
//! own Stacks (StackDeployment, Pipeline) all read, with no second watch.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use tracing::warn;

use crate::api::Stack;
use crate::runtime::readiness::CacheFlag;

/// The Stack cache, in `/readyz`.
pub const CACHE: &str = "stacks";

/// Events buffered per subscriber before the watch waits for it.
const BUFFER: usize = 1024;

pub struct SharedStacks {
    pub store: Store<Stack>,
    writer: Writer<Stack>,
    api: Api<Stack>,
}

impl SharedStacks {
    /// The cache of every Stack in `namespace` (all namespaces when `None`).
    pub fn new(client: kube::Client, namespace: Option<&str>) -> Self {
        let api = match namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        let (store, writer) = reflector::store_shared(BUFFER);
        Self { store, writer, api }
    }

    /// A stream of every Stack applied to the cache. Subscribe every reader
    /// before `run`: a subscriber that stops reading stalls the watch.
    pub fn subscribe(&self) -> impl Stream<Item = Arc<Stack>> + Send + 'static {
        self.writer.subscribe().expect("a shared store")
    }

    /// Fills the cache until the process stops; run it beside the
    /// controllers. `synced` is marked at the end of the first list.
    pub async fn run(self, synced: CacheFlag) {
        watcher(self.api, watcher::Config::default().any_semantic())
            .default_backoff()
            .modify(slim)
            .reflect_shared(self.writer)
            .inspect(synced.on_init_done(CACHE))
            .for_each(|event| async move {
                if let Err(error) = event {
                    warn!(%error, "stack watch");
                }
            })
            .await;
    }
}

/// What the cache never reads: field ownership, and kubectl's copy of the
/// whole last applied object (the template again).
fn slim(stack: &mut Stack) {
    stack.managed_fields_mut().clear();
    stack.annotations_mut().remove(LAST_APPLIED);
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
