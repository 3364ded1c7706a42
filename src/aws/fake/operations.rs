//! The calls that start a stack operation (execute a change set, delete,
//! continue an update rollback): checks as AWS makes them, tokens, then the first phase.

use crate::aws::{AwsError, AwsErrorKind, AwsResult, ChangeSetType, ExecutionStatus, StackState};

use super::calls::Action;
use super::errors::{stack_not_found, validation};
use super::model::State;
use super::phases::{Phase, StuckRollback};

impl State {
    pub(super) fn execute(&mut self, stack: &str, change_set_name: &str, token: &str) -> AwsResult<()> {
        let name = self.resolve(stack).ok_or_else(|| stack_not_found(stack))?;
        let configured = (
            self.failures.create.get(&name).cloned(),
            self.failures.update.get(&name).cloned(),
            self.failures.update_rollback.get(&name).cloned(),
        );
        let resource_failures = self.failures.resources.clone();
        let Some(fake) = self.stacks.get_mut(&name) else {
            return Err(stack_not_found(stack));
        };
        let key = (Action::ExecuteChangeSet, token.to_string());
        if !token.is_empty() && fake.tokens.contains(&key) {
            return Ok(());
        }
        let Some(cs) = fake
            .change_sets
            .iter()
            .find(|cs| cs.name == change_set_name || cs.id == change_set_name)
            .cloned()
        else {
            return Err(AwsError::new(
                AwsErrorKind::NotFound,
                "ChangeSetNotFound",
                format!("ChangeSet [{change_set_name}] does not exist"),
            ));
        };
        if cs.execution_status != ExecutionStatus::Available {
            return Err(AwsError::new(
                AwsErrorKind::Validation,
                "InvalidChangeSetStatus",
                format!(
                    "ChangeSet [{}] cannot be executed in its current status of [{}]",
                    cs.id,
                    cs.status.as_str()
                ),
            ));
        }
        if fake.status.is_in_progress() && fake.status != StackState::ReviewInProgress {
            return Err(fake.in_progress_error("updated"));
        }
        if !token.is_empty() {
            fake.tokens.insert(key);
        }
        // AWS drops the other change sets of a stack once one is executed.
        fake.change_sets.retain(|other| other.name == cs.name);
        fake.set_execution(&cs.name, ExecutionStatus::ExecuteInProgress);
        let previous = fake.content.replace(cs.content.clone());
        let touched: Vec<&str> = cs
            .changes
            .iter()
            .filter(|c| c.action != "Remove")
            .map(|c| c.logical_id.as_str())
            .collect();
        let by_resource = touched
            .iter()
            .find_map(|id| resource_failures.get(*id).map(|r| (id.to_string(), r.clone())));
        let first = touched
            .first()
            .map(|id| id.to_string())
            .or_else(|| cs.content.template.resources.keys().next().cloned())
            .unwrap_or_default();
        let (create_failure, update_failure, rollback_failure) = configured;
        match (cs.kind, previous) {
            (ChangeSetType::Create, _) | (_, None) => {
                let failure = create_failure.map(|r| (first, r)).or(by_resource);
                self.stack_status(&name, StackState::CreateInProgress, Some("User Initiated"));
                self.start(
                    &name,
                    Phase::Create {
                        change_set: cs.name,
                        failure,
                    },
                );
            }
            (ChangeSetType::Update, Some(previous)) => {
                let failure = update_failure.map(|r| (first, r)).or(by_resource);
                self.stack_status(&name, StackState::UpdateInProgress, Some("User Initiated"));
                self.start(
                    &name,
                    Phase::Update {
                        change_set: cs.name,
                        failure,
                        rollback_failure,
                        previous: Box::new(previous),
                    },
                );
            }
        }
        self.settle(&name);
        Ok(())
    }

