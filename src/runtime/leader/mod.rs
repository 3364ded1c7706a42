//! Leader election over a `coordination.k8s.io/v1` Lease, so that more than
//! one replica can run while only the holder runs the controllers (and so
//! only the holder writes to AWS).
//!
//! No wall-clock time is compared across machines (the rule client-go
//! follows): a standby treats the lease as expired only
//! `leaseDurationSeconds` after it *saw* the record last change, on its own
//! monotonic clock; the holder stops acting `lease_duration - renew_interval`
//! after it *sent* its last successful renewal. With the defaults (15 s
//! lease, renew every 5 s) the holder has given up at least 5 s before any
//! standby may take over. Every write is a PUT carrying the
//! `resourceVersion` it read (optimistic concurrency), so two candidates can
//! never both win the same record, and a holder learns at its next renewal
//! that someone else wrote the lease.
//!
//! Losing the lease is final for the process: `run` exits non-zero and
//! Kubernetes restarts it as a standby, which cuts off any reconcile in
//! flight. A graceful stop gives the lease up (holder cleared) after the
//! controllers have stopped, so a standby takes over at once.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::metrics::Metrics;

mod decide;
mod settings;
#[cfg(test)]
mod tests;

use decide::holder;
pub use decide::{Campaign, Renewal, Sighting, campaign, held, released, renewal};
pub use settings::{LeaseSettings, identity};

/// How long to wait before retrying after a failed API call.
const RETRY: Duration = Duration::from_secs(1);
/// Upper bound for giving the lease up on a graceful stop.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Campaigns for the lease.
pub struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    metrics: Arc<Metrics>,
}

/// What a candidate knows about the lease.
enum Known {
    Nothing,
    Absent,
    Present(Box<Lease>, Sighting),
}

impl Elector {
    pub fn new(client: Client, settings: LeaseSettings, metrics: Arc<Metrics>) -> Self {
        metrics.leader.set(0);
        Elector {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            metrics,
        }
    }

    /// Campaigns until this replica holds the lease, watching the Lease so
    /// that a release or a renewal is seen at once (and reading it every
    /// renew interval in case the watch fails). `standby` is called
    /// whenever the lease has been read and another replica holds it.
    pub async fn campaign(&self, mut standby: impl FnMut()) -> Leadership {
        let settings = &self.settings;
        info!(
            identity = %settings.identity,
            lease = %settings.name,
            namespace = %settings.namespace,
            "campaigning for leadership"
        );
        let mut changes = watcher::watch_object(self.api.clone(), &settings.name)
            .default_backoff()
            .boxed();
        let mut known = Known::Nothing;
        let mut last_holder: Option<String> = None;
        loop {
            let now = Instant::now();
            let wait_until = match &known {
                Known::Nothing => None,
                Known::Absent => {
                    let started = Instant::now();
                    let lease = Lease {
                        metadata: ObjectMeta {
                            name: Some(settings.name.clone()),
                            namespace: Some(settings.namespace.clone()),
                            ..ObjectMeta::default()
                        },
                        spec: Some(held(&LeaseSpec::default(), settings, Timestamp::now())),
                    };
                    match self.api.create(&PostParams::default(), &lease).await {
                        Ok(lease) => return self.lead(lease, started),
                        Err(error) => {
                            debug!(%error, "could not create the lease");
                            self.refresh(&mut known).await;
                            continue;
                        }
                    }
                }
                Known::Present(lease, seen) => match campaign(seen, settings, now) {
                    Campaign::Acquire => {
                        let started = Instant::now();
                        let mut next = (**lease).clone();
                        next.spec = Some(held(&seen.record, settings, Timestamp::now()));
                        match self.api.replace(&settings.name, &PostParams::default(), &next).await {
                            Ok(lease) => return self.lead(lease, started),
                            Err(kube::Error::Api(status)) if status.is_conflict() || status.is_not_found() => {
                                debug!(reason = %status.reason, "lost the race for the lease");
                            }
                            Err(error) => {
                                warn!(%error, "could not acquire the lease");
                                tokio::time::sleep(RETRY).await;
                            }
                        }
                        self.refresh(&mut known).await;
                        continue;
                    }
                    Campaign::WaitUntil(until) => {
                        let holder = seen.holder().map(str::to_string);
                        if holder != last_holder {
                            info!(
                                holder = holder.as_deref().unwrap_or(""),
                                "standing by: another replica leads"
                            );
                            last_holder = holder;
                        }
                        standby();
                        Some(until)
                    }
                },
            };
            // The watch brings every change at once; reading the lease
            // every renew interval as well keeps the campaign going should
            // the watch fail (say, RBAC without `watch` on leases).
            let poll = Instant::now() + settings.renew_interval;
            let wake = wait_until.map_or(poll, |until| until.min(poll));
            tokio::select! {
                event = changes.next() => match event {
                    Some(Ok(lease)) => see(&mut known, lease),
                    Some(Err(error)) => warn!(%error, "watching the lease"),
                    None => {
                        changes = watcher::watch_object(self.api.clone(), &settings.name)
                            .default_backoff()
                            .boxed();
                    }
                },
                () = tokio::time::sleep_until(wake) => self.refresh(&mut known).await,
            }
        }
    }

