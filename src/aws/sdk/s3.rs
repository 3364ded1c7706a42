//! [`SdkS3`]: S3 HeadObject and GetObject over the SDK (Pipeline sources),
//! with the same credentials (the target's role assumed on top of the
//! operator's own) and endpoint as CloudFormation; path-style on emulators.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_config::Region;

use crate::aws::s3::{ObjectVersion, S3, S3Provider};
use crate::aws::{AwsResult, AwsTarget};

use super::{SdkProvider, cache_key, map_error};

/// One cached S3 client per account and region.
pub struct SdkS3 {
    provider: Arc<SdkProvider>,
    clients: Mutex<HashMap<AwsTarget, Arc<SdkS3Client>>>,
}

impl SdkS3 {
    pub fn new(provider: Arc<SdkProvider>) -> Self {
        Self {
            provider,
            clients: Mutex::new(HashMap::new()),
        }
    }
}

impl S3Provider for SdkS3 {
    fn s3(&self, target: &AwsTarget) -> Arc<dyn S3> {
        let target = &cache_key(target);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(target) {
            return client.clone();
        }
        let region = Region::new(target.region.clone());
        let mut config = aws_sdk_s3::config::Builder::from(self.provider.base_config()).region(region.clone());
        if let Some(url) = &self.provider.endpoint_url {
            config = config.endpoint_url(url).force_path_style(true);
        }
        if let Some(credentials) = self.provider.role_credentials(target, region) {
            config = config.credentials_provider(credentials);
        }
        let client = Arc::new(SdkS3Client {
            client: aws_sdk_s3::Client::from_conf(config.build()),
        });
        clients.insert(target.clone(), client.clone());
        client
    }
}

pub struct SdkS3Client {
    client: aws_sdk_s3::Client,
}

/// S3 answers a missing object (or bucket, or version) with 404: no error
/// code on a HEAD, `NoSuchKey` / `NoSuchVersion` / `NoSuchBucket` otherwise.
fn is_missing<E>(error: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> bool {
    error.raw_response().is_some_and(|r| r.status().as_u16() == 404)
}

#[async_trait]
impl S3 for SdkS3Client {
    async fn head_object(&self, bucket: &str, key: &str) -> AwsResult<Option<ObjectVersion>> {
        match self.client.head_object().bucket(bucket).key(key).send().await {
            Ok(answer) => Ok(Some(ObjectVersion {
                version_id: answer.version_id().map(str::to_string),
                e_tag: answer.e_tag().map(str::to_string),
                size: answer.content_length().unwrap_or_default(),
            })),
            Err(error) if is_missing(&error) => Ok(None),
            Err(error) => Err(map_error(error)),
        }
    }

    async fn get_object(&self, bucket: &str, key: &str, version_id: &str) -> AwsResult<Option<Vec<u8>>> {
        let sent = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .version_id(version_id)
            .send()
            .await;
        let answer = match sent {
            Ok(answer) => answer,
            Err(error) if is_missing(&error) => return Ok(None),
            Err(error) => return Err(map_error(error)),
        };
        let bytes =
            answer.body.collect().await.map_err(|e| {
                crate::aws::AwsError::new(crate::aws::AwsErrorKind::Transient, "ReadBody", e.to_string())
            })?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }
}
