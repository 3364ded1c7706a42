//! What a stack is made from: a template source and its parameters. Shared by
//! `Stack`, `StackDeployment` and `Pipeline`.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where the CloudFormation template comes from. Exactly one of `body`, `url`,
/// `configMapRef` or `sourceRef`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.body) ? 1 : 0) + (has(self.url) ? 1 : 0) + (has(self.configMapRef) ? 1 : 0) + (has(self.sourceRef) ? 1 : 0) == 1").message("exactly one of template.body, template.url, template.configMapRef or template.sourceRef must be set"))]
pub struct TemplateSpec {
    /// The template itself, JSON or YAML. Over 51,200 bytes it is uploaded to
    /// the template bucket of the AwsAccount and passed by URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub body: Option<String>,
    /// An S3 URL of the template (https://<bucket>.s3.<region>.amazonaws.com/<key>).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub url: Option<String>,
    /// A key of a ConfigMap in the same namespace that holds the template. A
    /// change to the ConfigMap updates the stack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<KeyRef>,
    /// A file in the artifact of a Flux source (GitRepository, OCIRepository
    /// or Bucket). Each new artifact revision (`main@sha1:...`) updates the
    /// stack; the revision is recorded as the applied revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<SourceRef>,
}

/// A template (and optionally a parameters file) in the artifact of a Flux
/// source object (`source.toolkit.fluxcd.io/v1`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceRef {
    /// `GitRepository`, `OCIRepository` or `Bucket`.
    pub kind: FluxSourceKind,
    /// Name of the source object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Its namespace; defaults to the object's own. Another namespace is
    /// refused unless the operator runs with `--allow-cross-namespace-sources`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// Path of the template file in the artifact, e.g. `stacks/app.yaml`.
    #[schemars(length(min = 1, max = 1024))]
    pub path: String,
    /// Path of a parameters file in the artifact: a YAML or JSON map of
    /// parameter name to value, or a list of parameters as in `parameters`.
    /// Parameters given in the spec win over the file's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub parameters_file: Option<String>,
}

/// The kinds of Flux source stackpilot reads artifacts from.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
pub enum FluxSourceKind {
    #[default]
    GitRepository,
    #[serde(rename = "OCIRepository")]
    OciRepository,
    Bucket,
}

impl FluxSourceKind {
    pub const ALL: [FluxSourceKind; 3] = [Self::GitRepository, Self::OciRepository, Self::Bucket];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::GitRepository => "GitRepository",
            Self::OciRepository => "OCIRepository",
            Self::Bucket => "Bucket",
        }
    }

    /// The resource name in `source.toolkit.fluxcd.io`.
    pub fn plural(self) -> &'static str {
        match self {
            Self::GitRepository => "gitrepositories",
            Self::OciRepository => "ocirepositories",
            Self::Bucket => "buckets",
        }
    }
}

/// A key in a ConfigMap or Secret of the object's own namespace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef {
    /// Name of the ConfigMap or Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside it.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// One template parameter: a literal `value` or a `valueFrom` reference.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueFrom)").message("a parameter needs exactly one of value or valueFrom"))]
pub struct StackParameter {
    /// The template's parameter name (ParameterKey).
    #[schemars(length(min = 1, max = 255))]
    pub name: String,
    /// A literal value. Do not put secrets here: use `valueFrom.secretKeyRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Where to read the value from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ParameterSource>,
}

/// A parameter value read from the cluster. Exactly one field.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.secretKeyRef) ? 1 : 0) + (has(self.configMapKeyRef) ? 1 : 0) + (has(self.stackOutput) ? 1 : 0) == 1").message("valueFrom needs exactly one of secretKeyRef, configMapKeyRef or stackOutput"))]
pub struct ParameterSource {
    /// A Secret key. The value never appears in status, events or logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeyRef>,
    /// A ConfigMap key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeyRef>,
    /// An output of another Stack in the same namespace; that Stack becomes a
    /// dependency and this one waits until it is Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_output: Option<StackOutputRef>,
}

/// An output of another Stack in the same namespace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StackOutputRef {
    /// Name of the Stack object (not the CloudFormation stack name).
    #[schemars(length(min = 1, max = 253))]
    pub stack: String,
    /// The output key.
    #[schemars(length(min = 1))]
    pub output: String,
}

/// IAM and macro acknowledgements CloudFormation requires for some templates.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum Capability {
    #[serde(rename = "CAPABILITY_IAM")]
    Iam,
    #[serde(rename = "CAPABILITY_NAMED_IAM")]
    NamedIam,
    #[serde(rename = "CAPABILITY_AUTO_EXPAND")]
    AutoExpand,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Iam => "CAPABILITY_IAM",
            Capability::NamedIam => "CAPABILITY_NAMED_IAM",
            Capability::AutoExpand => "CAPABILITY_AUTO_EXPAND",
        }
    }
}

/// A reference to a cluster-scoped `AwsAccount`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountRef {
    /// Name of the AwsAccount.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A reference to an object by name in the same namespace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalRef {
    /// Name of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}
