//! The AWS SDK implementation of [`super::CloudFormation`], and the provider
//! that hands out one client per [`AwsTarget`]. This is the only module that
//! imports `aws_sdk_*`, `aws_config` and `aws_smithy_*`.
//!
//! Errors are classified by one pure function, [`classify`], from what AWS
//! said (code, message, HTTP status), so the mapping is unit-tested without IO.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future as credentials_future};
use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::config::http::HttpResponse;
use aws_sdk_cloudformation::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudformation::operation::describe_stack_drift_detection_status::DescribeStackDriftDetectionStatusOutput;
use aws_sdk_cloudformation::types as sdk;
use chrono::{DateTime, Utc};

use super::{
    AwsError, AwsErrorKind, AwsResult, AwsTarget, ChangeSetDescription, ChangeSetRequest, ChangeSetStatus,
    ChangeSetType, CloudFormation, CloudFormationProvider, DeploymentMode, DifferenceKind, DriftDetection,
    DriftDetectionStatus, ExecutionStatus, Parameter, PropertyDifference, ResourceChange, ResourceDrift,
    ResourceDriftStatus, StackDescription, StackDriftStatus, StackEvent, StackListing, StackOutput, StackState,
    TemplateSource, TemplateStore,
};

/// Retry and timeout bounds of every SDK call, so a dead or silent endpoint
/// never blocks a worker for long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SdkLimits {
    /// Attempts per call, first try included (standard retry mode).
    pub max_attempts: u32,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// One HTTP attempt.
    pub attempt_timeout: Duration,
    /// A whole call, retries included.
    pub operation_timeout: Duration,
}

impl Default for SdkLimits {
    /// 3 attempts, 5 s connect, 15 s per attempt, 30 s per call.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            connect_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(15),
            operation_timeout: Duration::from_secs(30),
        }
    }
}

/// Session name used when the target gives none.
pub const DEFAULT_SESSION_NAME: &str = "stackpilot";

/// Classifies an AWS error from its code, message and HTTP status. Pure.
pub fn classify(code: Option<&str>, message: &str, http_status: Option<u16>) -> AwsErrorKind {
    use AwsErrorKind::*;
    if http_status == Some(429) {
        return Throttled;
    }
    // 501 Not Implemented (how LocalStack answers operations it lacks, with
    // code `InternalFailure`): retrying will not help.
    if http_status == Some(501) {
        return Other;
    }
    match code.unwrap_or_default() {
        "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "RequestThrottled"
        | "RequestThrottledException" => Throttled,
        "AlreadyExistsException" | "AlreadyExists" => AlreadyExists,
        "InvalidClientTokenId"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "UnrecognizedClientException"
        | "SignatureDoesNotMatch"
        | "MissingAuthenticationToken"
        | "IncompleteSignature"
        | "InvalidAccessKeyId" => AccessDenied,
        code if code.starts_with("AccessDenied") => AccessDenied,
        "ChangeSetNotFound" | "ChangeSetNotFoundException" | "StackNotFoundException" => NotFound,
        "OperationInProgressException" => InProgress,
        "InsufficientCapabilitiesException"
        | "InvalidChangeSetStatus"
        | "InvalidChangeSetStatusException"
        | "TokenAlreadyExistsException"
        | "LimitExceededException"
        | "InvalidParameterValue"
        | "InvalidParameterCombination"
        | "MissingParameter" => Validation,
        "InternalFailure"
        | "InternalError"
        | "InternalServiceError"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "RequestTimeout"
        | "RequestTimeoutException" => Transient,
        "ValidationError" => classify_validation_message(message),
        _ => match http_status {
            Some(status) if status >= 500 => Transient,
            Some(403) => AccessDenied,
            _ => Other,
        },
    }
}

/// CloudFormation reports several distinct situations as `ValidationError`;
/// only the message tells them apart.
fn classify_validation_message(message: &str) -> AwsErrorKind {
    // "Stack with id X does not exist", "Stack [X] does not exist",
    // "ChangeSet [X] does not exist" (but not "Parameters: [X] do not exist").
    if (message.starts_with("Stack") || message.starts_with("ChangeSet")) && message.contains("does not exist") {
        return AwsErrorKind::NotFound;
    }
    // "Stack:arn... is in UPDATE_IN_PROGRESS state and can not be updated.",
    // "Stack [X] cannot be deleted while in status UPDATE_IN_PROGRESS".
    // REVIEW_IN_PROGRESS never ends by itself, so it is not "in progress".
    let busy = message.contains("_IN_PROGRESS state")
        || (message.contains("while in status") && message.contains("_IN_PROGRESS"));
    if busy && !message.contains("REVIEW_IN_PROGRESS") {
        return AwsErrorKind::InProgress;
    }
    // "Stack [X] already exists and cannot be created again with the changeSet [Y]."
    if message.contains("already exists") {
        return AwsErrorKind::AlreadyExists;
    }
    AwsErrorKind::Validation
}

