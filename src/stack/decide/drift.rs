//! Resource drift: when to run CloudFormation drift detection, how to read
//! its result into status (Secret values masked), and when to revert. Pure;
//! the reconcile starts detections and reads their results.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::{DriftRemediation, DriftReport, DriftState, DriftedProperty, DriftedResource, StackSpec};
use crate::aws::{
    DifferenceKind, DriftDetectionStatus, ResourceDrift, ResourceDriftStatus, StackDescription, StackDriftStatus,
};
use crate::runtime::conditions::{self, ConditionUpdate, DRIFTED, Truth};

use super::super::plan::{DesiredStack, Note, Observed, Plan, Step, report as kstatus};
use super::stack_events::chrono_to_time;
use sha2::{Digest, Sha256};

/// Checked every six hours unless `drift.interval` says otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(6 * 3600);
const MAX_RESOURCES: usize = 50;
const MAX_DIFFERENCES: usize = 20;
const MAX_VALUE: usize = 256;

/// `drift.interval` as a duration; `None` when drift detection is off ("0").
pub fn interval(text: Option<&str>) -> Result<Option<Duration>, String> {
    let Some(text) = text else {
        return Ok(Some(DEFAULT_INTERVAL));
    };
    if text == "0" {
        return Ok(None);
    }
    crate::api::parse_duration(text).map(Some)
}

/// Called on a settled stack that matches its spec: starts detection when
/// due, takes in a finished run, and asks for a revert when configured.
pub fn check(o: &Observed, desired: &DesiredStack, plan: &mut Plan) {
    let every = match interval(o.spec.drift.interval.as_deref()) {
        Ok(every) => every,
        Err(message) => {
            report(plan, DriftState::Failed, Some(message));
            return;
        }
    };
    let mut drift = plan.status.drift.clone().unwrap_or_default();
    if drift.status == DriftState::Checking {
        take_result(o, desired, &mut drift, plan);
        plan.status.drift = Some(drift);
        return;
    }
    let requested = o.requested.filter(|r| drift.requested.as_deref() != Some(*r));
    let schedule = Schedule {
        uid: o.uid,
        created: o.created,
    };
    let due = scheduled(every, &drift, schedule, o.now);
    if every.is_none() && requested.is_none() {
        // Checks off: the column is blank, unless a configuration drift is
        // being repaired right now.
        let repairing = conditions::find(&plan.status.conditions, DRIFTED).is_some_and(|c| c.status == "True");
        if plan.status.drift.is_some() || !repairing {
            conditions::remove(&mut plan.status.conditions, DRIFTED);
        }
        plan.status.drift = None;
        return;
    }
    if let Some(why) = o.drift_unsupported.filter(|_| due || requested.is_some()) {
        // Said once for the account and region when it was found out; each
        // stack only notes it and tries again an interval later.
        drift.status = DriftState::Unknown;
        drift.reason = Some(why.to_string());
        drift.started_at = Some(Time(o.now));
        plan.status.drift = Some(drift);
        set_drifted(o, plan, Truth::Unknown, "DriftDetectionUnavailable", why);
        return;
    }
    if due || requested.is_some() {
        drift.status = DriftState::Checking;
        drift.reason = None;
        drift.detection_id = None;
        drift.started_at = Some(Time(o.now));
        if let Some(r) = requested {
            drift.requested = Some(r.to_string());
        }
        plan.steps.push(Step::DetectDrift);
        plan.requeue = plan.requeue.min(o.timing.in_flight);
        plan.status.drift = Some(drift);
        return;
    }
    if let Some(every) = every {
        plan.requeue = plan.requeue.min(every);
        not_checked_yet(o, schedule, every, plan);
    }
}