    /// Reads the lease again after a failed write.
    async fn refresh(&self, known: &mut Known) {
        match self.api.get_opt(&self.settings.name).await {
            Ok(lease) => see(known, lease),
            Err(error) => {
                warn!(%error, "reading the lease");
                tokio::time::sleep(RETRY).await;
            }
        }
    }

    fn lead(&self, lease: Lease, acquired: Instant) -> Leadership {
        info!(
            identity = %self.settings.identity,
            lease = %self.settings.name,
            namespace = %self.settings.namespace,
            transitions = lease.spec.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0),
            "acquired leadership"
        );
        self.metrics.leader.set(1);
        let (stop_tx, stop_rx) = oneshot::channel();
        let (lost_tx, lost_rx) = watch::channel(None);
        let renewer = tokio::spawn(keep(
            self.api.clone(),
            self.settings.clone(),
            self.metrics.clone(),
            lease,
            acquired,
            stop_rx,
            lost_tx,
        ));
        Leadership {
            api: self.api.clone(),
            settings: self.settings.clone(),
            metrics: self.metrics.clone(),
            stop: Some(stop_tx),
            renewer,
            lost: lost_rx,
        }
    }
}

fn see(known: &mut Known, lease: Option<Lease>) {
    let now = Instant::now();
    *known = match (lease, std::mem::replace(known, Known::Nothing)) {
        (None, _) => Known::Absent,
        (Some(lease), previous) => {
            let previous = match &previous {
                Known::Present(_, seen) => Some(seen),
                _ => None,
            };
            let seen = Sighting::update(previous, lease.spec.clone().unwrap_or_default(), now);
            Known::Present(Box::new(lease), seen)
        }
    };
}

/// Held leadership: renewed in the background until released or lost.
pub struct Leadership {
    api: Api<Lease>,
    settings: LeaseSettings,
    metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    renewer: JoinHandle<Option<Lease>>,
    lost: watch::Receiver<Option<String>>,
}

