//! The child writes of this process not yet seen in the shared Stack cache.
//! A deployment is woken by its children's changes, often before the cache
//! has its own latest writes of the others: deciding from those stale
//! copies, it would write the same children again with the same body (a
//! rollback of 100 targets wrote 90 of them twice). A child whose cached copy
//! is older than our last write of it, made with the body wanted now, is
//! left alone; after `PATIENCE` it is written again whatever the cache says.
//! Unlike `runtime::own_writes`, this remembers what was written, not only
//! when: a newer decision for the same child is written at once.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::Instant;

use kube::ResourceExt;

use crate::api::Stack;
use crate::runtime::own_writes::{PATIENCE, number as version};

#[derive(Default)]
pub struct ChildWrites {
    /// (namespace, child name) -> the last write.
    last: Mutex<HashMap<(String, String), Written>>,
}

struct Written {
    body: u64,
    version: u64,
    at: Instant,
}

fn fingerprint(body: &serde_json::Value) -> u64 {
    let mut hasher = DefaultHasher::new();
    body.to_string().hash(&mut hasher);
    hasher.finish()
}

impl ChildWrites {
    /// Remembers that `body` was applied to the child, leaving it at `version`.
    pub fn wrote(&self, namespace: &str, name: &str, body: &serde_json::Value, version_after: Option<&str>) {
        let Some(version) = version(version_after) else {
            return;
        };
        let written = Written {
            body: fingerprint(body),
            version,
            at: Instant::now(),
        };
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.insert((namespace.to_string(), name.to_string()), written);
    }

    /// Our last write of the child had `body` and the cached copy (if any)
    /// is older than it: writing it again would change nothing.
    pub fn in_flight(&self, namespace: &str, name: &str, cached: Option<&Stack>, body: &serde_json::Value) -> bool {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let Some(written) = last.get(&(namespace.to_string(), name.to_string())) else {
            return false;
        };
        let older = match cached {
            None => true,
            Some(stack) => version(stack.resource_version().as_deref()).is_some_and(|v| v < written.version),
        };
        older && written.at.elapsed() < PATIENCE && written.body == fingerprint(body)
    }

    /// Forgets the children of a deployment that is gone.
    pub fn forget(&self, namespace: &str, names: impl IntoIterator<Item = String>) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        for name in names {
            last.remove(&(namespace.to_string(), name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::StackSpec;
    use serde_json::json;

    fn cached(version: &str) -> Stack {
        let mut stack = Stack::new("web-t1", StackSpec::default());
        stack.metadata.resource_version = Some(version.into());
        stack
    }

    #[test]
    fn the_same_body_is_not_written_again_until_the_cache_shows_it() {
        let writes = ChildWrites::default();
        let v2 = json!({"metadata": {"annotations": {"stackpilot.dev/revision": "v2"}}});
        let v3 = json!({"metadata": {"annotations": {"stackpilot.dev/revision": "v3"}}});
        assert!(
            !writes.in_flight("ns", "web-t1", Some(&cached("10")), &v2),
            "never written"
        );
        writes.wrote("ns", "web-t1", &v2, Some("12"));
        assert!(
            writes.in_flight("ns", "web-t1", Some(&cached("10")), &v2),
            "the cache lags"
        );
        assert!(writes.in_flight("ns", "web-t1", None, &v2), "not cached yet");
        assert!(
            !writes.in_flight("ns", "web-t1", Some(&cached("10")), &v3),
            "another body is written"
        );
        assert!(
            !writes.in_flight("ns", "web-t1", Some(&cached("12")), &v2),
            "the cache has it"
        );
        assert!(
            !writes.in_flight("ns", "web-t2", Some(&cached("10")), &v2),
            "another child"
        );
        writes.forget("ns", ["web-t1".to_string()]);
        assert!(!writes.in_flight("ns", "web-t1", Some(&cached("10")), &v2));
    }
}