    pub(super) fn delete_stack(&mut self, stack: &str, token: &str, retain: &[String]) -> AwsResult<()> {
        let Some(name) = self.resolve(stack) else {
            // Deleting a stack that is gone succeeds, as in AWS.
            return Ok(());
        };
        let failure = self.failures.delete.get(&name).cloned();
        let Some(fake) = self.stacks.get_mut(&name) else {
            return Ok(());
        };
        let key = (Action::DeleteStack, token.to_string());
        if !token.is_empty() && fake.tokens.contains(&key) {
            return Ok(());
        }
        if fake.status == StackState::DeleteInProgress {
            return Ok(());
        }
        if !retain.is_empty() && fake.status != StackState::DeleteFailed {
            return Err(validation(format!(
                "Invalid operation on stack [{}]: RetainResources can only be specified when the stack is in DELETE_FAILED state",
                fake.id
            )));
        }
        if fake.termination_protection {
            return Err(validation(format!(
                "Stack [{name}] cannot be deleted while TerminationProtection is enabled"
            )));
        }
        let cancellable = matches!(fake.status, StackState::CreateInProgress | StackState::ReviewInProgress);
        if fake.status.is_in_progress() && !cancellable {
            return Err(AwsError::new(
                AwsErrorKind::InProgress,
                "ValidationError",
                format!("Stack [{name}] cannot be deleted while in status {}", fake.status),
            ));
        }
        if !token.is_empty() {
            fake.tokens.insert(key);
        }
        fake.in_flight = None;
        // The resource deleted first (the last logical id) is the one that
        // fails; retaining it lets the delete finish.
        let failing = fake
            .resources()
            .into_keys()
            .next_back()
            .filter(|id| !retain.contains(id));
        let failure = failure.and_then(|reason| failing.map(|id| (id, reason)));
        self.stack_status(&name, StackState::DeleteInProgress, Some("User Initiated"));
        self.start(
            &name,
            Phase::Delete {
                failure,
                retained: retain.to_vec(),
            },
        );
        self.settle(&name);
        Ok(())
    }

