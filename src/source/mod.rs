//! Templates from Flux sources (`sourceRef`): the Flux object's artifact is
//! downloaded, checked against its digest, and read in memory; its revision
//! (`main@sha1:...`) becomes the revision of what is deployed. One door for
//! the Stack, StackDeployment and Pipeline controllers.

pub mod archive;
mod download;
pub mod flux;
mod parameters;
pub mod watch;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use hyper::body::Bytes;
use tokio::sync::OnceCell;

use crate::api::{Artifact, SourceRef, StackParameter, TemplateSpec};
use crate::runtime::problem::Problem;

use archive::{ArchiveError, Limits};
use download::{DownloadError, Downloader};

pub use parameters::merge as merge_parameters;

/// Operator-wide rules for Flux sources.
#[derive(Clone, Debug)]
pub struct SourceSettings {
    /// Flux's rule, inverted: a reference to another namespace's source is
    /// refused unless this is set (`--allow-cross-namespace-sources`).
    pub allow_cross_namespace: bool,
    /// Largest artifact downloaded; it may unpack to 4 times as much.
    pub max_artifact_bytes: u64,
}

impl Default for SourceSettings {
    fn default() -> Self {
        Self {
            allow_cross_namespace: false,
            max_artifact_bytes: 50 << 20,
        }
    }
}

/// A template read from a Flux artifact.
#[derive(Clone, Debug, PartialEq)]
pub struct Fetched {
    /// The artifact revision, e.g. `main@sha1:<sha>`.
    pub revision: String,
    pub template: String,
    /// From the parameters file (literal values), if one is named.
    pub parameters: Vec<StackParameter>,
}

/// Archives kept by digest: many objects reading one revision download it once.
const KEPT_ARCHIVES: usize = 16;
/// CloudFormation takes templates up to 1 MB (by URL).
const MAX_FILE_BYTES: u64 = 1_000_000;

pub struct Sources {
    pub settings: SourceSettings,
    downloader: Downloader,
    archives: Mutex<VecDeque<(String, Arc<OnceCell<Bytes>>)>>,
}

impl Sources {
    pub fn new(settings: SourceSettings) -> Self {
        Self {
            settings,
            downloader: Downloader::default(),
            archives: Mutex::new(VecDeque::new()),
        }
    }

    /// The template (and parameters file) `source` names, for an object in
    /// `namespace`. Every refusal is a Problem: nothing half-read is returned.
    pub async fn fetch(&self, client: &kube::Client, source: &SourceRef, namespace: &str) -> Result<Fetched, Problem> {
        let source_namespace = source.namespace.as_deref().unwrap_or(namespace);
        let what = format!("{} {source_namespace}/{}", source.kind.as_str(), source.name);
        if source_namespace != namespace && !self.settings.allow_cross_namespace {
            return Err(Problem::stalled(
                "CrossNamespaceSourceRefused",
                format!(
                    "sourceRef {what} is in another namespace; the operator refuses cross-namespace sources unless started with --allow-cross-namespace-sources"
                ),
            ));
        }
        let bad_path = |e: ArchiveError| Problem::stalled("InvalidSourcePath", format!("sourceRef of {what}: {e}"));
        let path = archive::normalise(&source.path).map_err(bad_path)?;
        let parameters_file = source
            .parameters_file
            .as_deref()
            .map(archive::normalise)
            .transpose()
            .map_err(bad_path)?;

        let object = flux::get(client, source.kind, source_namespace, &source.name).await?;
        let artifact = flux::artifact_of(&what, &object)?;
        let digest = artifact.digest.clone().unwrap_or_default();
        let revision = artifact.revision.clone();
        let at = format!("{what} at {revision}");
        let bytes = self.archive(&artifact.url, &digest, &at).await?;

        let mut wanted = vec![path.as_str()];
        wanted.extend(parameters_file.as_deref());
        let limits = Limits {
            unpacked_bytes: self.settings.max_artifact_bytes.saturating_mul(4),
            file_bytes: MAX_FILE_BYTES,
        };
        // Extraction is CPU work over up to a few MB: off the async threads.
        let wanted_owned: Vec<String> = wanted.iter().map(|s| s.to_string()).collect();
        let mut files = tokio::task::spawn_blocking(move || {
            let wanted: Vec<&str> = wanted_owned.iter().map(String::as_str).collect();
            archive::extract(&bytes, &wanted, limits)
        })
        .await
        .map_err(|e| Problem::waiting("SourceReadFailed", format!("{at}: {e}")))?
        .map_err(|e| archive_problem(&at, e))?;

        let text = |file: &str, content: Vec<u8>| {
            String::from_utf8(content)
                .map_err(|_| Problem::stalled("InvalidTemplate", format!("{file} in {at} is not UTF-8 text")))
        };
        let template = files
            .remove(&path)
            .ok_or_else(|| Problem::stalled("SourcePathNotFound", format!("{at} has no file {path}")))?;
        let template = text(&path, template)?;
        let parameters = match parameters_file {
            None => Vec::new(),
            Some(file) => {
                let content = files.remove(&file).ok_or_else(|| {
                    Problem::stalled("SourcePathNotFound", format!("{at} has no parameters file {file}"))
                })?;
                let content = text(&file, content)?;
                parameters::parse(&content)
                    .map_err(|m| Problem::stalled("InvalidParameters", format!("{file} in {at}: {m}")))?
            }
        };
        Ok(Fetched {
            revision,
            template,
            parameters,
        })
    }

