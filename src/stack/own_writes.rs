//! The version this process last left each Stack at. One reconcile often
//! writes a Stack more than once (the finalizer, then the intent), and the
//! watch event of an earlier write wakes the next reconcile, possibly before
//! the cache has the later one: that reconcile would decide from a copy we
//! have already superseded, and its write would be refused (409 Conflict)
//! after reads made for nothing. It waits instead; the event of our last
//! write wakes it (a short requeue is the safety net).
//!
//! resourceVersions are opaque to clients, but every API server backed by
//! etcd gives them as its increasing revision. One that does not parse as a
//! number is never called superseded, so such a server only loses this
//! saving; so does a cache that has not caught up after `PATIENCE`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::api::Stack;

/// How long a cached copy older than our write is waited out.
const PATIENCE: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct OwnWrites {
    last: Mutex<HashMap<ObjectRef<Stack>, (u64, Instant)>>,
}

impl OwnWrites {
    /// Remembers that this process wrote `stack` at `version`.
    pub fn wrote(&self, stack: &Stack, version: Option<&str>) {
        let Some(version) = version.and_then(|v| v.parse::<u64>().ok()) else {
            return;
        };
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let entry = last.entry(ObjectRef::from_obj(stack)).or_insert((0, Instant::now()));
        if version > entry.0 {
            *entry = (version, Instant::now());
        }
    }

    /// Forgets a Stack that is gone.
    pub fn forget(&self, stack: &Stack) {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ObjectRef::from_obj(stack));
    }

    /// Whether the cached `stack` is older than our last write of it.
    pub fn superseded(&self, stack: &Stack) -> bool {
        let Some(cached) = stack.resource_version().and_then(|v| v.parse::<u64>().ok()) else {
            return false;
        };
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.get(&ObjectRef::from_obj(stack))
            .is_some_and(|(written, at)| cached < *written && at.elapsed() < PATIENCE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::StackSpec;

    fn at(version: &str) -> Stack {
        let mut stack = Stack::new("web", StackSpec::default());
        stack.metadata.namespace = Some("team-a".into());
        stack.metadata.resource_version = Some(version.into());
        stack
    }

    #[test]
    fn a_copy_older_than_our_last_write_is_superseded() {
        let writes = OwnWrites::default();
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
    fn versions_that_are_not_numbers_are_never_superseded() {
        let writes = OwnWrites::default();
        writes.wrote(&at("a"), Some("b"));
        assert!(!writes.superseded(&at("a")));
        writes.wrote(&at("10"), Some("11"));
        assert!(!writes.superseded(&at("x")));
    }
}
