//! What a Pipeline reconcile needs beyond the shared runtime: the caches of
//! its children and Jobs, timings, and the Job creates the API server refused.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::runtime::reflector::Store;

use crate::api::{Stack, StackDeployment};
use crate::runtime::context::Shared;

use super::plan::Timing;

pub struct PipelineContext {
    pub shared: Arc<Shared>,
    /// The shared Stack cache (the Stack controller's).
    pub stacks: Store<Stack>,
    pub deployments: Store<StackDeployment>,
    /// Jobs labelled `stackpilot.dev/pipeline`.
    pub jobs: Store<Job>,
    pub timing: Timing,
    /// Jobs the API server refused to create (an invalid template), by
    /// `namespace/name`, with its message: the next look sees them failed.
    pub refused_jobs: Mutex<BTreeMap<String, String>>,
    /// Child writes just applied, by `namespace/name`: the same write is not
    /// applied again while the Stack cache has not caught up with it.
    pub applied: Mutex<BTreeMap<String, (String, Instant)>>,
}

/// How long an applied child write may be missing from the cache before it
/// is applied again.
pub const CACHE_LAG: Duration = Duration::from_secs(10);

impl PipelineContext {
    /// True when this exact write was applied less than [`CACHE_LAG`] ago.
    pub fn just_applied(&self, key: &str, write: &str) -> bool {
        let applied = self.applied.lock().expect("applied lock");
        applied
            .get(key)
            .is_some_and(|(done, at)| done == write && at.elapsed() < CACHE_LAG)
    }

    pub fn record_applied(&self, key: String, write: String) {
        let mut applied = self.applied.lock().expect("applied lock");
        applied.retain(|_, (_, at)| at.elapsed() < CACHE_LAG);
        applied.insert(key, (write, Instant::now()));
    }
}

impl PipelineContext {
    pub fn new(
        shared: Arc<Shared>,
        stacks: Store<Stack>,
        deployments: Store<StackDeployment>,
        jobs: Store<Job>,
        timing: Timing,
    ) -> Self {
        Self {
            shared,
            stacks,
            deployments,
            jobs,
            timing,
            refused_jobs: Mutex::new(BTreeMap::new()),
            applied: Mutex::new(BTreeMap::new()),
        }
    }
}