/// Turns any SDK error into the domain error, for every operation alike
/// (CloudFormation here, STS in `identity.rs`).
/// The parts of a [`ChangeSetRequest`] that CreateChangeSet and UpdateStack
/// send alike, in the SDK's types.
struct Settings {
    parameters: Vec<sdk::Parameter>,
    tags: Vec<sdk::Tag>,
    capabilities: Vec<sdk::Capability>,
    rollback: sdk::RollbackConfiguration,
}

impl Settings {
    fn of(request: &ChangeSetRequest) -> Settings {
        let parameters = request
            .parameters
            .iter()
            .map(|p| {
                sdk::Parameter::builder()
                    .parameter_key(&p.key)
                    .parameter_value(&p.value)
                    .build()
            })
            .collect();
        let tags = request
            .tags
            .iter()
            .map(|(k, v)| sdk::Tag::builder().key(k).value(v).build())
            .collect();
        let capabilities = request
            .capabilities
            .iter()
            .map(|c| sdk::Capability::from(c.as_str()))
            .collect();
        let triggers = request
            .rollback_triggers
            .iter()
            .map(|t| {
                sdk::RollbackTrigger::builder()
                    .arn(&t.alarm_arn)
                    .r#type("AWS::CloudWatch::Alarm")
                    .build()
            })
            .collect();
        // No monitoring time means none, not "the previous one".
        let rollback = sdk::RollbackConfiguration::builder()
            .set_rollback_triggers(Some(triggers))
            .monitoring_time_in_minutes(request.rollback_monitoring_minutes.unwrap_or(0))
            .build();
        Settings {
            parameters,
            tags,
            capabilities,
            rollback,
        }
    }
}

pub(crate) fn map_error<E>(err: SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    match &err {
        SdkError::ServiceError(_) => {
            let message = err.message().unwrap_or_default().to_string();
            let code = err.code().map(str::to_string);
            let kind = classify(code.as_deref(), &message, status);
            let code = code.unwrap_or_else(|| match status {
                Some(status) => format!("Http{status}"),
                None => "Unknown".into(),
            });
            AwsError::new(kind, code, message)
        }
        SdkError::TimeoutError(_) => AwsError::new(
            AwsErrorKind::Transient,
            "Timeout",
            DisplayErrorContext(&err).to_string(),
        ),
        SdkError::DispatchFailure(_) => {
            // Credential resolution failures (e.g. AssumeRole refused) surface
            // as dispatch failures of the user-facing call; their text names
            // the STS error code.
            let text = DisplayErrorContext(&err).to_string();
            let denied = [
                "AccessDenied",
                "InvalidClientTokenId",
                "ExpiredToken",
                "UnrecognizedClientException",
                "SignatureDoesNotMatch",
            ]
            .iter()
            .any(|code| text.contains(code));
            let kind = if denied {
                AwsErrorKind::AccessDenied
            } else {
                AwsErrorKind::Transient
            };
            AwsError::new(kind, "DispatchFailure", text)
        }
        SdkError::ResponseError(_) => {
            // An answer that could not be parsed (e.g. an HTML 500 page).
            let kind = match status {
                Some(429) => AwsErrorKind::Throttled,
                Some(s) if s >= 500 => AwsErrorKind::Transient,
                _ => AwsErrorKind::Other,
            };
            AwsError::new(kind, "ResponseError", DisplayErrorContext(&err).to_string())
        }
        _ => AwsError::new(
            AwsErrorKind::Other,
            "ConstructionFailure",
            DisplayErrorContext(&err).to_string(),
        ),
    }
}

fn to_chrono(time: &aws_sdk_cloudformation::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(time.secs(), time.subsec_nanos())
}

/// A session name AWS accepts: `[\w+=,.@-]{2,64}`.
pub fn sanitize_session_name(name: &str) -> String {
    let mut clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if clean.len() < 2 {
        clean = DEFAULT_SESSION_NAME.to_string();
    }
    clean
}

/// The URL CloudFormation reads an uploaded template from: path-style on the
/// emulator endpoint when one is set, else the bucket's regional
/// virtual-hosted address (path-style for bucket names with dots, which
/// virtual-hosted TLS cannot serve). Pure.
pub fn template_url(endpoint_url: Option<&str>, region: &str, bucket: &str, key: &str) -> String {
    let key = encode_key(key);
    match endpoint_url {
        Some(endpoint) => format!("{}/{bucket}/{key}", endpoint.trim_end_matches('/')),
        None if bucket.contains('.') => format!("https://s3.{region}.amazonaws.com/{bucket}/{key}"),
        None => format!("https://{bucket}.s3.{region}.amazonaws.com/{key}"),
    }
}

