//! The one Stack cache and watch: a reflector that the Stack controller, its
//! dependency and input lookups, and the controllers that own Stacks
//! (StackDeployment, Pipeline) all read, with no second watch.
//!
//! Subscribers get the changed objects through channels of their own rather
//! than kube-runtime's shared-store `ReflectHandle`: that handle answers
//! `Pending` without a wake-up when the object it was told about is gone
//! from the store by the time it looks (deleted, or dropped by a re-list
//! after a lost connection), and the controller then never hears of that
//! subscriber again: new Stacks went unseen after API connection cuts.

use std::sync::{Arc, Mutex};

use futures::channel::mpsc;
use futures::{SinkExt, Stream, StreamExt};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use tracing::warn;

use crate::api::Stack;
use crate::runtime::readiness::CacheFlag;

/// The Stack cache, in `/readyz`.
pub const CACHE: &str = "stacks";

/// Changes buffered per subscriber before the watch waits for it.
const BUFFER: usize = 1024;

pub struct SharedStacks {
    pub store: Store<Stack>,
    writer: Writer<Stack>,
    api: Api<Stack>,
    subscribers: Mutex<Vec<mpsc::Sender<Arc<Stack>>>>,
}

impl SharedStacks {
    /// The cache of every Stack in `namespace` (all namespaces when `None`).
    pub fn new(client: kube::Client, namespace: Option<&str>) -> Self {
        let api = match namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        let (store, writer) = reflector::store();
        Self {
            store,
            writer,
            api,
            subscribers: Mutex::new(Vec::new()),
        }
    }

    /// A stream of every Stack applied to the cache (and all of them again
    /// after each re-list). Subscribe every reader before `run`: a
    /// subscriber that stops reading stalls the watch.
    pub fn subscribe(&self) -> impl Stream<Item = Arc<Stack>> + Send + 'static {
        let (sender, receiver) = mpsc::channel(BUFFER);
        self.subscribers.lock().expect("subscribers lock").push(sender);
        receiver
    }

    /// Fills the cache until the process stops; run it beside the
    /// controllers. `synced` is marked at the end of the first list.
    pub async fn run(self, synced: CacheFlag) {
        let Self {
            store,
            writer,
            api,
            subscribers,
        } = self;
        let mut subscribers = subscribers.into_inner().expect("subscribers lock");
        let mut events = std::pin::pin!(
            watcher(api, watcher::Config::default().any_semantic())
                .default_backoff()
                .modify(slim)
                .reflect(writer)
                .inspect(synced.on_init_done(CACHE))
        );
        while let Some(event) = events.next().await {
            let changed: Vec<Arc<Stack>> = match event {
                Ok(watcher::Event::Apply(stack)) => store.get(&ObjectRef::from_obj(&stack)).into_iter().collect(),
                Ok(watcher::Event::InitDone) => store.state(),
                Ok(_) => continue,
                Err(error) => {
                    warn!(%error, "stack watch");
                    continue;
                }
            };
            for stack in changed {
                // A subscriber whose receiver is gone (its controller
                // stopped) is dropped; the others wait for room.
                let mut open = Vec::with_capacity(subscribers.len());
                for mut subscriber in subscribers.drain(..) {
                    if subscriber.send(stack.clone()).await.is_ok() {
                        open.push(subscriber);
                    }
                }
                subscribers = open;
            }
        }
    }
}

/// What the cache never reads: field ownership, and kubectl's copy of the
/// whole last applied object (the template again).
fn slim(stack: &mut Stack) {
    stack.managed_fields_mut().clear();
    stack.annotations_mut().remove(LAST_APPLIED);
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