    pub(super) fn continue_update_rollback(&mut self, stack: &str, skip: &[String], token: &str) -> AwsResult<()> {
        let name = self.resolve(stack).ok_or_else(|| stack_not_found(stack))?;
        let configured = self.failures.update_rollback.get(&name).cloned();
        let fake = self.live_mut(stack)?;
        let key = (Action::ContinueUpdateRollback, token.to_string());
        if !token.is_empty() && fake.tokens.contains(&key) {
            return Ok(());
        }
        if fake.status != StackState::UpdateRollbackFailed {
            return Err(fake.in_progress_error("rolled back"));
        }
        // Set out of band (set_status): nothing recorded, keep the content.
        let stuck = match fake.rollback.clone() {
            Some(stuck) => stuck,
            None => StuckRollback {
                change_set: String::new(),
                previous: Box::new(fake.content.clone().ok_or_else(|| stack_not_found(stack))?),
                failed_resource: fake.resources().into_keys().next().unwrap_or_default(),
            },
        };
        if let Some(bad) = skip.iter().find(|id| **id != stuck.failed_resource) {
            return Err(validation(format!(
                "Resource [{bad}] cannot be skipped: only resources in UPDATE_FAILED state can be skipped"
            )));
        }
        if !token.is_empty() {
            fake.tokens.insert(key);
        }
        fake.rollback = None;
        let skipped = skip.contains(&stuck.failed_resource);
        let rollback_failure = configured.filter(|_| !skipped);
        self.stack_status(&name, StackState::UpdateRollbackInProgress, Some("User Initiated"));
        for id in skip {
            self.resource_event(&name, id, "UPDATE_COMPLETE", Some("Resource skipped during rollback"));
        }
        self.start(
            &name,
            Phase::UpdateRollback {
                change_set: stuck.change_set,
                rollback_failure,
                previous: stuck.previous,
                failed_resource: stuck.failed_resource,
            },
        );
        self.settle(&name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{TEMPLATE, create, request, status};
    use super::super::{Action, FakeCloudFormation};
    use crate::aws::{AwsErrorKind, ChangeSetType, CloudFormation, Parameter, StackState};

    #[tokio::test]
    async fn delete_failure_and_retained_resources() {
        let fake = FakeCloudFormation::default();
        fake.set_change_set_delay(0);
        fake.set_operation_steps(0);
        create(&fake, "s1").await;
        fake.fail_delete("s1", "bucket not empty");
        fake.delete_stack("s1", "d1", &[]).await.unwrap();
        let stack = fake.describe_stack("s1").await.unwrap().unwrap();
        assert_eq!(stack.status, StackState::DeleteFailed);
        // Retaining the failing resource (the last one, deleted first) lets the delete finish.
        fake.delete_stack("s1", "d2", &["Topic".into()]).await.unwrap();
        assert_eq!(fake.describe_stack("s1").await.unwrap(), None);
        // By id, the deleted stack is still visible.
        let by_id = fake.describe_stack(&stack.stack_id).await.unwrap().unwrap();
        assert_eq!(by_id.status, StackState::DeleteComplete);
        // Deleting a missing stack succeeds.
        fake.delete_stack("s1", "d3", &[]).await.unwrap();
    }

    #[tokio::test]
    async fn tokens_make_writes_idempotent() {
        let fake = FakeCloudFormation::default();
        fake.set_change_set_delay(0);
        let first = fake
            .create_change_set(&request("s1", "c1", ChangeSetType::Create, TEMPLATE))
            .await
            .unwrap();
        let again = fake
            .create_change_set(&request("s1", "c1", ChangeSetType::Create, TEMPLATE))
            .await
            .unwrap();
        assert_eq!(first, again);
        let mut other_token = request("s1", "c1", ChangeSetType::Create, TEMPLATE);
        other_token.client_token = "different".into();
        let err = fake.create_change_set(&other_token).await.unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::AlreadyExists);

        fake.execute_change_set("s1", "c1", "exec-1").await.unwrap();
        fake.execute_change_set("s1", "c1", "exec-1").await.unwrap();
        let err = fake.execute_change_set("s1", "c1", "exec-2").await.unwrap_err();
        assert_eq!(err.code, "InvalidChangeSetStatus");
        let starts = fake
            .events("s1")
            .iter()
            .filter(|e| e.logical_id == "s1" && e.status == "CREATE_IN_PROGRESS")
            .count();
        assert_eq!(starts, 1, "executed once");

        while status(&fake, "s1").await.unwrap().is_in_progress() {}
        fake.delete_stack("s1", "del-1", &[]).await.unwrap();
        fake.delete_stack("s1", "del-1", &[]).await.unwrap();
        assert_eq!(fake.call_count(Action::DeleteStack), 2);
    }

    #[tokio::test]
    async fn continue_update_rollback_retries_or_skips_the_failed_resource() {
        let fake = FakeCloudFormation::default();
        fake.set_change_set_delay(0);
        fake.set_operation_steps(0);
        create(&fake, "s1").await;
        fake.fail_update("s1", "boom");
        fake.fail_update_rollback("s1", "stuck");
        let mut update = request("s1", "u1", ChangeSetType::Update, TEMPLATE);
        update.parameters = vec![Parameter {
            key: "Env".into(),
            value: "prod".into(),
        }];
        fake.create_change_set(&update).await.unwrap();
        fake.execute_change_set("s1", "u1", "u1").await.unwrap();
        assert_eq!(status(&fake, "s1").await, Some(StackState::UpdateRollbackFailed));
        let failed = fake.events("s1");
        assert_eq!(
            (
                failed[1].logical_id.as_str(),
                failed[1].status.as_str(),
                failed[1].reason.as_deref()
            ),
            ("Queue", "UPDATE_FAILED", Some("stuck")),
            "the rollback failed on the resource whose update failed"
        );

        // While the cause is there, continuing fails again.
        fake.continue_update_rollback("s1", &[], "c1").await.unwrap();
        assert_eq!(status(&fake, "s1").await, Some(StackState::UpdateRollbackFailed));
        // Only the failed resource can be skipped.
        let err = fake
            .continue_update_rollback("s1", &["Topic".into()], "c2")
            .await
            .unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::Validation);
        // Skipping it lets the rollback finish, to the previous parameters.
        fake.continue_update_rollback("s1", &["Queue".into()], "c3")
            .await
            .unwrap();
        let stack = fake.describe_stack("s1").await.unwrap().unwrap();
        assert_eq!(stack.status, StackState::UpdateRollbackComplete);
        assert_eq!(stack.parameters[0].value, "dev");
        // The same token again is a no-op; a new one in the wrong state fails.
        fake.continue_update_rollback("s1", &["Queue".into()], "c3")
            .await
            .unwrap();
        let err = fake.continue_update_rollback("s1", &[], "c4").await.unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::Validation, "{err}");

        // Out of band UPDATE_ROLLBACK_FAILED, cause fixed: continuing completes.
        fake.clear_failures();
        fake.set_status("s1", StackState::UpdateRollbackFailed, Some("out of band"));
        fake.continue_update_rollback("s1", &[], "c5").await.unwrap();
        assert_eq!(status(&fake, "s1").await, Some(StackState::UpdateRollbackComplete));
    }
}