/// Percent-encodes an S3 key for a URL, keeping `/` and unreserved characters.
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn drift_detection(detection_id: &str, output: &DescribeStackDriftDetectionStatusOutput) -> DriftDetection {
    DriftDetection {
        detection_id: output
            .stack_drift_detection_id()
            .filter(|id| !id.is_empty())
            .unwrap_or(detection_id)
            .to_string(),
        status: match output.detection_status() {
            Some(sdk::StackDriftDetectionStatus::DetectionInProgress) => DriftDetectionStatus::InProgress,
            Some(sdk::StackDriftDetectionStatus::DetectionComplete) => DriftDetectionStatus::Complete,
            // DETECTION_FAILED, and anything newer: never poll it forever.
            _ => DriftDetectionStatus::Failed,
        },
        stack_drift_status: stack_drift_status(output.stack_drift_status()),
        reason: output
            .detection_status_reason()
            .filter(|r| !r.is_empty())
            .map(str::to_string),
        drifted_resource_count: output
            .drifted_stack_resource_count()
            .map(|n| u32::try_from(n).unwrap_or(0)),
        timestamp: output.timestamp().and_then(to_chrono).unwrap_or(DateTime::UNIX_EPOCH),
    }
}

fn stack_drift_status(status: Option<&sdk::StackDriftStatus>) -> StackDriftStatus {
    match status {
        Some(sdk::StackDriftStatus::Drifted) => StackDriftStatus::Drifted,
        Some(sdk::StackDriftStatus::InSync) => StackDriftStatus::InSync,
        Some(sdk::StackDriftStatus::NotChecked) => StackDriftStatus::NotChecked,
        _ => StackDriftStatus::Unknown,
    }
}

fn resource_drift_status(status: Option<&sdk::StackResourceDriftStatus>) -> ResourceDriftStatus {
    match status {
        Some(sdk::StackResourceDriftStatus::Modified) => ResourceDriftStatus::Modified,
        Some(sdk::StackResourceDriftStatus::Deleted) => ResourceDriftStatus::Deleted,
        Some(sdk::StackResourceDriftStatus::NotChecked) => ResourceDriftStatus::NotChecked,
        Some(sdk::StackResourceDriftStatus::InSync) => ResourceDriftStatus::InSync,
        Some(other) => ResourceDriftStatus::Unknown(other.as_str().to_string()),
        None => ResourceDriftStatus::Unknown(String::new()),
    }
}

fn resource_drift(drift: &sdk::StackResourceDrift) -> ResourceDrift {
    ResourceDrift {
        logical_id: drift.logical_resource_id().unwrap_or_default().to_string(),
        physical_id: drift
            .physical_resource_id()
            .filter(|id| !id.is_empty())
            .map(str::to_string),
        resource_type: drift.resource_type().unwrap_or_default().to_string(),
        drift: resource_drift_status(drift.stack_resource_drift_status()),
        differences: drift
            .property_differences()
            .iter()
            .map(|d| PropertyDifference {
                path: d.property_path().unwrap_or_default().to_string(),
                expected: d.expected_value().unwrap_or_default().to_string(),
                actual: d.actual_value().unwrap_or_default().to_string(),
                kind: match d.difference_type() {
                    Some(sdk::DifferenceType::Add) => DifferenceKind::Add,
                    Some(sdk::DifferenceType::Remove) => DifferenceKind::Remove,
                    _ => DifferenceKind::NotEqual,
                },
            })
            .collect(),
    }
}

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

