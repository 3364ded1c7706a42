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
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::metrics::Metrics;
use crate::cli::LeaderElection;

/// How long to wait before retrying after a failed API call.
const RETRY: Duration = Duration::from_secs(1);
/// Upper bound for giving the lease up on a graceful stop.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

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

    fn validate(&self) -> anyhow::Result<()> {
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

    fn duration_seconds(&self) -> i32 {
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

/// The Lease record as this replica last read it, and when (on its own
/// monotonic clock) it last saw the record change.
#[derive(Clone, Debug, PartialEq)]
pub struct Sighting {
    pub record: LeaseSpec,
    pub changed_at: Instant,
}

impl Sighting {
    /// What was read at `now`: the change time moves only when the record
    /// differs from the one seen before.
    pub fn update(previous: Option<&Sighting>, record: LeaseSpec, now: Instant) -> Sighting {
        match previous {
            Some(seen) if seen.record == record => seen.clone(),
            _ => Sighting {
                record,
                changed_at: now,
            },
        }
    }

    /// The holder, if any (an empty identity means none).
    pub fn holder(&self) -> Option<&str> {
        holder(&self.record)
    }

    /// When a standby may take over: the record's duration after it last
    /// changed (ours when the record has none).
    pub fn expires_at(&self, fallback: Duration) -> Instant {
        let duration = self
            .record
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .unwrap_or(fallback);
        self.changed_at + duration
    }
}

fn holder(record: &LeaseSpec) -> Option<&str> {
    record.holder_identity.as_deref().filter(|h| !h.is_empty())
}

/// What a candidate does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Campaign {
    /// Write ourselves in as the holder.
    Acquire,
    /// Someone else holds a live lease: look again by then at the latest.
    WaitUntil(Instant),
}

/// A candidate may take the lease when nobody holds it, when it already
/// names us (our own earlier write, or our predecessor in this pod), or when
/// the record has not changed for its whole duration.
pub fn campaign(seen: &Sighting, settings: &LeaseSettings, now: Instant) -> Campaign {
    match seen.holder() {
        None => Campaign::Acquire,
        Some(holder) if holder == settings.identity => Campaign::Acquire,
        Some(_) => {
            let expires = seen.expires_at(settings.lease_duration);
            if now >= expires {
                Campaign::Acquire
            } else {
                Campaign::WaitUntil(expires)
            }
        }
    }
}

/// What the holder does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// Nothing until then.
    WaitUntil(Instant),
    /// Renew now; give up on the attempt at `deadline`.
    Renew { deadline: Instant },
    /// The renew deadline has passed: stop acting.
    StepDown,
}

/// `last_renewed` is when the last successful renewal (or the acquisition)
/// was sent.
pub fn renewal(last_renewed: Instant, settings: &LeaseSettings, now: Instant) -> Renewal {
    let deadline = last_renewed + settings.renew_deadline();
    if now >= deadline {
        Renewal::StepDown
    } else if now >= last_renewed + settings.renew_interval {
        Renewal::Renew { deadline }
    } else {
        Renewal::WaitUntil(last_renewed + settings.renew_interval)
    }
}

/// The record with us as the holder, renewed at `now`. `acquireTime` and
/// `leaseTransitions` move only when the holder changes.
pub fn held(previous: &LeaseSpec, settings: &LeaseSettings, now: Timestamp) -> LeaseSpec {
    let ours = holder(previous) == Some(settings.identity.as_str());
    let transitions = previous.lease_transitions.unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(settings.identity.clone()),
        lease_duration_seconds: Some(settings.duration_seconds()),
        acquire_time: if ours { previous.acquire_time.clone() } else { None }.or(Some(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if ours {
            transitions
        } else {
            transitions.saturating_add(1)
        }),
        preferred_holder: previous.preferred_holder.clone(),
        strategy: previous.strategy.clone(),
    }
}

