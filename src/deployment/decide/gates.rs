//! Health gates of a wave: every target's Stack Ready at the revision; the
//! alarms never in ALARM in the target's account and region from the wave's
//! start through the bake time (a missing or unreadable alarm fails the gate
//! unless `ignoreAlarmReadFailure`); no target past `progressDeadline`.
//! Alarms are read only where the running wave's targets live: a target
//! whose account and region were not read this time waits for the next read.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::{RolloutKind, StackDeploymentSpec, StackDeploymentStatus, parse_duration};
use crate::deployment::plan::{AlarmValue, DEFAULT_PROGRESS_DEADLINE, Observed, Placement};

/// The accounts and regions whose alarms the next decision gates on: those
/// of the running update wave's targets (none without alarms, or while no
/// update rolls out: a rollback has no alarm gate). Reading every target's
/// would cost a call per account and region per reconcile for nothing.
pub fn alarm_placements(spec: &StackDeploymentSpec, status: Option<&StackDeploymentStatus>) -> BTreeSet<Placement> {
    let wave = status.and_then(|s| {
        let rollout = s
            .rollout
            .as_ref()
            .filter(|r| r.phase.is_active() && r.kind == RolloutKind::Update)?;
        s.waves.get(usize::try_from(rollout.wave).ok()?)
    });
    let Some(wave) = wave.filter(|_| !spec.health.alarms.is_empty()) else {
        return BTreeSet::new();
    };
    spec.targets
        .iter()
        .filter(|t| wave.targets.contains(&t.name))
        .map(Placement::of)
        .collect()
}

/// The target's alarms are gated on but were not read this time.
pub fn alarms_unread(o: &Observed, name: &str) -> bool {
    !o.spec.health.alarms.is_empty()
        && o.spec
            .targets
            .iter()
            .find(|t| t.name == name)
            .is_some_and(|t| !o.alarms.contains_key(&Placement::of(t)))
}

/// Why a target failed its wave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetFailure {
    pub target: String,
    /// The failed resource, when CloudFormation named one.
    pub resource: Option<String>,
    /// The alarm that fired (or could not be read).
    pub alarm: Option<String>,
    /// What happened, in words.
    pub reason: String,
}

/// What the gates say about one wave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WaveCheck {
    /// Targets that failed this time.
    pub failures: Vec<TargetFailure>,
    /// Targets Ready at the revision.
    pub ready: Vec<String>,
    /// Targets not Ready yet.
    pub waiting: Vec<String>,
}

pub fn duration_or(text: Option<&str>, default: Duration) -> Duration {
    text.and_then(|t| parse_duration(t).ok()).unwrap_or(default)
}

pub fn after(at: Timestamp, duration: Duration) -> Timestamp {
    let signed = SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX);
    at.checked_add(signed).unwrap_or(Timestamp::MAX)
}

/// Checks `targets` (those not already failed) of a wave started at
/// `started`, rolling out `revision`. `alarms` is false for rollbacks.
pub fn check(o: &Observed, targets: &[String], revision: &str, started: Timestamp, alarms: bool) -> WaveCheck {
    let deadline = after(
        started,
        duration_or(o.spec.health.progress_deadline.as_deref(), DEFAULT_PROGRESS_DEADLINE),
    );
    let mut check = WaveCheck::default();
    for name in targets {
        if let Some(failure) = target_failure(o, name, revision, deadline, alarms) {
            check.failures.push(failure);
        } else if o.children.get(name).is_some_and(|c| c.ready_at(revision)) && !(alarms && alarms_unread(o, name)) {
            check.ready.push(name.clone());
        } else {
            check.waiting.push(name.clone());
        }
    }
    check
}

fn target_failure(
    o: &Observed,
    name: &str,
    revision: &str,
    deadline: Timestamp,
    alarms: bool,
) -> Option<TargetFailure> {
    let child = o.children.get(name);
    if let Some(child) = child.filter(|c| c.failed_at(revision)) {
        let stalled = child.stalled.clone().unwrap_or_default();
        return Some(match &child.failure {
            Some(failure) => TargetFailure {
                target: name.to_string(),
                resource: Some(failure.resource.clone()),
                alarm: None,
                reason: format!("resource {}: {}", failure.resource, failure.reason),
            },
            None => TargetFailure {
                target: name.to_string(),
                resource: None,
                alarm: None,
                reason: format!("{}: {}", stalled.reason, stalled.message),
            },
        });
    }
    if alarms
        && !alarms_unread(o, name)
        && let Some(failure) = alarm_failure(o, name)
    {
        return Some(failure);
    }
    let ready = child.is_some_and(|c| c.ready_at(revision));
    if !ready && o.now > deadline {
        let waited = o.spec.health.progress_deadline.as_deref().unwrap_or("30m");
        return Some(TargetFailure {
            target: name.to_string(),
            resource: None,
            alarm: None,
            reason: format!("not Ready at the revision within progressDeadline {waited}"),
        });
    }
    None
}

/// The first alarm of the target's account and region that is in ALARM, or
/// missing / unreadable (unless told to ignore that).
fn alarm_failure(o: &Observed, name: &str) -> Option<TargetFailure> {
    let target = o.spec.targets.iter().find(|t| t.name == name)?;
    let placement = Placement::of(target);
    let readings = o.alarms.get(&placement);
    let ignore = o.spec.health.ignore_alarm_read_failure;
    let fail = |alarm: &str, reason: String| TargetFailure {
        target: name.to_string(),
        resource: None,
        alarm: Some(alarm.to_string()),
        reason,
    };
    for alarm in &o.spec.health.alarms {
        match readings.and_then(|r| r.get(alarm)) {
            Some(Ok(state)) if state.value == AlarmValue::Alarm => {
                return Some(fail(alarm, format!("alarm {alarm} is in ALARM: {}", state.reason)));
            }
            Some(Ok(_)) => {}
            Some(Err(error)) if !ignore => {
                return Some(fail(
                    alarm,
                    format!("alarm {alarm} could not be read in {}: {error}", target.region),
                ));
            }
            None if !ignore => {
                return Some(fail(
                    alarm,
                    format!("alarm {alarm} does not exist in {}", target.region),
                ));
            }
            _ => {}
        }
    }
    None
}

/// When the bake of a wave healthy since `healthy_since` ends.
pub fn bake_end(o: &Observed, healthy_since: Timestamp) -> Timestamp {
    after(
        healthy_since,
        duration_or(o.spec.health.bake_time.as_deref(), Duration::ZERO),
    )
}
