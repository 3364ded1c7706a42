//! An S3 object as a pipeline's source: its version id is the revision.
//! One HeadObject per pipeline per poll interval (between polls the last
//! answer is reused, however often the pipeline reconciles); the content is
//! read (GetObject of that version) only for a version not taken in yet.
//! The object holds the template (YAML or JSON).

use std::time::Instant;

use kube::ResourceExt;

use crate::account;
use crate::api::{Artifact, Pipeline, S3Source, TemplateSpec};
use crate::aws::s3::ObjectVersion;
use crate::runtime::error::Result;

use super::context::PipelineContext;
use super::observe::{Source, found, problem};
use super::plan::{SourceObserved, SourceRevision};

/// The last HeadObject answer for one pipeline.
pub struct Head {
    /// What was asked: bucket, key, region, account.
    pub asked: String,
    pub at: Instant,
    pub answer: std::result::Result<Option<ObjectVersion>, String>,
}

fn location(s3: &S3Source) -> String {
    format!("s3://{}/{} ({})", s3.bucket, s3.key, s3.region)
}

pub async fn read(ctx: &PipelineContext, pipeline: &Pipeline, namespace: &str, s3: &S3Source) -> Result<Source> {
    let name = pipeline.name_any();
    let account = s3.account_ref.as_ref().map(|a| a.name.as_str());
    let grant = account::grant_for(
        &ctx.tenancy,
        ctx.allow_operator_credentials,
        namespace,
        account,
        &s3.region,
        None,
    )
    .await?;
    let grant = match grant {
        Ok(grant) => grant,
        Err(refusal) => {
            return Ok(problem(
                refusal.reason,
                format!("cannot read {}: {}", location(s3), refusal.message),
            ));
        }
    };
    let key = format!("{namespace}/{name}");
    let asked = format!("{}|{}|{}|{}", s3.bucket, s3.key, s3.region, account.unwrap_or_default());
    let cached = ctx
        .s3_heads
        .lock()
        .expect("s3 heads lock")
        .get(&key)
        .filter(|h| h.asked == asked && h.at.elapsed() < ctx.timing.source_poll)
        .map(|h| h.answer.clone());
    let answer = match cached {
        Some(answer) => answer,
        None => {
            let client = ctx.s3.s3(&grant.target(&name));
            let answer = client.head_object(&s3.bucket, &s3.key).await.map_err(|e| e.to_string());
            let head = Head {
                asked,
                at: Instant::now(),
                answer: answer.clone(),
            };
            ctx.s3_heads.lock().expect("s3 heads lock").insert(key, head);
            answer
        }
    };
    let version = match answer {
        Err(error) => return Ok(problem("SourceUnreadable", format!("{}: {error}", location(s3)))),
        Ok(None) => return Ok(problem("SourceNotFound", format!("{} does not exist", location(s3)))),
        Ok(Some(version)) => version,
    };
    let Some(version_id) = version.version_id.filter(|v| !v.is_empty() && v != "null") else {
        return Ok(problem(
            "SourceNotVersioned",
            format!(
                "{} has no version id: enable versioning on bucket {} (its version id is the revision)",
                location(s3),
                s3.bucket
            ),
        ));
    };
    // Taken in before: the content is kept in a snapshot already.
    let previous = pipeline.status.as_ref().and_then(|s| s.latest_source.clone());
    if let Some(latest) = previous.filter(|l| l.revision == version_id) {
        return Ok(Source {
            observed: SourceObserved::Found(SourceRevision {
                revision: latest.revision,
                hash: latest.hash,
            }),
            artifact: None,
        });
    }
    let client = ctx.s3.s3(&grant.target(&name));
    let bytes = match client.get_object(&s3.bucket, &s3.key, &version_id).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            return Ok(problem(
                "SourceNotFound",
                format!("{} version {version_id} is gone", location(s3)),
            ));
        }
        Err(error) => return Ok(problem("SourceUnreadable", format!("{}: {error}", location(s3)))),
    };
    let Ok(body) = String::from_utf8(bytes) else {
        return Ok(problem(
            "SourceInvalid",
            format!("{} version {version_id} is not a text template", location(s3)),
        ));
    };
    Ok(found(Artifact {
        revision: version_id,
        template: TemplateSpec {
            body: Some(body),
            ..TemplateSpec::default()
        },
        ..Artifact::default()
    }))
}
