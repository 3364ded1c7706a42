//! Pipeline sources end to end: an S3 object in LocalStack (a versioned
//! bucket; the object's version id is the revision), read by the operator
//! binary with one HeadObject per poll interval, on the real kube-apiserver.

mod support;

use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use serde_json::json;
use stackpilot::api::ExecutionPhase;
use support::fixture::Fixture;
use support::pipeline::*;
use support::unique_suffix;

/// The operator polls S3 sources every this many seconds in these tests.
const POLL_SECONDS: u64 = 2;

async fn s3(endpoint: &str) -> aws_sdk_s3::Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .credentials_provider(Credentials::new("test", "test", None, None, "pipeline-sources"))
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .load()
        .await;
    let config = aws_sdk_s3::config::Builder::from(&config)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

async fn bucket(client: &aws_sdk_s3::Client, versioned: bool) -> String {
    let name = format!("pipe-src-{}", unique_suffix());
    client
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("create bucket");
    if versioned {
        let versioning = VersioningConfiguration::builder()
            .status(BucketVersioningStatus::Enabled)
            .build();
        client
            .put_bucket_versioning()
            .bucket(&name)
            .versioning_configuration(versioning)
            .send()
            .await
            .expect("enable versioning");
    }
    name
}

/// Puts a new version of the template; its version id (none without versioning).
async fn put(client: &aws_sdk_s3::Client, bucket: &str, visibility: &str) -> Option<String> {
    let body = QUEUE_TEMPLATE.replace("Default: 30", &format!("Default: {visibility}"));
    let put = client
        .put_object()
        .bucket(bucket)
        .key("app/template.yaml")
        .body(body.into_bytes().into())
        .send()
        .await
        .expect("put object");
    put.version_id().map(str::to_string)
}

fn spec(bucket: &str) -> serde_json::Value {
    json!({"source": {"s3": {"bucket": bucket, "key": "app/template.yaml", "region": "us-east-1"}},
        "stages": [{"name": "dev", "actions": [{"name": "app", "deploy": {"stack": {"region": "us-east-1"}}}]}]})
}

#[tokio::test]
async fn a_new_s3_object_version_starts_an_execution() {
    let poll = POLL_SECONDS.to_string();
    let f = Fixture::with_env("pipe-s3", &[("STACKPILOT_PIPELINE_SOURCE_POLL_SECONDS", &poll)]).await;
    let client = s3(&f.bed.aws_endpoint).await;
    let versioned = bucket(&client, true).await;
    let plain = bucket(&client, false).await;

    // No object yet: a clear condition, no execution, no hot loop.
    apply(&f, "web", spec(&versioned)).await;
    let missing = wait_pipeline(&f, "web", "the missing object is a condition", |p| {
        condition(p, "Ready").is_some_and(|c| c.1 == "SourceNotFound")
    })
    .await;
    let message = condition(&missing, "Ready").unwrap().2;
    assert!(
        message.contains(&format!("s3://{versioned}/app/template.yaml")),
        "{message}"
    );
    assert!(missing.status.as_ref().unwrap().current_execution.is_none());
    settled(&f, "web").await;

    // An unversioned bucket has no revision to offer.
    put(&client, &plain, "30").await;
    apply(&f, "plain", spec(&plain)).await;
    let unversioned = wait_pipeline(&f, "plain", "the unversioned bucket is a condition", |p| {
        condition(p, "Ready").is_some_and(|c| c.1 == "SourceNotVersioned")
    })
    .await;
    assert!(unversioned.status.unwrap().current_execution.is_none());

    // A first version starts an execution, a second one another.
    let v1 = put(&client, &versioned, "31").await.expect("a version id");
    let first = wait_execution(&f, "web", "v1 succeeds", |e| {
        e.revision == v1 && e.phase == ExecutionPhase::Succeeded
    })
    .await;
    let v2 = put(&client, &versioned, "32").await.expect("a version id");
    assert_ne!(v1, v2);
    let second = wait_execution(&f, "web", "v2 succeeds", |e| {
        e.revision == v2 && e.phase == ExecutionPhase::Succeeded
    })
    .await;
    assert_ne!(first.id, second.id);
    let stack = f.stacks().get("web-dev-app").await.unwrap();
    let body = stack.spec.template.body.clone().unwrap_or_default();
    assert!(body.contains("Default: 32"), "the child deploys v2's content: {body}");

    // The same version is not run again; the object is asked for once per poll.
    let heads_before = f.operator.metric("stackpilot_aws_calls_total", &["HeadObject"]).await;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(4 * POLL_SECONDS)).await;
    let heads = f.operator.metric("stackpilot_aws_calls_total", &["HeadObject"]).await - heads_before;
    let window = started.elapsed().as_secs_f64();
    let most = 2.0 * (window / POLL_SECONDS as f64 + 1.0);
    assert!(
        heads <= most,
        "{heads} HeadObject calls in {window:.1} s for two pipelines"
    );
    assert!(heads >= 2.0, "still polled: {heads} HeadObject calls in {window:.1} s");
    let gets = f.operator.metric("stackpilot_aws_calls_total", &["GetObject"]).await;
    assert_eq!(gets, 2.0, "one GetObject per new version");
    let status = pipelines(&f).get("web").await.unwrap().status.unwrap();
    assert_eq!(status.execution_count, 2);
    println!("s3 source: {heads} HeadObject in {window:.1} s (2 pipelines, poll {POLL_SECONDS} s), {gets} GetObject");
    f.finish().await;
}
