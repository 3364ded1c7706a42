//! Counts every AWS call by operation and outcome, whatever implementation
//! sits behind the trait (SDK or fake). Outcomes are the error categories
//! (`throttled` apart from `transient`), so throttling shows on its own. A
//! call is counted once whatever the SDK retried inside it; the bulk
//! DescribeStacks counts one call per page read (a failed one counts one).
//! Each call's answer time is kept too, so a slow run shows whether the
//! time went to AWS (or the emulator) or to waiting inside the operator.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{
    Action, AwsError, AwsResult, AwsTarget, ChangeSetDescription, ChangeSetRequest, CloudFormation,
    CloudFormationProvider, DriftDetection, ResourceDrift, StackDescription, StackEvent, StackListing, TemplateStore,
};
use crate::runtime::metrics::{AwsCallLabels, AwsOperationLabels, Metrics};

pub struct Instrumented {
    inner: Arc<dyn CloudFormation>,
    metrics: Arc<Metrics>,
}

fn outcome<T>(result: &AwsResult<T>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(AwsError { kind, .. }) => kind.label(),
    }
}

fn count<T>(metrics: &Metrics, operation: Action, calls: u64, result: AwsResult<T>) -> AwsResult<T> {
    let labels = AwsCallLabels {
        operation: operation.as_str(),
        outcome: outcome(&result),
    };
    metrics.aws_calls.get_or_create(&labels).inc_by(calls);
    result
}

/// Counts one call of `operation` made outside the CloudFormation trait
/// (CloudWatch's DescribeAlarms).
pub fn count_call<T>(metrics: &Metrics, operation: Action, result: &AwsResult<T>) {
    let labels = AwsCallLabels {
        operation: operation.as_str(),
        outcome: outcome(result),
    };
    metrics.aws_calls.get_or_create(&labels).inc();
}

/// Runs `call`, keeping how long AWS took to answer, by operation (inside
/// the call budget, so its wait is not included: `aws_budget_wait_seconds`
/// counts that).
async fn timed<T>(metrics: &Metrics, operation: Action, call: impl Future<Output = AwsResult<T>>) -> AwsResult<T> {
    let started = Instant::now();
    let result = call.await;
    let labels = AwsOperationLabels {
        operation: operation.as_str(),
    };
    metrics
        .aws_call_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    result
}

impl Instrumented {
    async fn call<T>(&self, operation: Action, call: impl Future<Output = AwsResult<T>>) -> AwsResult<T> {
        let result = timed(&self.metrics, operation, call).await;
        count(&self.metrics, operation, 1, result)
    }
}

#[async_trait]
impl CloudFormation for Instrumented {
    async fn describe_stack(&self, stack: &str) -> AwsResult<Option<StackDescription>> {
        self.call(Action::DescribeStacks, self.inner.describe_stack(stack))
            .await
    }

    async fn create_change_set(&self, request: &ChangeSetRequest) -> AwsResult<String> {
        self.call(Action::CreateChangeSet, self.inner.create_change_set(request))
            .await
    }

    async fn describe_change_set(&self, stack: &str, name: &str) -> AwsResult<Option<ChangeSetDescription>> {
        self.call(Action::DescribeChangeSet, self.inner.describe_change_set(stack, name))
            .await
    }

    async fn execute_change_set(&self, stack: &str, name: &str, token: &str) -> AwsResult<()> {
        self.call(
            Action::ExecuteChangeSet,
            self.inner.execute_change_set(stack, name, token),
        )
        .await
    }

    async fn update_stack(&self, request: &ChangeSetRequest) -> AwsResult<()> {
        self.call(Action::UpdateStack, self.inner.update_stack(request)).await
    }

    async fn delete_change_set(&self, stack: &str, name: &str) -> AwsResult<()> {
        self.call(Action::DeleteChangeSet, self.inner.delete_change_set(stack, name))
            .await
    }

    async fn delete_stack(&self, stack: &str, token: &str, retain: &[String]) -> AwsResult<()> {
        self.call(Action::DeleteStack, self.inner.delete_stack(stack, token, retain))
            .await
    }

    async fn stack_events(&self, stack: &str, after: Option<&str>, limit: usize) -> AwsResult<Vec<StackEvent>> {
        self.call(
            Action::DescribeStackEvents,
            self.inner.stack_events(stack, after, limit),
        )
        .await
    }

    async fn describe_all_stacks(&self) -> AwsResult<StackListing> {
        let result = timed(&self.metrics, Action::DescribeStacks, self.inner.describe_all_stacks()).await;
        let pages = result.as_ref().map_or(1, |listing| u64::from(listing.pages.max(1)));
        count(&self.metrics, Action::DescribeStacks, pages, result)
    }

    async fn get_template(&self, stack: &str) -> AwsResult<String> {
        self.call(Action::GetTemplate, self.inner.get_template(stack)).await
    }

    async fn update_termination_protection(&self, stack: &str, enabled: bool) -> AwsResult<()> {
        self.call(
            Action::UpdateTerminationProtection,
            self.inner.update_termination_protection(stack, enabled),
        )
        .await
    }

    async fn set_stack_policy(&self, stack: &str, policy_body: &str) -> AwsResult<()> {
        self.call(Action::SetStackPolicy, self.inner.set_stack_policy(stack, policy_body))
            .await
    }

    async fn get_stack_policy(&self, stack: &str) -> AwsResult<Option<String>> {
        self.call(Action::GetStackPolicy, self.inner.get_stack_policy(stack))
            .await
    }

