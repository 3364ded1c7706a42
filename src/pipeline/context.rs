//! What a Pipeline reconcile needs beyond the shared runtime: the caches of
//! its children and Jobs, timings, and the Job creates the API server refused.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

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
        }
    }
}
