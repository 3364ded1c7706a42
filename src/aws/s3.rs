//! S3 object reads, in the project's own types: the source of a Pipeline.
//! One HeadObject per poll says whether the object has a new version; its
//! content is read (GetObject of that version) only then.

use std::sync::Arc;

use async_trait::async_trait;

use super::{AwsResult, AwsTarget};

/// The current version of an object, as HeadObject reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectVersion {
    /// `None` (or S3's `"null"`) when the bucket has no versioning.
    pub version_id: Option<String>,
    pub e_tag: Option<String>,
    pub size: i64,
}

/// Objects in one account and region.
#[async_trait]
pub trait S3: Send + Sync {
    /// HeadObject: the current version, or `None` when there is no such
    /// object (or bucket).
    async fn head_object(&self, bucket: &str, key: &str) -> AwsResult<Option<ObjectVersion>>;

    /// GetObject of one version: its bytes, or `None` when it is gone.
    async fn get_object(&self, bucket: &str, key: &str, version_id: &str) -> AwsResult<Option<Vec<u8>>>;
}

/// Gives the S3 reader of a target (account role + region).
pub trait S3Provider: Send + Sync {
    fn s3(&self, target: &AwsTarget) -> Arc<dyn S3>;
}

/// Counts every call in `stackpilot_aws_calls_total` and, when a budget is
/// given, spends a token of the target's account and region first.
pub struct CountedS3 {
    pub inner: Arc<dyn S3Provider>,
    pub metrics: Arc<crate::runtime::metrics::Metrics>,
    pub budget: Option<Arc<super::budget::BudgetProvider>>,
}

struct Counted {
    inner: Arc<dyn S3>,
    metrics: Arc<crate::runtime::metrics::Metrics>,
    budget: Option<(Arc<super::budget::BudgetProvider>, AwsTarget)>,
}

impl Counted {
    async fn spend(&self) {
        if let Some((budget, target)) = &self.budget {
            budget.wait_for_token(target).await;
        }
    }
}

#[async_trait]
impl S3 for Counted {
    async fn head_object(&self, bucket: &str, key: &str) -> AwsResult<Option<ObjectVersion>> {
        self.spend().await;
        let result = self.inner.head_object(bucket, key).await;
        super::instrumented::count_call(&self.metrics, super::Action::HeadObject, &result);
        result
    }

    async fn get_object(&self, bucket: &str, key: &str, version_id: &str) -> AwsResult<Option<Vec<u8>>> {
        self.spend().await;
        let result = self.inner.get_object(bucket, key, version_id).await;
        super::instrumented::count_call(&self.metrics, super::Action::GetObject, &result);
        result
    }
}

impl S3Provider for CountedS3 {
    fn s3(&self, target: &AwsTarget) -> Arc<dyn S3> {
        Arc::new(Counted {
            inner: self.inner.s3(target),
            metrics: self.metrics.clone(),
            budget: self.budget.clone().map(|b| (b, target.clone())),
        })
    }
}
