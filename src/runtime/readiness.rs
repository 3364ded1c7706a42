//! `/readyz`: ready once every running controller's caches have synced. Each
//! controller registers its caches when it starts and marks them synced; a
//! standby replica (leader election) is ready without any.
//!
//! A cache counts as synced when its watch stream yields the end of its
//! first list (`InitDone`, after the reflector stored it). Waiting on
//! `Store::wait_until_ready` instead is unreliable from a second task: it
//! wakes only its latest waiter (one oneshot receiver), and the controller
//! itself waits on it, so our waiter may never wake.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kube::runtime::watcher;
use tracing::info;

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

    /// For `.inspect(...)` on a watch stream after its reflector: marks the
    /// cache synced at the end of the first list.
    pub fn on_init_done<K, E>(self, cache: &'static str) -> impl FnMut(&Result<watcher::Event<K>, E>) {
        move |event| {
            if matches!(event, Ok(watcher::Event::InitDone)) && !self.0.swap(true, Ordering::Relaxed) {
                info!(cache, "cache synced");
            }
        }
    }
}

impl Readiness {
    /// A cache that must sync before the replica is ready. Registering a
    /// name again returns the same flag, so start-up can register every
    /// cache before any controller runs (else the first cache to sync would
    /// make the replica ready before the others were even registered).
    pub fn register(&self, name: &'static str) -> CacheFlag {
        let mut caches = self.caches.lock().expect("readiness lock");
        if let Some((_, flag)) = caches.iter().find(|(n, _)| *n == name) {
            return CacheFlag(flag.clone());
        }
        let flag = Arc::new(AtomicBool::new(false));
        caches.push((name, flag.clone()));
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

    #[test]
    fn a_name_registered_twice_is_one_cache_marked_at_the_end_of_the_first_list() {
        let readiness = Readiness::default();
        let early = readiness.register("stacks");
        let mut mark = readiness.register("stacks").on_init_done::<(), ()>("stacks");
        assert_eq!(readiness.waiting_for(), vec!["stacks"]);
        mark(&Ok(watcher::Event::Init));
        mark(&Ok(watcher::Event::InitApply(())));
        mark(&Err(()));
        assert!(!readiness.is_ready());
        mark(&Ok(watcher::Event::InitDone));
        assert!(readiness.is_ready());
        drop(early);
    }
}
