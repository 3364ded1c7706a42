//! What a Stack reconcile needs beyond the shared runtime: the AWS door,
//! the shared bulk reads, timings and the reconcile slots.

use std::sync::Arc;

use kube::runtime::reflector::Store;

use crate::account::TenancyCache;
use crate::api::Stack;
use crate::aws::CloudFormationProvider;
use crate::runtime::context::Shared;
use crate::runtime::slots::Slots;

use super::directory::Directory;
use super::plan::Timing;
use super::unsupported::Unsupported;
use crate::runtime::own_writes::OwnWrites;

/// Stack controller settings from the command line.
#[derive(Clone, Debug)]
pub struct StackSettings {
    /// Stacks without `accountRef` may use the operator's own credentials.
    pub allow_operator_credentials: bool,
    pub timing: Timing,
    /// Reconciles running at once (changes before polls).
    pub concurrency: usize,
}

impl Default for StackSettings {
    fn default() -> Self {
        Self {
            allow_operator_credentials: false,
            timing: Timing::default(),
            concurrency: 48,
        }
    }
}

pub struct StackContext {
    pub shared: Arc<Shared>,
    pub aws: Arc<dyn CloudFormationProvider>,
    /// Shared bulk reads of stacks, per account and region.
    pub directory: Directory,
    /// APIs endpoints said they do not offer, per account and region.
    pub unsupported: Unsupported,
    pub settings: StackSettings,
    pub slots: Slots,
    /// The shared Stack cache (dependencies are read from it).
    pub stacks: Store<Stack>,
    /// AwsAccounts and namespace labels for grants; this controller's
    /// watches fill it.
    pub tenancy: TenancyCache,
    /// The version this process last left each Stack at.
    pub own_writes: OwnWrites<Stack>,
}

impl StackContext {
    pub fn new(
        shared: Arc<Shared>,
        aws: Arc<dyn CloudFormationProvider>,
        settings: StackSettings,
        stacks: Store<Stack>,
    ) -> Self {
        Self {
            tenancy: TenancyCache::new(shared.client.clone()),
            stacks,
            directory: Directory::new(settings.timing.resync, settings.timing.in_flight),
            slots: Slots::new(settings.concurrency),
            unsupported: Unsupported::default(),
            own_writes: OwnWrites::default(),
            shared,
            aws,
            settings,
        }
    }

    /// Shares `tenancy` with the other controllers.
    pub fn with_tenancy(self, tenancy: TenancyCache) -> Self {
        Self { tenancy, ..self }
    }
}
