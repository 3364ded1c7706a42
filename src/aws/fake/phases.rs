//! Stack operations over time: each in-progress phase lasts some
//! `describe_stack` calls, then writes its events and moves to the next status.

use crate::aws::{DeploymentMode, ExecutionStatus, ResourceChange, StackOutput, StackState};

use super::model::{Content, State};
use super::template::Template;

/// What happens when the current in-progress phase ends.
#[derive(Clone, Debug)]
pub(super) enum Phase {
    /// CREATE_IN_PROGRESS ends; `failure` = (logical id, reason).
    Create {
        change_set: String,
        failure: Option<(String, String)>,
    },
    /// ROLLBACK_IN_PROGRESS ends after a failed create.
    CreateRollback { change_set: String },
    /// UPDATE_IN_PROGRESS ends.
    Update {
        change_set: String,
        failure: Option<(String, String)>,
        rollback_failure: Option<String>,
        previous: Box<Content>,
    },
    /// UPDATE_COMPLETE_CLEANUP_IN_PROGRESS ends (removed resources go).
    UpdateCleanup { change_set: String, removed: Vec<String> },
    /// UPDATE_ROLLBACK_IN_PROGRESS ends.
    UpdateRollback {
        change_set: String,
        rollback_failure: Option<String>,
        previous: Box<Content>,
        /// The resource whose update failed; it fails the rollback too.
        failed_resource: String,
    },
    /// DELETE_IN_PROGRESS ends.
    Delete {
        failure: Option<(String, String)>,
        retained: Vec<String>,
    },
}

#[derive(Clone, Debug)]
pub(super) struct InFlight {
    pub(super) remaining: u32,
    pub(super) phase: Phase,
}

/// What `continue_update_rollback` resumes after UPDATE_ROLLBACK_FAILED.
#[derive(Clone, Debug)]
pub(super) struct StuckRollback {
    pub(super) change_set: String,
    pub(super) previous: Box<Content>,
    pub(super) failed_resource: String,
}

impl State {
    pub(super) fn start(&mut self, name: &str, phase: Phase) {
        let steps = self.operation_steps;
        if let Some(stack) = self.stacks.get_mut(name) {
            stack.in_flight = Some(InFlight {
                remaining: steps,
                phase,
            });
        }
    }

    /// One `describe_stack` worth of time for this stack.
    pub(super) fn tick(&mut self, name: &str) {
        let Some(stack) = self.stacks.get_mut(name) else {
            return;
        };
        let Some(flight) = &mut stack.in_flight else {
            return;
        };
        if flight.remaining > 0 {
            flight.remaining -= 1;
            return;
        }
        self.settle(name);
        if let Some(flight) = self.stacks.get_mut(name).and_then(|s| s.in_flight.as_mut()) {
            flight.remaining = flight.remaining.saturating_sub(1);
        }
    }

    /// Ends phases whose steps are used up (all of them when steps = 0).
    pub(super) fn settle(&mut self, name: &str) {
        loop {
            let Some(stack) = self.stacks.get_mut(name) else {
                return;
            };
            match &stack.in_flight {
                Some(flight) if flight.remaining == 0 => {}
                _ => return,
            }
            let Some(flight) = stack.in_flight.take() else {
                return;
            };
            self.finish(name, flight.phase);
        }
    }

    pub(super) fn outputs_for(name: &str, template: &Template) -> Vec<StackOutput> {
        template
            .outputs
            .iter()
            .map(|(key, description, export_name)| StackOutput {
                key: key.clone(),
                value: format!("{name}-{key}"),
                description: description.clone(),
                export_name: export_name.clone(),
            })
            .collect()
    }

    fn changes_of(&self, name: &str, change_set: &str) -> Vec<ResourceChange> {
        self.stacks
            .get(name)
            .and_then(|s| s.change_sets.iter().find(|cs| cs.name == change_set))
            .map(|cs| cs.changes.clone())
            .unwrap_or_default()
    }

