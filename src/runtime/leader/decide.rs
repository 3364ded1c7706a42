//! The election's decisions, pure: when a candidate may take the lease, when
//! the holder renews or steps down, and the records it writes.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use super::LeaseSettings;

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

pub(super) fn holder(record: &LeaseSpec) -> Option<&str> {
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