fn stack_description(stack: &sdk::Stack) -> StackDescription {
    StackDescription {
        stack_id: stack.stack_id().unwrap_or_default().to_string(),
        stack_name: stack.stack_name().unwrap_or_default().to_string(),
        status: StackState::parse(stack.stack_status().map(|s| s.as_str()).unwrap_or_default()),
        status_reason: stack.stack_status_reason().map(str::to_string),
        parameters: stack
            .parameters()
            .iter()
            .map(|p| Parameter {
                key: p.parameter_key().unwrap_or_default().to_string(),
                value: p.parameter_value().unwrap_or_default().to_string(),
            })
            .collect(),
        tags: stack
            .tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        outputs: stack
            .outputs()
            .iter()
            .map(|o| StackOutput {
                key: o.output_key().unwrap_or_default().to_string(),
                value: o.output_value().unwrap_or_default().to_string(),
                description: o.description().map(str::to_string),
                export_name: o.export_name().map(str::to_string),
            })
            .collect(),
        capabilities: stack.capabilities().iter().map(|c| c.as_str().to_string()).collect(),
        role_arn: stack.role_arn().map(str::to_string),
        notification_arns: stack.notification_arns().to_vec(),
        rollback_triggers: stack
            .rollback_configuration()
            .map(|r| {
                r.rollback_triggers()
                    .iter()
                    .filter_map(|t| t.arn().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        rollback_monitoring_minutes: stack
            .rollback_configuration()
            .and_then(|r| r.monitoring_time_in_minutes()),
        termination_protection: stack.enable_termination_protection().unwrap_or(false),
        creation_time: stack.creation_time().and_then(to_chrono),
        last_updated_time: stack.last_updated_time().and_then(to_chrono),
    }
}

fn change_set_status(status: Option<&sdk::ChangeSetStatus>) -> ChangeSetStatus {
    match status {
        Some(sdk::ChangeSetStatus::CreatePending) => ChangeSetStatus::CreatePending,
        Some(sdk::ChangeSetStatus::CreateInProgress) => ChangeSetStatus::CreateInProgress,
        Some(sdk::ChangeSetStatus::CreateComplete) => ChangeSetStatus::CreateComplete,
        Some(sdk::ChangeSetStatus::DeletePending) => ChangeSetStatus::DeletePending,
        Some(sdk::ChangeSetStatus::DeleteInProgress) => ChangeSetStatus::DeleteInProgress,
        Some(sdk::ChangeSetStatus::DeleteComplete) => ChangeSetStatus::DeleteComplete,
        Some(sdk::ChangeSetStatus::DeleteFailed) => ChangeSetStatus::DeleteFailed,
        Some(sdk::ChangeSetStatus::Failed) => ChangeSetStatus::Failed,
        Some(other) => ChangeSetStatus::Other(other.as_str().to_string()),
        None => ChangeSetStatus::Other(String::new()),
    }
}

fn execution_status(status: Option<&sdk::ExecutionStatus>) -> ExecutionStatus {
    match status {
        Some(sdk::ExecutionStatus::Unavailable) => ExecutionStatus::Unavailable,
        Some(sdk::ExecutionStatus::Available) => ExecutionStatus::Available,
        Some(sdk::ExecutionStatus::ExecuteInProgress) => ExecutionStatus::ExecuteInProgress,
        Some(sdk::ExecutionStatus::ExecuteComplete) => ExecutionStatus::ExecuteComplete,
        Some(sdk::ExecutionStatus::ExecuteFailed) => ExecutionStatus::ExecuteFailed,
        Some(sdk::ExecutionStatus::Obsolete) => ExecutionStatus::Obsolete,
        Some(other) => ExecutionStatus::Other(other.as_str().to_string()),
        None => ExecutionStatus::Other(String::new()),
    }
}

fn resource_change(change: &sdk::Change) -> Option<ResourceChange> {
    let rc = change.resource_change()?;
    Some(ResourceChange {
        action: rc.action().map(|a| a.as_str().to_string()).unwrap_or_default(),
        logical_id: rc.logical_resource_id().unwrap_or_default().to_string(),
        physical_id: rc.physical_resource_id().map(str::to_string),
        resource_type: rc.resource_type().unwrap_or_default().to_string(),
        replacement: rc.replacement().map(|r| r.as_str().to_string()),
    })
}

fn stack_event(event: &sdk::StackEvent) -> StackEvent {
    StackEvent {
        event_id: event.event_id().unwrap_or_default().to_string(),
        timestamp: event.timestamp().and_then(to_chrono).unwrap_or(DateTime::UNIX_EPOCH),
        logical_id: event.logical_resource_id().unwrap_or_default().to_string(),
        physical_id: event
            .physical_resource_id()
            .filter(|id| !id.is_empty())
            .map(str::to_string),
        resource_type: event.resource_type().unwrap_or_default().to_string(),
        status: event
            .resource_status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        reason: event.resource_status_reason().map(str::to_string),
    }
}

fn not_found_as_none<T>(result: AwsResult<T>) -> AwsResult<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(err) if err.kind == AwsErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
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
            tags: _,
            capabilities: _,
            role_arn,
            notification_arns,
            rollback_triggers,
            rollback_monitoring_minutes,
            client_token,
            description,
            deployment_mode,
        } = request;
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
            .set_role_arn(request.role_arn.clone())
            // Always sent: left out, AWS keeps the previous ones.
            .set_notification_arns(Some(request.notification_arns.clone()))
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

/// [`TemplateStore`] over the S3 SDK.
#[derive(Clone, Debug)]
pub struct SdkTemplateStore {
    client: aws_sdk_s3::Client,
    region: String,
    endpoint_url: Option<String>,
}

impl SdkTemplateStore {
    /// A client for `region` from a base config. With an `endpoint_url`
    /// (emulators) requests are path-style, as the emulators need.
    pub fn from_config(base: &SdkConfig, region: &str, endpoint_url: Option<&str>) -> Self {
        Self::build(base, region, endpoint_url, None)
    }

    fn build(
        base: &SdkConfig,
        region: &str,
        endpoint_url: Option<&str>,
        credentials: Option<SharedCredentialsProvider>,
    ) -> Self {
        let mut config = aws_sdk_s3::config::Builder::from(base).region(Region::new(region.to_string()));
        if let Some(url) = endpoint_url {
            config = config.endpoint_url(url).force_path_style(true);
        }
        if let Some(credentials) = credentials {
            config = config.credentials_provider(credentials);
        }
        Self {
            client: aws_sdk_s3::Client::from_conf(config.build()),
            region: region.to_string(),
            endpoint_url: endpoint_url.map(str::to_string),
        }
    }
}

#[async_trait]
impl TemplateStore for SdkTemplateStore {
    async fn put_template(&self, bucket: &str, key: &str, body: &str) -> AwsResult<String> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("text/plain; charset=utf-8")
            .body(aws_sdk_s3::primitives::ByteStream::from(body.as_bytes().to_vec()))
            .send()
            .await
            .map_err(map_error)?;
        Ok(template_url(self.endpoint_url.as_deref(), &self.region, bucket, key))
    }
}

/// Assumes a role on first use. `AssumeRoleProvider::build` is async, while
/// [`CloudFormationProvider::client`] is not; this defers the build to the
/// first credential request, which is async.
#[derive(Debug)]
struct LazyAssumeRole {
    role_arn: String,
    external_id: Option<String>,
    session_name: String,
    session_tags: Vec<(String, String)>,
    region: Region,
    base: SdkConfig,
    provider: tokio::sync::OnceCell<AssumeRoleProvider>,
}

impl LazyAssumeRole {
    async fn provider(&self) -> &AssumeRoleProvider {
        self.provider
            .get_or_init(|| async {
                let mut builder = AssumeRoleProvider::builder(&self.role_arn)
                    .session_name(&self.session_name)
                    .region(self.region.clone())
                    .configure(&self.base);
                if let Some(id) = &self.external_id {
                    builder = builder.external_id(id);
                }
                if !self.session_tags.is_empty() {
                    builder = builder.tags(self.session_tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                }
                builder.build().await
            })
            .await
    }
}

impl ProvideCredentials for LazyAssumeRole {
    fn provide_credentials<'a>(&'a self) -> credentials_future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        credentials_future::ProvideCredentials::new(async move { self.provider().await.provide_credentials().await })
    }
}