    fn finish(&mut self, name: &str, phase: Phase) {
        match phase {
            Phase::Create { change_set, failure } => {
                let changes = self.changes_of(name, &change_set);
                for change in &changes {
                    let failed = failure.as_ref().filter(|(id, _)| *id == change.logical_id);
                    self.resource_event(name, &change.logical_id, "CREATE_IN_PROGRESS", None);
                    match failed {
                        Some((_, reason)) => {
                            self.resource_event(name, &change.logical_id, "CREATE_FAILED", Some(reason));
                            break;
                        }
                        None => self.resource_event(name, &change.logical_id, "CREATE_COMPLETE", None),
                    }
                }
                match failure {
                    None => {
                        let template = self.stacks.get(name).and_then(|s| s.content.clone());
                        if let (Some(content), Some(stack)) = (template, self.stacks.get_mut(name)) {
                            stack.outputs = Self::outputs_for(name, &content.template);
                        }
                        self.set_execution(name, &change_set, ExecutionStatus::ExecuteComplete);
                        self.stack_status(name, StackState::CreateComplete, None);
                    }
                    Some((id, _)) => {
                        let reason =
                            format!("The following resource(s) failed to create: [{id}]. Rollback requested by user.");
                        self.stack_status(name, StackState::RollbackInProgress, Some(&reason));
                        self.start(name, Phase::CreateRollback { change_set });
                    }
                }
            }
            Phase::CreateRollback { change_set } => {
                let created: Vec<String> = self
                    .stacks
                    .get(name)
                    .map(|s| s.physical_ids.keys().cloned().collect())
                    .unwrap_or_default();
                for id in created.iter().rev() {
                    self.resource_event(name, id, "DELETE_IN_PROGRESS", None);
                    self.resource_event(name, id, "DELETE_COMPLETE", None);
                }
                self.set_execution(name, &change_set, ExecutionStatus::ExecuteFailed);
                self.stack_status(name, StackState::RollbackComplete, None);
            }
            Phase::Update {
                change_set,
                failure,
                rollback_failure,
                previous,
            } => {
                let changes = self.changes_of(name, &change_set);
                let mut removed = Vec::new();
                let mut failed_id = None;
                for change in &changes {
                    let (start, done, fail) = match change.action.as_str() {
                        "Add" => ("CREATE_IN_PROGRESS", "CREATE_COMPLETE", "CREATE_FAILED"),
                        "Modify" => ("UPDATE_IN_PROGRESS", "UPDATE_COMPLETE", "UPDATE_FAILED"),
                        _ => {
                            removed.push(change.logical_id.clone());
                            continue;
                        }
                    };
                    self.resource_event(name, &change.logical_id, start, None);
                    match failure.as_ref().filter(|(id, _)| *id == change.logical_id) {
                        Some((id, reason)) => {
                            self.resource_event(name, id, fail, Some(reason));
                            failed_id = Some(id.clone());
                            break;
                        }
                        None => self.resource_event(name, &change.logical_id, done, None),
                    }
                }
                if let (Some((id, reason)), None) = (&failure, &failed_id) {
                    // The failing resource was not among the changes: fail the first one.
                    self.resource_event(name, id, "UPDATE_FAILED", Some(reason));
                    failed_id = Some(id.clone());
                }
                match failed_id {
                    None if removed.is_empty() => {
                        self.update_complete(name, &change_set);
                    }
                    None => {
                        self.stack_status(name, StackState::UpdateCompleteCleanupInProgress, None);
                        self.start(name, Phase::UpdateCleanup { change_set, removed });
                    }
                    Some(id) => {
                        let reason = format!("The following resource(s) failed to update: [{id}]. ");
                        self.stack_status(name, StackState::UpdateRollbackInProgress, Some(&reason));
                        self.start(
                            name,
                            Phase::UpdateRollback {
                                change_set,
                                rollback_failure,
                                previous,
                                failed_resource: id,
                            },
                        );
                    }
                }
            }
            Phase::UpdateCleanup { change_set, removed } => {
                for id in &removed {
                    self.resource_event(name, id, "DELETE_IN_PROGRESS", None);
                    self.resource_event(name, id, "DELETE_COMPLETE", None);
                    if let Some(stack) = self.stacks.get_mut(name) {
                        stack.drift.remove(id);
                    }
                }
                self.update_complete(name, &change_set);
            }
            Phase::UpdateRollback {
                change_set,
                rollback_failure,
                previous,
                failed_resource,
            } => {
                self.set_execution(name, &change_set, ExecutionStatus::ExecuteFailed);
                match rollback_failure {
                    Some(reason) => {
                        if !failed_resource.is_empty() {
                            self.resource_event(name, &failed_resource, "UPDATE_FAILED", Some(&reason));
                        }
                        if let Some(stack) = self.stacks.get_mut(name) {
                            stack.rollback = Some(StuckRollback {
                                change_set,
                                previous,
                                failed_resource,
                            });
                        }
                        self.stack_status(name, StackState::UpdateRollbackFailed, Some(&reason));
                    }
                    None => {
                        if let Some(stack) = self.stacks.get_mut(name) {
                            stack.content = Some(*previous);
                            stack.rollback = None;
                        }
                        self.stack_status(name, StackState::UpdateRollbackComplete, None);
                    }
                }
            }
            Phase::Delete { failure, retained } => {
                let resources: Vec<String> = self
                    .stacks
                    .get(name)
                    .map(|s| s.resources().into_keys().collect())
                    .unwrap_or_default();
                for id in resources.iter().rev() {
                    if retained.contains(id) {
                        self.resource_event(name, id, "DELETE_SKIPPED", None);
                        continue;
                    }
                    self.resource_event(name, id, "DELETE_IN_PROGRESS", None);
                    if let Some((_, reason)) = failure.as_ref().filter(|(f, _)| f == id) {
                        self.resource_event(name, id, "DELETE_FAILED", Some(reason));
                        let reason = format!("The following resource(s) failed to delete: [{id}]. ");
                        self.stack_status(name, StackState::DeleteFailed, Some(&reason));
                        return;
                    }
                    self.resource_event(name, id, "DELETE_COMPLETE", None);
                }
                self.stack_status(name, StackState::DeleteComplete, None);
                self.remove(name);
            }
        }
    }

