//! `AwsAccount`: the admin-owned binding of an AWS account to namespaces.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which role to assume in an AWS account, in which regions, for which
/// namespaces, and which CloudFormation service roles they may pass.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[kube(
    group = "stackpilot.dev",
    version = "v1alpha1",
    kind = "AwsAccount",
    status = "AwsAccountStatus",
    shortname = "awsacct",
    category = "stackpilot",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Account","type":"string","jsonPath":".spec.accountId"}"#,
    printcolumn = r#"{"name":"Role","type":"string","priority":1,"jsonPath":".spec.roleArn"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AwsAccountSpec {
    /// The 12-digit account id. Credentials that resolve to another account
    /// are refused.
    #[schemars(regex(pattern = r"^[0-9]{12}$"))]
    pub account_id: String,
    /// Role to assume (STS). Without it the operator's own credentials are
    /// used, which must belong to `accountId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$"))]
    pub role_arn: Option<String>,
    /// External id required by the role's trust policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Regions stacks may use; empty allows every region.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub allowed_regions: Vec<String>,
    /// Namespaces whose objects may use this account. `{}` selects every
    /// namespace; no namespace may use it while this is unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// CloudFormation service role ARNs a Stack may pass (`serviceRoleArn`).
    /// A trailing `*` matches a prefix. Empty allows none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub allowed_service_roles: Vec<String>,
    /// Tags added to every stack in this account (stack tags win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub default_tags: BTreeMap<String, String>,
    /// Bucket for templates over the inline size limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_bucket: Option<TemplateBucket>,
}

/// An S3 bucket that holds large templates.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateBucket {
    /// Bucket name.
    #[schemars(length(min = 3, max = 63))]
    pub name: String,
    /// Key prefix, e.g. `stackpilot/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Bucket region; defaults to the stack's region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// Observed state of an AwsAccount.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsAccountStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready (credentials verified against `accountId`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When the credentials were last verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified: Option<Time>,
}