/// The DRIFTED column has one rule for every Stack: blank only when drift
/// checks are off; with checks on, `Unknown` until a check has said
/// `True` or `False`. Written with the Ready transition, not on its own.
fn not_checked_yet(o: &Observed, schedule: Schedule, every: Duration, plan: &mut Plan) {
    if conditions::find(&plan.status.conditions, DRIFTED).is_some() {
        return;
    }
    let next = match plan.status.drift.as_ref().and_then(|d| d.started_at.as_ref()) {
        Some(last) => last
            .0
            .checked_add(SignedDuration::try_from(every).unwrap_or(SignedDuration::MAX))
            .ok(),
        None => Some(schedule.first_check(every)),
    };
    let when = next.map_or_else(String::new, |at| format!("; the next drift check is at {at:.0}"));
    set_drifted(
        o,
        plan,
        Truth::Unknown,
        "NotChecked",
        &format!("not checked for drift yet{when}"),
    );
}

/// Which Stack is scheduled, for its first check.
#[derive(Clone, Copy, Debug)]
pub struct Schedule<'a> {
    pub uid: &'a str,
    /// When the Stack was created.
    pub created: Timestamp,
}

impl Schedule<'_> {
    /// The first check: a new stack has not drifted, so it is not checked
    /// right after its create but at a point within the first interval fixed
    /// by its uid; Stacks created together spread their first checks.
    pub fn first_check(&self, every: Duration) -> Timestamp {
        let digest = Sha256::digest(self.uid.as_bytes());
        let fraction =
            f64::from(u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])) / f64::from(u32::MAX);
        let offset = SignedDuration::try_from(every.mul_f64(fraction)).unwrap_or(SignedDuration::MAX);
        self.created.checked_add(offset).unwrap_or(Timestamp::MAX)
    }
}

/// Scheduled by our own clock (`started_at`), never AWS's timestamps.
fn scheduled(every: Option<Duration>, drift: &DriftReport, schedule: Schedule, now: Timestamp) -> bool {
    match (every, drift.started_at.as_ref()) {
        (None, _) => false,
        (Some(every), None) => now >= schedule.first_check(every),
        (Some(every), Some(last)) => now >= last.0 + SignedDuration::try_from(every).unwrap_or(SignedDuration::MAX),
    }
}

/// Whether a drift check starts at this reconcile (then the live template is
/// compared too, so out-of-band template edits are found on the same schedule).
pub fn starts_now(
    spec: &StackSpec,
    drift: Option<&DriftReport>,
    requested: Option<&str>,
    schedule: Schedule,
    now: Timestamp,
) -> bool {
    let report = drift.cloned().unwrap_or_default();
    if report.status == DriftState::Checking {
        return false;
    }
    let every = interval(spec.drift.interval.as_deref()).ok().flatten();
    let asked = requested.is_some_and(|r| report.requested.as_deref() != Some(r));
    asked || scheduled(every, &report, schedule, now)
}

fn report(plan: &mut Plan, status: DriftState, reason: Option<String>) {
    let drift = plan.status.drift.get_or_insert_with(DriftReport::default);
    drift.status = status;
    drift.reason = reason;
}

/// The stack cannot be checked now (an operation runs, or it is in a failed state).
pub fn skip(plan: &mut Plan, why: &str) {
    if let Some(drift) = plan.status.drift.as_mut()
        && drift.status == DriftState::Checking
    {
        drift.status = DriftState::Skipped;
        drift.reason = Some(why.to_string());
    }
}

