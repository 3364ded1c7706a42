//! Creating a change set: validation like AWS, the diff of resources by
//! logical id, and the pending -> complete (or empty, failed) status.

use std::collections::{BTreeMap, BTreeSet};

use crate::aws::{
    AwsError, AwsErrorKind, AwsResult, ChangeSetDescription, ChangeSetRequest, ChangeSetStatus, ChangeSetType,
    DeploymentMode, ExecutionStatus, Parameter, ResourceChange, ResourceDriftStatus, StackState, TemplateSource,
};

use super::errors::{stack_not_found, validation};
use super::model::{Content, FakeChangeSet, FakeStack, State};
use super::template::{Template, parse_template, references};
use super::{ACCOUNT_ID, EMPTY_CHANGE_SET_REASON};

impl State {
    fn read_template(&self, source: &TemplateSource) -> AwsResult<(String, Template)> {
        let body = match source {
            TemplateSource::Body(body) => body.clone(),
            TemplateSource::Url(url) => self
                .templates_by_url
                .get(url)
                .cloned()
                .ok_or_else(|| validation(format!("S3 error: The specified key does not exist. ({url})")))?,
        };
        let template = parse_template(&body)?;
        Ok((body, template))
    }

    pub(super) fn create_change_set(&mut self, request: &ChangeSetRequest) -> AwsResult<String> {
        let stack_name = request.stack_name.as_str();
        let existing = self.resolve(stack_name);
        // Idempotency and name clashes first, as AWS does.
        if let Some(stack) = existing.as_ref().and_then(|n| self.stacks.get(n))
            && let Some(cs) = stack.change_sets.iter().find(|cs| cs.name == request.change_set_name)
        {
            if !request.client_token.is_empty() && cs.client_token == request.client_token {
                return Ok(cs.id.clone());
            }
            return Err(AwsError::new(
                AwsErrorKind::AlreadyExists,
                "AlreadyExistsException",
                format!("ChangeSet [{}] already exists", request.change_set_name),
            ));
        }
        match (
            request.change_set_type,
            existing.as_ref().and_then(|n| self.stacks.get(n)),
        ) {
            (ChangeSetType::Create, Some(stack)) if stack.status != StackState::ReviewInProgress => {
                return Err(AwsError::new(
                    AwsErrorKind::AlreadyExists,
                    "ValidationError",
                    format!(
                        "Stack [{stack_name}] already exists and cannot be created again with the changeSet [{}].",
                        request.change_set_name
                    ),
                ));
            }
            (ChangeSetType::Update, None) => return Err(stack_not_found(stack_name)),
            (ChangeSetType::Update, Some(stack)) => {
                let updatable = matches!(
                    stack.status,
                    StackState::CreateComplete
                        | StackState::UpdateComplete
                        | StackState::UpdateRollbackComplete
                        | StackState::ImportComplete
                        | StackState::ImportRollbackComplete
                );
                if !updatable {
                    return Err(stack.in_progress_error("updated"));
                }
            }
            _ => {}
        }
        let (body, template) = self.read_template(&request.template)?;
        let undeclared: Vec<&str> = request
            .parameters
            .iter()
            .filter(|p| !template.parameters.contains_key(&p.key))
            .map(|p| p.key.as_str())
            .collect();
        if !undeclared.is_empty() {
            return Err(validation(format!(
                "Parameters: [{}] do not exist in the template",
                undeclared.join(", ")
            )));
        }
        let mut parameters = Vec::new();
        let mut missing = Vec::new();
        for (key, default) in &template.parameters {
            let given = request.parameters.iter().rev().find(|p| &p.key == key);
            match (given, default) {
                (Some(p), _) => parameters.push(p.clone()),
                (None, Some(default)) => parameters.push(Parameter {
                    key: key.clone(),
                    value: default.clone(),
                }),
                (None, None) => missing.push(key.as_str()),
            }
        }
        if !missing.is_empty() {
            return Err(validation(format!(
                "Parameters: [{}] must have values",
                missing.join(", ")
            )));
        }
        let needs_iam = template
            .resources
            .values()
            .any(|r| r.resource_type.starts_with("AWS::IAM::"));
        let has_iam = request
            .options
            .capabilities
            .iter()
            .any(|c| c == "CAPABILITY_IAM" || c == "CAPABILITY_NAMED_IAM");
        if needs_iam && !has_iam {
            return Err(AwsError::new(
                AwsErrorKind::Validation,
                "InsufficientCapabilitiesException",
                "Requires capabilities : [CAPABILITY_IAM]",
            ));
        }

        let name = match existing {
            Some(name) => name,
            None => {
                self.new_stack(stack_name);
                self.stack_status(stack_name, StackState::ReviewInProgress, Some("User Initiated"));
                stack_name.to_string()
            }
        };
        let content = Content {
            template,
            body,
            parameters,
            tags: request.options.tags.clone(),
            capabilities: request.options.capabilities.clone(),
            role_arn: request.options.role_arn.clone(),
        };
        let revert_drift = request.deployment_mode == Some(DeploymentMode::RevertDrift);
        let (changes, empty) = self.diff(&name, &content, request.change_set_type, revert_drift);
        let uuid = self.uuid();
        let id = format!(
            "arn:aws:cloudformation:{}:{ACCOUNT_ID}:changeSet/{}/{uuid}",
            self.region, request.change_set_name
        );
        let mut change_set = FakeChangeSet {
            id: id.clone(),
            name: request.change_set_name.clone(),
            client_token: request.client_token.clone(),
            kind: request.change_set_type,
            status: ChangeSetStatus::CreatePending,
            status_reason: None,
            execution_status: ExecutionStatus::Unavailable,
            changes,
            pending_describes: self.change_set_delay,
            empty,
            content,
            deployment_mode: request.deployment_mode,
        };
        if change_set.pending_describes == 0 {
            complete_change_set(&mut change_set);
        }
        if let Some(stack) = self.stacks.get_mut(&name) {
            stack.change_sets.push(change_set);
        }
        Ok(id)
    }

