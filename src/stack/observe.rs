//! The observe step: which reads a reconcile makes (chosen by pure,
//! unit-tested functions from the last status and what was found), the
//! reads themselves, and the one place that builds the decision's
//! `Observed`, for production and tests alike.

use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use crate::api::{DriftState, OperationAction, Stack, StackSpec, StackStatus};
use crate::aws::{AwsTarget, ChangeSetDescription, CloudFormation, StackDescription, StackEvent, StackState};
use crate::runtime::error::Result;

use super::context::StackContext;
use super::decide::drift;
use super::plan::{
    APPROVE_ANNOTATION, DesiredStack, DriftObservation, Lifecycle, Observed, Problem, RECONCILE_REQUESTED_AT,
    REVISION_ANNOTATION, Timing, classify,
};

/// Newest events read when there is no cursor yet.
const EVENT_PAGE: usize = 50;

/// How the stack itself is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackRead {
    /// Not at all: no AWS call for bad input or a suspended object.
    Skip,
    /// From the shared paged bulk read of the account and region.
    Shared,
    /// DescribeStacks of this one stack (an operation in flight).
    Direct,
}

/// The reads to make before the stack is seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirstReads {
    pub stack: StackRead,
    /// A drift detection run to look up.
    pub drift_detection: Option<String>,
}

/// Bad input and suspended objects make no AWS calls at all; settled
/// stacks come from the shared bulk read, anything in flight is read on
/// its own.
pub fn first_reads(previous: &StackStatus, spec: &StackSpec, deleting: bool, desired_ok: bool) -> FirstReads {
    let aws = deleting || (!spec.suspend && desired_ok);
    if !aws {
        return FirstReads {
            stack: StackRead::Skip,
            drift_detection: None,
        };
    }
    let settled = previous
        .stack_status
        .as_deref()
        .is_some_and(|s| matches!(classify(&StackState::parse(s)), Lifecycle::Settled { .. }));
    let stack = if settled && previous.operation.is_none() && !deleting {
        StackRead::Shared
    } else {
        StackRead::Direct
    };
    let drift_detection = previous
        .drift
        .as_ref()
        .filter(|d| !deleting && d.status == DriftState::Checking)
        .and_then(|d| d.detection_id.clone());
    FirstReads { stack, drift_detection }
}

/// The reads that depend on the stack found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FollowUps {
    /// DescribeChangeSet of this change set.
    pub change_set: Option<String>,
    /// Stack events newer than the cursor.
    pub events: bool,
    /// GetTemplate: a drift check starts on a stack that matches its spec,
    /// so the live template is compared too (one call per drift interval).
    pub template: bool,
}

pub struct FollowUpInputs<'a> {
    pub previous: &'a StackStatus,
    pub spec: &'a StackSpec,
    pub desired: &'a std::result::Result<DesiredStack, Problem>,
    pub deleting: bool,
    pub requested: Option<&'a str>,
    pub now: Timestamp,
}

pub fn follow_ups(i: &FollowUpInputs, found: &StackDescription) -> FollowUps {
    let previous = i.previous;
    let lifecycle = classify(&found.status);
    let applied_current = match (i.desired, &previous.applied) {
        (Ok(d), Some(a)) => a.fingerprint == d.fingerprint,
        _ => false,
    };
    let op = previous.operation.as_ref();
    let name = op
        .and_then(|o| o.change_set_name.clone())
        .or_else(|| previous.change_set.as_ref().map(|c| c.name.clone()));
    // While CloudFormation runs the change set, the stack's status is all
    // there is to know; the change set is read before and after. An
    // UpdateStack standing in for an empty change set never needs it again.
    let executing = op.is_some_and(|o| {
        o.action == OperationAction::UpdateStack
            || (o.action == OperationAction::ExecuteChangeSet && matches!(lifecycle, Lifecycle::Busy { .. }))
    });
    let change_set = name.filter(|_| !i.deleting && !executing && (op.is_some() || !applied_current));
    // Events are read when something may have happened: the status moved
    // under an operation of ours, or the stack is failed. An execution that
    // settled is always checked: a fast update can end in the status it
    // started from, and some failures show only in the events.
    let moved = previous.stack_status.as_deref() != Some(found.status.as_str());
    let failed = !matches!(
        lifecycle,
        Lifecycle::Settled { .. } | Lifecycle::Review | Lifecycle::Busy { .. }
    );
    let finished = op
        .is_some_and(|o| o.action == OperationAction::ExecuteChangeSet || o.action == OperationAction::UpdateStack)
        && matches!(lifecycle, Lifecycle::Settled { .. });
    let events = ((op.is_some() || i.deleting) && moved) || failed || finished;
    let settled_and_applied =
        matches!(lifecycle, Lifecycle::Settled { .. }) && previous.operation.is_none() && applied_current;
    let template =
        !i.deleting && settled_and_applied && drift::starts_now(i.spec, previous.drift.as_ref(), i.requested, i.now);
    FollowUps {
        change_set,
        events,
        template,
    }
}