    fn update_complete(&mut self, name: &str, change_set: &str) {
        let template = self.stacks.get(name).and_then(|s| s.content.clone());
        let now = self.now();
        if let (Some(content), Some(stack)) = (template, self.stacks.get_mut(name)) {
            stack.outputs = Self::outputs_for(name, &content.template);
            stack.last_updated_time = Some(now);
            let reverted = stack
                .change_sets
                .iter()
                .any(|cs| cs.name == change_set && cs.deployment_mode == Some(DeploymentMode::RevertDrift));
            if reverted {
                // A drift-aware change set brings every resource back to its
                // template and resets its drift status.
                stack.drift.clear();
                stack.drift_results.clear();
            }
        }
        self.set_execution(name, change_set, ExecutionStatus::ExecuteComplete);
        self.stack_status(name, StackState::UpdateComplete, None);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::FakeCloudFormation;
    use super::super::fixtures::{TEMPLATE, create, request, status};
    use crate::aws::{
        AwsErrorKind, ChangeSetStatus, ChangeSetType, CloudFormation, ExecutionStatus, Parameter, StackEvent,
        StackState,
    };

    #[tokio::test]
    async fn create_goes_through_review_pending_and_in_progress_to_complete() {
        let fake = FakeCloudFormation::default();
        let id = fake
            .create_change_set(&request("s1", "c1", ChangeSetType::Create, TEMPLATE))
            .await
            .unwrap();
        assert!(id.starts_with("arn:aws:cloudformation:us-east-1:123456789012:changeSet/c1/"));
        assert_eq!(status(&fake, "s1").await, Some(StackState::ReviewInProgress));

        let pending = fake.describe_change_set("s1", "c1").await.unwrap().unwrap();
        assert_eq!(pending.status, ChangeSetStatus::CreatePending);
        assert_eq!(pending.execution_status, ExecutionStatus::Unavailable);
        let ready = fake.describe_change_set("s1", "c1").await.unwrap().unwrap();
        assert_eq!(ready.status, ChangeSetStatus::CreateComplete);
        assert_eq!(ready.execution_status, ExecutionStatus::Available);
        let actions: Vec<(&str, &str)> = ready
            .changes
            .iter()
            .map(|c| (c.action.as_str(), c.logical_id.as_str()))
            .collect();
        assert_eq!(actions, [("Add", "Queue"), ("Add", "Topic")]);

        fake.execute_change_set("s1", "c1", "t1").await.unwrap();
        assert_eq!(status(&fake, "s1").await, Some(StackState::CreateInProgress));
        let done = fake.describe_stack("s1").await.unwrap().unwrap();
        assert_eq!(done.status, StackState::CreateComplete);
        assert!(
            done.stack_id
                .starts_with("arn:aws:cloudformation:us-east-1:123456789012:stack/s1/")
        );
        assert_eq!(
            done.parameters,
            [Parameter {
                key: "Env".into(),
                value: "dev".into()
            }]
        );
        assert_eq!(done.tags.get("team").map(String::as_str), Some("a"));
        assert_eq!(done.outputs.len(), 1);
        assert_eq!(done.outputs[0].value, "s1-QueueUrl");
        assert_eq!(done.outputs[0].description.as_deref(), Some("the queue"));

        let events = fake.stack_events("s1", None, 100).await.unwrap();
        assert_eq!(events[0].status, "CREATE_COMPLETE");
        assert_eq!(events[0].logical_id, "s1");
        assert_eq!(events.last().unwrap().status, "REVIEW_IN_PROGRESS");
        let ids: BTreeSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids.len(), events.len(), "event ids are unique");
        let executed = fake.describe_change_set("s1", "c1").await.unwrap().unwrap();
        assert_eq!(executed.execution_status, ExecutionStatus::ExecuteComplete);
    }