    async fn continue_update_rollback(&self, stack: &str, skip: &[String], token: &str) -> AwsResult<()> {
        self.call(
            Action::ContinueUpdateRollback,
            self.inner.continue_update_rollback(stack, skip, token),
        )
        .await
    }

    async fn detect_stack_drift(&self, stack: &str) -> AwsResult<String> {
        self.call(Action::DetectStackDrift, self.inner.detect_stack_drift(stack))
            .await
    }

    async fn drift_detection_status(&self, detection_id: &str) -> AwsResult<DriftDetection> {
        self.call(
            Action::DescribeStackDriftDetectionStatus,
            self.inner.drift_detection_status(detection_id),
        )
        .await
    }

    async fn resource_drifts(&self, stack: &str) -> AwsResult<Vec<ResourceDrift>> {
        self.call(Action::DescribeStackResourceDrifts, self.inner.resource_drifts(stack))
            .await
    }
}

/// Counts template uploads (S3 PutObject) like the CloudFormation calls.
pub struct InstrumentedTemplateStore {
    inner: Arc<dyn TemplateStore>,
    metrics: Arc<Metrics>,
}

#[async_trait]
impl TemplateStore for InstrumentedTemplateStore {
    async fn put_template(&self, bucket: &str, key: &str, body: &str) -> AwsResult<String> {
        let result = timed(
            &self.metrics,
            Action::PutObject,
            self.inner.put_template(bucket, key, body),
        )
        .await;
        count(&self.metrics, Action::PutObject, 1, result)
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

    fn template_store(&self, target: &AwsTarget) -> Arc<dyn TemplateStore> {
        Arc::new(InstrumentedTemplateStore {
            inner: self.inner.template_store(target),
            metrics: self.metrics.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::aws::AwsErrorKind;
    use crate::aws::fake::{Action, ErrorInjection, FakeProvider, server_error, throttling_error};

    fn calls(metrics: &Metrics, operation: &'static str, outcome: &'static str) -> u64 {
        metrics
            .aws_calls
            .get_or_create(&AwsCallLabels { operation, outcome })
            .get()
    }

    #[tokio::test]
    async fn every_operation_is_counted_with_throttling_apart() {
        let fakes = Arc::new(FakeProvider::new());
        let metrics = Arc::new(Metrics::default());
        let provider = InstrumentedProvider {
            inner: fakes.clone(),
            metrics: metrics.clone(),
        };
        let target = AwsTarget {
            region: "us-east-1".into(),
            role_arn: None,
            external_id: None,
            session_name: None,
            session_tags: Vec::new(),
        };
        let fake = fakes.region("us-east-1");
        for i in 0..150 {
            fake.put_stack(
                &format!("s{i}"),
                "Resources:\n  T:\n    Type: AWS::SNS::Topic\n",
                &[],
                BTreeMap::new(),
            )
            .unwrap();
        }
        let cf = provider.client(&target);
        assert_eq!(cf.describe_all_stacks().await.unwrap().pages, 2);
        assert_eq!(calls(&metrics, "DescribeStacks", "ok"), 2, "one call per page");

        cf.get_template("s1").await.unwrap();
        cf.update_termination_protection("s1", true).await.unwrap();
        cf.set_stack_policy("s1", "{}").await.unwrap();
        cf.get_stack_policy("s1").await.unwrap();
        let id = cf.detect_stack_drift("s1").await.unwrap();
        cf.drift_detection_status(&id).await.unwrap();
        cf.resource_drifts("s1").await.unwrap();
        let err = cf.continue_update_rollback("s1", &[], "t").await.unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::Validation);
        provider
            .template_store(&target)
            .put_template("b", "k", "x")
            .await
            .unwrap();
        for operation in [
            "GetTemplate",
            "UpdateTerminationProtection",
            "SetStackPolicy",
            "GetStackPolicy",
            "DetectStackDrift",
            "DescribeStackDriftDetectionStatus",
            "DescribeStackResourceDrifts",
            "PutObject",
        ] {
            assert_eq!(calls(&metrics, operation, "ok"), 1, "{operation}");
        }
        assert_eq!(calls(&metrics, "ContinueUpdateRollback", "validation"), 1);

        fake.inject(ErrorInjection::new(throttling_error()).on(Action::GetTemplate));
        fake.inject(ErrorInjection::new(server_error()).on(Action::GetTemplate));
        cf.get_template("s1").await.unwrap_err();
        cf.get_template("s1").await.unwrap_err();
        assert_eq!(calls(&metrics, "GetTemplate", "throttled"), 1);
        assert_eq!(calls(&metrics, "GetTemplate", "transient"), 1);
        fake.inject(ErrorInjection::new(throttling_error()).on(Action::DescribeStacks));
        cf.describe_all_stacks().await.unwrap_err();
        assert_eq!(calls(&metrics, "DescribeStacks", "throttled"), 1);

        // Answer times: one per call whatever its outcome; a paged read is
        // timed once, whole.
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry).unwrap();
        let timed = |operation: &str| {
            let prefix = format!("stackpilot_aws_call_duration_seconds_count{{operation=\"{operation}\"}} ");
            text.lines().find_map(|l| l.strip_prefix(&prefix)?.parse::<u64>().ok())
        };
        assert_eq!(timed("GetTemplate"), Some(3));
        assert_eq!(timed("DescribeStacks"), Some(2));
        assert_eq!(timed("PutObject"), Some(1));
        assert_eq!(timed("CreateChangeSet"), None, "never called");
    }
}
