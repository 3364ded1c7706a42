//! [`SdkTemplateStore`]: templates uploaded to S3, and the URL
//! CloudFormation then reads them from.

use async_trait::async_trait;
use aws_config::{Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;

use crate::aws::{AwsResult, TemplateStore};

use super::errors::map_error;

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

    pub(super) fn build(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
