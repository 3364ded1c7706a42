//! Who the operator is in AWS for a target: STS `GetCallerIdentity` through
//! the target's role, behind [`AccountIdentity`]. The SDK implementation takes
//! the same credential path as the CloudFormation clients of
//! [`SdkProvider`] (base chain, then the target's role); [`FakeIdentity`]
//! answers from memory and logs every call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_config::Region;

use super::sdk::{SdkProvider, map_error};
use super::{AwsError, AwsErrorKind, AwsResult, AwsTarget};
use crate::runtime::metrics::{AwsCallLabels, Metrics};

/// The AWS account behind a target's credentials.
#[async_trait]
pub trait AccountIdentity: Send + Sync {
    /// GetCallerIdentity with the target's credentials (its role assumed
    /// anew, so a revoked trust policy shows). An empty `target.region` uses
    /// the operator's default region.
    async fn account_id(&self, target: &AwsTarget) -> AwsResult<String>;
}

#[async_trait]
impl<T: AccountIdentity + ?Sized> AccountIdentity for Arc<T> {
    async fn account_id(&self, target: &AwsTarget) -> AwsResult<String> {
        (**self).account_id(target).await
    }
}

/// Region for STS when neither the target nor the operator's chain names one.
const FALLBACK_REGION: &str = "us-east-1";

/// [`AccountIdentity`] over `aws-sdk-sts`, sharing the provider's base config
/// (credentials, retries, timeouts, emulator endpoint).
#[derive(Clone, Debug)]
pub struct SdkIdentity {
    provider: Arc<SdkProvider>,
}

impl SdkIdentity {
    pub fn new(provider: Arc<SdkProvider>) -> Self {
        Self { provider }
    }
}

#[async_trait]
impl AccountIdentity for SdkIdentity {
    async fn account_id(&self, target: &AwsTarget) -> AwsResult<String> {
        let base = self.provider.base_config();
        let region = if target.region.is_empty() {
            base.region().cloned().unwrap_or(Region::from_static(FALLBACK_REGION))
        } else {
            Region::new(target.region.clone())
        };
        // A new client per call: no cached credentials, so every
        // verification assumes the role again.
        let mut config = aws_sdk_sts::config::Builder::from(base).region(region.clone());
        if let Some(credentials) = self.provider.role_credentials(target, region) {
            config = config.credentials_provider(credentials);
        }
        let client = aws_sdk_sts::Client::from_conf(config.build());
        let answer = client.get_caller_identity().send().await.map_err(map_error)?;
        answer.account().map(str::to_string).ok_or_else(|| {
            AwsError::new(
                AwsErrorKind::Other,
                "MissingAccount",
                "GetCallerIdentity returned no account",
            )
        })
    }
}

/// Counts every GetCallerIdentity in `aws_calls`, like
/// [`super::instrumented::Instrumented`] does for CloudFormation.
pub struct InstrumentedIdentity {
    pub inner: Arc<dyn AccountIdentity>,
    pub metrics: Arc<Metrics>,
}

#[async_trait]
impl AccountIdentity for InstrumentedIdentity {
    async fn account_id(&self, target: &AwsTarget) -> AwsResult<String> {
        let result = self.inner.account_id(target).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(error) => error.kind.label(),
        };
        let labels = AwsCallLabels {
            operation: "GetCallerIdentity",
            outcome,
        };
        self.metrics.aws_calls.get_or_create(&labels).inc();
        result
    }
}

/// In-memory [`AccountIdentity`]: answers per role ARN (or for the operator's
/// own credentials, `None`), else the default answer; logs every call.
#[derive(Debug)]
pub struct FakeIdentity {
    state: Mutex<FakeState>,
}

#[derive(Debug)]
struct FakeState {
    default: AwsResult<String>,
    by_role: HashMap<Option<String>, AwsResult<String>>,
    calls: Vec<AwsTarget>,
}

impl FakeIdentity {
    /// Every target resolves to `account_id` until told otherwise.
    pub fn new(account_id: impl Into<String>) -> Self {
        Self {
            state: Mutex::new(FakeState {
                default: Ok(account_id.into()),
                by_role: HashMap::new(),
                calls: Vec::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The answer for targets without a role-specific one.
    pub fn set_default(&self, answer: AwsResult<String>) {
        self.state().default = answer;
    }

    /// The answer for one role (`None`: the operator's own credentials).
    pub fn set_answer(&self, role_arn: Option<&str>, answer: AwsResult<String>) {
        self.state().by_role.insert(role_arn.map(str::to_string), answer);
    }

    /// Makes assuming `role_arn` fail as AWS refuses an untrusted caller.
    pub fn deny_role(&self, role_arn: &str) {
        let error = AwsError::new(
            AwsErrorKind::AccessDenied,
            "AccessDenied",
            format!("User is not authorized to perform: sts:AssumeRole on resource: {role_arn}"),
        );
        self.set_answer(Some(role_arn), Err(error));
    }

    /// Every target asked about, oldest first.
    pub fn calls(&self) -> Vec<AwsTarget> {
        self.state().calls.clone()
    }
}

#[async_trait]
impl AccountIdentity for FakeIdentity {
    async fn account_id(&self, target: &AwsTarget) -> AwsResult<String> {
        let mut state = self.state();
        state.calls.push(target.clone());
        state.by_role.get(&target.role_arn).unwrap_or(&state.default).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(role: Option<&str>) -> AwsTarget {
        AwsTarget {
            region: "eu-west-1".into(),
            role_arn: role.map(str::to_string),
            external_id: None,
            session_name: None,
            session_tags: Vec::new(),
        }
    }

    #[tokio::test]
    async fn the_fake_answers_per_role_and_logs_calls() {
        let fake = FakeIdentity::new("111111111111");
        let role = "arn:aws:iam::222222222222:role/deployer";
        fake.set_answer(Some(role), Ok("222222222222".into()));
        fake.deny_role("arn:aws:iam::333333333333:role/locked");
        assert_eq!(fake.account_id(&target(None)).await.unwrap(), "111111111111");
        assert_eq!(fake.account_id(&target(Some(role))).await.unwrap(), "222222222222");
        let denied = fake
            .account_id(&target(Some("arn:aws:iam::333333333333:role/locked")))
            .await
            .unwrap_err();
        assert_eq!(denied.kind, AwsErrorKind::AccessDenied);
        let shared: Arc<dyn AccountIdentity> = Arc::new(fake);
        assert!(shared.account_id(&target(None)).await.is_ok());
    }

    #[tokio::test]
    async fn instrumented_counts_by_outcome() {
        let fake = Arc::new(FakeIdentity::new("111111111111"));
        let metrics = Arc::new(Metrics::default());
        let identity = InstrumentedIdentity {
            inner: fake.clone(),
            metrics: metrics.clone(),
        };
        identity.account_id(&target(None)).await.unwrap();
        fake.set_default(Err(AwsError::new(AwsErrorKind::Throttled, "Throttling", "slow")));
        identity.account_id(&target(None)).await.unwrap_err();
        let text = metrics.encode();
        assert!(text.contains(r#"operation="GetCallerIdentity",outcome="ok""#), "{text}");
        assert!(
            text.contains(r#"operation="GetCallerIdentity",outcome="throttled""#),
            "{text}"
        );
        assert_eq!(fake.calls().len(), 2);
    }
}
