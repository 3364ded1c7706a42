//! What each CloudFormation stack status means for the controller: can it be
//! changed now, is an operation running, or is it stuck in a failed state that
//! needs a policy.

use crate::aws::StackState;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// Created by a CREATE change set that has not run yet.
    Review,
    /// An operation runs; nothing can be started.
    Busy { deleting: bool },
    /// Settled; a change set can be created and run. `last_update_failed`
    /// marks the states reached by rolling an update back.
    Settled { last_update_failed: bool },
    /// The create failed; the stack cannot be updated, only deleted.
    CreateFailed,
    /// `UPDATE_ROLLBACK_FAILED`: needs ContinueUpdateRollback or a person.
    UpdateRollbackFailed,
    /// `UPDATE_FAILED` (rollback disabled): can be updated again.
    UpdateFailed,
    /// `DELETE_FAILED`.
    DeleteFailed,
    /// `IMPORT_ROLLBACK_FAILED`: needs a person.
    ImportRollbackFailed,
    /// Gone (`DELETE_COMPLETE`).
    Deleted,
    /// A status this build does not know.
    Unknown,
}

pub fn classify(status: &StackState) -> Lifecycle {
    use StackState::*;
    match status {
        ReviewInProgress => Lifecycle::Review,
        DeleteInProgress => Lifecycle::Busy { deleting: true },
        CreateInProgress
        | RollbackInProgress
        | UpdateInProgress
        | UpdateCompleteCleanupInProgress
        | UpdateRollbackInProgress
        | UpdateRollbackCompleteCleanupInProgress
        | ImportInProgress
        | ImportRollbackInProgress => Lifecycle::Busy { deleting: false },
        CreateComplete | UpdateComplete | ImportComplete => Lifecycle::Settled {
            last_update_failed: false,
        },
        UpdateRollbackComplete | ImportRollbackComplete => Lifecycle::Settled {
            last_update_failed: true,
        },
        CreateFailed | RollbackFailed | RollbackComplete => Lifecycle::CreateFailed,
        UpdateRollbackFailed => Lifecycle::UpdateRollbackFailed,
        UpdateFailed => Lifecycle::UpdateFailed,
        DeleteFailed => Lifecycle::DeleteFailed,
        ImportRollbackFailed => Lifecycle::ImportRollbackFailed,
        DeleteComplete => Lifecycle::Deleted,
        Unknown(_) => Lifecycle::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every status CloudFormation documents, with the lifecycle expected.
    #[test]
    fn every_status_has_a_lifecycle() {
        use Lifecycle::*;
        let expected = [
            ("CREATE_IN_PROGRESS", Busy { deleting: false }),
            ("CREATE_FAILED", CreateFailed),
            (
                "CREATE_COMPLETE",
                Settled {
                    last_update_failed: false,
                },
            ),
            ("ROLLBACK_IN_PROGRESS", Busy { deleting: false }),
            ("ROLLBACK_FAILED", CreateFailed),
            ("ROLLBACK_COMPLETE", CreateFailed),
            ("DELETE_IN_PROGRESS", Busy { deleting: true }),
            ("DELETE_FAILED", DeleteFailed),
            ("DELETE_COMPLETE", Deleted),
            ("UPDATE_IN_PROGRESS", Busy { deleting: false }),
            ("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", Busy { deleting: false }),
            (
                "UPDATE_COMPLETE",
                Settled {
                    last_update_failed: false,
                },
            ),
            ("UPDATE_FAILED", UpdateFailed),
            ("UPDATE_ROLLBACK_IN_PROGRESS", Busy { deleting: false }),
            ("UPDATE_ROLLBACK_FAILED", UpdateRollbackFailed),
            ("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", Busy { deleting: false }),
            (
                "UPDATE_ROLLBACK_COMPLETE",
                Settled {
                    last_update_failed: true,
                },
            ),
            ("REVIEW_IN_PROGRESS", Review),
            ("IMPORT_IN_PROGRESS", Busy { deleting: false }),
            (
                "IMPORT_COMPLETE",
                Settled {
                    last_update_failed: false,
                },
            ),
            ("IMPORT_ROLLBACK_IN_PROGRESS", Busy { deleting: false }),
            ("IMPORT_ROLLBACK_FAILED", ImportRollbackFailed),
            (
                "IMPORT_ROLLBACK_COMPLETE",
                Settled {
                    last_update_failed: true,
                },
            ),
            ("SOMETHING_NEW", Unknown),
        ];
        assert_eq!(
            expected.len(),
            StackState::ALL.len() + 1,
            "a status is missing from this table"
        );
        for (text, lifecycle) in expected {
            assert_eq!(classify(&StackState::parse(text)), lifecycle, "{text}");
        }
    }
}
