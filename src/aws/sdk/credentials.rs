//! Credentials of a target's role: assumed through STS on top of the
//! operator's own, lazily on first use, with a session name AWS accepts.

use aws_config::sts::AssumeRoleProvider;
use aws_config::{Region, SdkConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future as credentials_future};

use crate::aws::AwsTarget;

use super::SdkProvider;

/// Session name used when the target gives none.
pub const DEFAULT_SESSION_NAME: &str = "stackpilot";

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

/// Assumes a role on first use. `AssumeRoleProvider::build` is async, while
/// [`CloudFormationProvider::client`](crate::aws::CloudFormationProvider::client) is not;
/// this defers the build to the first credential request, which is async.
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

impl SdkProvider {
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

#[cfg(test)]
mod tests {
    use super::*;

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
