//! The observe step: which reads a reconcile makes (chosen by pure,
//! unit-tested functions from the last status and what was found), the
//! reads themselves, and the one place that builds the decision's
//! `Observed`, for production and tests alike.

use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use crate::api::{DriftState, ExecutionState, OperationAction, Stack, StackSpec, StackStatus};
use crate::aws::{Action, AwsTarget, ChangeSetDescription, CloudFormation, StackDescription, StackEvent, StackState};
use crate::runtime::error::Result;

use super::context::StackContext;
use super::decide::drift;
use super::directory::Look;
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
    /// Through the shared paged bulk read of the account and region: on the
    /// poll interval when settled, at most one in-flight poll old otherwise.
    Shared(Look),
}

/// The reads to make before the stack is seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirstReads {
    pub stack: StackRead,
    /// A drift detection run to look up.
    pub drift_detection: Option<String>,
}

/// Bad input and suspended objects make no AWS calls at all; everything
/// else goes through the shared bulk read, settled stacks on the poll
/// interval, anything in flight (or deleting) from a fresher one.
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
        StackRead::Shared(Look::Settled)
    } else if never_reached_aws(previous) && previous.stack_status.is_none() && !deleting {
        StackRead::Shared(Look::New)
    } else {
        StackRead::Shared(Look::InFlight)
    };
    let drift_detection = previous
        .drift
        .as_ref()
        .filter(|d| !deleting && d.status == DriftState::Checking)
        .and_then(|d| d.detection_id.clone());
    FirstReads { stack, drift_detection }
}

