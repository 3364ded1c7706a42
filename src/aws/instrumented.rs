//! Counts every AWS call by operation and outcome, whatever implementation
//! sits behind the trait (SDK or fake).

use std::sync::Arc;

use async_trait::async_trait;

use super::{
    AwsError, AwsErrorKind, AwsResult, AwsTarget, ChangeSetDescription, ChangeSetRequest, CloudFormation,
    CloudFormationProvider, StackDescription, StackEvent,
};
use crate::metrics::{AwsCallLabels, Metrics};

pub struct Instrumented {
    inner: Arc<dyn CloudFormation>,
    metrics: Arc<Metrics>,
}

fn outcome<T>(result: &AwsResult<T>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(AwsError { kind, .. }) => match kind {
            AwsErrorKind::NotFound => "not_found",
            AwsErrorKind::Validation => "validation",
            AwsErrorKind::AlreadyExists => "already_exists",
            AwsErrorKind::Throttled => "throttled",
            AwsErrorKind::AccessDenied => "access_denied",
            AwsErrorKind::Transient => "transient",
            AwsErrorKind::InProgress => "in_progress",
            AwsErrorKind::Other => "other",
        },
    }
}

impl Instrumented {
    fn count<T>(&self, operation: &'static str, result: AwsResult<T>) -> AwsResult<T> {
        let labels = AwsCallLabels {
            operation,
            outcome: outcome(&result),
        };
        self.metrics.aws_calls.get_or_create(&labels).inc();
        result
    }
}

#[async_trait]
impl CloudFormation for Instrumented {
    async fn describe_stack(&self, stack: &str) -> AwsResult<Option<StackDescription>> {
        self.count("DescribeStacks", self.inner.describe_stack(stack).await)
    }

    async fn create_change_set(&self, request: &ChangeSetRequest) -> AwsResult<String> {
        self.count("CreateChangeSet", self.inner.create_change_set(request).await)
    }

    async fn describe_change_set(&self, stack: &str, name: &str) -> AwsResult<Option<ChangeSetDescription>> {
        self.count("DescribeChangeSet", self.inner.describe_change_set(stack, name).await)
    }

    async fn execute_change_set(&self, stack: &str, name: &str, token: &str) -> AwsResult<()> {
        self.count(
            "ExecuteChangeSet",
            self.inner.execute_change_set(stack, name, token).await,
        )
    }

    async fn delete_change_set(&self, stack: &str, name: &str) -> AwsResult<()> {
        self.count("DeleteChangeSet", self.inner.delete_change_set(stack, name).await)
    }

    async fn delete_stack(&self, stack: &str, token: &str, retain: &[String]) -> AwsResult<()> {
        self.count("DeleteStack", self.inner.delete_stack(stack, token, retain).await)
    }

    async fn stack_events(&self, stack: &str, after: Option<&str>, limit: usize) -> AwsResult<Vec<StackEvent>> {
        self.count(
            "DescribeStackEvents",
            self.inner.stack_events(stack, after, limit).await,
        )
    }
}

/// Wraps every client a provider hands out.
pub struct InstrumentedProvider {
    pub inner: Arc<dyn CloudFormationProvider>,
    pub metrics: Arc<Metrics>,
}

impl CloudFormationProvider for InstrumentedProvider {
    fn client(&self, target: &AwsTarget) -> Arc<dyn CloudFormation> {
        Arc::new(Instrumented {
            inner: self.inner.client(target),
            metrics: self.metrics.clone(),
        })
    }
}