impl Leadership {
    /// Resolves (with the reason) once the lease is lost: renewal failed
    /// until the deadline, or another replica wrote the lease. The caller
    /// must stop acting at once.
    pub async fn lost(&mut self) -> String {
        match self.lost.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            // The renewer ended without a reason: it was stopped, or it
            // panicked; either way this replica no longer holds the lease.
            Err(_) => "the lease renewer stopped".into(),
        }
    }

    /// Stops renewing and gives the lease up, so that a standby takes over
    /// at once. Call only once the controllers have stopped.
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let renewer = (&mut self.renewer).await;
        self.metrics.leader.set(0);
        if !matches!(renewer, Ok(Some(_))) {
            return;
        }
        match tokio::time::timeout(RELEASE_TIMEOUT, self.give_up()).await {
            Ok(Ok(true)) => info!("released leadership"),
            Ok(Ok(false)) => info!("leadership had already passed on"),
            Ok(Err(error)) => warn!(%error, "could not release the lease; it expires on its own"),
            Err(_) => warn!("releasing the lease timed out; it expires on its own"),
        }
    }

    async fn give_up(&self) -> Result<bool, kube::Error> {
        let name = &self.settings.name;
        loop {
            let Some(mut lease) = self.api.get_opt(name).await? else {
                return Ok(false);
            };
            let record = lease.spec.clone().unwrap_or_default();
            if holder(&record) != Some(self.settings.identity.as_str()) {
                return Ok(false);
            }
            lease.spec = Some(released(&record, Timestamp::now()));
            match self.api.replace(name, &PostParams::default(), &lease).await {
                Ok(_) => return Ok(true),
                Err(kube::Error::Api(status)) if status.is_conflict() => continue,
                Err(error) => return Err(error),
            }
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Why a renewal did not go through.
enum RenewError {
    /// The lease changed but still names us (say a label was edited): retry
    /// with this version.
    Stale(Box<Lease>),
    /// Someone else holds the lease, or it is gone.
    Taken(String),
    /// The API call failed; retry until the deadline.
    Failed(kube::Error),
}

/// Renews until stopped (returns the last lease written) or lost (reports
/// the reason, returns None).
async fn keep(
    api: Api<Lease>,
    settings: LeaseSettings,
    metrics: Arc<Metrics>,
    mut lease: Lease,
    mut last_renewed: Instant,
    mut stop: oneshot::Receiver<()>,
    lost: watch::Sender<Option<String>>,
) -> Option<Lease> {
    let lose = |reason: String| {
        error!(%reason, identity = %settings.identity, "lost leadership");
        metrics.leader.set(0);
        let _ = lost.send(Some(reason));
        None
    };
    loop {
        match renewal(last_renewed, &settings, Instant::now()) {
            Renewal::WaitUntil(until) => {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => {}
                    _ = &mut stop => return Some(lease),
                }
            }
            Renewal::StepDown => {
                return lose(format!(
                    "could not renew the lease within {:?}",
                    settings.renew_deadline()
                ));
            }
            Renewal::Renew { deadline } => {
                let started = Instant::now();
                let attempt = tokio::time::timeout_at(deadline, renew(&api, &settings, &lease));
                let outcome = tokio::select! {
                    outcome = attempt => outcome,
                    _ = &mut stop => return Some(lease),
                };
                match outcome {
                    Ok(Ok(renewed)) => {
                        lease = renewed;
                        last_renewed = started;
                    }
                    Ok(Err(RenewError::Stale(fresh))) => lease = *fresh,
                    Ok(Err(RenewError::Taken(reason))) => return lose(reason),
                    Ok(Err(RenewError::Failed(error))) => {
                        warn!(%error, "could not renew the lease; retrying");
                        let pause = tokio::time::sleep_until(deadline.min(Instant::now() + RETRY));
                        tokio::select! {
                            () = pause => {}
                            _ = &mut stop => return Some(lease),
                        }
                    }
                    // The deadline passed: the next turn steps down.
                    Err(_) => {}
                }
            }
        }
    }
}

async fn renew(api: &Api<Lease>, settings: &LeaseSettings, lease: &Lease) -> Result<Lease, RenewError> {
    let mut next = lease.clone();
    let record = lease.spec.clone().unwrap_or_default();
    next.spec = Some(held(&record, settings, Timestamp::now()));
    match api.replace(&settings.name, &PostParams::default(), &next).await {
        Ok(renewed) => Ok(renewed),
        Err(kube::Error::Api(status)) if status.is_not_found() => {
            Err(RenewError::Taken("the lease was deleted".into()))
        }
        Err(kube::Error::Api(status)) if status.is_conflict() => match api.get_opt(&settings.name).await {
            Ok(Some(fresh)) => {
                let record = fresh.spec.clone().unwrap_or_default();
                match holder(&record) {
                    Some(h) if h == settings.identity => Err(RenewError::Stale(Box::new(fresh))),
                    Some(h) => Err(RenewError::Taken(format!("the lease is now held by {h}"))),
                    None => Err(RenewError::Taken(format!("the lease {} was cleared", fresh.name_any()))),
                }
            }
            Ok(None) => Err(RenewError::Taken("the lease was deleted".into())),
            Err(error) => Err(RenewError::Failed(error)),
        },
        Err(error) => Err(RenewError::Failed(error)),
    }
}
