//! The deployments' ControllerRevisions from one watch instead of a LIST per
//! reconcile (a reconcile runs for most child changes, so that LIST was most
//! of the observe step). The cache is trusted the way kube-controller-manager
//! trusts its informers, with "expectations": once the watch has listed, and,
//! for a deployment this process just created or deleted revisions of, only
//! once the cache shows those changes. Until then the reconcile lists them
//! from the API server as before, so a lagging cache never hides a revision
//! (a rollback target, the stable revision) nor brings a deleted one back.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ControllerRevision;
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use super::observe::{HASH_LABEL, owned_by};

pub struct RevisionCache {
    store: Store<ControllerRevision>,
    writer: Mutex<Option<Writer<ControllerRevision>>>,
    listed: AtomicBool,
    /// By deployment uid: the revisions this process created or deleted that
    /// the cache does not show yet.
    expected: Mutex<HashMap<String, Expected>>,
}

struct Expected {
    created: BTreeSet<String>,
    deleted: BTreeSet<String>,
    /// When the oldest unmet change was made: a change someone else undid
    /// at once is never shown, and is given up after `EXPECTATION_TIMEOUT`
    /// (as kube-controller-manager does).
    since: Instant,
}

impl Default for Expected {
    fn default() -> Self {
        Self {
            created: BTreeSet::new(),
            deleted: BTreeSet::new(),
            since: Instant::now(),
        }
    }
}

const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(300);

impl Default for RevisionCache {
    fn default() -> Self {
        let (store, writer) = reflector::store();
        Self {
            store,
            writer: Mutex::new(Some(writer)),
            listed: AtomicBool::new(false),
            expected: Mutex::new(HashMap::new()),
        }
    }
}

impl RevisionCache {
    /// Fills the cache until dropped (managed fields left out: nothing reads
    /// them). Only the first call watches; a second returns at once.
    pub async fn watch(&self, client: Client, namespace: Option<&str>) {
        let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let api = crate::runtime::watch::scoped::<ControllerRevision>(&client, namespace);
        watcher(api, watcher::Config::default().labels(HASH_LABEL))
            .default_backoff()
            .modify(|revision| revision.managed_fields_mut().clear())
            .reflect(writer)
            .for_each(|event| {
                if matches!(event, Ok(watcher::Event::InitDone)) {
                    self.listed.store(true, Ordering::Release);
                }
                std::future::ready(())
            })
            .await;
    }

    pub fn created(&self, owner: &str, name: &str) {
        let mut expected = self.expected.lock().unwrap_or_else(|e| e.into_inner());
        let entry = expected.entry(owner.to_string()).or_default();
        entry.deleted.remove(name);
        entry.created.insert(name.to_string());
    }

    pub fn deleted(&self, owner: &str, name: &str) {
        let mut expected = self.expected.lock().unwrap_or_else(|e| e.into_inner());
        let entry = expected.entry(owner.to_string()).or_default();
        entry.created.remove(name);
        entry.deleted.insert(name.to_string());
    }

    /// Forgets a deployment that is gone.
    pub fn forget(&self, owner: &str) {
        self.expected.lock().unwrap_or_else(|e| e.into_inner()).remove(owner);
    }

    /// The revisions `owner` controls, if the cache can be trusted for it.
    pub fn owned(&self, owner: &str) -> Option<Vec<Arc<ControllerRevision>>> {
        if !self.listed.load(Ordering::Acquire) {
            return None;
        }
        let owned: Vec<_> = self
            .store
            .state()
            .into_iter()
            .filter(|r| owned_by(&r.metadata, owner))
            .collect();
        let mut expected = self.expected.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(wanted) = expected.get(owner) {
            let names: BTreeSet<String> = owned.iter().map(|r| r.name_any()).collect();
            let shown = wanted.created.is_subset(&names) && wanted.deleted.is_disjoint(&names);
            if !shown && wanted.since.elapsed() < EXPECTATION_TIMEOUT {
                tracing::debug!(
                    owner,
                    waited_ms = wanted.since.elapsed().as_millis(),
                    "the revision watch has not shown our last change yet; listing"
                );
                return None;
            }
            expected.remove(owner);
        }
        Some(owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn revision(name: &str, owner: &str) -> ControllerRevision {
        ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                owner_references: Some(vec![OwnerReference {
                    uid: owner.into(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// A cache holding `revisions`, listed.
    fn cache(revisions: &[ControllerRevision]) -> RevisionCache {
        let cache = RevisionCache::default();
        let mut writer = cache.writer.lock().unwrap().take().unwrap();
        writer.apply_watcher_event(&watcher::Event::Init);
        for revision in revisions {
            writer.apply_watcher_event(&watcher::Event::InitApply(revision.clone()));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        cache.listed.store(true, Ordering::Release);
        cache
    }

    #[test]
    fn nothing_is_trusted_before_the_watch_has_listed() {
        let cache = RevisionCache::default();
        assert!(cache.owned("a").is_none());
    }

    #[test]
    fn only_the_owners_revisions_are_returned() {
        let cache = cache(&[revision("web-1", "a"), revision("api-1", "b")]);
        let owned = cache.owned("a").expect("trusted");
        assert_eq!(owned.iter().map(|r| r.name_any()).collect::<Vec<_>>(), ["web-1"]);
    }

    #[test]
    fn a_revision_created_here_is_listed_until_the_cache_shows_it() {
        let cache = cache(&[revision("web-1", "a")]);
        cache.created("a", "web-2");
        assert!(cache.owned("a").is_none(), "the cache lags: list instead");
        assert!(cache.owned("b").is_some(), "other deployments are not held back");
        let cache = self::cache(&[revision("web-1", "a"), revision("web-2", "a")]);
        cache.created("a", "web-2");
        assert_eq!(cache.owned("a").expect("shown").len(), 2);
    }

    #[test]
    fn a_revision_deleted_here_is_listed_until_the_cache_drops_it() {
        let cache = cache(&[revision("web-1", "a"), revision("web-2", "a")]);
        cache.deleted("a", "web-1");
        assert!(cache.owned("a").is_none());
        let cache = self::cache(&[revision("web-2", "a")]);
        cache.deleted("a", "web-1");
        assert_eq!(cache.owned("a").expect("shown").len(), 1);
        assert!(cache.owned("a").is_some(), "the expectation is met once and forgotten");
    }
}
