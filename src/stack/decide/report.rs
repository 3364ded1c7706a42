//! The Kubernetes Event of a decision's Ready transition.

use crate::api::StackStatus;
use crate::runtime::conditions::{self, READY};

use super::super::plan::Note;

/// A Kubernetes Event when Ready changed status, or changed reason while not
/// progressing. Steps of progress (planning, executing, CloudFormation
/// running) have Events of their own; one per step here too would double
/// the API server writes of every create.
pub fn transition_note(before: &StackStatus, after: &StackStatus) -> Option<Note> {
    let old = conditions::find(&before.conditions, READY);
    let new = conditions::find(&after.conditions, READY)?;
    if old.is_some_and(|o| o.status == new.status && (o.reason == new.reason || new.status == "Unknown")) {
        return None;
    }
    let reason: &'static str = match new.status.as_str() {
        "True" => "Ready",
        "False" => "NotReady",
        _ => "Progressing",
    };
    let message = format!("{}: {}", new.reason, new.message);
    Some(if new.status == "False" {
        Note::warning(reason, message)
    } else {
        Note::normal(reason, message)
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
            (transition_note(before, &after).map(|n| n.reason), after)
        };
        let (note, planning) = step(&StackStatus::default(), &|r| {
            r.progressing("ChangeSetPending", "planning")
        });
        assert_eq!(note.as_deref(), Some("Progressing"));
        let (note, executing) = step(&planning, &|r| r.progressing("Executing", "executing"));
        assert_eq!(note.as_deref(), None, "a step of progress has its own event");
        let (note, failed) = step(&executing, &|r| r.stalled("UpdateFailed", "failed"));
        assert_eq!(note.as_deref(), Some("NotReady"));
        let (note, _) = step(&failed, &|r| r.stalled("ChangeSetFailed", "another failure"));
        assert_eq!(note.as_deref(), Some("NotReady"), "a different failure is told");
        let (note, _) = step(&executing, &|r| r.ready("Ready", "done"));
        assert_eq!(note.as_deref(), Some("Ready"));
    }
}
