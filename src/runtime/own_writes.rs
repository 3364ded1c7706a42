//! The version this process last left each object at. A reconcile can be
//! woken (by the event of an earlier write of ours, or by a child) before
//! the cache has our last write: it would decide from a copy we have already
//! superseded, and its write would be refused (409 Conflict) after work done
//! for nothing. A Stack waits for the event of that write; a StackDeployment,
//! which its own status writes do not wake, reads the object afresh.
//!
//! resourceVersions are opaque to clients, but every API server backed by
//! etcd gives them as its increasing revision. One that does not parse as a
//! number is never called superseded, so such a server only loses this
//! saving; so does a cache that has not caught up after `PATIENCE`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

/// How long a cached copy older than our write is waited out.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A resourceVersion as the number etcd gives it (`None` if it is not one).
pub fn number(version: Option<&str>) -> Option<u64> {
    version.and_then(|v| v.parse().ok())
}

pub struct OwnWrites<K: Resource<DynamicType = ()>> {
    last: Mutex<HashMap<ObjectRef<K>, (u64, Instant)>>,
}

impl<K: Resource<DynamicType = ()>> Default for OwnWrites<K> {
    fn default() -> Self {
        Self {
            last: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Resource<DynamicType = ()>> OwnWrites<K> {
    /// Remembers that this process left `object` at `version` (a write, or a
    /// reconcile that found it there); the mark never goes down.
    pub fn wrote(&self, object: &K, version: Option<&str>) {
        let Some(version) = number(version) else {
            return;
        };
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let entry = last.entry(ObjectRef::from_obj(object)).or_insert((0, Instant::now()));
        if version > entry.0 {
            *entry = (version, Instant::now());
        }
    }

    /// Forgets an object that is gone.
    pub fn forget(&self, object: &K) {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ObjectRef::from_obj(object));
    }

    /// Whether the cached `object` is older than our last write of it.
    pub fn superseded(&self, object: &K) -> bool {
        let Some(cached) = number(object.resource_version().as_deref()) else {
            return false;
        };
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.get(&ObjectRef::from_obj(object))
            .is_some_and(|(written, at)| cached < *written && at.elapsed() < PATIENCE)
    }

    /// Whether the cached `object` shows our last write of it: false when
    /// this process has not left it anywhere yet (a restart knows nothing).
    pub fn shows_last(&self, object: &K) -> bool {
        let Some(cached) = number(object.resource_version().as_deref()) else {
            return false;
        };
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.get(&ObjectRef::from_obj(object))
            .is_some_and(|(written, _)| cached >= *written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Stack, StackSpec};

    fn at(version: &str) -> Stack {
        let mut stack = Stack::new("web", StackSpec::default());
        stack.metadata.namespace = Some("team-a".into());
        stack.metadata.resource_version = Some(version.into());
        stack
    }

    #[test]
    fn a_copy_older_than_our_last_write_is_superseded() {
        let writes = OwnWrites::<Stack>::default();
        assert!(!writes.superseded(&at("10")), "nothing written yet");
        writes.wrote(&at("10"), Some("11"));
        writes.wrote(&at("11"), Some("12"));
        assert!(
            writes.superseded(&at("11")),
            "the finalizer's event, before the intent's"
        );
        assert!(!writes.superseded(&at("12")), "our last write");
        assert!(!writes.superseded(&at("15")), "someone else's later change");
        writes.wrote(&at("12"), Some("9"));
        assert!(writes.superseded(&at("11")), "a lower version never lowers the mark");
        writes.forget(&at("12"));
        assert!(!writes.superseded(&at("11")));
    }

    #[test]
    fn a_copy_shows_our_last_write_only_once_it_is_that_new() {
        let writes = OwnWrites::<Stack>::default();
        assert!(!writes.shows_last(&at("10")), "a restart knows nothing");
        writes.wrote(&at("10"), Some("12"));
        assert!(!writes.shows_last(&at("11")), "the cache lags our write");
        assert!(writes.shows_last(&at("12")));
        assert!(writes.shows_last(&at("14")), "someone else's later change");
        assert!(!writes.shows_last(&at("x")));
    }

    #[test]
    fn versions_that_are_not_numbers_are_never_superseded() {
        let writes = OwnWrites::<Stack>::default();
        writes.wrote(&at("a"), Some("b"));
        assert!(!writes.superseded(&at("a")));
        writes.wrote(&at("10"), Some("11"));
        assert!(!writes.superseded(&at("x")));
    }
}
