//! Every stack status CloudFormation can report, as a closed enum plus an
//! escape hatch for statuses added after this was written.

use std::fmt;

macro_rules! stack_statuses {
    ($($variant:ident => $text:literal,)*) => {
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum StackState {
            $($variant,)*
            /// A status this build does not know yet.
            Unknown(String),
        }

        impl StackState {
            /// Every known status, for table-driven tests.
            pub const ALL: &'static [StackState] = &[$(StackState::$variant,)*];

            pub fn parse(text: &str) -> Self {
                match text {
                    $($text => StackState::$variant,)*
                    other => StackState::Unknown(other.to_string()),
                }
            }

            pub fn as_str(&self) -> &str {
                match self {
                    $(StackState::$variant => $text,)*
                    StackState::Unknown(text) => text,
                }
            }
        }
    };
}

stack_statuses! {
    CreateInProgress => "CREATE_IN_PROGRESS",
    CreateFailed => "CREATE_FAILED",
    CreateComplete => "CREATE_COMPLETE",
    RollbackInProgress => "ROLLBACK_IN_PROGRESS",
    RollbackFailed => "ROLLBACK_FAILED",
    RollbackComplete => "ROLLBACK_COMPLETE",
    DeleteInProgress => "DELETE_IN_PROGRESS",
    DeleteFailed => "DELETE_FAILED",
    DeleteComplete => "DELETE_COMPLETE",
    UpdateInProgress => "UPDATE_IN_PROGRESS",
    UpdateCompleteCleanupInProgress => "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
    UpdateComplete => "UPDATE_COMPLETE",
    UpdateFailed => "UPDATE_FAILED",
    UpdateRollbackInProgress => "UPDATE_ROLLBACK_IN_PROGRESS",
    UpdateRollbackFailed => "UPDATE_ROLLBACK_FAILED",
    UpdateRollbackCompleteCleanupInProgress => "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
    UpdateRollbackComplete => "UPDATE_ROLLBACK_COMPLETE",
    ReviewInProgress => "REVIEW_IN_PROGRESS",
    ImportInProgress => "IMPORT_IN_PROGRESS",
    ImportComplete => "IMPORT_COMPLETE",
    ImportRollbackInProgress => "IMPORT_ROLLBACK_IN_PROGRESS",
    ImportRollbackFailed => "IMPORT_ROLLBACK_FAILED",
    ImportRollbackComplete => "IMPORT_ROLLBACK_COMPLETE",
}

impl StackState {
    /// An operation is under way; CloudFormation accepts no new one.
    pub fn is_in_progress(&self) -> bool {
        self.as_str().ends_with("_IN_PROGRESS")
    }
}

impl fmt::Display for StackState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_text() {
        for status in StackState::ALL {
            assert_eq!(&StackState::parse(status.as_str()), status);
        }
        assert_eq!(
            StackState::parse("SOMETHING_NEW"),
            StackState::Unknown("SOMETHING_NEW".into())
        );
    }
}
