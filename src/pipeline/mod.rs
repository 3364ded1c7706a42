//! The Pipeline controller: stages of deploy, approval, wait and test
//! actions run per source revision. `decide` is the pure heart; the wiring
//! (watches, applying children, creating Jobs, reading the source) calls it.

mod decide;
pub mod plan;

pub use decide::{decide, deploy_revision, environment, upper_snake};
pub use plan::{
    APPROVE_ANNOTATION, ApprovalRequest, ChildFailure, ChildKind, ChildObserved, ChildWrite, JobObserved, Observed,
    Plan, PlannedChanges, REJECT_ANNOTATION, RETRY_ANNOTATION, REVISION_ANNOTATION, RetryRequest, STOP_ANNOTATION,
    Snapshot, SourceObserved, StopRequest, Timing, child_name, execution_id, job_name,
};