/// The intent is recorded before every AWS write that can create something
/// (see `Step::needs_intent`), so with no operation, no change set, no stack
/// id and nothing applied, this object created nothing.
pub fn never_reached_aws(previous: &StackStatus) -> bool {
    previous.stack_id.is_none()
        && previous.operation.is_none()
        && previous.change_set.is_none()
        && previous.applied.is_none()
        && previous.superseded_change_sets.is_empty()
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
    pub schedule: drift::Schedule<'a>,
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
    // A change set recorded as executed was finished: not read again (AWS
    // deletes it after a successful execution anyway).
    let pending_change_set = previous
        .change_set
        .as_ref()
        .filter(|c| !c.execution_status.is_some_and(ExecutionState::was_executed));
    let name = op
        .and_then(|o| o.change_set_name.clone())
        .or_else(|| pending_change_set.map(|c| c.name.clone()));
    // While CloudFormation runs the change set, the stack's status is all
    // there is to know; the change set is read before and after. An
    // UpdateStack standing in for an empty change set never needs it again,
    // nor an execution seen to leave the status it started from (a stack
    // under review, or one seen busy since), which has run.
    let seen_running = previous.stack_status.as_deref().is_some_and(|s| {
        matches!(
            classify(&StackState::parse(s)),
            Lifecycle::Review | Lifecycle::Busy { .. }
        )
    }) && !matches!(lifecycle, Lifecycle::Review | Lifecycle::Busy { .. });
    let executing = op.is_some_and(|o| {
        o.action == OperationAction::UpdateStack
            || (o.action == OperationAction::ExecuteChangeSet
                && (matches!(lifecycle, Lifecycle::Busy { .. }) || seen_running))
    });
    let change_set = name.filter(|_| !i.deleting && !executing && (op.is_some() || !applied_current));
    // Events are read when something may have failed: they say which
    // resource and why. A failed or rolled-back stack is checked when its
    // status moved under an operation of ours (or a delete), and every poll
    // while it stays failed. A finished update is always checked (LocalStack
    // reports some failed updates as UPDATE_COMPLETE; the events tell); a
    // finished create that is CREATE_COMPLETE needs none.
    let moved = previous.stack_status.as_deref() != Some(found.status.as_str());
    let failed = !matches!(
        lifecycle,
        Lifecycle::Settled { .. } | Lifecycle::Review | Lifecycle::Busy { .. }
    );
    let rolled_back = matches!(
        lifecycle,
        Lifecycle::Settled {
            last_update_failed: true
        }
    );
    // A change set of ours not recorded as executed, on a stack that moved:
    // it ran, and the record of it was lost (see `decide::change_sets`).
    let unrecorded_run = pending_change_set.is_some() && moved;
    let finished = (unrecorded_run
        || op.is_some_and(|o| {
            o.action == OperationAction::ExecuteChangeSet || o.action == OperationAction::UpdateStack
        }))
        && matches!(lifecycle, Lifecycle::Settled { .. });
    let created = found.status == StackState::CreateComplete;
    let ours = op.is_some() || pending_change_set.is_some() || i.deleting;
    let events = failed || (finished && !created) || (rolled_back && ours && moved);
    let settled_and_applied =
        matches!(lifecycle, Lifecycle::Settled { .. }) && previous.operation.is_none() && applied_current;
    let template = !i.deleting
        && settled_and_applied
        && drift::starts_now(i.spec, previous.drift.as_ref(), i.requested, i.schedule, i.now);
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
    /// Why drift detection is not asked for at this endpoint now (it said
    /// it does not offer it), if so.
    pub drift_unsupported: Option<String>,
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
        drift_unsupported: ctx.unsupported.missing(target, Action::DetectStackDrift),
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
        StackRead::Shared(look) => ctx.directory.stack(target, cfn, name, look).await?.0,
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

/// When the Stack was created (long ago if it does not say).
pub fn created(stack: &Stack) -> Timestamp {
    stack
        .meta()
        .creation_timestamp
        .as_ref()
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
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
        created: created(stack),
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
        drift_unsupported: reads.drift_unsupported.as_deref(),
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
        assert_eq!(
            first_reads(&settled, &suspended, true, false).stack,
            StackRead::Shared(Look::InFlight)
        );
        let new = StackStatus::default();
        assert_eq!(
            first_reads(&new, &spec, false, true).stack,
            StackRead::Shared(Look::New)
        );
        assert_eq!(
            first_reads(&new, &spec, true, true).stack,
            StackRead::Shared(Look::InFlight),
            "a delete always looks"
        );
    }

    #[test]
    fn settled_stacks_are_looked_at_on_the_poll_interval_and_in_flight_ones_sooner() {
        let spec = StackSpec::default();
        let settled = status("UPDATE_COMPLETE", None);
        assert_eq!(
            first_reads(&settled, &spec, false, true).stack,
            StackRead::Shared(Look::Settled)
        );
        let in_flight = status("UPDATE_COMPLETE", Some(OperationAction::ExecuteChangeSet));
        assert_eq!(
            first_reads(&in_flight, &spec, false, true).stack,
            StackRead::Shared(Look::InFlight)
        );
        let busy = status("UPDATE_IN_PROGRESS", None);
        assert_eq!(
            first_reads(&busy, &spec, false, true).stack,
            StackRead::Shared(Look::InFlight)
        );
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

    /// Follow-up inputs at the epoch, neither deleting nor asked to.
    fn inputs<'a>(
        previous: &'a StackStatus,
        spec: &'a StackSpec,
        desired: &'a std::result::Result<DesiredStack, Problem>,
    ) -> FollowUpInputs<'a> {
        FollowUpInputs {
            previous,
            spec,
            desired,
            deleting: false,
            requested: None,
            schedule: drift::Schedule {
                uid: "u",
                created: Timestamp::UNIX_EPOCH,
            },
            now: Timestamp::UNIX_EPOCH,
        }
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
    fn an_executed_change_set_is_not_read_when_the_next_one_is_planned() {
        let desired = Err(Problem::stalled("X", ""));
        let spec = StackSpec::default();
        let mut previous = status("UPDATE_COMPLETE", None);
        previous.change_set = Some(crate::api::ChangeSetSummary {
            name: "cs-g1".into(),
            execution_status: Some(ExecutionState::ExecuteComplete),
            ..Default::default()
        });
        let inputs = inputs(&previous, &spec, &desired);
        assert_eq!(follow_ups(&inputs, &found(StackState::UpdateComplete)).change_set, None);
        // One still waiting (for approval) is read.
        let mut pending = previous.clone();
        pending.change_set.as_mut().unwrap().execution_status = Some(ExecutionState::Available);
        let waiting = FollowUpInputs {
            previous: &pending,
            ..inputs
        };
        assert_eq!(
            follow_ups(&waiting, &found(StackState::UpdateComplete))
                .change_set
                .as_deref(),
            Some("cs-g1")
        );
    }

    #[test]
    fn the_change_set_is_read_around_an_execution_and_events_only_after_a_failure() {
        let spec = StackSpec {
            drift: crate::api::DriftSpec {
                interval: Some("0".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let desired = Err(Problem::stalled("X", ""));
        let previous = status("UPDATE_COMPLETE", Some(OperationAction::ExecuteChangeSet));
        let inputs = inputs(&previous, &spec, &desired);
        let running = follow_ups(&inputs, &found(StackState::UpdateInProgress));
        assert_eq!(
            running,
            FollowUps::default(),
            "nothing but the stack while CloudFormation runs it"
        );
        let done = follow_ups(&inputs, &found(StackState::UpdateComplete));
        assert_eq!(done.change_set.as_deref(), Some("cs"), "did it run at all?");
        assert!(
            done.events,
            "a finished update is checked: LocalStack calls some failed ones complete"
        );
        let rolled_back = follow_ups(&inputs, &found(StackState::UpdateRollbackComplete));
        assert!(rolled_back.events, "a rolled-back execution is explained");
        // Seen running since the execute: it ran, the change set is not read again.
        let seen = status("UPDATE_IN_PROGRESS", Some(OperationAction::ExecuteChangeSet));
        let after_seen = FollowUpInputs {
            previous: &seen,
            ..inputs
        };
        let ran = follow_ups(&after_seen, &found(StackState::UpdateComplete));
        assert_eq!((ran.change_set, ran.events), (None, true));
        let review = status("REVIEW_IN_PROGRESS", Some(OperationAction::ExecuteChangeSet));
        let created = FollowUpInputs {
            previous: &review,
            ..inputs
        };
        assert_eq!(
            follow_ups(&created, &found(StackState::CreateComplete)),
            FollowUps::default()
        );
        let not_yet = follow_ups(&created, &found(StackState::ReviewInProgress));
        assert_eq!(
            not_yet.change_set.as_deref(),
            Some("cs"),
            "still under review: did the execute get through?"
        );
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
