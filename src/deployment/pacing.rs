//! When and in what order the act step writes a deployment's status: the
//! status first (the intent) unless the step only moves the same update
//! forward, and progress alone (child messages, phases, counts, outputs)
//! at most every [`PROGRESS_WRITE_INTERVAL`]. Each reconcile recomputes
//! progress from the child Stacks, so a write left out loses nothing; what
//! the decision remembers only in the status (waves, failures, rejections,
//! releases, history) is always written at once.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::{RolloutKind, StackDeploymentStatus, TargetPhase};

/// At most one progress-only status write per deployment this often.
pub const PROGRESS_WRITE_INTERVAL: Duration = Duration::from_secs(5);

/// The next status only moves the same update rollout forward: no new
/// rollout, no rollback, no rejection, the same stable revision. Its child
/// writes (the next wave, releases) can be repeated from the old status.
pub fn forward_only(before: &StackDeploymentStatus, after: &StackDeploymentStatus) -> bool {
    let (Some(was), Some(now)) = (&before.rollout, &after.rollout) else {
        return false;
    };
    was.kind == RolloutKind::Update
        && now.kind == RolloutKind::Update
        && was.phase.is_active()
        && now.phase.is_active()
        && was.revision.hash == now.revision.hash
        && before.rejected_revisions == after.rejected_revisions
        && before.stable_revision == after.stable_revision
}

/// `after` differs from `before` only in what each reconcile recomputes
/// from the child Stacks: target messages, phases short of Failed,
/// revisions, outputs and drift, the updated count, condition messages.
pub fn progress_only(before: &StackDeploymentStatus, after: &StackDeploymentStatus) -> bool {
    essential(before) == essential(after)
}

fn essential(status: &StackDeploymentStatus) -> StackDeploymentStatus {
    let mut status = status.clone();
    status.updated = None;
    for row in &mut status.targets {
        row.message = None;
        row.revision = None;
        row.desired_revision = None;
        row.outputs.clear();
        row.drifted = false;
        if row.phase != TargetPhase::Failed {
            row.phase = TargetPhase::Pending;
        }
    }
    for condition in &mut status.conditions {
        condition.message.clear();
        condition.last_transition_time = Time(Timestamp::UNIX_EPOCH);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RejectedRevision, RevisionId, RolloutPhase, RolloutStatus, TargetStatus};

    fn status(kind: RolloutKind, phase: RolloutPhase, hash: &str, wave: i32) -> StackDeploymentStatus {
        StackDeploymentStatus {
            rollout: Some(RolloutStatus {
                revision: RevisionId {
                    revision: hash.into(),
                    hash: hash.into(),
                },
                kind,
                phase,
                wave,
                started: Time(Timestamp::UNIX_EPOCH),
                finished: None,
                approved: false,
                promoted_full: false,
                reason: None,
            }),
            ..StackDeploymentStatus::default()
        }
    }

    #[test]
    fn only_a_step_forward_in_the_same_update_may_write_children_first() {
        use RolloutKind::{Rollback, Update};
        use RolloutPhase::{Progressing, RollingBack, Succeeded, WaitingForApproval};
        let wave1 = status(Update, Progressing, "b", 0);
        let mut rejected = status(Update, Progressing, "b", 0);
        rejected.rejected_revisions.push(RejectedRevision {
            revision: RevisionId {
                revision: "b".into(),
                hash: "b".into(),
            },
            reason: "alarm".into(),
            target: None,
            resource: None,
            alarm: Some("errors".into()),
            rejected_at: Time(Timestamp::UNIX_EPOCH),
        });
        let mut stable = status(Update, Progressing, "b", 1);
        stable.stable_revision = Some(RevisionId {
            revision: "b".into(),
            hash: "b".into(),
        });
        let cases = [
            ("the next wave", &wave1, status(Update, Progressing, "b", 1), true),
            (
                "approved",
                &status(Update, WaitingForApproval, "b", 0),
                wave1.clone(),
                true,
            ),
            ("a new rollout", &StackDeploymentStatus::default(), wave1.clone(), false),
            ("another revision", &wave1, status(Update, Progressing, "c", 0), false),
            (
                "a rollback starts",
                &wave1,
                status(Rollback, RollingBack, "a", 0),
                false,
            ),
            (
                "a rollback goes on",
                &status(Rollback, RollingBack, "a", 0),
                status(Rollback, RollingBack, "a", 0),
                false,
            ),
            ("the rollout ends", &wave1, status(Update, Succeeded, "b", 2), false),
            ("a rejection", &wave1, rejected, false),
            ("a new stable revision", &wave1, stable, false),
        ];
        for (name, before, after, expected) in cases {
            assert_eq!(forward_only(before, &after), expected, "{name}");
        }
    }

    #[test]
    fn only_what_the_children_show_is_progress() {
        let mut before = status(RolloutKind::Update, RolloutPhase::Progressing, "b", 0);
        before.targets = vec![TargetStatus {
            name: "t1".into(),
            phase: TargetPhase::Deploying,
            message: Some("change set planned".into()),
            ..TargetStatus::default()
        }];
        let mut progress = before.clone();
        progress.targets[0].phase = TargetPhase::Healthy;
        progress.targets[0].message = Some("stack is UPDATE_COMPLETE".into());
        progress.targets[0].revision = Some("b".into());
        progress.targets[0].outputs.insert("Url".into(), "https://x".into());
        progress.updated = Some("1/1".into());
        assert!(progress_only(&before, &progress));
        let mut failed = before.clone();
        failed.targets[0].phase = TargetPhase::Failed;
        assert!(
            !progress_only(&before, &failed),
            "a failure is remembered only in the status"
        );
        let mut next_wave = before.clone();
        if let Some(rollout) = next_wave.rollout.as_mut() {
            rollout.wave = 1;
        }
        assert!(!progress_only(&before, &next_wave));
        let mut released = before.clone();
        released.targets[0].released = Some(crate::api::Release {
            revision: "b".into(),
            change_set: "cs".into(),
        });
        assert!(
            !progress_only(&before, &released),
            "a release is remembered only in the status"
        );
    }
}