    #[tokio::test]
    async fn failed_create_rolls_back_with_a_failed_resource_event() {
        let fake = FakeCloudFormation::default();
        fake.fail_resource("Topic", "Topic limit exceeded");
        fake.set_change_set_delay(0);
        fake.create_change_set(&request("s1", "c1", ChangeSetType::Create, TEMPLATE))
            .await
            .unwrap();
        fake.execute_change_set("s1", "c1", "t").await.unwrap();
        let mut seen = Vec::new();
        loop {
            let status = status(&fake, "s1").await.unwrap();
            seen.push(status.clone());
            if !status.is_in_progress() {
                break;
            }
        }
        assert_eq!(
            seen,
            [
                StackState::CreateInProgress,
                StackState::RollbackInProgress,
                StackState::RollbackComplete
            ]
        );
        let events = fake.stack_events("s1", None, 100).await.unwrap();
        let failed: Vec<&StackEvent> = events.iter().filter(|e| e.is_failure()).collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].logical_id, "Topic");
        assert_eq!(failed[0].reason.as_deref(), Some("Topic limit exceeded"));
        // A ROLLBACK_COMPLETE stack cannot be updated.
        let err = fake
            .create_change_set(&request("s1", "c2", ChangeSetType::Update, TEMPLATE))
            .await
            .unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::Validation);
        assert!(err.message.contains("ROLLBACK_COMPLETE state"), "{err}");
    }

    #[tokio::test]
    async fn failed_update_rolls_back_or_gets_stuck() {
        for (rollback_fails, want) in [
            (false, StackState::UpdateRollbackComplete),
            (true, StackState::UpdateRollbackFailed),
        ] {
            let fake = FakeCloudFormation::default();
            fake.set_change_set_delay(0);
            fake.set_operation_steps(0);
            create(&fake, "s1").await;
            fake.fail_update("s1", "boom");
            if rollback_fails {
                fake.fail_update_rollback("s1", "stuck");
            }
            let mut update = request("s1", "u1", ChangeSetType::Update, TEMPLATE);
            update.parameters = vec![Parameter {
                key: "Env".into(),
                value: "prod".into(),
            }];
            fake.create_change_set(&update).await.unwrap();
            fake.execute_change_set("s1", "u1", "u1").await.unwrap();
            let stack = fake.describe_stack("s1").await.unwrap().unwrap();
            assert_eq!(stack.status, want);
            if !rollback_fails {
                assert_eq!(
                    stack.parameters[0].value, "dev",
                    "rolled back to the previous parameters"
                );
            }
            let events = fake.stack_events("s1", None, 100).await.unwrap();
            assert!(
                events
                    .iter()
                    .any(|e| e.status == "UPDATE_FAILED" && e.reason.as_deref() == Some("boom"))
            );
        }
    }
}