/// What AWS said this reconcile.
#[derive(Debug, Default)]
pub struct AwsReads {
    /// Whether AWS was asked at all.
    pub asked: bool,
    pub stack: Option<StackDescription>,
    pub change_set: Option<ChangeSetDescription>,
    pub events: Vec<StackEvent>,
    pub drift: DriftObservation,
    pub live_template: Option<String>,
}

/// Makes the reads `first_reads` and `follow_ups` choose.
pub async fn read(
    ctx: &StackContext,
    cfn: &dyn CloudFormation,
    target: &AwsTarget,
    name: &str,
    first: &FirstReads,
    inputs: &FollowUpInputs<'_>,
) -> Result<AwsReads> {
    let mut reads = AwsReads {
        asked: first.stack != StackRead::Skip,
        ..Default::default()
    };
    if let Some(id) = &first.drift_detection {
        let detection = cfn.drift_detection_status(id).await?;
        if detection.status != crate::aws::DriftDetectionStatus::InProgress {
            reads.drift.resources = Some(cfn.resource_drifts(name).await?);
        }
        reads.drift.detection = Some(detection);
    }
    reads.stack = match first.stack {
        StackRead::Skip => return Ok(reads),
        StackRead::Shared => ctx.directory.settled_stack(target, cfn, name).await?.0,
        StackRead::Direct => cfn.describe_stack(name).await?,
    };
    let Some(found) = &reads.stack else {
        return Ok(reads);
    };
    let more = follow_ups(inputs, found);
    if let Some(change_set) = &more.change_set {
        reads.change_set = cfn.describe_change_set(name, change_set).await?;
    }
    if more.events {
        let cursor = inputs.previous.last_event_id.as_deref();
        reads.events = cfn.stack_events(&found.stack_id, cursor, EVENT_PAGE).await?;
    }
    if more.template {
        reads.live_template = Some(cfn.get_template(name).await?);
    }
    Ok(reads)
}

