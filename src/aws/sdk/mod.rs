//! The AWS SDK implementation of [`super::CloudFormation`], and the provider
//! that hands out one client per [`AwsTarget`]. This is the only module that
//! imports `aws_sdk_*`, `aws_config` and `aws_smithy_*`.
//!
//! Errors are classified by one pure function, [`classify`], from what AWS
//! said (code, message, HTTP status), so the mapping is unit-tested without IO.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_cloudformation::Client;

use crate::aws::{AwsTarget, CloudFormation, CloudFormationProvider, TemplateStore};

mod alarms;
mod cloudformation;
mod conversions;
mod credentials;
mod errors;
mod s3;
mod template_store;

pub use alarms::SdkAlarms;
pub use cloudformation::SdkCloudFormation;
pub use credentials::{DEFAULT_SESSION_NAME, sanitize_session_name};
pub use errors::classify;
pub(crate) use errors::map_error;
pub use s3::SdkS3;
pub use template_store::{SdkTemplateStore, template_url};

/// Retry and timeout bounds of every SDK call, so a dead or silent endpoint
/// never blocks a worker for long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SdkLimits {
    /// Attempts per STS and S3 call, first try included (standard retry
    /// mode). CloudFormation calls make one attempt each: the per-account
    /// call budget (`aws::budget`) decides their retries, so every request
    /// on the wire spends a token.
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

/// Hands out one cached [`SdkCloudFormation`] per [`AwsTarget`], assuming the
/// target's role on top of the operator's own credentials.
#[derive(Debug)]
pub struct SdkProvider {
    base: SdkConfig,
    endpoint_url: Option<String>,
    clients: Mutex<HashMap<AwsTarget, Arc<SdkCloudFormation>>>,
    stores: Mutex<HashMap<AwsTarget, Arc<SdkTemplateStore>>>,
}

/// Applies the retry and timeout bounds (CloudFormation clients then turn
/// retries off: see `build_client`).
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
        // One attempt per call: retries go through the call budget.
        let mut config = aws_sdk_cloudformation::config::Builder::from(&self.base)
            .region(region.clone())
            .retry_config(RetryConfig::disabled());
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
}

/// Without a role, session name and tags mean nothing: every object of a
/// region shares one client (and its connections). With a role, each object
/// has its own session, so CloudTrail names the object that acted.
pub(super) fn cache_key(target: &AwsTarget) -> AwsTarget {
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
