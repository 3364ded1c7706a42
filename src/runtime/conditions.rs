//! kstatus-compatible conditions, set the way Flux sets them: the transition
//! time moves only when status, reason or message change; every condition is
//! stamped with the observed generation; the list is kept sorted by type.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
pub const APPROVAL_REQUIRED: &str = "ApprovalRequired";
pub const DRIFTED: &str = "Drifted";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// The three-valued condition status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truth {
    True,
    False,
    Unknown,
}

impl Truth {
    pub fn as_str(self) -> &'static str {
        match self {
            Truth::True => "True",
            Truth::False => "False",
            Truth::Unknown => "Unknown",
        }
    }
}

/// A condition as decision code states it, before timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionUpdate {
    pub type_: &'static str,
    pub status: Truth,
    pub reason: String,
    pub message: String,
}

impl ConditionUpdate {
    pub fn new(type_: &'static str, status: Truth, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Sets the kstatus trio (Ready, Reconciling, Stalled) the way every kind
/// reports them; kind-specific conditions are the caller's.
pub struct Kstatus<'a> {
    pub conditions: &'a mut Vec<Condition>,
    pub generation: i64,
    pub now: Timestamp,
}

impl Kstatus<'_> {
    pub fn set(&mut self, type_: &'static str, truth: Truth, reason: &str, message: &str) {
        set(
            self.conditions,
            ConditionUpdate::new(type_, truth, reason, message),
            self.generation,
            self.now,
        );
    }

    /// Done: the object matches its spec.
    pub fn ready(&mut self, reason: &str, message: &str) {
        self.set(READY, Truth::True, reason, message);
        remove(self.conditions, RECONCILING);
        remove(self.conditions, STALLED);
    }

    /// Work is under way and will finish by itself.
    pub fn progressing(&mut self, reason: &str, message: &str) {
        self.set(READY, Truth::Unknown, reason, message);
        self.set(RECONCILING, Truth::True, reason, message);
        remove(self.conditions, STALLED);
    }

    /// Not ready, waiting on something outside (a dependency, a retry).
    pub fn waiting(&mut self, reason: &str, message: &str) {
        self.set(READY, Truth::False, reason, message);
        self.set(RECONCILING, Truth::True, reason, message);
        remove(self.conditions, STALLED);
    }

    /// Cannot progress until somebody changes something.
    pub fn stalled(&mut self, reason: &str, message: &str) {
        self.set(READY, Truth::False, reason, message);
        self.set(STALLED, Truth::True, reason, message);
        remove(self.conditions, RECONCILING);
    }
}

/// Longest message kept in a condition; CloudFormation reasons can be long.
const MAX_MESSAGE: usize = 2048;

/// Sets (or replaces) one condition, keeping `lastTransitionTime` unless the
/// status, reason or message changed.
pub fn set(conditions: &mut Vec<Condition>, update: ConditionUpdate, generation: i64, now: Timestamp) {
    let message = truncate(&update.message, MAX_MESSAGE);
    let status = update.status.as_str();
    if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == update.type_) {
        let changed = existing.status != status || existing.reason != update.reason || existing.message != message;
        if changed {
            existing.last_transition_time = Time(now);
        }
        existing.status = status.to_string();
        existing.reason = update.reason;
        existing.message = message;
        existing.observed_generation = Some(generation);
    } else {
        conditions.push(Condition {
            type_: update.type_.to_string(),
            status: status.to_string(),
            reason: update.reason,
            message,
            observed_generation: Some(generation),
            last_transition_time: Time(now),
        });
    }
    conditions.sort_by(|a, b| order(&a.type_).cmp(&order(&b.type_)).then(a.type_.cmp(&b.type_)));
}

/// Removes a condition (kstatus prefers absent over False for Reconciling
/// and Stalled).
pub fn remove(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

/// Ready first, then the kstatus ones, then the rest alphabetically.
fn order(type_: &str) -> u8 {
    match type_ {
        READY => 0,
        RECONCILING => 1,
        STALLED => 2,
        _ => 3,
    }
}

/// Cuts a message at a char boundary, marking the cut.
pub fn truncate(message: &str, max: usize) -> String {
    if message.len() <= max {
        return message.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

/// Conditions equal but for their transition times: a status write that only
/// moves timestamps is skipped.
pub fn same_ignoring_time(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.type_ == y.type_
                && x.status == y.status
                && x.reason == y.reason
                && x.message == y.message
                && x.observed_generation == y.observed_generation
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn transition_time_moves_only_on_change() {
        let mut conditions = Vec::new();
        set(
            &mut conditions,
            ConditionUpdate::new(READY, Truth::False, "Progressing", "creating"),
            1,
            at(10),
        );
        set(
            &mut conditions,
            ConditionUpdate::new(READY, Truth::False, "Progressing", "creating"),
            2,
            at(20),
        );
        assert_eq!(conditions[0].last_transition_time, Time(at(10)));
        assert_eq!(conditions[0].observed_generation, Some(2));
        set(
            &mut conditions,
            ConditionUpdate::new(READY, Truth::True, "Succeeded", "done"),
            2,
            at(30),
        );
        assert_eq!(conditions[0].last_transition_time, Time(at(30)));
        assert_eq!(conditions[0].status, "True");
    }

    #[test]
    fn conditions_are_sorted_ready_first() {
        let mut conditions = Vec::new();
        set(
            &mut conditions,
            ConditionUpdate::new(DRIFTED, Truth::False, "NoDrift", ""),
            1,
            at(1),
        );
        set(
            &mut conditions,
            ConditionUpdate::new(STALLED, Truth::True, "Failed", ""),
            1,
            at(1),
        );
        set(
            &mut conditions,
            ConditionUpdate::new(READY, Truth::False, "Failed", ""),
            1,
            at(1),
        );
        let types: Vec<_> = conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, vec![READY, STALLED, DRIFTED]);
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let message = "é".repeat(2000);
        let cut = truncate(&message, 101);
        assert!(cut.len() <= 101);
        assert!(cut.ends_with("..."));
    }

    #[test]
    fn same_ignoring_time_ignores_only_time() {
        let mut a = Vec::new();
        set(
            &mut a,
            ConditionUpdate::new(READY, Truth::True, "Succeeded", "ok"),
            1,
            at(1),
        );
        let mut b = a.clone();
        b[0].last_transition_time = Time(at(99));
        assert!(same_ignoring_time(&a, &b));
        b[0].message = "other".into();
        assert!(!same_ignoring_time(&a, &b));
    }
}