/// The decision's view of one Stack: the object, its resolved inputs and
/// what AWS said. The only constructor of `Observed`.
pub fn observed<'a>(
    stack: &'a Stack,
    previous: &'a StackStatus,
    desired: &'a std::result::Result<DesiredStack, Problem>,
    stack_name: &'a str,
    reads: &'a AwsReads,
    now: Timestamp,
    timing: Timing,
) -> Observed<'a> {
    let annotation = |key: &str| stack.annotations().get(key).map(String::as_str);
    Observed {
        namespace: stack.meta().namespace.as_deref().unwrap_or_default(),
        name: stack.meta().name.as_deref().unwrap_or_default(),
        uid: stack.meta().uid.as_deref().unwrap_or_default(),
        generation: stack.meta().generation.unwrap_or(0),
        spec: &stack.spec,
        previous,
        desired,
        stack_name,
        aws_observed: reads.asked,
        stack: reads.stack.as_ref(),
        change_set: reads.change_set.as_ref(),
        new_events: &reads.events,
        approval: annotation(APPROVE_ANNOTATION),
        revision: annotation(REVISION_ANNOTATION)
            .or_else(|| desired.as_ref().ok().and_then(|d| d.source_revision.as_deref())),
        requested: annotation(RECONCILE_REQUESTED_AT),
        drift: &reads.drift,
        live_template: reads.live_template.as_deref(),
        deleting: stack.meta().deletion_timestamp.is_some(),
        now,
        timing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DriftReport, Operation};
    use crate::aws::StackState;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn status(stack_status: &str, operation: Option<OperationAction>) -> StackStatus {
        StackStatus {
            stack_status: Some(stack_status.into()),
            operation: operation.map(|action| Operation {
                action,
                change_set_name: Some("cs".into()),
                client_token: "t".into(),
                generation: 1,
                fingerprint: Some("f".into()),
                revision: None,
                started_at: Time(Timestamp::UNIX_EPOCH),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn bad_input_and_suspended_objects_read_nothing_and_deletes_always_read() {
        let spec = StackSpec::default();
        let settled = status("CREATE_COMPLETE", None);
        assert_eq!(first_reads(&settled, &spec, false, false).stack, StackRead::Skip);
        let suspended = StackSpec {
            suspend: true,
            ..Default::default()
        };
        assert_eq!(first_reads(&settled, &suspended, false, true).stack, StackRead::Skip);
        assert_eq!(first_reads(&settled, &suspended, true, false).stack, StackRead::Direct);
    }

    #[test]
    fn settled_stacks_come_from_the_shared_read_and_in_flight_ones_directly() {
        let spec = StackSpec::default();
        let settled = status("UPDATE_COMPLETE", None);
        assert_eq!(first_reads(&settled, &spec, false, true).stack, StackRead::Shared);
        let in_flight = status("UPDATE_COMPLETE", Some(OperationAction::ExecuteChangeSet));
        assert_eq!(first_reads(&in_flight, &spec, false, true).stack, StackRead::Direct);
        let busy = status("UPDATE_IN_PROGRESS", None);
        assert_eq!(first_reads(&busy, &spec, false, true).stack, StackRead::Direct);
        let mut checking = settled.clone();
        checking.drift = Some(DriftReport {
            status: DriftState::Checking,
            detection_id: Some("d-1".into()),
            ..Default::default()
        });
        assert_eq!(
            first_reads(&checking, &spec, false, true).drift_detection.as_deref(),
            Some("d-1")
        );
        assert_eq!(first_reads(&checking, &spec, true, true).drift_detection, None);
    }

    fn found(state: StackState) -> StackDescription {
        StackDescription {
            stack_id: "arn:aws:cloudformation:us-east-1:1:stack/s/1".into(),
            stack_name: "s".into(),
            status: state,
            status_reason: None,
            parameters: vec![],
            tags: Default::default(),
            outputs: vec![],
            capabilities: vec![],
            role_arn: None,
            notification_arns: vec![],
            rollback_triggers: vec![],
            rollback_monitoring_minutes: None,
            termination_protection: false,
            creation_time: None,
            last_updated_time: None,
        }
    }

    #[test]
    fn the_change_set_is_read_around_an_execution_and_events_when_something_moved() {
        let spec = StackSpec {
            drift: crate::api::DriftSpec {
                interval: Some("0".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let desired = Err(Problem::stalled("X", ""));
        let previous = status("UPDATE_COMPLETE", Some(OperationAction::ExecuteChangeSet));
        let inputs = FollowUpInputs {
            previous: &previous,
            spec: &spec,
            desired: &desired,
            deleting: false,
            requested: None,
            now: Timestamp::UNIX_EPOCH,
        };
        let running = follow_ups(&inputs, &found(StackState::UpdateInProgress));
        assert_eq!(running.change_set, None, "not while CloudFormation runs it");
        assert!(running.events, "the status moved under our operation");
        let done = follow_ups(&inputs, &found(StackState::UpdateComplete));
        assert_eq!(done.change_set.as_deref(), Some("cs"));
        assert!(done.events, "a settled execution is always checked");
        let quiet_previous = status("UPDATE_COMPLETE", None);
        let quiet = FollowUpInputs {
            previous: &quiet_previous,
            ..inputs
        };
        let steady = follow_ups(&quiet, &found(StackState::UpdateComplete));
        assert_eq!(steady, FollowUps::default(), "a steady stack needs nothing more");
        let failed = follow_ups(&quiet, &found(StackState::UpdateRollbackFailed));
        assert!(failed.events);
    }
}
