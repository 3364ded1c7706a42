//! In-memory fake of [`super::CloudFormation`], for reconcile tests and
//! benchmarks, modelling what the emulators do not: asynchronous change sets
//! and stack operations, rollback and failure states, idempotency tokens and
//! injected errors. Cheap: one `std::sync::Mutex` around maps, no sleeps, no
//! wall clock (timestamps come from a counter).
//!
//! Model, in short:
//! - `create_change_set` validates like AWS (template format, undeclared or
//!   missing parameters, IAM capabilities) and computes `changes` by diffing
//!   the template `Resources` by logical id: `Add`, `Remove`, and `Modify` when
//!   a resource's definition differs or it references (`Ref`, `${X}`) a
//!   parameter whose value changed; `Replacement` is `"False"` (`"True"` when
//!   the type changed) unless [`FakeCloudFormation::set_replacement`] says
//!   otherwise. A `Create` change set for a new stack puts it in
//!   `REVIEW_IN_PROGRESS`. An `Update` with identical template, parameters and
//!   tags ends `FAILED` with [`EMPTY_CHANGE_SET_REASON`].
//! - A change set is `CREATE_PENDING` for the first
//!   [`FakeCloudFormation::set_change_set_delay`] `describe_change_set` calls
//!   (default 1), then `CREATE_COMPLETE`/`AVAILABLE` (or `FAILED`).
//! - Executing or deleting starts an operation; each in-progress phase
//!   (`CREATE_IN_PROGRESS`, `ROLLBACK_IN_PROGRESS`, `UPDATE_IN_PROGRESS`,
//!   `UPDATE_COMPLETE_CLEANUP_IN_PROGRESS`, `UPDATE_ROLLBACK_IN_PROGRESS`,
//!   `DELETE_IN_PROGRESS`) is seen by [`FakeCloudFormation::set_operation_steps`]
//!   `describe_stack` calls of that stack (default 1; 0 = synchronous, like
//!   moto). Only `describe_stack` advances time; `stack_events` does not.
//! - Outputs: for each template `Outputs` key `K`, the value is `"<stack>-<K>"`
//!   (description and `Export.Name` are copied when they are plain strings).
//! - Failures are injected per stack name or per logical id (see `fail_*`),
//!   errors per operation with [`ErrorInjection`].
//! - `ClientRequestToken`s of execute, delete and continue-update-rollback are
//!   remembered per stack: the same token again is a no-op success. The same
//!   `ClientToken` and name on `create_change_set` returns the existing change
//!   set.
//! - Bulk read: `describe_all_stacks` pages like AWS (100 stacks per page,
//!   sorted by name), logs one `DescribeStacks` call per page (each page can
//!   be throttled or failed), and gives each stack one `describe_stack`
//!   worth of time.
//! - Update rollback: a failed rollback ([`FakeCloudFormation::fail_update_rollback`])
//!   marks the failed resource `UPDATE_FAILED`; `continue_update_rollback`
//!   retries it (failing again while the failure is configured, unless that
//!   resource is skipped) and ends `UPDATE_ROLLBACK_COMPLETE` with the
//!   previous content.
//! - Drift: [`FakeCloudFormation::set_resource_drift`] changes a resource
//!   behind CloudFormation's back. `detect_stack_drift` snapshots it; the run
//!   is `DETECTION_IN_PROGRESS` for the first
//!   [`FakeCloudFormation::set_drift_detection_delay`] status reads (default
//!   1), then complete, and `resource_drifts` returns that snapshot
//!   (`MODIFIED` and `DELETED` only, 100 per page, one call per page). A
//!   change set with `DeploymentMode::RevertDrift` lists drifted resources as
//!   `Modify` (`Add` when deleted) and executing it clears the drift.
//! - Termination protection blocks `delete_stack`; stack policies are stored
//!   (valid JSON required) but not enforced. `get_template` returns the body
//!   as submitted. The fake is also a [`TemplateStore`](super::TemplateStore): `put_template`
//!   stores the body under its S3 URL, which `TemplateSource::Url` then reads.
//! - Fault rates ([`FakeCloudFormation::set_fault_rates`]) throttle and fail
//!   (HTTP 5xx) fixed fractions of every call, drawn from a seeded sequence.

mod alarms;
mod calls;
mod change_sets;
mod controls;
mod drift;
mod errors;
#[cfg(test)]
mod fixtures;
mod model;
mod operations;
mod phases;
mod provider;
mod s3;
mod template;

pub use alarms::FakeAlarms;
pub use calls::{Action, Call};
pub use errors::{ErrorInjection, FaultCounts, FaultRates, server_error, throttling_error};
pub use provider::{FakeCloudFormation, FakeProvider};
pub use s3::FakeS3;

/// The account every fake stack lives in.
pub const ACCOUNT_ID: &str = "123456789012";
/// What AWS says when an update change set has nothing to do.
pub const EMPTY_CHANGE_SET_REASON: &str =
    "The submitted information didn't contain changes. Submit different information to create a change set.";

/// Stacks per DescribeStacks page, as AWS pages them.
pub const DESCRIBE_STACKS_PAGE: usize = 100;
/// Resource drifts per DescribeStackResourceDrifts page (its maximum).
pub const RESOURCE_DRIFTS_PAGE: usize = 100;
