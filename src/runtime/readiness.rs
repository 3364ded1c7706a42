//! `/readyz`: ready once every running controller's caches have synced. Each
//! controller registers its caches when it starts and marks them synced; a
//! standby replica (leader election) is ready without any.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Readiness {
    caches: Mutex<Vec<(&'static str, Arc<AtomicBool>)>>,
    standby: AtomicBool,
}

/// One registered cache; `synced` marks it.
#[derive(Clone)]
pub struct CacheFlag(Arc<AtomicBool>);

impl CacheFlag {
    pub fn synced(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Readiness {
    /// A cache that must sync before the replica is ready.
    pub fn register(&self, name: &'static str) -> CacheFlag {
        let flag = Arc::new(AtomicBool::new(false));
        self.caches.lock().expect("readiness lock").push((name, flag.clone()));
        CacheFlag(flag)
    }

    /// A standby (not leading) is ready: it serves by waiting.
    pub fn set_standby(&self, standby: bool) {
        self.standby.store(standby, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        if self.standby.load(Ordering::Relaxed) {
            return true;
        }
        let caches = self.caches.lock().expect("readiness lock");
        !caches.is_empty() && caches.iter().all(|(_, f)| f.load(Ordering::Relaxed))
    }

    /// The caches not synced yet, for the `/readyz` answer.
    pub fn waiting_for(&self) -> Vec<&'static str> {
        let caches = self.caches.lock().expect("readiness lock");
        caches
            .iter()
            .filter(|(_, f)| !f.load(Ordering::Relaxed))
            .map(|(n, _)| *n)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_registered_cache_synced_or_standby() {
        let readiness = Readiness::default();
        assert!(!readiness.is_ready(), "nothing running is not ready");
        let stacks = readiness.register("stacks");
        let accounts = readiness.register("awsaccounts");
        stacks.synced();
        assert!(!readiness.is_ready());
        assert_eq!(readiness.waiting_for(), vec!["awsaccounts"]);
        accounts.synced();
        assert!(readiness.is_ready());
        let fresh = Readiness::default();
        fresh.set_standby(true);
        assert!(fresh.is_ready());
        fresh.set_standby(false);
        assert!(!fresh.is_ready());
    }
}
