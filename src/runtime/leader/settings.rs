//! Which Lease to hold and for how long, from the command line, and who we are.

use std::time::Duration;

use crate::cli::LeaderElection;

/// Which Lease to hold, who we are, and how long a hold lasts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// `holderIdentity`: unique among the replicas.
    pub identity: String,
    /// `leaseDurationSeconds`: how long after the record last changed a
    /// standby may take the lease over.
    pub lease_duration: Duration,
    /// How often the holder renews.
    pub renew_interval: Duration,
}

impl LeaseSettings {
    /// From the command line; the namespace falls back to `POD_NAMESPACE`,
    /// then to the client's namespace (in cluster: the service account's
    /// namespace file; else the kubeconfig context's, else `default`).
    pub fn new(args: &LeaderElection, client_namespace: &str) -> anyhow::Result<Self> {
        let non_empty = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
        let namespace = non_empty(args.namespace.clone())
            .or_else(|| non_empty(std::env::var("POD_NAMESPACE").ok()))
            .unwrap_or_else(|| client_namespace.to_string());
        let settings = LeaseSettings {
            namespace,
            name: args.lease_name.clone(),
            identity: identity(std::env::var("POD_NAME").ok()),
            lease_duration: Duration::from_secs(args.lease_duration_seconds),
            renew_interval: Duration::from_secs(args.renew_seconds),
        };
        settings.validate()?;
        Ok(settings)
    }

    pub(super) fn validate(&self) -> anyhow::Result<()> {
        if self.name.is_empty() {
            anyhow::bail!("--leader-election-lease-name must not be empty");
        }
        if self.renew_interval.is_zero() || self.lease_duration <= self.renew_interval * 2 {
            anyhow::bail!(
                "the lease duration ({:?}) must exceed twice the renew interval ({:?}), which must not be zero",
                self.lease_duration,
                self.renew_interval
            );
        }
        if i32::try_from(self.lease_duration.as_secs()).is_err() {
            anyhow::bail!("the lease duration is too long");
        }
        Ok(())
    }

    /// How long after its last successful renewal (counted from when that
    /// request was sent) the holder keeps acting: one renew interval short of
    /// the lease duration, which is the margin against any standby.
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration.saturating_sub(self.renew_interval)
    }

    pub(super) fn duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// The holder identity: the pod name when `POD_NAME` is set (unique among
/// live pods; a container restarted in the same pod resumes its own lease at
/// once, as its predecessor is gone), else `<hostname>_<pid>_<random>`.
pub fn identity(pod_name: Option<String>) -> String {
    if let Some(pod) = pod_name.filter(|p| !p.trim().is_empty()) {
        return pod;
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "stackpilot".into());
    format!(
        "{host}_{}_{:06x}",
        std::process::id(),
        rand::random::<u32>() & 0xff_ffff
    )
}