/// Hands out one cached [`SdkCloudFormation`] per [`AwsTarget`], assuming the
/// target's role on top of the operator's own credentials.
#[derive(Debug)]
pub struct SdkProvider {
    base: SdkConfig,
    endpoint_url: Option<String>,
    clients: Mutex<HashMap<AwsTarget, Arc<SdkCloudFormation>>>,
    stores: Mutex<HashMap<AwsTarget, Arc<SdkTemplateStore>>>,
}

/// Applies the retry and timeout bounds (to STS as well as CloudFormation).
fn bounded(config: SdkConfig, limits: SdkLimits) -> SdkConfig {
    config
        .into_builder()
        .retry_config(RetryConfig::standard().with_max_attempts(limits.max_attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(limits.connect_timeout)
                .operation_attempt_timeout(limits.attempt_timeout)
                .operation_timeout(limits.operation_timeout)
                .build(),
        )
        .build()
}

impl SdkProvider {
    /// From an already loaded base config. `endpoint_url` overrides every
    /// endpoint (CloudFormation and STS), for emulators.
    pub fn new(base: SdkConfig, endpoint_url: Option<String>) -> Self {
        Self::with_limits(base, endpoint_url, SdkLimits::default())
    }

    /// [`SdkProvider::new`] with other retry and timeout bounds.
    pub fn with_limits(base: SdkConfig, endpoint_url: Option<String>, limits: SdkLimits) -> Self {
        let mut base = bounded(base, limits);
        if let Some(url) = &endpoint_url {
            base = base.into_builder().endpoint_url(url).build();
        }
        Self {
            base,
            endpoint_url,
            clients: Mutex::new(HashMap::new()),
            stores: Mutex::new(HashMap::new()),
        }
    }

    /// Loads the operator's default credential chain (env, web identity /
    /// IRSA, ECS/EKS Pod Identity container credentials, profile).
    /// `default_region` applies when the chain names none (STS calls only;
    /// CloudFormation clients always use the target's region).
    pub async fn from_env(endpoint_url: Option<String>, default_region: Option<String>) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = default_region {
            let chain = aws_config::meta::region::RegionProviderChain::default_provider().or_else(Region::new(region));
            loader = loader.region(chain);
        }
        Self::new(loader.load().await, endpoint_url)
    }

    fn build_client(&self, target: &AwsTarget) -> SdkCloudFormation {
        let region = Region::new(target.region.clone());
        let mut config = aws_sdk_cloudformation::config::Builder::from(&self.base).region(region.clone());
        if let Some(url) = &self.endpoint_url {
            config = config.endpoint_url(url);
        }
        if let Some(credentials) = self.role_credentials(target, region) {
            config = config.credentials_provider(credentials);
        }
        SdkCloudFormation::new(Client::from_conf(config.build()))
    }

    /// The base config every client starts from (operator credentials,
    /// retries, timeouts, emulator endpoint). Shared with `identity.rs`.
    pub(crate) fn base_config(&self) -> &SdkConfig {
        &self.base
    }

    /// Credentials of the target's role, assumed (through STS in `region`) on
    /// top of the operator's own; `None` when the target names no role. Each
    /// call makes a new provider, which assumes the role again on first use.
    /// Shared with `identity.rs`, so account verification takes the same path.
    pub(crate) fn role_credentials(&self, target: &AwsTarget, region: Region) -> Option<SharedCredentialsProvider> {
        let role_arn = target.role_arn.as_ref()?;
        let session_name = sanitize_session_name(target.session_name.as_deref().unwrap_or(DEFAULT_SESSION_NAME));
        let assume = LazyAssumeRole {
            role_arn: role_arn.clone(),
            external_id: target.external_id.clone(),
            session_name,
            session_tags: target.session_tags.clone(),
            region,
            base: self.base.clone(),
            provider: tokio::sync::OnceCell::new(),
        };
        Some(SharedCredentialsProvider::new(assume))
    }
}

