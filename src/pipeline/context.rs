//! What a Pipeline reconcile needs beyond the shared runtime: the caches of
//! its children and Jobs, timings, and the Job creates the API server refused.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::runtime::reflector::Store;

use crate::account::TenancyCache;
use crate::api::{Stack, StackDeployment};
use crate::aws::s3::S3Provider;
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
    /// S3 sources are read through this (counted and budgeted).
    pub s3: Arc<dyn S3Provider>,
    /// Whether a source without `accountRef` may use the operator's own credentials.
    pub allow_operator_credentials: bool,
    /// AwsAccounts and namespace labels for an S3 source's grant.
    pub tenancy: TenancyCache,
    /// The last HeadObject answer per S3-sourced pipeline, by `namespace/name`.
    pub s3_heads: Mutex<BTreeMap<String, super::s3_source::Head>>,
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

/// What the Pipeline controller reads its S3 sources with.
#[derive(Clone)]
pub struct Sources {
    pub s3: Arc<dyn S3Provider>,
    pub allow_operator_credentials: bool,
    /// AwsAccounts and namespace labels for grants.
    pub tenancy: TenancyCache,
}

impl PipelineContext {
    pub fn new(
        shared: Arc<Shared>,
        stacks: Store<Stack>,
        deployments: Store<StackDeployment>,
        jobs: Store<Job>,
        timing: Timing,
        sources: Sources,
    ) -> Self {
        Self {
            shared,
            stacks,
            deployments,
            jobs,
            timing,
            s3: sources.s3,
            allow_operator_credentials: sources.allow_operator_credentials,
            tenancy: sources.tenancy,
            s3_heads: Mutex::new(BTreeMap::new()),
            refused_jobs: Mutex::new(BTreeMap::new()),
            applied: Mutex::new(BTreeMap::new()),
        }
    }
}
