//! [`SdkCloudFormation`]: each [`CloudFormation`] call as SDK requests,
//! following pages, with "not found" read as none where the trait says so.

use async_trait::async_trait;
use aws_config::{Region, SdkConfig};
use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types as sdk;

use crate::aws::{
    AwsResult, ChangeSetDescription, ChangeSetRequest, ChangeSetType, CloudFormation, DeploymentMode, DriftDetection,
    ResourceDrift, StackDescription, StackEvent, StackListing, StackOptions, StackState, TemplateSource,
};

use super::conversions::{
    Settings, change_set_status, drift_detection, execution_status, resource_change, resource_drift, stack_description,
    stack_event,
};
use super::errors::{map_error, not_found_as_none};

/// [`CloudFormation`] over the AWS SDK.
#[derive(Clone, Debug)]
pub struct SdkCloudFormation {
    client: Client,
}

impl SdkCloudFormation {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// A client for `region` from a base config (credentials, HTTP client,
    /// retries, timeouts), optionally pointed at an emulator.
    pub fn from_config(base: &SdkConfig, region: &str, endpoint_url: Option<&str>) -> Self {
        let mut config = aws_sdk_cloudformation::config::Builder::from(base).region(Region::new(region.to_string()));
        if let Some(url) = endpoint_url {
            config = config.endpoint_url(url);
        }
        Self::new(Client::from_conf(config.build()))
    }
}

#[async_trait]
impl CloudFormation for SdkCloudFormation {
    async fn describe_stack(&self, stack: &str) -> AwsResult<Option<StackDescription>> {
        let result = self.client.describe_stacks().stack_name(stack).send().await;
        let Some(output) = not_found_as_none(result.map_err(map_error))? else {
            return Ok(None);
        };
        let Some(found) = output.stacks().first().map(stack_description) else {
            return Ok(None);
        };
        // By name AWS never shows deleted stacks; by id it does, and we keep it.
        if found.status == StackState::DeleteComplete && !stack.starts_with("arn:") {
            return Ok(None);
        }
        Ok(Some(found))
    }

    async fn create_change_set(&self, request: &ChangeSetRequest) -> AwsResult<String> {
        let ChangeSetRequest {
            stack_name,
            change_set_name,
            change_set_type,
            template,
            parameters: _,
            options,
            client_token,
            description,
            deployment_mode,
        } = request;
        let StackOptions {
            tags: _,
            capabilities: _,
            role_arn,
            notification_arns,
            rollback_triggers,
            rollback_monitoring_minutes,
        } = options;
        let settings = Settings::of(request);
        let mut call = self
            .client
            .create_change_set()
            .stack_name(stack_name)
            .change_set_name(change_set_name)
            .change_set_type(match change_set_type {
                ChangeSetType::Create => sdk::ChangeSetType::Create,
                ChangeSetType::Update => sdk::ChangeSetType::Update,
            })
            .set_parameters(Some(settings.parameters))
            // Always sent: an empty list removes tags the spec no longer has.
            .set_tags(Some(settings.tags))
            .set_capabilities(Some(settings.capabilities))
            .set_role_arn(role_arn.clone())
            .set_description(description.clone());
        call = match template {
            TemplateSource::Body(body) => call.template_body(body),
            TemplateSource::Url(url) => call.template_url(url),
        };
        // On an update, left out means "keep the previous ones": an empty
        // list (and no monitoring time) removes what the spec no longer has.
        let update = *change_set_type == ChangeSetType::Update;
        if update || !notification_arns.is_empty() {
            call = call.set_notification_arns(Some(notification_arns.clone()));
        }
        if update || !rollback_triggers.is_empty() || rollback_monitoring_minutes.is_some() {
            call = call.rollback_configuration(settings.rollback);
        }
        if !client_token.is_empty() {
            call = call.client_token(client_token);
        }
        if let Some(mode) = deployment_mode {
            call = call.deployment_mode(match mode {
                DeploymentMode::RevertDrift => sdk::DeploymentMode::RevertDrift,
            });
        }
        let output = call.send().await.map_err(map_error)?;
        Ok(output.id().unwrap_or_default().to_string())
    }

