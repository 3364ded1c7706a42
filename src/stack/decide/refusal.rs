//! Status bookkeeping after an AWS call was refused, and the check that
//! keeps status writes to real changes.

use k8s_openapi::jiff::Timestamp;

use crate::api::{ChangeSetState, ExecutionState, StackStatus};
use crate::aws::{AwsError, AwsErrorKind};

use super::super::plan::{Note, Report, Step};

/// AWS refused a step for a reason a retry will not fix (validation, access).
/// The Stack is Stalled with AWS's message and the refusal is remembered, so
/// the same call is not sent again until the spec changes.
pub fn rejected(status: &mut StackStatus, step: &Step, error: &AwsError, generation: i64, now: Timestamp) -> Note {
    let reason = match error.kind {
        AwsErrorKind::AccessDenied => "AccessDenied",
        _ => "Rejected",
    };
    let what = match step {
        Step::CreateChangeSet(request) => {
            if let Some(cs) = status
                .change_set
                .as_mut()
                .filter(|cs| cs.name == request.change_set_name)
            {
                cs.status = Some(ChangeSetState::Failed);
                cs.status_reason = Some(error.message.clone());
            }
            format!("creating change set {}", request.change_set_name)
        }
        Step::ExecuteChangeSet { name, .. } => {
            if let Some(cs) = status.change_set.as_mut().filter(|cs| &cs.name == name) {
                cs.execution_status = Some(ExecutionState::ExecuteFailed);
                cs.status_reason = Some(error.message.clone());
            }
            format!("executing change set {name}")
        }
        Step::DeleteChangeSet { name } => format!("deleting change set {name}"),
        Step::DeleteStack { .. } => "deleting the stack".to_string(),
        other => other.label(),
    };
    status.operation = None;
    let message = format!("AWS refused {what}: {}", error);
    Report {
        status,
        generation,
        now,
    }
    .stalled(reason, &message);
    Note::warning(reason, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ChangeSetSummary;
    use crate::runtime::conditions;

    #[test]
    fn a_rejected_change_set_is_remembered_and_stalls() {
        let mut status = StackStatus {
            change_set: Some(ChangeSetSummary {
                name: "cs".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let step = Step::DeleteChangeSet { name: "other".into() };
        let error = AwsError::new(AwsErrorKind::Validation, "ValidationError", "bad");
        let note = rejected(&mut status, &step, &error, 3, Timestamp::UNIX_EPOCH);
        assert!(note.warning);
        assert!(conditions::is_true(&status.conditions, conditions::STALLED));
        assert_eq!(status.conditions[0].observed_generation, Some(3));
    }
}
