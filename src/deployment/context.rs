//! What a StackDeployment reconcile needs beyond the shared runtime: the
//! shared Stack cache (its children), the CloudWatch door for the health
//! gates, the operator's own account id (alarm ARNs) and timings.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::OnceCell;

use crate::account::TenancyCache;
use crate::api::{Stack, StackDeployment};
use crate::aws::AwsTarget;
use crate::aws::alarms::AlarmsProvider;
use crate::aws::identity::AccountIdentity;
use crate::runtime::context::Shared;
use crate::runtime::own_writes::OwnWrites;

use super::child_writes::ChildWrites;
use super::plan::{Placement, Timing};
use super::revision_cache::RevisionCache;

/// StackDeployment controller settings from the command line.
#[derive(Clone, Debug, Default)]
pub struct DeploymentSettings {
    /// Targets without `accountRef` may use the operator's own credentials.
    pub allow_operator_credentials: bool,
    pub timing: Timing,
}

pub struct DeploymentContext {
    pub shared: Arc<Shared>,
    pub alarms: Arc<dyn AlarmsProvider>,
    /// Who the operator's own credentials are, for the alarm ARNs of targets
    /// without `accountRef` (`None`: not known, no rollback triggers there).
    pub identity: Option<Arc<dyn AccountIdentity>>,
    own_account: OnceCell<String>,
    /// The shared Stack cache the Stack controller fills.
    pub stacks: Store<Stack>,
    pub settings: DeploymentSettings,
    /// Alarm histories already read: an alarm that changed once during a
    /// wave is not read again each poll. The value is the ALARM seen, if any.
    pub alarm_histories: Mutex<BTreeMap<HistoryKey, Option<String>>>,
    /// AwsAccounts and namespace labels for grants (the Stack controller's
    /// watches fill it).
    pub tenancy: TenancyCache,
    /// The deployments' ControllerRevisions, from a watch.
    pub revisions: RevisionCache,
    /// Child writes not yet seen in the shared Stack cache.
    pub child_writes: ChildWrites,
    /// The version this process last left each deployment at.
    own_writes: OwnWrites<StackDeployment>,
    /// When each deployment's status was last written by this process.
    status_written: Mutex<HashMap<ObjectRef<StackDeployment>, Instant>>,
}

/// (placement, alarm, its StateUpdatedTimestamp, the wave's start), in ms.
pub type HistoryKey = (Placement, String, i64, i64);

impl DeploymentContext {
    pub fn new(
        shared: Arc<Shared>,
        alarms: Arc<dyn AlarmsProvider>,
        identity: Option<Arc<dyn AccountIdentity>>,
        stacks: Store<Stack>,
        settings: DeploymentSettings,
    ) -> Self {
        Self {
            tenancy: TenancyCache::new(shared.client.clone()),
            shared,
            alarms,
            identity,
            own_account: OnceCell::new(),
            stacks,
            settings,
            alarm_histories: Mutex::new(BTreeMap::new()),
            revisions: RevisionCache::default(),
            child_writes: ChildWrites::default(),
            own_writes: OwnWrites::default(),
            status_written: Mutex::new(HashMap::new()),
        }
    }

    /// The cached `deployment` shows our last write of it (false when this
    /// process has not reconciled it yet, or the cache lags).
    pub fn caught_up(&self, deployment: &StackDeployment) -> bool {
        self.own_writes.shows_last(deployment)
    }

    /// The cached `deployment` is older than our last write of it: our own
    /// status writes do not wake a deployment, so a reconcile reads it afresh
    /// instead of deciding from that copy (and failing its write on a 409).
    pub fn superseded(&self, deployment: &StackDeployment) -> bool {
        self.own_writes.superseded(deployment)
    }

    /// How long a progress-only status write of `deployment` should wait:
    /// what is left of `interval` since its last status write.
    pub fn progress_wait(&self, deployment: &StackDeployment, interval: Duration) -> Option<Duration> {
        let written = self.status_written.lock().unwrap_or_else(|e| e.into_inner());
        let at = written.get(&ObjectRef::from_obj(deployment))?;
        interval.checked_sub(at.elapsed()).filter(|left| !left.is_zero())
    }

    /// Remembers the version a reconcile left `deployment` at, and whether
    /// it wrote the status (`None`: gone, forgotten).
    pub fn wrote(&self, deployment: &StackDeployment, version: Option<String>, status_written: bool) {
        let mut written = self.status_written.lock().unwrap_or_else(|e| e.into_inner());
        let Some(version) = version else {
            written.remove(&ObjectRef::from_obj(deployment));
            self.own_writes.forget(deployment);
            return;
        };
        self.own_writes.wrote(deployment, Some(&version));
        if status_written {
            written.insert(ObjectRef::from_obj(deployment), Instant::now());
        }
    }

    /// Shares `tenancy` with the other controllers.
    pub fn with_tenancy(self, tenancy: TenancyCache) -> Self {
        Self { tenancy, ..self }
    }

    /// The operator's own account id, asked of STS once per process.
    pub async fn own_account(&self) -> Option<String> {
        let identity = self.identity.as_ref()?;
        self.own_account
            .get_or_try_init(|| async { identity.account_id(&AwsTarget::default()).await })
            .await
            .ok()
            .cloned()
    }
}