/// The record given up at `now`: no holder, so any candidate may take it.
pub fn released(previous: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        acquire_time: None,
        renew_time: Some(MicroTime(now)),
        ..previous.clone()
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LeaseSettings {
        LeaseSettings {
            namespace: "ops".into(),
            name: "stackpilot-leader".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
        }
    }

    fn record(holder: Option<&str>, duration: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: duration,
            ..LeaseSpec::default()
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_holder_gives_up_one_renew_interval_before_a_standby_may_take_over() {
        let s = settings();
        assert_eq!(s.renew_deadline(), secs(10));
        assert!(s.renew_deadline() + s.renew_interval <= s.lease_duration);
    }

    #[test]
    fn settings_need_room_for_a_retry_before_the_deadline() {
        let mut s = settings();
        assert!(s.validate().is_ok());
        s.renew_interval = secs(8);
        assert!(s.validate().is_err());
        s.renew_interval = secs(0);
        assert!(s.validate().is_err());
        s.renew_interval = secs(5);
        s.name.clear();
        assert!(s.validate().is_err());
    }

    #[test]
    fn the_change_time_moves_only_when_the_record_changes() {
        let t0 = Instant::now();
        let first = Sighting::update(None, record(Some("a"), Some(15)), t0);
        assert_eq!(first.changed_at, t0);
        let same = Sighting::update(Some(&first), record(Some("a"), Some(15)), t0 + secs(3));
        assert_eq!(same.changed_at, t0);
        let mut renewed = record(Some("a"), Some(15));
        renewed.renew_time = Some(MicroTime(Timestamp::UNIX_EPOCH));
        let changed = Sighting::update(Some(&same), renewed, t0 + secs(4));
        assert_eq!(changed.changed_at, t0 + secs(4));
    }

    #[test]
    fn a_lease_expires_its_duration_after_it_was_last_seen_to_change() {
        let t0 = Instant::now();
        let s = settings();
        let seen = Sighting::update(None, record(Some("other"), Some(15)), t0);
        assert_eq!(campaign(&seen, &s, t0), Campaign::WaitUntil(t0 + secs(15)));
        assert_eq!(campaign(&seen, &s, t0 + secs(14)), Campaign::WaitUntil(t0 + secs(15)));
        assert_eq!(campaign(&seen, &s, t0 + secs(15)), Campaign::Acquire);
        // The record's own duration counts, not ours...
        let short = Sighting::update(None, record(Some("other"), Some(3)), t0);
        assert_eq!(campaign(&short, &s, t0 + secs(3)), Campaign::Acquire);
        // ...unless it has none.
        for missing in [None, Some(0), Some(-1)] {
            let seen = Sighting::update(None, record(Some("other"), missing), t0);
            assert_eq!(seen.expires_at(s.lease_duration), t0 + secs(15));
        }
    }

    #[test]
    fn a_free_or_own_lease_is_taken_at_once() {
        let t0 = Instant::now();
        let s = settings();
        for free in [
            record(None, Some(15)),
            record(Some(""), Some(15)),
            record(Some("me"), Some(15)),
        ] {
            let seen = Sighting::update(None, free, t0);
            assert_eq!(campaign(&seen, &s, t0), Campaign::Acquire);
        }
    }

    #[test]
    fn the_holder_renews_every_interval_and_steps_down_at_the_deadline() {
        let t0 = Instant::now();
        let s = settings();
        assert_eq!(renewal(t0, &s, t0), Renewal::WaitUntil(t0 + secs(5)));
        assert_eq!(renewal(t0, &s, t0 + secs(4)), Renewal::WaitUntil(t0 + secs(5)));
        let renew = Renewal::Renew {
            deadline: t0 + secs(10),
        };
        assert_eq!(renewal(t0, &s, t0 + secs(5)), renew);
        assert_eq!(renewal(t0, &s, t0 + Duration::from_millis(9_999)), renew);
        assert_eq!(renewal(t0, &s, t0 + secs(10)), Renewal::StepDown);
        assert_eq!(renewal(t0, &s, t0 + secs(60)), Renewal::StepDown);
    }

    #[test]
    fn a_standby_never_takes_over_before_the_holder_has_stepped_down() {
        // The standby sees the renewal no earlier than it was sent.
        let s = settings();
        let sent = Instant::now();
        for seen_after in [0, 1, 3] {
            let seen = Sighting::update(None, record(Some("other"), Some(15)), sent + secs(seen_after));
            let Campaign::WaitUntil(takeover) = campaign(&seen, &s, sent + secs(seen_after)) else {
                panic!("a live lease must not be taken");
            };
            assert_eq!(renewal(sent, &s, takeover - s.renew_interval), Renewal::StepDown);
        }
    }

    #[test]
    fn acquiring_counts_a_transition_and_renewing_keeps_the_acquire_time() {
        let s = settings();
        let t1 = Timestamp::from_second(1_000).unwrap();
        let t2 = Timestamp::from_second(1_005).unwrap();
        let mut theirs = record(Some("other"), Some(15));
        theirs.lease_transitions = Some(4);
        let acquired = held(&theirs, &s, t1);
        assert_eq!(acquired.holder_identity.as_deref(), Some("me"));
        assert_eq!(acquired.lease_duration_seconds, Some(15));
        assert_eq!(acquired.lease_transitions, Some(5));
        assert_eq!(acquired.acquire_time, Some(MicroTime(t1)));
        let renewed = held(&acquired, &s, t2);
        assert_eq!(renewed.lease_transitions, Some(5));
        assert_eq!(renewed.acquire_time, Some(MicroTime(t1)));
        assert_eq!(renewed.renew_time, Some(MicroTime(t2)));
        let fresh = held(&LeaseSpec::default(), &s, t1);
        assert_eq!(fresh.lease_transitions, Some(1));
    }

    #[test]
    fn a_released_lease_has_no_holder_and_keeps_its_transitions() {
        let s = settings();
        let now = Timestamp::from_second(2_000).unwrap();
        let ours = held(&record(Some("other"), Some(15)), &s, now);
        let free = released(&ours, now);
        assert_eq!(free.holder_identity, None);
        assert_eq!(free.lease_transitions, ours.lease_transitions);
        let seen = Sighting::update(None, free, Instant::now());
        assert_eq!(seen.holder(), None);
    }

    #[test]
    fn the_flags_parse_off_by_default_and_on_with_a_value() {
        use clap::{CommandFactory, Parser};

        use crate::cli::{Cli, Command};
        Cli::command().debug_assert();
        let parse = |args: &[&str]| match Cli::try_parse_from(args).expect("parse").command {
            Command::Run(run) => run.leader_election,
            other => panic!("not run: {other:?}"),
        };
        let off = parse(&["stackpilot", "run"]);
        assert!(!off.enabled);
        assert_eq!(
            (off.lease_name.as_str(), off.lease_duration_seconds, off.renew_seconds),
            ("stackpilot-leader", 15, 5)
        );
        let on = parse(&[
            "stackpilot",
            "run",
            "--leader-election",
            "true",
            "--leader-election-namespace",
            "ops",
            "--namespace",
            "apps",
        ]);
        assert!(on.enabled);
        assert_eq!(on.namespace.as_deref(), Some("ops"));
        let settings = LeaseSettings::new(&on, "default").expect("valid");
        assert_eq!(settings.namespace, "ops");
        assert_eq!(settings.renew_deadline(), secs(10));
    }

    #[test]
    fn the_identity_is_the_pod_name_or_host_pid_and_a_random_suffix() {
        assert_eq!(identity(Some("stackpilot-7d9f-x2".into())), "stackpilot-7d9f-x2");
        let a = identity(None);
        let b = identity(Some(" ".into()));
        assert!(a.contains(&format!("_{}_", std::process::id())), "{a}");
        assert_ne!(a, b);
    }
}