    /// Resource changes from the stack's current content to `new`, and
    /// whether the change set is empty. With `revert_drift`, drifted
    /// resources the template keeps are changed back (`Modify`, or `Add` when
    /// deleted) even where the template did not change them.
    fn diff(&self, name: &str, new: &Content, kind: ChangeSetType, revert_drift: bool) -> (Vec<ResourceChange>, bool) {
        let stack = self.stacks.get(name);
        let old = stack.and_then(|s| s.content.as_ref());
        let old_resources = stack.map(FakeStack::resources).unwrap_or_default();
        let old_params: BTreeMap<&str, &str> = old
            .map(|c| {
                c.parameters
                    .iter()
                    .map(|p| (p.key.as_str(), p.value.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        let changed_params: Vec<&str> = new
            .parameters
            .iter()
            .filter(|p| old_params.get(p.key.as_str()) != Some(&p.value.as_str()))
            .map(|p| p.key.as_str())
            .collect();
        let physical = |id: &str| stack.and_then(|s| s.physical_ids.get(id).cloned());
        let drift_of = |id: &str| {
            stack
                .and_then(|s| s.drift.get(id))
                .map(|d| d.drift.clone())
                .filter(|d| revert_drift && d.is_drifted())
        };
        let mut reverts_drift = false;
        let mut changes = Vec::new();
        let ids: BTreeSet<&String> = old_resources.keys().chain(new.template.resources.keys()).collect();
        for id in ids {
            let change = match (old_resources.get(id), new.template.resources.get(id)) {
                (None, Some(added)) => Some(("Add", added, None)),
                (Some(removed), None) => Some(("Remove", removed, None)),
                (Some(before), Some(after)) => {
                    let modified = before.definition != after.definition
                        || changed_params.iter().any(|p| references(&after.definition, p));
                    let replacement = if let Some(configured) = self.replacements.get(id.as_str()) {
                        configured.clone()
                    } else if before.resource_type != after.resource_type {
                        "True".to_string()
                    } else {
                        "False".to_string()
                    };
                    match drift_of(id) {
                        _ if modified => Some(("Modify", after, Some(replacement))),
                        Some(ResourceDriftStatus::Deleted) => {
                            reverts_drift = true;
                            Some(("Add", after, None))
                        }
                        Some(_) => {
                            reverts_drift = true;
                            Some(("Modify", after, Some("False".to_string())))
                        }
                        None => None,
                    }
                }
                (None, None) => None,
            };
            if let Some((action, resource, replacement)) = change {
                changes.push(ResourceChange {
                    action: action.to_string(),
                    logical_id: id.clone(),
                    physical_id: if action == "Add" { None } else { physical(id) },
                    resource_type: resource.resource_type.clone(),
                    replacement,
                });
            }
        }
        let empty = kind == ChangeSetType::Update
            && !reverts_drift
            && old.is_some_and(|old| {
                old.template.document == new.template.document
                    && old.parameters == new.parameters
                    && old.tags == new.tags
            });
        (changes, empty)
    }
}

pub(super) fn complete_change_set(cs: &mut FakeChangeSet) {
    if cs.empty {
        cs.status = ChangeSetStatus::Failed;
        cs.status_reason = Some(EMPTY_CHANGE_SET_REASON.to_string());
        cs.execution_status = ExecutionStatus::Unavailable;
    } else {
        cs.status = ChangeSetStatus::CreateComplete;
        cs.execution_status = ExecutionStatus::Available;
    }
}

pub(super) fn describe_change_set(stack: &FakeStack, cs: &FakeChangeSet) -> ChangeSetDescription {
    ChangeSetDescription {
        change_set_id: cs.id.clone(),
        change_set_name: cs.name.clone(),
        stack_id: Some(stack.id.clone()),
        status: cs.status.clone(),
        status_reason: cs.status_reason.clone(),
        execution_status: cs.execution_status.clone(),
        changes: if cs.status == ChangeSetStatus::CreatePending {
            Vec::new()
        } else {
            cs.changes.clone()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{TEMPLATE, create, request};
    use super::super::{EMPTY_CHANGE_SET_REASON, FakeCloudFormation};
    use crate::aws::{AwsErrorKind, ChangeSetType, CloudFormation, Parameter, StackState};

    #[tokio::test]
    async fn identical_update_is_an_empty_change_set_and_changes_are_diffed() {
        let fake = FakeCloudFormation::default();
        fake.set_change_set_delay(0);
        fake.set_operation_steps(0);
        assert_eq!(create(&fake, "s1").await, StackState::CreateComplete);

        fake.create_change_set(&request("s1", "same", ChangeSetType::Update, TEMPLATE))
            .await
            .unwrap();
        let same = fake.describe_change_set("s1", "same").await.unwrap().unwrap();
        assert!(same.is_empty_failure(), "{same:?}");
        assert_eq!(same.status_reason.as_deref(), Some(EMPTY_CHANGE_SET_REASON));

        // A parameter change modifies the resource referencing it (via !Sub).
        let mut update = request("s1", "param", ChangeSetType::Update, TEMPLATE);
        update.parameters = vec![Parameter {
            key: "Env".into(),
            value: "prod".into(),
        }];
        fake.create_change_set(&update).await.unwrap();
        let changes = fake.describe_change_set("s1", "param").await.unwrap().unwrap().changes;
        assert_eq!(changes.len(), 1);
        assert_eq!(
            (changes[0].action.as_str(), changes[0].logical_id.as_str()),
            ("Modify", "Queue")
        );
        assert_eq!(changes[0].replacement.as_deref(), Some("False"));
        assert!(changes[0].physical_id.is_some());

        // Template edits: Topic removed, Bucket added, Queue modified (replacement configured).
        fake.set_replacement("Queue", "True");
        let edited = TEMPLATE
            .replace(
                "  Topic:\n    Type: AWS::SNS::Topic\n",
                "  Bucket:\n    Type: AWS::S3::Bucket\n",
            )
            .replace("!Sub \"${AWS::StackName}-${Env}\"", "fixed");
        fake.create_change_set(&request("s1", "edit", ChangeSetType::Update, &edited))
            .await
            .unwrap();
        let changes = fake.describe_change_set("s1", "edit").await.unwrap().unwrap().changes;
        let summary: Vec<(&str, &str, Option<&str>)> = changes
            .iter()
            .map(|c| (c.action.as_str(), c.logical_id.as_str(), c.replacement.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [
                ("Add", "Bucket", None),
                ("Modify", "Queue", Some("True")),
                ("Remove", "Topic", None)
            ]
        );
        fake.execute_change_set("s1", "edit", "e1").await.unwrap();
        let stack = fake.describe_stack("s1").await.unwrap().unwrap();
        assert_eq!(stack.status, StackState::UpdateComplete);
        // Executing dropped the other change sets.
        assert_eq!(fake.describe_change_set("s1", "param").await.unwrap(), None);
    }

    #[tokio::test]
    async fn validation_errors_look_like_aws() {
        let fake = FakeCloudFormation::default();
        let bad = fake
            .create_change_set(&request("s1", "c1", ChangeSetType::Create, "Resources: [unclosed"))
            .await
            .unwrap_err();
        assert_eq!(bad.kind, AwsErrorKind::Validation);
        assert!(bad.message.starts_with("Template format error: "), "{bad}");
        let json = fake
            .create_change_set(&request(
                "s1",
                "c1",
                ChangeSetType::Create,
                r#"{"Resources": {"A": {"Type": "AWS::SNS::Topic"}}"#,
            ))
            .await
            .unwrap_err();
        assert!(json.message.starts_with("Template format error: JSON"), "{json}");

        let mut unknown = request("s1", "c1", ChangeSetType::Create, TEMPLATE);
        unknown.parameters = vec![Parameter {
            key: "Nope".into(),
            value: "x".into(),
        }];
        let err = fake.create_change_set(&unknown).await.unwrap_err();
        assert_eq!(err.message, "Parameters: [Nope] do not exist in the template");
        assert_eq!(err.kind, AwsErrorKind::Validation);

        let iam = "Resources:\n  Role:\n    Type: AWS::IAM::Role\n";
        let err = fake
            .create_change_set(&request("s1", "c1", ChangeSetType::Create, iam))
            .await
            .unwrap_err();
        assert_eq!(err.code, "InsufficientCapabilitiesException");

        let err = fake
            .create_change_set(&request("s1", "c1", ChangeSetType::Update, TEMPLATE))
            .await
            .unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::NotFound);
        assert_eq!(fake.stack("s1"), None, "failed validations create no stack");
        assert_eq!(fake.describe_change_set("s1", "c1").await.unwrap(), None);
    }
}