/// Without a role, session name and tags mean nothing: every object of a
/// region shares one client (and its connections). With a role, each object
/// has its own session, so CloudTrail names the object that acted.
fn cache_key(target: &AwsTarget) -> AwsTarget {
    match target.role_arn {
        Some(_) => target.clone(),
        None => AwsTarget {
            region: target.region.clone(),
            ..AwsTarget::default()
        },
    }
}

impl CloudFormationProvider for SdkProvider {
    fn client(&self, target: &AwsTarget) -> Arc<dyn CloudFormation> {
        let target = &cache_key(target);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(target) {
            return client.clone();
        }
        let client = Arc::new(self.build_client(target));
        clients.insert(target.clone(), client.clone());
        client
    }

    fn template_store(&self, target: &AwsTarget) -> Arc<dyn TemplateStore> {
        let target = &cache_key(target);
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = stores.get(target) {
            return store.clone();
        }
        let region = Region::new(target.region.clone());
        let store = Arc::new(SdkTemplateStore::build(
            &self.base,
            &target.region,
            self.endpoint_url.as_deref(),
            self.role_credentials(target, region),
        ));
        stores.insert(target.clone(), store.clone());
        store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AwsErrorKind::*;

    #[test]
    fn errors_are_classified_from_code_message_and_status() {
        let cases: &[(Option<&str>, &str, Option<u16>, AwsErrorKind)] = &[
            (
                Some("ValidationError"),
                "Stack with id foo does not exist",
                Some(400),
                NotFound,
            ),
            (
                Some("ValidationError"),
                "Stack [foo] does not exist",
                Some(400),
                NotFound,
            ),
            (
                Some("ChangeSetNotFound"),
                "ChangeSet [cs] does not exist",
                Some(404),
                NotFound,
            ),
            (Some("ChangeSetNotFoundException"), "", Some(404), NotFound),
            (Some("Throttling"), "Rate exceeded", Some(400), Throttled),
            (Some("ThrottlingException"), "Rate exceeded", Some(400), Throttled),
            (Some("RequestLimitExceeded"), "", Some(400), Throttled),
            (None, "", Some(429), Throttled),
            (Some("SomethingNew"), "slow down", Some(429), Throttled),
            (
                Some("AlreadyExistsException"),
                "ChangeSet cs already exists",
                Some(400),
                AlreadyExists,
            ),
            (Some("AlreadyExists"), "", Some(400), AlreadyExists),
            (
                Some("ValidationError"),
                "Stack [s] already exists and cannot be created again with the changeSet [cs].",
                Some(400),
                AlreadyExists,
            ),
            (Some("AccessDenied"), "not authorized", Some(403), AccessDenied),
            (Some("AccessDeniedException"), "", Some(400), AccessDenied),
            (Some("InvalidClientTokenId"), "", Some(403), AccessDenied),
            (Some("ExpiredToken"), "", Some(400), AccessDenied),
            (Some("UnrecognizedClientException"), "", Some(400), AccessDenied),
            (
                Some("InsufficientCapabilitiesException"),
                "Requires capabilities : [CAPABILITY_IAM]",
                Some(400),
                Validation,
            ),
            (
                Some("ValidationError"),
                "Parameters: [Foo] do not exist in the template",
                Some(400),
                Validation,
            ),
            (
                Some("ValidationError"),
                "Template format error: YAML not well-formed.",
                Some(400),
                Validation,
            ),
            (
                Some("ValidationError"),
                "No updates are to be performed.",
                Some(400),
                Validation,
            ),
            (
                Some("ValidationError"),
                "Stack:arn:aws:cloudformation:us-east-1:1:stack/s/x is in ROLLBACK_COMPLETE state and can not be updated.",
                Some(400),
                Validation,
            ),
            (
                Some("ValidationError"),
                "Stack:arn:aws:cloudformation:us-east-1:1:stack/s/x is in UPDATE_IN_PROGRESS state and can not be updated.",
                Some(400),
                InProgress,
            ),
            (
                Some("ValidationError"),
                "Stack [s] cannot be deleted while in status UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
                Some(400),
                InProgress,
            ),
            (
                Some("ValidationError"),
                "Stack:arn:x is in REVIEW_IN_PROGRESS state and can not be updated.",
                Some(400),
                Validation,
            ),
            (Some("OperationInProgressException"), "", Some(400), InProgress),
            (
                Some("InvalidChangeSetStatus"),
                "cannot be executed in its current status",
                Some(400),
                Validation,
            ),
            (Some("InternalFailure"), "", Some(500), Transient),
            (
                Some("InternalFailure"),
                "The API for service cloudformation is either not included in your current license plan or has not yet been emulated by LocalStack.",
                Some(501),
                Other,
            ),
            (Some("ServiceUnavailable"), "", Some(503), Transient),
            (None, "", Some(502), Transient),
            (Some("Weird"), "", Some(500), Transient),
            (Some("Weird"), "", Some(400), Other),
            (None, "", None, Other),
        ];
        for (code, message, status, want) in cases {
            assert_eq!(
                classify(*code, message, *status),
                *want,
                "{code:?} {message:?} {status:?}"
            );
        }
    }

    #[test]
    fn template_urls_for_aws_and_emulators() {
        assert_eq!(
            template_url(None, "eu-west-1", "bucket", "stacks/a b+c.yaml"),
            "https://bucket.s3.eu-west-1.amazonaws.com/stacks/a%20b%2Bc.yaml"
        );
        assert_eq!(
            template_url(None, "us-east-1", "my.bucket", "t.json"),
            "https://s3.us-east-1.amazonaws.com/my.bucket/t.json"
        );
        assert_eq!(
            template_url(Some("http://127.0.0.1:4566/"), "us-east-1", "b", "k/ü.yaml"),
            "http://127.0.0.1:4566/b/k/%C3%BC.yaml"
        );
    }

    fn time(secs: i64) -> aws_sdk_cloudformation::primitives::DateTime {
        aws_sdk_cloudformation::primitives::DateTime::from_secs(secs)
    }

    #[test]
    fn drift_detection_status_is_mapped() {
        let output = |status: sdk::StackDriftDetectionStatus, drift: Option<sdk::StackDriftStatus>| {
            DescribeStackDriftDetectionStatusOutput::builder()
                .stack_id("arn:stack")
                .stack_drift_detection_id("d-1")
                .detection_status(status)
                .set_stack_drift_status(drift)
                .drifted_stack_resource_count(2)
                .detection_status_reason("one resource could not be checked")
                .timestamp(time(1_700_000_000))
                .build()
        };
        let done = drift_detection(
            "asked",
            &output(
                sdk::StackDriftDetectionStatus::DetectionComplete,
                Some(sdk::StackDriftStatus::Drifted),
            ),
        );
        assert_eq!(
            done,
            DriftDetection {
                detection_id: "d-1".into(),
                status: DriftDetectionStatus::Complete,
                stack_drift_status: StackDriftStatus::Drifted,
                reason: Some("one resource could not be checked".into()),
                drifted_resource_count: Some(2),
                timestamp: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            }
        );
        let cases = [
            (
                sdk::StackDriftDetectionStatus::DetectionInProgress,
                Some(sdk::StackDriftStatus::InSync),
                DriftDetectionStatus::InProgress,
                StackDriftStatus::InSync,
            ),
            (
                sdk::StackDriftDetectionStatus::DetectionFailed,
                Some(sdk::StackDriftStatus::NotChecked),
                DriftDetectionStatus::Failed,
                StackDriftStatus::NotChecked,
            ),
            (
                sdk::StackDriftDetectionStatus::from("SOMETHING_NEW"),
                Some(sdk::StackDriftStatus::UnknownValue),
                DriftDetectionStatus::Failed,
                StackDriftStatus::Unknown,
            ),
            (
                sdk::StackDriftDetectionStatus::DetectionComplete,
                None,
                DriftDetectionStatus::Complete,
                StackDriftStatus::Unknown,
            ),
        ];
        for (status, drift, want_status, want_drift) in cases {
            let mapped = drift_detection("asked", &output(status, drift));
            assert_eq!((mapped.status, mapped.stack_drift_status), (want_status, want_drift));
        }
        let bare = DescribeStackDriftDetectionStatusOutput::builder().build();
        let mapped = drift_detection("asked", &bare);
        assert_eq!(mapped.detection_id, "asked");
        assert_eq!(mapped.drifted_resource_count, None);
        assert_eq!(mapped.timestamp, DateTime::UNIX_EPOCH);
    }

    #[test]
    fn resource_drifts_are_mapped_with_their_differences() {
        let drift = sdk::StackResourceDrift::builder()
            .stack_id("arn:stack")
            .logical_resource_id("Queue")
            .physical_resource_id("https://sqs/q")
            .resource_type("AWS::SQS::Queue")
            .stack_resource_drift_status(sdk::StackResourceDriftStatus::Modified)
            .timestamp(time(1))
            .property_differences(
                sdk::PropertyDifference::builder()
                    .property_path("/DelaySeconds")
                    .expected_value("0")
                    .actual_value("5")
                    .difference_type(sdk::DifferenceType::NotEqual)
                    .build(),
            )
            .property_differences(
                sdk::PropertyDifference::builder()
                    .property_path("/Tags/0")
                    .expected_value("")
                    .actual_value("{\"Key\":\"x\",\"Value\":\"y\"}")
                    .difference_type(sdk::DifferenceType::Add)
                    .build(),
            )
            .property_differences(
                sdk::PropertyDifference::builder()
                    .property_path("/RedrivePolicy")
                    .expected_value("{}")
                    .difference_type(sdk::DifferenceType::Remove)
                    .build(),
            )
            .build();
        let mapped = resource_drift(&drift);
        assert_eq!(mapped.logical_id, "Queue");
        assert_eq!(mapped.physical_id.as_deref(), Some("https://sqs/q"));
        assert_eq!(mapped.resource_type, "AWS::SQS::Queue");
        assert_eq!(mapped.drift, ResourceDriftStatus::Modified);
        assert_eq!(
            mapped.differences,
            [
                PropertyDifference {
                    path: "/DelaySeconds".into(),
                    expected: "0".into(),
                    actual: "5".into(),
                    kind: DifferenceKind::NotEqual,
                },
                PropertyDifference {
                    path: "/Tags/0".into(),
                    expected: String::new(),
                    actual: "{\"Key\":\"x\",\"Value\":\"y\"}".into(),
                    kind: DifferenceKind::Add,
                },
                PropertyDifference {
                    path: "/RedrivePolicy".into(),
                    expected: "{}".into(),
                    actual: String::new(),
                    kind: DifferenceKind::Remove,
                },
            ]
        );
        let statuses = [
            (sdk::StackResourceDriftStatus::Deleted, ResourceDriftStatus::Deleted),
            (sdk::StackResourceDriftStatus::InSync, ResourceDriftStatus::InSync),
            (
                sdk::StackResourceDriftStatus::NotChecked,
                ResourceDriftStatus::NotChecked,
            ),
            (
                sdk::StackResourceDriftStatus::UnknownValue,
                ResourceDriftStatus::Unknown("UNKNOWN".into()),
            ),
            (
                sdk::StackResourceDriftStatus::Unsupported,
                ResourceDriftStatus::Unknown("UNSUPPORTED".into()),
            ),
        ];
        for (status, want) in statuses {
            assert_eq!(resource_drift_status(Some(&status)), want);
        }
        assert!(ResourceDriftStatus::Deleted.is_drifted());
        assert!(!ResourceDriftStatus::InSync.is_drifted());
        let deleted = sdk::StackResourceDrift::builder()
            .logical_resource_id("Topic")
            .physical_resource_id("")
            .stack_resource_drift_status(sdk::StackResourceDriftStatus::Deleted)
            .build();
        assert_eq!(resource_drift(&deleted).physical_id, None);
    }

    #[test]
    fn session_names_are_made_acceptable() {
        assert_eq!(sanitize_session_name("team-a/my stack"), "team-a-my-stack");
        assert_eq!(sanitize_session_name("ok_name+=,.@-"), "ok_name+=,.@-");
        assert_eq!(sanitize_session_name("x"), DEFAULT_SESSION_NAME);
        assert_eq!(sanitize_session_name(""), DEFAULT_SESSION_NAME);
        assert_eq!(sanitize_session_name(&"a".repeat(100)).len(), 64);
        assert_eq!(sanitize_session_name("ünïcode"), "-n-code");
    }
}
