//! Flux source objects (`source.toolkit.fluxcd.io/v1`), read as unstructured
//! objects: only `status.artifact` and the Ready condition matter, so no Flux
//! crate is needed and a Flux upgrade cannot break deserialisation.

use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use serde::Deserialize;

use crate::api::FluxSourceKind;
use crate::runtime::problem::Problem;

pub const GROUP: &str = "source.toolkit.fluxcd.io";
pub const VERSION: &str = "v1";

pub fn api_resource(kind: FluxSourceKind) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, kind.as_str()), kind.plural())
}

pub fn api(client: &kube::Client, kind: FluxSourceKind, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &api_resource(kind))
}

/// `status.artifact` of a Flux source.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct FluxArtifact {
    pub url: String,
    /// `main@sha1:<sha>` for a GitRepository, `<tag>@sha256:<digest>` for an
    /// OCIRepository, `sha256:<hex>` for a Bucket.
    pub revision: String,
    /// `sha256:<hex>` of the tarball at `url`.
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub size: Option<i64>,
}

#[derive(Deserialize, Default)]
struct Status {
    #[serde(default)]
    artifact: Option<FluxArtifact>,
    #[serde(default)]
    conditions: Vec<Condition>,
}

#[derive(Deserialize)]
struct Condition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
    #[serde(default)]
    message: String,
}

/// The artifact to use, or why there is none yet. Like Flux's own
/// consumers, the latest artifact is used even while the source is not
/// Ready (a failed fetch of a newer commit keeps the last good one).
pub fn artifact_of(what: &str, object: &DynamicObject) -> Result<FluxArtifact, Problem> {
    let status: Status = object
        .data
        .get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .unwrap_or_default();
    if let Some(artifact) = status.artifact.filter(|a| !a.url.is_empty()) {
        if artifact.digest.as_deref().is_none_or(str::is_empty) {
            return Err(Problem::stalled(
                "SourceArtifactInvalid",
                format!("{what} has an artifact without a digest: refusing to use it unverified"),
            ));
        }
        return Ok(artifact);
    }
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    let why = match ready {
        Some(c) if c.status == "False" && !c.message.is_empty() => format!(": {}", c.message),
        _ => String::new(),
    };
    Err(Problem::waiting(
        "SourceNotReady",
        format!("{what} has no artifact yet{why}"),
    ))
}

/// Reads the source object: `Ok(None)` when it does not exist; a missing
/// Flux CRD is told apart from a missing object.
pub async fn get(
    client: &kube::Client,
    kind: FluxSourceKind,
    namespace: &str,
    name: &str,
) -> Result<DynamicObject, Problem> {
    let what = format!("{} {namespace}/{name}", kind.as_str());
    match api(client, kind, namespace).get(name).await {
        Ok(object) => Ok(object),
        // A missing object's 404 names it; a missing resource type's does not.
        Err(kube::Error::Api(status))
            if status.code == 404 && status.details.as_ref().is_some_and(|d| !d.name.is_empty()) =>
        {
            Err(Problem::waiting("SourceNotFound", format!("{what} not found")))
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Err(Problem::waiting(
            "SourceKindNotInstalled",
            format!(
                "{what}: the API server does not serve {}.{GROUP}/{VERSION}; install Flux's source-controller CRDs",
                kind.plural()
            ),
        )),
        Err(kube::Error::Api(status)) if status.code == 403 => Err(Problem::waiting(
            "Forbidden",
            format!("{what}: the operator may not read it ({})", status.message),
        )),
        Err(error) => Err(Problem::waiting(
            "ReadFailed",
            format!("{what}: could not read from the Kubernetes API: {error}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(status: serde_json::Value) -> DynamicObject {
        let mut object = DynamicObject::new("app", &api_resource(FluxSourceKind::GitRepository));
        object.data = json!({ "status": status });
        object
    }

    #[test]
    fn an_artifact_is_used_even_while_a_newer_fetch_fails() {
        let artifact =
            json!({"url": "http://s/a.tar.gz", "revision": "main@sha1:abc", "digest": "sha256:00", "size": 3});
        let found = artifact_of(
            "GitRepository x/app",
            &object(
                json!({"artifact": artifact, "conditions": [{"type": "Ready", "status": "False", "message": "boom"}]}),
            ),
        )
        .unwrap();
        assert_eq!(found.revision, "main@sha1:abc");
        assert_eq!(found.size, Some(3));
    }

    #[test]
    fn no_artifact_waits_with_flux_own_message() {
        let problem = artifact_of(
            "GitRepository x/app",
            &object(json!({"conditions": [{"type": "Ready", "status": "False", "message": "repository not found"}]})),
        )
        .unwrap_err();
        assert!(problem.transient);
        assert_eq!(problem.reason, "SourceNotReady");
        assert!(problem.message.contains("repository not found"), "{}", problem.message);
        assert!(artifact_of("x", &object(json!(null))).unwrap_err().transient);
    }

    #[test]
    fn an_artifact_without_digest_is_not_trusted() {
        let problem = artifact_of(
            "x",
            &object(json!({"artifact": {"url": "http://s/a.tar.gz", "revision": "r"}})),
        )
        .unwrap_err();
        assert!(!problem.transient);
    }
}