    /// An artifact that names a `sourceRef` turned into a plain one: the
    /// template inline, the file's parameters under the artifact's own, and
    /// the Flux revision as its label. Others are returned as they are.
    pub async fn resolve_artifact(
        &self,
        client: &kube::Client,
        artifact: &Artifact,
        namespace: &str,
    ) -> Result<Artifact, Problem> {
        let Some(source) = &artifact.template.source_ref else {
            return Ok(artifact.clone());
        };
        let fetched = self.fetch(client, source, namespace).await?;
        Ok(Artifact {
            revision: label(&fetched.revision),
            template: TemplateSpec {
                body: Some(fetched.template),
                ..TemplateSpec::default()
            },
            parameters: merge_parameters(fetched.parameters, &artifact.parameters),
            tags: artifact.tags.clone(),
            capabilities: artifact.capabilities.clone(),
        })
    }

    /// The verified archive: from the kept ones, or downloaded once however
    /// many objects ask at the same time.
    async fn archive(&self, url: &str, digest: &str, at: &str) -> Result<Bytes, Problem> {
        let cell = {
            let mut kept = self.archives.lock().expect("archives lock");
            match kept.iter().find(|(d, _)| d == digest) {
                Some((_, cell)) => cell.clone(),
                None => {
                    let cell = Arc::new(OnceCell::new());
                    kept.push_back((digest.to_string(), cell.clone()));
                    if kept.len() > KEPT_ARCHIVES {
                        kept.pop_front();
                    }
                    cell
                }
            }
        };
        let max = self.settings.max_artifact_bytes;
        cell.get_or_try_init(|| async {
            let bytes = self.downloader.get(url, max).await.map_err(|e| match e {
                DownloadError::Failed(m) => Problem::waiting("SourceDownloadFailed", format!("{at}: {m}")),
                DownloadError::Oversize(m) => Problem::stalled("SourceArtifactTooLarge", format!("{at}: {m}")),
            })?;
            archive::verify(&bytes, digest).map_err(|e| archive_problem(at, e))?;
            Ok(bytes)
        })
        .await
        .cloned()
    }
}

fn archive_problem(at: &str, error: ArchiveError) -> Problem {
    let reason = match &error {
        ArchiveError::UnsupportedDigest(_) => "SourceArtifactInvalid",
        ArchiveError::DigestMismatch { .. } => "SourceDigestMismatch",
        ArchiveError::Oversize(_) => "SourceArtifactTooLarge",
        ArchiveError::Corrupt(_) | ArchiveError::Traversal(_) => "SourceArtifactInvalid",
        ArchiveError::InvalidPath(_) => "InvalidSourcePath",
    };
    Problem::stalled(reason, format!("{at}: {error}"))
}

/// A Flux revision as an artifact label (at most 63 characters): a long
/// branch name is cut, the commit kept.
pub fn label(revision: &str) -> String {
    const MAX: usize = 63;
    if revision.len() <= MAX {
        return revision.to_string();
    }
    match revision.rsplit_once('@') {
        Some((reference, commit)) if commit.len() < MAX - 1 => {
            let room = MAX - 1 - commit.len();
            let cut: String = reference.chars().take(room).collect();
            format!("{cut}@{commit}")
        }
        _ => revision.chars().take(MAX).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_revisions_keep_their_commit() {
        let short = "main@sha1:0123456789012345678901234567890123456789";
        assert_eq!(label(short), short);
        let long = format!("feature/a-very-long-branch-name-indeed@sha1:{}", "a".repeat(40));
        let cut = label(&long);
        assert_eq!(cut.len(), 63);
        assert!(cut.ends_with(&format!("@sha1:{}", "a".repeat(40))), "{cut}");
        assert!(cut.starts_with("feature/a-very"), "{cut}");
    }
}