fn take_result(o: &Observed, desired: &DesiredStack, drift: &mut DriftReport, plan: &mut Plan) {
    let Some(detection) = o.drift.detection.as_ref() else {
        // Started but no id yet (or the id was lost in a crash): wait for
        // the run's id; a run without one is started again after a while.
        let stale = drift
            .started_at
            .as_ref()
            .is_none_or(|t| o.now >= t.0 + SignedDuration::from_mins(10));
        if drift.detection_id.is_none() && stale {
            drift.status = DriftState::Unknown;
            drift.reason = Some("the drift detection run was lost; it is started again at the next interval".into());
        }
        plan.requeue = plan.requeue.min(o.timing.in_flight);
        return;
    };
    if detection.status == DriftDetectionStatus::InProgress {
        plan.requeue = plan.requeue.min(o.timing.in_flight);
        return;
    }
    drift.checked_at = Some(chrono_to_time(detection.timestamp));
    let resources: Vec<DriftedResource> = o
        .drift
        .resources
        .iter()
        .flatten()
        .filter(|r| r.drift.is_drifted())
        .take(MAX_RESOURCES)
        .map(|r| drifted_resource(r, desired))
        .collect();
    let was = conditions::find(&plan.status.conditions, DRIFTED).map(|c| (c.status.clone(), c.reason.clone()));
    let (truth, status, message) = match detection.stack_drift_status {
        StackDriftStatus::Drifted => {
            let names: Vec<&str> = resources.iter().map(|r| r.logical_id.as_str()).collect();
            (
                Truth::True,
                DriftState::Drifted,
                format!("{} resource(s) differ from the template: {names:?}", resources.len()),
            )
        }
        StackDriftStatus::InSync => (
            Truth::False,
            DriftState::InSync,
            "every checked resource matches the template".to_string(),
        ),
        _ => (
            Truth::Unknown,
            DriftState::Unknown,
            detection
                .reason
                .clone()
                .unwrap_or_else(|| "drift detection did not finish".into()),
        ),
    };
    drift.status = status;
    drift.reason = detection.reason.clone();
    drift.resources = resources;
    let reason = match status {
        DriftState::Drifted => "ResourceDrift",
        DriftState::InSync => "InSync",
        _ => "Unknown",
    };
    conditions::set(
        &mut plan.status.conditions,
        ConditionUpdate::new(DRIFTED, truth, reason, &message),
        o.generation,
        o.now,
    );
    let changed = was.as_ref().map(|(s, r)| (s.as_str(), r.as_str())) != Some((truth.as_str(), reason));
    if changed && truth == Truth::True {
        plan.notes.push(Note::warning("ResourceDrift", message.clone()));
    } else if changed && was.is_some_and(|(s, _)| s == "True") && truth == Truth::False {
        plan.notes.push(Note::normal("DriftCleared", message.clone()));
    }
    if truth == Truth::True && o.spec.drift.remediation == DriftRemediation::Revert && !drift.revert_pending {
        drift.revert_pending = true;
        plan.notes.push(Note::normal(
            "RevertingDrift",
            "reverting the drifted resources with a drift-aware change set",
        ));
        // A new fingerprint (see inputs.rs) makes the revert a change set of its own.
        plan.requeue = Duration::from_secs(1);
    }
}

fn drifted_resource(r: &ResourceDrift, desired: &DesiredStack) -> DriftedResource {
    let drift = match &r.drift {
        ResourceDriftStatus::Modified => "MODIFIED".to_string(),
        ResourceDriftStatus::Deleted => "DELETED".to_string(),
        other => format!("{other:?}").to_uppercase(),
    };
    DriftedResource {
        logical_id: r.logical_id.clone(),
        resource_type: r.resource_type.clone(),
        physical_id: r.physical_id.clone(),
        drift,
        differences: r
            .differences
            .iter()
            .take(MAX_DIFFERENCES)
            .map(|d| DriftedProperty {
                path: d.path.clone(),
                kind: match d.kind {
                    DifferenceKind::Add => "ADD",
                    DifferenceKind::Remove => "REMOVE",
                    DifferenceKind::NotEqual => "NOT_EQUAL",
                }
                .into(),
                expected: mask(&d.expected, desired),
                actual: mask(&d.actual, desired),
            })
            .collect(),
    }
}

/// Hides every Secret-backed parameter value inside `value`.
pub fn mask(value: &str, desired: &DesiredStack) -> String {
    let mut masked = value.to_string();
    for secret in desired.parameters.iter().filter(|p| p.secret && !p.value.is_empty()) {
        masked = masked.replace(&secret.value, "****");
    }
    conditions::truncate(&masked, MAX_VALUE)
}

