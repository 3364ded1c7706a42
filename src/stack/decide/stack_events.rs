//! Failures read from stack events: which resource failed first and why,
//! and the bounded `status.recentFailures`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::{FailureRecord, StackStatus};
use crate::aws::StackEvent;
use crate::runtime::conditions;

/// How many failures `status.recentFailures` keeps.
pub const RECENT_FAILURES: usize = 5;

/// Events that say why something failed; cancellations are noise.
fn is_real_failure(event: &StackEvent) -> bool {
    event.is_failure()
        && !event
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("cancelled") || r.contains("canceled"))
}

pub fn chrono_to_time(at: chrono::DateTime<chrono::Utc>) -> Time {
    let nanos = at.timestamp_nanos_opt().unwrap_or(0);
    Time(Timestamp::from_nanosecond(nanos as i128).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Failures among `events` (newest first) no older than `since`.
pub fn failures_since(events: &[StackEvent], since: Option<Timestamp>) -> Vec<&StackEvent> {
    events
        .iter()
        .filter(|e| is_real_failure(e))
        .filter(|e| since.is_none_or(|s| chrono_to_time(e.timestamp).0 >= s))
        .collect()
}

/// The message that explains a failure: the first resource that failed (the
/// oldest failure event) and CloudFormation's reason.
pub fn explain(failures: &[&StackEvent], stack_name: &str) -> Option<String> {
    let resource_failures: Vec<&&StackEvent> = failures.iter().filter(|e| e.logical_id != stack_name).collect();
    let first = resource_failures.last().copied().or(failures.last())?;
    Some(format!(
        "{} ({}) {}: {}",
        first.logical_id,
        first.resource_type,
        first.status,
        first.reason.as_deref().unwrap_or("no reason given")
    ))
}

/// The stack's own event with no reason says nothing its resources' events
/// do not: not worth one of the few rows.
fn says_something(event: &StackEvent) -> bool {
    event.resource_type != STACK_TYPE || event.reason.as_deref().is_some_and(|r| !r.trim().is_empty())
}

const STACK_TYPE: &str = "AWS::CloudFormation::Stack";

/// Adds new failures to `status.recentFailures`, newest first, bounded.
pub fn record_failures(status: &mut StackStatus, failures: &[&StackEvent]) {
    let mut fresh: Vec<FailureRecord> = failures
        .iter()
        .filter(|e| says_something(e))
        .map(|e| FailureRecord {
            time: chrono_to_time(e.timestamp),
            logical_id: e.logical_id.clone(),
            resource_type: Some(e.resource_type.clone()),
            status: e.status.clone(),
            reason: conditions::truncate(e.reason.as_deref().unwrap_or(""), 512),
        })
        .collect();
    fresh.append(&mut status.recent_failures);
    fresh.truncate(RECENT_FAILURES);
    status.recent_failures = fresh;
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn event(id: &str, second: i64, logical: &str, status: &str, reason: &str) -> StackEvent {
        StackEvent {
            event_id: id.into(),
            timestamp: chrono::Utc.timestamp_opt(second, 0).unwrap(),
            logical_id: logical.into(),
            physical_id: None,
            resource_type: if logical == "s" {
                "AWS::CloudFormation::Stack"
            } else {
                "AWS::SQS::Queue"
            }
            .into(),
            status: status.into(),
            reason: Some(reason.into()),
        }
    }

    #[test]
    fn explains_the_first_failed_resource_not_the_stack_or_cancellations() {
        let events = vec![
            event("4", 40, "s", "ROLLBACK_COMPLETE", ""),
            event(
                "3",
                30,
                "s",
                "CREATE_FAILED",
                "The following resource(s) failed to create: [Queue]",
            ),
            event("2", 20, "Topic", "CREATE_FAILED", "Resource creation cancelled"),
            event("1", 10, "Queue", "CREATE_FAILED", "Invalid VisibilityTimeout"),
        ];
        let failures = failures_since(&events, None);
        assert_eq!(failures.len(), 2);
        let message = explain(&failures, "s").unwrap();
        assert_eq!(
            message,
            "Queue (AWS::SQS::Queue) CREATE_FAILED: Invalid VisibilityTimeout"
        );
    }

    #[test]
    fn old_failures_are_ignored() {
        let events = vec![event("1", 10, "Queue", "UPDATE_FAILED", "x")];
        let since = Timestamp::from_second(11).unwrap();
        assert!(failures_since(&events, Some(since)).is_empty());
    }

    #[test]
    fn recent_failures_are_bounded_newest_first() {
        let mut status = StackStatus::default();
        for round in 0..4 {
            let events = [
                event(
                    &round.to_string(),
                    round,
                    "Queue",
                    "CREATE_FAILED",
                    &format!("r{round}"),
                ),
                event("x", round, "Topic", "CREATE_FAILED", "t"),
            ];
            let failures: Vec<&StackEvent> = events.iter().collect();
            record_failures(&mut status, &failures);
        }
        assert_eq!(status.recent_failures.len(), RECENT_FAILURES);
        assert_eq!(status.recent_failures[0].reason, "r3");
    }
}
