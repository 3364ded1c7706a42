//! In-memory S3 objects with versions: tests (and the bench) put objects,
//! the pipeline reads them, and the HeadObject and GetObject calls are counted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::aws::s3::{ObjectVersion, S3, S3Provider};
use crate::aws::{AwsResult, AwsTarget};

/// One version of an object: (version id, bytes).
type Version = (String, Vec<u8>);

/// (bucket, key) -> versions, oldest first.
#[derive(Default)]
struct State {
    objects: HashMap<(String, String), Vec<Version>>,
    heads: u64,
    gets: u64,
}

/// Versioned objects held in memory, in every account and region alike;
/// cheap to clone (shared state).
#[derive(Clone, Default)]
pub struct FakeS3 {
    state: Arc<Mutex<State>>,
}

impl FakeS3 {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts a new version of an object; returns its version id.
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) -> String {
        self.with(|s| {
            let versions = s.objects.entry((bucket.into(), key.into())).or_default();
            let id = format!("v{:04}", versions.len() + 1);
            versions.push((id.clone(), body.to_vec()));
            id
        })
    }

    /// (HeadObject, GetObject) calls so far.
    pub fn calls(&self) -> (u64, u64) {
        self.with(|s| (s.heads, s.gets))
    }
}

#[async_trait]
impl S3 for FakeS3 {
    async fn head_object(&self, bucket: &str, key: &str) -> AwsResult<Option<ObjectVersion>> {
        self.with(|s| {
            s.heads += 1;
            let latest = s.objects.get(&(bucket.into(), key.into())).and_then(|v| v.last());
            Ok(latest.map(|(id, body)| ObjectVersion {
                version_id: Some(id.clone()),
                e_tag: None,
                size: body.len() as i64,
            }))
        })
    }

    async fn get_object(&self, bucket: &str, key: &str, version_id: &str) -> AwsResult<Option<Vec<u8>>> {
        self.with(|s| {
            s.gets += 1;
            let versions = s.objects.get(&(bucket.into(), key.into()));
            Ok(versions.and_then(|v| v.iter().find(|(id, _)| id == version_id).map(|(_, b)| b.clone())))
        })
    }
}

impl S3Provider for FakeS3 {
    fn s3(&self, _target: &AwsTarget) -> Arc<dyn S3> {
        Arc::new(self.clone())
    }
}