    async fn describe_change_set(&self, stack: &str, change_set_name: &str) -> AwsResult<Option<ChangeSetDescription>> {
        let mut description: Option<ChangeSetDescription> = None;
        let mut next_token: Option<String> = None;
        loop {
            let result = self
                .client
                .describe_change_set()
                .stack_name(stack)
                .change_set_name(change_set_name)
                .set_next_token(next_token.take())
                .send()
                .await;
            let Some(page) = not_found_as_none(result.map_err(map_error))? else {
                return Ok(None);
            };
            let changes = page.changes().iter().filter_map(resource_change);
            match &mut description {
                Some(described) => described.changes.extend(changes),
                None => {
                    description = Some(ChangeSetDescription {
                        change_set_id: page.change_set_id().unwrap_or_default().to_string(),
                        change_set_name: page.change_set_name().unwrap_or(change_set_name).to_string(),
                        stack_id: page.stack_id().map(str::to_string),
                        status: change_set_status(page.status()),
                        status_reason: page.status_reason().map(str::to_string),
                        execution_status: execution_status(page.execution_status()),
                        changes: changes.collect(),
                    })
                }
            }
            match page.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
                _ => return Ok(description),
            }
        }
    }

    async fn update_stack(&self, request: &ChangeSetRequest) -> AwsResult<()> {
        let settings = Settings::of(request);
        let mut call = self
            .client
            .update_stack()
            .stack_name(&request.stack_name)
            .set_parameters(Some(settings.parameters))
            .set_tags(Some(settings.tags))
            .set_capabilities(Some(settings.capabilities))
            .set_role_arn(request.options.role_arn.clone())
            // Always sent: left out, AWS keeps the previous ones.
            .set_notification_arns(Some(request.options.notification_arns.clone()))
            .rollback_configuration(settings.rollback);
        call = match &request.template {
            TemplateSource::Body(body) => call.template_body(body),
            TemplateSource::Url(url) => call.template_url(url),
        };
        if !request.client_token.is_empty() {
            call = call.client_request_token(&request.client_token);
        }
        match call.send().await.map_err(map_error) {
            Err(e) if e.message.contains("No updates are to be performed") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn execute_change_set(&self, stack: &str, change_set_name: &str, client_token: &str) -> AwsResult<()> {
        let mut call = self
            .client
            .execute_change_set()
            .stack_name(stack)
            .change_set_name(change_set_name);
        if !client_token.is_empty() {
            call = call.client_request_token(client_token);
        }
        call.send().await.map_err(map_error)?;
        Ok(())
    }

    async fn delete_change_set(&self, stack: &str, change_set_name: &str) -> AwsResult<()> {
        let result = self
            .client
            .delete_change_set()
            .stack_name(stack)
            .change_set_name(change_set_name)
            .send()
            .await;
        not_found_as_none(result.map_err(map_error))?;
        Ok(())
    }

    async fn delete_stack(&self, stack: &str, client_token: &str, retain_resources: &[String]) -> AwsResult<()> {
        let mut call = self.client.delete_stack().stack_name(stack);
        if !client_token.is_empty() {
            call = call.client_request_token(client_token);
        }
        if !retain_resources.is_empty() {
            call = call.set_retain_resources(Some(retain_resources.to_vec()));
        }
        call.send().await.map_err(map_error)?;
        Ok(())
    }

    async fn stack_events(
        &self,
        stack: &str,
        after_event_id: Option<&str>,
        limit: usize,
    ) -> AwsResult<Vec<StackEvent>> {
        let mut events = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_stack_events()
                .stack_name(stack)
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(map_error)?;
            for event in page.stack_events() {
                if after_event_id.is_some() && event.event_id() == after_event_id {
                    return Ok(events);
                }
                if events.len() >= limit {
                    return Ok(events);
                }
                events.push(stack_event(event));
            }
            match page.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
                _ => return Ok(events),
            }
        }
    }

    async fn describe_all_stacks(&self) -> AwsResult<StackListing> {
        let mut listing = StackListing::default();
        let mut next_token: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_stacks()
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(map_error)?;
            listing.pages += 1;
            listing.stacks.extend(
                page.stacks()
                    .iter()
                    .map(stack_description)
                    .filter(|s| s.status != StackState::DeleteComplete),
            );
            match page.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
                _ => return Ok(listing),
            }
        }
    }

    async fn get_template(&self, stack: &str) -> AwsResult<String> {
        let output = self
            .client
            .get_template()
            .stack_name(stack)
            .template_stage(sdk::TemplateStage::Original)
            .send()
            .await
            .map_err(map_error)?;
        Ok(output.template_body().unwrap_or_default().to_string())
    }

    async fn update_termination_protection(&self, stack: &str, enabled: bool) -> AwsResult<()> {
        self.client
            .update_termination_protection()
            .stack_name(stack)
            .enable_termination_protection(enabled)
            .send()
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn set_stack_policy(&self, stack: &str, policy_body: &str) -> AwsResult<()> {
        self.client
            .set_stack_policy()
            .stack_name(stack)
            .stack_policy_body(policy_body)
            .send()
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn get_stack_policy(&self, stack: &str) -> AwsResult<Option<String>> {
        let output = self
            .client
            .get_stack_policy()
            .stack_name(stack)
            .send()
            .await
            .map_err(map_error)?;
        Ok(output
            .stack_policy_body()
            .filter(|body| !body.is_empty())
            .map(str::to_string))
    }

    async fn continue_update_rollback(
        &self,
        stack: &str,
        resources_to_skip: &[String],
        client_token: &str,
    ) -> AwsResult<()> {
        let mut call = self.client.continue_update_rollback().stack_name(stack);
        if !resources_to_skip.is_empty() {
            call = call.set_resources_to_skip(Some(resources_to_skip.to_vec()));
        }
        if !client_token.is_empty() {
            call = call.client_request_token(client_token);
        }
        call.send().await.map_err(map_error)?;
        Ok(())
    }

    async fn detect_stack_drift(&self, stack: &str) -> AwsResult<String> {
        let output = self
            .client
            .detect_stack_drift()
            .stack_name(stack)
            .send()
            .await
            .map_err(map_error)?;
        Ok(output.stack_drift_detection_id().unwrap_or_default().to_string())
    }

    async fn drift_detection_status(&self, detection_id: &str) -> AwsResult<DriftDetection> {
        let output = self
            .client
            .describe_stack_drift_detection_status()
            .stack_drift_detection_id(detection_id)
            .send()
            .await
            .map_err(map_error)?;
        Ok(drift_detection(detection_id, &output))
    }

    async fn resource_drifts(&self, stack: &str) -> AwsResult<Vec<ResourceDrift>> {
        let mut drifts = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_stack_resource_drifts()
                .stack_name(stack)
                .stack_resource_drift_status_filters(sdk::StackResourceDriftStatus::Modified)
                .stack_resource_drift_status_filters(sdk::StackResourceDriftStatus::Deleted)
                .max_results(100)
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(map_error)?;
            drifts.extend(
                page.stack_resource_drifts()
                    .iter()
                    .map(resource_drift)
                    .filter(|d| d.drift.is_drifted()),
            );
            match page.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
                _ => return Ok(drifts),
            }
        }
    }
}
