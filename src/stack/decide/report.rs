//! The Kubernetes Event of a decision's Ready transition.

use crate::api::StackStatus;
use crate::runtime::conditions::{self, READY};

use super::super::plan::Note;

/// A Kubernetes Event when Ready changed status, reason or message, with
/// the condition's reason and message as its own (so two causes in a row are
/// two Events, each with its text). Steps of progress (Ready=Unknown to
/// Unknown: planning, executing, CloudFormation running) have Events of
/// their own; one per step here too would double the API server writes of
/// every create. Messages hold no countdowns, so a wait is one Event. A new
/// object's first step of progress (planning its create) has none either:
/// the step that follows tells it (the execution with its changes, the
/// approval it waits for, or the failure).
pub fn transition_note(before: &StackStatus, after: &StackStatus) -> Option<Note> {
    let old = conditions::find(&before.conditions, READY);
    let new = conditions::find(&after.conditions, READY)?;
    let progress = new.status == "Unknown";
    if old.is_none() && progress {
        return None;
    }
    if old.is_some_and(|o| o.status == new.status && (progress || (o.reason == new.reason && o.message == new.message)))
    {
        return None;
    }
    Some(if new.status == "False" {
        Note::warning(&new.reason, &new.message)
    } else {
        Note::normal(&new.reason, &new.message)
    })
}

#[cfg(test)]
mod tests {
    use super::super::super::plan::Report;
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn events_follow_ready_status_and_failure_reasons_not_each_step_of_progress() {
        let step = |before: &StackStatus, f: &dyn Fn(&mut Report)| {
            let mut after = before.clone();
            f(&mut Report {
                status: &mut after,
                generation: 1,
                now: Timestamp::UNIX_EPOCH,
            });
            (transition_note(before, &after).map(|n| (n.reason, n.message)), after)
        };
        let told = |note: Option<(String, String)>| note.map(|(reason, message)| format!("{reason}: {message}"));
        let (note, planning) = step(&StackStatus::default(), &|r| {
            r.progressing("ChangeSetPending", "planning")
        });
        assert_eq!(note, None, "a new object's planning is told by the step that follows");
        let (note, _) = step(&StackStatus::default(), &|r| r.waiting("DependencyNotReady", "waiting"));
        assert_eq!(told(note).as_deref(), Some("DependencyNotReady: waiting"));
        let mut ready = planning.clone();
        Report {
            status: &mut ready,
            generation: 1,
            now: Timestamp::UNIX_EPOCH,
        }
        .ready("Succeeded", "done");
        let (note, _) = step(&ready, &|r| r.progressing("ChangeSetPending", "planning an update"));
        assert_eq!(
            told(note).as_deref(),
            Some("ChangeSetPending: planning an update"),
            "an update's start is told"
        );
        let (note, executing) = step(&planning, &|r| r.progressing("Executing", "executing"));
        assert_eq!(note, None, "a step of progress has its own event");
        let (note, failed) = step(&executing, &|r| r.stalled("UpdateFailed", "failed"));
        assert_eq!(told(note).as_deref(), Some("UpdateFailed: failed"));
        let (note, _) = step(&failed, &|r| r.stalled("ChangeSetFailed", "another failure"));
        assert_eq!(
            told(note).as_deref(),
            Some("ChangeSetFailed: another failure"),
            "a different failure is told"
        );
        let (note, _) = step(&failed, &|r| r.stalled("UpdateFailed", "failed"));
        assert_eq!(note, None, "the same failure again is not");
        let (note, _) = step(&executing, &|r| r.ready("Succeeded", "done"));
        assert_eq!(told(note).as_deref(), Some("Succeeded: done"));
    }

    #[test]
    fn two_causes_in_a_row_are_two_events_each_with_its_own_message() {
        let mut waiting = StackStatus::default();
        let report = |status: &mut StackStatus, reason: &str, message: &str| {
            let before = status.clone();
            Report {
                status,
                generation: 1,
                now: Timestamp::UNIX_EPOCH,
            }
            .waiting(reason, message);
            transition_note(&before, status)
        };
        let first = report(&mut waiting, "DependencyNotReady", "waiting for Stack net").unwrap();
        assert_eq!(
            (first.reason.as_str(), first.message.as_str()),
            ("DependencyNotReady", "waiting for Stack net")
        );
        let second = report(&mut waiting, "InsufficientCapabilities", "needs CAPABILITY_IAM").unwrap();
        assert_eq!(
            (second.reason.as_str(), second.message.as_str()),
            ("InsufficientCapabilities", "needs CAPABILITY_IAM")
        );
        // The same reason with new text is told too.
        let third = report(&mut waiting, "InsufficientCapabilities", "needs CAPABILITY_NAMED_IAM").unwrap();
        assert_eq!(third.message, "needs CAPABILITY_NAMED_IAM");
        assert!(report(&mut waiting, "InsufficientCapabilities", "needs CAPABILITY_NAMED_IAM").is_none());
    }
}