// Configuration drift: parameters and tags changed outside Kubernetes.

/// Parameters and tags changed outside Kubernetes, by name (never values).
pub(super) fn configuration_drift(
    desired: &DesiredStack,
    stack: &StackDescription,
    live_template: Option<&str>,
) -> Option<String> {
    let normal = |v: &str| v.split(',').map(str::trim).collect::<Vec<_>>().join(",");
    let parameters: Vec<&str> = desired
        .parameters
        .iter()
        .filter(|p| {
            stack
                .parameters
                .iter()
                .find(|a| a.key == p.name)
                .is_some_and(|a| a.value != "****" && normal(&a.value) != normal(&p.value))
        })
        .map(|p| p.name.as_str())
        .collect();
    let visible = |k: &&String| !k.starts_with("aws:");
    let mut tags: Vec<&str> = desired
        .options
        .tags
        .iter()
        .filter(|(k, v)| stack.tags.get(*k) != Some(v))
        .map(|(k, _)| k.as_str())
        .collect();
    tags.extend(
        stack
            .tags
            .keys()
            .filter(visible)
            .filter(|k| !desired.options.tags.contains_key(*k))
            .map(String::as_str),
    );
    let template_changed = match (&desired.template, live_template) {
        (crate::aws::TemplateSource::Body(body), Some(live)) => body.trim_end() != live.trim_end(),
        _ => false,
    };
    if parameters.is_empty() && tags.is_empty() && !template_changed {
        return None;
    }
    let mut parts = Vec::new();
    if template_changed {
        parts.push("the template".to_string());
    }
    if !parameters.is_empty() {
        parts.push(format!("parameters {parameters:?}"));
    }
    if !tags.is_empty() {
        parts.push(format!("tags {tags:?}"));
    }
    Some(parts.join(" and "))
}

pub(super) fn set_drifted(o: &Observed, plan: &mut Plan, truth: Truth, reason: &str, message: &str) {
    conditions::set(
        &mut plan.status.conditions,
        ConditionUpdate::new(DRIFTED, truth, reason, message),
        o.generation,
        o.now,
    );
}

/// Re-applies the spec over an out-of-band change, once: a difference that
/// survives a re-apply is reported, not fought. Returns true when a repair
/// was started.
pub(super) fn repair_configuration(o: &Observed, drift: &str, plan: &mut Plan) -> bool {
    let already = conditions::find(&plan.status.conditions, DRIFTED)
        .is_some_and(|c| c.status == "True" && c.reason == "ConfigurationDrift");
    if already {
        let message = format!("{drift} still differ from the spec after it was re-applied; stackpilot does not retry");
        set_drifted(o, plan, Truth::True, "UnresolvedDrift", &message);
        return false;
    }
    let message = format!("{drift} were changed outside Kubernetes; re-applying the spec");
    set_drifted(o, plan, Truth::True, "ConfigurationDrift", &message);
    plan.notes.push(Note::warning("ConfigurationDrift", message.clone()));
    plan.status.repairs += 1;
    plan.status.applied = None;
    kstatus(o, plan).progressing("ConfigurationDrift", &message);
    plan.requeue = Duration::from_secs(1);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_like_kubernetes_durations() {
        assert_eq!(interval(None).unwrap(), Some(DEFAULT_INTERVAL));
        assert_eq!(interval(Some("0")).unwrap(), None);
        assert_eq!(interval(Some("90s")).unwrap(), Some(Duration::from_secs(90)));
        assert_eq!(interval(Some("1h30m")).unwrap(), Some(Duration::from_secs(5400)));
        assert_eq!(interval(Some("250ms")).unwrap(), Some(Duration::from_millis(250)));
        assert!(interval(Some("5d")).is_err());
        assert!(interval(Some("h")).is_err());
    }
}
