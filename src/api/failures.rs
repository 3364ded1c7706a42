//! What a Stack's status keeps about failures: the last few, and the
//! failed creates counted for the recreate backoff.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One failure, from the stack events.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureRecord {
    /// When it happened.
    pub time: Time,
    /// The resource that failed (or the stack itself).
    pub logical_id: String,
    /// Its resource type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// Resource status, e.g. `CREATE_FAILED`.
    pub status: String,
    /// CloudFormation's reason.
    pub reason: String,
}

/// Failed creates in a row, counted once per failed create (not per stack
/// event), for the backoff of `onCreateFailure: Recreate`. Cleared once a
/// create succeeds.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateFailures {
    /// How many creates failed in a row.
    pub count: i64,
    /// When the last failure was seen.
    pub last_failed_at: Time,
    /// The generation the last failed create was made at; a new generation
    /// is tried at once, without waiting out the backoff.
    pub generation: i64,
    /// The `stackpilot.dev/reconcile-requested-at` value then; a new value
    /// is also tried at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<String>,
    /// The first failed resource and CloudFormation's reason.
    pub reason: String,
}
