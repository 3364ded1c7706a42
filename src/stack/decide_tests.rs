//! Table-style tests of the pure Stack decision: no cluster, no AWS, a fixed
//! clock. Each builds an observation and checks steps, conditions and notes.

use std::collections::BTreeMap;

use chrono::TimeZone;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::decide::{Observed, Plan, Step, Timing, decide};
use super::desired::{DesiredStack, InputProblem, ResolvedParameter};
use super::names::{TAG_UID, change_set_name};
use crate::api::{
    Adoption, AppliedRevision, Approval, ChangeSetSummary, CreateFailureAction, DeleteFailureAction, DeletionPolicy,
    FailureRecord, Operation, StackSpec, StackStatus,
};
use crate::aws::{
    ChangeSetDescription, ChangeSetStatus, ExecutionStatus, ResourceChange, StackDescription, StackEvent,
    StackState as Cfn, TemplateSource,
};
use crate::runtime::conditions::{self, APPROVAL_REQUIRED, READY, RECONCILING, STALLED};

const UID: &str = "3f2b5c1e-0000-4000-8000-000000000001";
const NOW: i64 = 1_800_000_000;

fn desired() -> DesiredStack {
    DesiredStack {
        stack_name: "team-a-web".into(),
        template: TemplateSource::Body("Resources:\n  Q: {Type: AWS::SQS::Queue}\n".into()),
        parameters: vec![ResolvedParameter {
            name: "Password".into(),
            value: "s3cret".into(),
            secret: true,
        }],
        tags: BTreeMap::from([(TAG_UID.to_string(), UID.to_string())]),
        capabilities: vec![],
        role_arn: None,
        notification_arns: vec![],
        rollback_triggers: vec![],
        rollback_monitoring_minutes: None,
        termination_protection: false,
        stack_policy: None,
        upload: None,
        deployment_mode: None,
        fingerprint: String::new(),
    }
    .seal("")
}

fn stack(status: Cfn) -> StackDescription {
    StackDescription {
        stack_id: "arn:aws:cloudformation:us-east-1:123456789012:stack/team-a-web/1".into(),
        stack_name: "team-a-web".into(),
        status,
        status_reason: None,
        parameters: vec![],
        tags: BTreeMap::from([(TAG_UID.to_string(), UID.to_string())]),
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

fn change_set(name: &str, status: ChangeSetStatus, execution: ExecutionStatus) -> ChangeSetDescription {
    ChangeSetDescription {
        change_set_id: format!("arn:cs/{name}"),
        change_set_name: name.into(),
        stack_id: None,
        status,
        status_reason: None,
        execution_status: execution,
        changes: vec![ResourceChange {
            action: "Add".into(),
            logical_id: "Q".into(),
            physical_id: None,
            resource_type: "AWS::SQS::Queue".into(),
            replacement: None,
        }],
    }
}

fn failure_event(id: &str, second: i64, logical: &str, status: &str, reason: &str) -> StackEvent {
    StackEvent {
        event_id: id.into(),
        timestamp: chrono::Utc.timestamp_opt(second, 0).unwrap(),
        logical_id: logical.into(),
        physical_id: None,
        resource_type: "AWS::SQS::Queue".into(),
        status: status.into(),
        reason: Some(reason.into()),
    }
}

fn operation(action: &str, change_set: Option<&str>, fingerprint: &str, started: i64) -> Operation {
    Operation {
        action: action.into(),
        change_set_name: change_set.map(str::to_string),
        client_token: "token".into(),
        generation: 1,
        fingerprint: Some(fingerprint.into()),
        started_at: Time(Timestamp::from_second(started).unwrap()),
    }
}

/// One observation with sensible defaults, adjusted per case.
struct Case {
    spec: StackSpec,
    previous: StackStatus,
    desired: Result<DesiredStack, InputProblem>,
    stack: Option<StackDescription>,
    change_set: Option<ChangeSetDescription>,
    events: Vec<StackEvent>,
    approval: Option<String>,
    requested: Option<String>,
    drift: super::drift::DriftObservation,
    live_template: Option<String>,
    deleting: bool,
    now: i64,
}

impl Case {
    fn new() -> Case {
        Case {
            spec: StackSpec {
                region: "us-east-1".into(),
                // Drift detection has tests of its own below.
                drift: crate::api::DriftSpec {
                    interval: Some("0".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
            previous: StackStatus::default(),
            desired: Ok(desired()),
            stack: None,
            change_set: None,
            events: vec![],
            approval: None,
            requested: None,
            drift: Default::default(),
            live_template: None,
            deleting: false,
            now: NOW,
        }
    }

    fn decide(&self) -> Plan {
        decide(&Observed {
            namespace: "team-a",
            name: "web",
            uid: UID,
            generation: 1,
            spec: &self.spec,
            previous: &self.previous,
            desired: &self.desired,
            stack_name: "team-a-web",
            aws_observed: self.desired.is_ok() || self.deleting,
            stack: self.stack.as_ref(),
            change_set: self.change_set.as_ref(),
            new_events: &self.events,
            approval: self.approval.as_deref(),
            requested: self.requested.as_deref(),
            drift: &self.drift,
            live_template: self.live_template.as_deref(),
            deleting: self.deleting,
            now: Timestamp::from_second(self.now).unwrap(),
            timing: Timing::default(),
        })
    }
}

fn fingerprint() -> String {
    desired().fingerprint
}

fn wanted() -> String {
    change_set_name(1, &fingerprint())
}

fn condition<'a>(plan: &'a Plan, type_: &str) -> Option<(&'a str, &'a str, &'a str)> {
    conditions::find(&plan.status.conditions, type_).map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()))
}

fn pending(name: &str, kind: &str) -> ChangeSetSummary {
    ChangeSetSummary {
        name: name.into(),
        change_type: kind.into(),
        generation: 1,
        ..Default::default()
    }
}

#[test]
fn no_stack_starts_a_create_change_set_and_records_the_intent() {
    let plan = Case::new().decide();
    let [Step::CreateChangeSet(request)] = plan.steps.as_slice() else {
        panic!("{:?}", plan.steps)
    };
    assert_eq!(request.change_set_name, wanted());
    assert_eq!(request.change_set_type, crate::aws::ChangeSetType::Create);
    assert_eq!(request.parameters[0].value, "s3cret");
    let op = plan.status.operation.as_ref().expect("intent recorded before the call");
    assert_eq!(op.action, "CreateChangeSet");
    assert_eq!(op.client_token, request.client_token);
    assert_eq!(condition(&plan, READY).unwrap().0, "Unknown");
    assert_eq!(condition(&plan, RECONCILING).unwrap().0, "True");
}

#[test]
fn repeating_a_decision_repeats_the_same_names_and_tokens() {
    let first = Case::new().decide();
    let second = Case::new().decide();
    assert_eq!(
        first.steps, second.steps,
        "a retried reconcile must send the identical request"
    );
}

#[test]
fn secret_values_never_reach_status_or_notes() {
    for plan in [Case::new().decide(), {
        let mut case = Case::new();
        case.spec.changes.approval = Approval::Manual;
        case.previous.change_set = Some(pending(&wanted(), "CREATE"));
        case.stack = Some(stack(Cfn::ReviewInProgress));
        case.change_set = Some(change_set(
            &wanted(),
            ChangeSetStatus::CreateComplete,
            ExecutionStatus::Available,
        ));
        case.decide()
    }] {
        let status = serde_json::to_string(&plan.status).unwrap();
        assert!(!status.contains("s3cret"), "{status}");
        assert!(plan.notes.iter().all(|n| !n.message.contains("s3cret")));
    }
    assert!(
        !format!("{:?}", desired()).contains("s3cret"),
        "Debug redacts Secret values"
    );
}

#[test]
fn an_available_change_set_runs_at_once_with_automatic_approval() {
    let mut case = Case::new();
    case.previous.change_set = Some(pending(&wanted(), "CREATE"));
    case.previous.operation = Some(operation("CreateChangeSet", Some(&wanted()), &fingerprint(), NOW - 5));
    case.stack = Some(stack(Cfn::ReviewInProgress));
    case.change_set = Some(change_set(
        &wanted(),
        ChangeSetStatus::CreateComplete,
        ExecutionStatus::Available,
    ));
    let plan = case.decide();
    assert!(matches!(plan.steps.as_slice(), [Step::ExecuteChangeSet { name, .. }] if *name == wanted()));
    assert_eq!(plan.status.operation.as_ref().unwrap().action, "ExecuteChangeSet");
    let shown = plan.status.change_set.as_ref().unwrap();
    assert_eq!(shown.changes[0].logical_id, "Q");
    assert_eq!(shown.execution_status.as_deref(), Some("AVAILABLE"));
    assert!(
        plan.notes
            .iter()
            .any(|n| n.reason == "ChangeSetExecuting" && n.message.contains("1 Add"))
    );
}

#[test]
fn manual_approval_waits_for_the_exact_change_set() {
    let mut case = Case::new();
    case.spec.changes.approval = Approval::Manual;
    case.previous.change_set = Some(pending(&wanted(), "CREATE"));
    case.stack = Some(stack(Cfn::ReviewInProgress));
    case.change_set = Some(change_set(
        &wanted(),
        ChangeSetStatus::CreateComplete,
        ExecutionStatus::Available,
    ));

    let plan = case.decide();
    assert!(plan.steps.is_empty());
    let (status, _, message) = condition(&plan, APPROVAL_REQUIRED).unwrap();
    assert_eq!(status, "True");
    assert!(
        message.contains(&format!("stackpilot.dev/approve={}", wanted())),
        "{message}"
    );
    assert_eq!(condition(&plan, READY).unwrap().0, "False");
    assert!(plan.notes.iter().any(|n| n.reason == "ApprovalRequired"));

    case.approval = Some("stackpilot-g0-0123456789abcdef".into());
    let plan = case.decide();
    assert!(
        plan.steps.is_empty(),
        "an approval of another change set must not run this one"
    );
    assert!(
        condition(&plan, APPROVAL_REQUIRED)
            .unwrap()
            .2
            .contains("not this change set")
    );

    case.approval = Some(wanted());
    let plan = case.decide();
    assert!(matches!(plan.steps.as_slice(), [Step::ExecuteChangeSet { .. }]));
    assert!(plan.approval_used);
    assert!(condition(&plan, APPROVAL_REQUIRED).is_none());
}

#[test]
fn a_finished_execution_is_recorded_as_applied_and_ready() {
    let mut case = Case::new();
    case.previous.change_set = Some(pending(&wanted(), "CREATE"));
    case.previous.operation = Some(operation("ExecuteChangeSet", Some(&wanted()), &fingerprint(), NOW - 30));
    case.stack = Some(stack(Cfn::CreateComplete));
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    assert!(plan.status.operation.is_none());
    assert_eq!(plan.status.applied.as_ref().unwrap().fingerprint, fingerprint());
    assert_eq!(condition(&plan, READY).unwrap().0, "True");
    assert!(plan.notes.iter().any(|n| n.reason == "ChangeSetExecuted"));
    assert!(plan.notes.iter().any(|n| n.reason == "Ready"));
}

#[test]
fn an_execution_not_yet_started_is_sent_again_with_the_same_token() {
    let mut case = Case::new();
    case.previous.change_set = Some(pending(&wanted(), "UPDATE"));
    case.previous.operation = Some(operation("ExecuteChangeSet", Some(&wanted()), &fingerprint(), NOW - 30));
    case.stack = Some(stack(Cfn::UpdateComplete));
    case.change_set = Some(change_set(
        &wanted(),
        ChangeSetStatus::CreateComplete,
        ExecutionStatus::Available,
    ));
    let plan = case.decide();
    assert!(matches!(plan.steps.as_slice(), [Step::ExecuteChangeSet { token, .. }] if token == "token"));
}

#[test]
fn a_rolled_back_update_stalls_once_and_does_not_retry() {
    let mut case = Case::new();
    case.previous.applied = Some(AppliedRevision {
        generation: 0,
        fingerprint: "old".into(),
    });
    case.previous.change_set = Some(pending(&wanted(), "UPDATE"));
    case.previous.operation = Some(operation("ExecuteChangeSet", Some(&wanted()), &fingerprint(), NOW - 60));
    case.stack = Some(stack(Cfn::UpdateRollbackComplete));
    case.events = vec![failure_event(
        "e1",
        NOW - 20,
        "Q",
        "UPDATE_FAILED",
        "VisibilityTimeout out of range",
    )];
    let plan = case.decide();
    let (status, reason, message) = condition(&plan, STALLED).unwrap();
    assert_eq!((status, reason), ("True", "UpdateFailed"));
    assert!(
        message.contains("Q (AWS::SQS::Queue) UPDATE_FAILED: VisibilityTimeout out of range"),
        "{message}"
    );
    assert_eq!(plan.status.recent_failures.len(), 1);
    assert_eq!(plan.status.last_event_id.as_deref(), Some("e1"));

    // The next reconcile, with nothing new, stays put.
    let mut again = Case::new();
    again.previous = plan.status.clone();
    again.stack = Some(stack(Cfn::UpdateRollbackComplete));
    let plan = again.decide();
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    assert_eq!(condition(&plan, STALLED).unwrap().1, "UpdateFailed");
}

#[test]
fn a_failed_update_reported_as_complete_is_still_a_failure() {
    // LocalStack reports some failed updates as UPDATE_COMPLETE; the events tell.
    let mut case = Case::new();
    case.previous.change_set = Some(pending(&wanted(), "UPDATE"));
    case.previous.operation = Some(operation("ExecuteChangeSet", Some(&wanted()), &fingerprint(), NOW - 60));
    case.stack = Some(stack(Cfn::UpdateComplete));
    case.events = vec![failure_event("e1", NOW - 10, "Q", "UPDATE_FAILED", "boom")];
    let plan = case.decide();
    assert_eq!(condition(&plan, READY).unwrap().1, "UpdateFailed");
    assert!(plan.status.applied.is_none());
}

#[test]
fn a_settled_stack_with_the_spec_applied_is_ready_without_calls() {
    let mut case = Case::new();
    case.previous.applied = Some(AppliedRevision {
        generation: 1,
        fingerprint: fingerprint(),
    });
    case.stack = Some(stack(Cfn::UpdateComplete));
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    assert_eq!(condition(&plan, READY).unwrap().0, "True");
    assert_eq!(plan.requeue, Timing::default().resync);
}

#[test]
fn a_new_spec_supersedes_an_unexecuted_change_set() {
    let mut case = Case::new();
    case.previous.applied = Some(AppliedRevision {
        generation: 0,
        fingerprint: "old".into(),
    });
    case.previous.change_set = Some(pending("stackpilot-g0-aaaaaaaaaaaaaaaa", "UPDATE"));
    case.stack = Some(stack(Cfn::UpdateComplete));
    let plan = case.decide();
    match plan.steps.as_slice() {
        [Step::DeleteChangeSet { name }, Step::CreateChangeSet(request)] => {
            assert_eq!(name, "stackpilot-g0-aaaaaaaaaaaaaaaa");
            assert_eq!(request.change_set_type, crate::aws::ChangeSetType::Update);
        }
        other => panic!("{other:?}"),
    }
    assert!(plan.notes.iter().any(|n| n.reason == "ChangeSetSuperseded"));
}

#[test]
fn an_empty_change_set_is_applied_with_update_stack_and_then_is_success() {
    let mut case = Case::new();
    case.previous.applied = Some(AppliedRevision {
        generation: 0,
        fingerprint: "old".into(),
    });
    case.previous.change_set = Some(pending(&wanted(), "UPDATE"));
    case.stack = Some(stack(Cfn::UpdateComplete));
    let mut empty = change_set(&wanted(), ChangeSetStatus::Failed, ExecutionStatus::Unavailable);
    empty.status_reason = Some(
        "The submitted information didn't contain changes. Submit different information to create a change set.".into(),
    );
    empty.changes.clear();
    case.change_set = Some(empty);
    // What the change set cannot carry (settings, unused parameters,
    // outputs) goes with UpdateStack; the empty change set is deleted.
    let plan = case.decide();
    let [Step::UpdateStack(request), Step::DeleteChangeSet { name }] = plan.steps.as_slice() else {
        panic!("{:?}", plan.steps)
    };
    assert_eq!(name, &wanted());
    assert!(request.client_token.contains("update"), "{}", request.client_token);
    let op = plan.status.operation.as_ref().unwrap();
    assert_eq!(op.action, "UpdateStack");
    assert_eq!(plan.status.applied.as_ref().unwrap().fingerprint, "old", "not yet");
    assert_eq!(condition(&plan, READY).unwrap().0, "Unknown");
    assert_eq!(case.decide().steps.len(), 2, "the same token when repeated");

    // Settled (or nothing to update): applied and Ready, no more calls.
    let mut done = Case::new();
    done.previous = plan.status.clone();
    done.stack = Some(stack(Cfn::UpdateComplete));
    let plan = done.decide();
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    assert_eq!(plan.status.applied.as_ref().unwrap().fingerprint, fingerprint());
    assert!(plan.status.operation.is_none());
    assert_eq!(condition(&plan, READY).unwrap().0, "True");

    // The stack already has every setting and parameter value (a requested
    // reconcile, say): plain success, no UpdateStack.
    let mut same = stack(Cfn::UpdateComplete);
    same.parameters = vec![crate::aws::Parameter {
        key: "Password".into(),
        value: "****".into(),
    }];
    let mut noop = Case::new();
    noop.previous = case.previous.clone();
    noop.stack = Some(same);
    noop.change_set = case.change_set.clone();
    let plan = noop.decide();
    assert!(
        matches!(plan.steps.as_slice(), [Step::DeleteChangeSet { .. }]),
        "{:?}",
        plan.steps
    );
    assert_eq!(plan.status.applied.as_ref().unwrap().fingerprint, fingerprint());
    let (status, _, message) = condition(&plan, READY).unwrap();
    assert_eq!(status, "True");
    assert!(message.contains("no changes"), "{message}");
    // A new notification topic is something the stack does not have.
    let topic = DesiredStack {
        notification_arns: vec!["arn:aws:sns:us-east-1:123456789012:ops".into()],
        ..desired()
    }
    .seal("");
    let name = change_set_name(1, &topic.fingerprint);
    noop.desired = Ok(topic);
    noop.previous.change_set = Some(pending(&name, "UPDATE"));
    if let Some(cs) = noop.change_set.as_mut() {
        cs.change_set_name = name;
    }
    assert!(matches!(noop.decide().steps.first(), Some(Step::UpdateStack(_))));

    // Under Manual approval the update waits for an approval of that change set.
    case.previous.applied = None;
    case.spec.changes.approval = Approval::Manual;
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    assert!(condition(&plan, APPROVAL_REQUIRED).unwrap().2.contains(&wanted()));
    case.approval = Some(wanted());
    let plan = case.decide();
    assert!(matches!(plan.steps.first(), Some(Step::UpdateStack(_))));
    assert!(plan.approval_used);
}

#[test]
fn a_rejected_change_set_stalls_with_the_reason() {
    let mut case = Case::new();
    case.previous.change_set = Some(pending(&wanted(), "CREATE"));
    case.stack = Some(stack(Cfn::ReviewInProgress));
    let mut failed = change_set(&wanted(), ChangeSetStatus::Failed, ExecutionStatus::Unavailable);
    failed.status_reason = Some("Template format error: Unresolved resource dependencies [X]".into());
    case.change_set = Some(failed);
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    let (status, reason, message) = condition(&plan, STALLED).unwrap();
    assert_eq!((status, reason), ("True", "ChangeSetFailed"));
    assert!(message.contains("Unresolved resource dependencies"));
}

#[test]
fn a_failed_create_is_kept_by_default_and_recreated_with_backoff_on_request() {
    let mut case = Case::new();
    case.stack = Some(stack(Cfn::RollbackComplete));
    case.previous.operation = Some(operation("ExecuteChangeSet", Some(&wanted()), &fingerprint(), NOW - 60));
    case.events = vec![failure_event("e1", NOW - 30, "Q", "CREATE_FAILED", "bad property")];
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    let (_, reason, message) = condition(&plan, STALLED).unwrap();
    assert_eq!(reason, "CreateFailed");
    assert!(
        message.contains("bad property") && message.contains("onCreateFailure: Recreate"),
        "{message}"
    );
    assert!(plan.notes.iter().any(|n| n.warning && n.reason == "CreateFailed"));

    // Recreate: wait out the backoff from the last failure, then delete.
    let mut recreate = Case::new();
    recreate.spec.failure_policy.on_create_failure = CreateFailureAction::Recreate;
    recreate.stack = Some(stack(Cfn::RollbackComplete));
    recreate.previous.recent_failures = vec![FailureRecord {
        time: Time(Timestamp::from_second(NOW - 10).unwrap()),
        logical_id: "Q".into(),
        resource_type: None,
        status: "CREATE_FAILED".into(),
        reason: "bad".into(),
    }];
    let plan = recreate.decide();
    assert!(plan.steps.is_empty(), "still in backoff");
    assert!(
        plan.requeue.as_secs() <= 20 && plan.requeue.as_secs() >= 19,
        "{:?}",
        plan.requeue
    );
    recreate.now = NOW + 60;
    let plan = recreate.decide();
    assert!(matches!(plan.steps.as_slice(), [Step::DeleteStack { .. }]));
    assert_eq!(plan.status.operation.as_ref().unwrap().action, "DeleteStack");

    // Once gone, the stack is created again without a "missing" warning.
    let mut gone = Case::new();
    gone.previous = plan.status.clone();
    gone.previous.applied = Some(AppliedRevision::default());
    let plan = gone.decide();
    assert!(matches!(plan.steps.as_slice(), [Step::CreateChangeSet(_)]));
    assert!(plan.notes.iter().all(|n| n.reason != "StackMissing"));
}

#[test]
fn a_stack_deleted_outside_kubernetes_is_recreated_with_a_warning() {
    let mut case = Case::new();
    case.previous.applied = Some(AppliedRevision {
        generation: 1,
        fingerprint: fingerprint(),
    });
    case.previous.stack_id = Some("arn:old".into());
    let plan = case.decide();
    assert!(matches!(plan.steps.as_slice(), [Step::CreateChangeSet(_)]));
    assert!(plan.notes.iter().any(|n| n.warning && n.reason == "StackMissing"));
    assert!(plan.status.applied.is_none());
}

#[test]
fn a_stack_we_did_not_create_is_refused_unless_adopted() {
    let mut foreign = stack(Cfn::CreateComplete);
    foreign.tags.clear();
    let mut case = Case::new();
    case.stack = Some(foreign.clone());
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    let (_, reason, message) = condition(&plan, STALLED).unwrap();
    assert_eq!(reason, "StackNotOwned");
    assert!(message.contains("adoption: Adopt"));

    case.spec.adoption = Adoption::Adopt;
    let plan = case.decide();
    assert!(
        matches!(plan.steps.as_slice(), [Step::CreateChangeSet(r)] if r.change_set_type == crate::aws::ChangeSetType::Update)
    );
    assert!(plan.notes.iter().any(|n| n.reason == "Adopting"));

    // Another object's stack is never taken, even with Adopt.
    foreign.tags.insert(TAG_UID.into(), "someone-else".into());
    case.stack = Some(foreign);
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    assert!(
        condition(&plan, STALLED)
            .unwrap()
            .2
            .contains("managed by another Stack object")
    );
}

/// A refusal must survive the next reconcile, which starts from the status
/// the refusal wrote (found end to end: the stack id used to be recorded,
/// and `ownership` trusts it).
#[test]
fn a_refused_stack_stays_refused_on_the_next_reconcile_and_is_not_deleted() {
    for uid in [None, Some("someone-else")] {
        let mut foreign = stack(Cfn::CreateComplete);
        foreign.tags.clear();
        if let Some(uid) = uid {
            foreign.tags.insert(TAG_UID.into(), uid.into());
        }
        let mut case = Case::new();
        case.spec.adoption = if uid.is_some() {
            Adoption::Adopt
        } else {
            Adoption::Refuse
        };
        case.stack = Some(foreign);
        let first = case.decide();
        assert_eq!(first.status.stack_id, None, "a foreign stack id is not recorded");
        case.previous = first.status;
        let again = case.decide();
        assert!(again.steps.is_empty(), "{uid:?}: {:?}", again.steps);
        assert_eq!(condition(&again, STALLED).unwrap().1, "StackNotOwned");
        case.previous = again.status;
        case.deleting = true;
        let delete = case.decide();
        assert!(delete.release && delete.steps.is_empty(), "{uid:?}: {:?}", delete.steps);
    }
}

#[test]
fn input_problems_make_no_calls_and_say_why() {
    let mut case = Case::new();
    case.desired = Err(InputProblem::stalled(
        "InvalidTemplate",
        "template is neither valid JSON nor valid YAML",
    ));
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    assert_eq!(condition(&plan, STALLED).unwrap().1, "InvalidTemplate");

    case.desired = Err(InputProblem::waiting("DependencyNotReady", "Stack db is not Ready yet"));
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    assert_eq!(condition(&plan, READY).unwrap().1, "DependencyNotReady");
    assert!(condition(&plan, STALLED).is_none());
    assert!(plan.requeue.as_secs() <= 30);
}

#[test]
fn suspend_does_nothing() {
    let mut case = Case::new();
    case.spec.suspend = true;
    case.desired = Err(InputProblem::stalled("NotApplicable", ""));
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    assert_eq!(condition(&plan, READY).unwrap().1, "Suspended");
}

#[test]
fn deletion_follows_the_policy_and_waits_for_aws() {
    let mut case = Case::new();
    case.deleting = true;
    case.spec.deletion_policy = DeletionPolicy::Retain;
    case.stack = Some(stack(Cfn::CreateComplete));
    let plan = case.decide();
    assert!(plan.release && plan.steps.is_empty());

    case.spec.deletion_policy = DeletionPolicy::Delete;
    let plan = case.decide();
    assert!(!plan.release);
    assert!(matches!(plan.steps.as_slice(), [Step::DeleteStack { retain, .. }] if retain.is_empty()));

    case.stack = Some(stack(Cfn::DeleteInProgress));
    let plan = case.decide();
    assert!(plan.steps.is_empty() && !plan.release);

    case.stack = Some(stack(Cfn::UpdateInProgress));
    let plan = case.decide();
    assert!(plan.steps.is_empty(), "never delete while an update runs");

    case.stack = None;
    let plan = case.decide();
    assert!(plan.release);

    let mut foreign = stack(Cfn::CreateComplete);
    foreign.tags.clear();
    case.stack = Some(foreign);
    let plan = case.decide();
    assert!(
        plan.release && plan.steps.is_empty(),
        "a stack we never owned is not deleted"
    );
}

#[test]
fn a_failed_delete_stalls_or_retains_the_failed_resources() {
    let mut case = Case::new();
    case.deleting = true;
    case.stack = Some(stack(Cfn::DeleteFailed));
    case.events = vec![failure_event(
        "e1",
        NOW - 5,
        "Bucket",
        "DELETE_FAILED",
        "bucket not empty",
    )];
    let plan = case.decide();
    assert!(plan.steps.is_empty() && !plan.release);
    let (_, reason, message) = condition(&plan, STALLED).unwrap();
    assert_eq!(reason, "DeleteFailed");
    assert!(message.contains("bucket not empty"));

    case.spec.failure_policy.on_delete_failure = DeleteFailureAction::RetainFailedResources;
    let plan = case.decide();
    assert!(
        matches!(plan.steps.as_slice(), [Step::DeleteStack { retain, .. }] if retain == &vec!["Bucket".to_string()])
    );
    // A read right after the call may still show the old failure: sent again (same token).
    case.previous = plan.status.clone();
    let again = case.decide();
    assert_eq!(again.steps.len(), 1);
    // It ran (DELETE_IN_PROGRESS seen) and failed again: reported, not resent every poll.
    case.previous.stack_status = Some("DELETE_IN_PROGRESS".into());
    let plan = case.decide();
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    let (_, reason, message) = condition(&plan, STALLED).unwrap();
    assert_eq!(reason, "DeleteFailed");
    assert!(
        message.contains("failed too") && message.contains("reconcile-requested-at"),
        "{message}"
    );
    case.previous = plan.status.clone();
    assert!(case.decide().steps.is_empty(), "still held");
    case.requested = Some("retry".into());
    assert_eq!(case.decide().steps.len(), 1, "a new request tries again");
}

#[test]
fn every_stack_status_gives_a_ready_condition() {
    for status in crate::aws::StackState::ALL
        .iter()
        .cloned()
        .chain([Cfn::Unknown("NEW_STATUS".into())])
    {
        for deleting in [false, true] {
            let mut case = Case::new();
            case.deleting = deleting;
            case.previous.applied = Some(AppliedRevision {
                generation: 1,
                fingerprint: fingerprint(),
            });
            case.stack = Some(stack(status.clone()));
            let plan = case.decide();
            assert!(
                plan.release || condition(&plan, READY).is_some(),
                "{status} (deleting: {deleting}) left no Ready condition"
            );
            if !deleting && status.is_in_progress() && status != Cfn::ReviewInProgress {
                assert!(
                    plan.steps.is_empty(),
                    "{status}: nothing may start while CloudFormation works"
                );
                assert_eq!(condition(&plan, RECONCILING).map(|c| c.0), Some("True"), "{status}");
            }
        }
    }
}

#[test]
fn an_out_of_band_change_is_repaired_once_then_reported() {
    let mut case = Case::new();
    case.desired = Ok(DesiredStack {
        parameters: vec![ResolvedParameter {
            name: "Size".into(),
            value: "3".into(),
            secret: false,
        }],
        ..desired()
    }
    .seal(""));
    let fp = case.desired.as_ref().unwrap().fingerprint.clone();
    case.previous.applied = Some(AppliedRevision {
        generation: 1,
        fingerprint: fp,
    });
    let mut changed = stack(Cfn::UpdateComplete);
    changed.parameters = vec![crate::aws::Parameter {
        key: "Size".into(),
        value: "9".into(),
    }];
    changed.tags.insert("added-by-hand".into(), "x".into());
    case.stack = Some(changed.clone());
    let plan = case.decide();
    let (status, reason, message) = condition(&plan, conditions::DRIFTED).unwrap();
    assert_eq!((status, reason), ("True", "ConfigurationDrift"));
    assert!(
        message.contains("\"Size\"") && message.contains("\"added-by-hand\""),
        "{message}"
    );
    assert!(!message.contains('9'), "values are not shown: {message}");
    assert_eq!(plan.status.repairs, 1);
    assert!(plan.status.applied.is_none(), "forces a new change set");
    assert!(plan.notes.iter().any(|n| n.warning && n.reason == "ConfigurationDrift"));

    // If the re-applied stack still differs, it is reported, not fought.
    let mut again = Case::new();
    again.desired = case.desired.clone();
    again.previous = plan.status.clone();
    again.previous.applied = case.previous.applied.clone();
    again.stack = Some(changed);
    let plan = again.decide();
    assert_eq!(condition(&plan, conditions::DRIFTED).unwrap().1, "UnresolvedDrift");
    assert_eq!(plan.status.repairs, 1);
    assert_eq!(condition(&plan, READY).unwrap().0, "True");

    // Masked (NoEcho) values are never counted as drift.
    let mut masked = Case::new();
    masked.desired = case.desired.clone();
    masked.previous.applied = case.previous.applied.clone();
    let mut quiet = stack(Cfn::UpdateComplete);
    quiet.parameters = vec![crate::aws::Parameter {
        key: "Size".into(),
        value: "****".into(),
    }];
    masked.stack = Some(quiet);
    assert!(condition(&masked.decide(), conditions::DRIFTED).is_none());
}

#[test]
fn termination_protection_is_kept_in_sync_and_lifted_for_deletion() {
    let mut case = Case::new();
    case.desired = Ok(DesiredStack {
        termination_protection: true,
        ..desired()
    });
    case.previous.applied = Some(AppliedRevision {
        generation: 1,
        fingerprint: fingerprint(),
    });
    case.stack = Some(stack(Cfn::UpdateComplete));
    let plan = case.decide();
    assert_eq!(plan.steps, vec![Step::SetTerminationProtection { enabled: true }]);
    assert_eq!(condition(&plan, READY).unwrap().0, "True");

    let mut protected = stack(Cfn::UpdateComplete);
    protected.termination_protection = true;
    case.stack = Some(protected);
    assert!(case.decide().steps.is_empty(), "already in sync");

    case.deleting = true;
    let plan = case.decide();
    assert!(matches!(
        plan.steps.as_slice(),
        [
            Step::SetTerminationProtection { enabled: false },
            Step::DeleteStack { .. }
        ]
    ));
}

#[test]
fn a_stack_policy_is_set_after_the_change_it_came_with() {
    let mut case = Case::new();
    let with_policy = DesiredStack {
        stack_policy: Some(r#"{"Statement":[]}"#.into()),
        ..desired()
    }
    .seal("");
    assert_ne!(
        with_policy.fingerprint,
        fingerprint(),
        "a policy change is a new revision"
    );
    let fp = with_policy.fingerprint.clone();
    case.desired = Ok(with_policy);
    let name = change_set_name(1, &fp);
    case.previous.change_set = Some(pending(&name, "UPDATE"));
    case.previous.operation = Some(operation("ExecuteChangeSet", Some(&name), &fp, NOW - 30));
    case.stack = Some(stack(Cfn::UpdateComplete));
    let plan = case.decide();
    assert_eq!(
        plan.steps,
        vec![Step::SetStackPolicy {
            body: r#"{"Statement":[]}"#.into()
        }]
    );
    assert_eq!(condition(&plan, READY).unwrap().0, "True");
}

#[test]
fn a_large_template_is_uploaded_before_the_change_set() {
    let mut case = Case::new();
    case.desired = Ok(DesiredStack {
        upload: Some(super::desired::TemplateUpload {
            bucket: "templates".into(),
            key: "team-a/web/abc.template".into(),
            region: "us-east-1".into(),
        }),
        ..desired()
    });
    let plan = case.decide();
    match plan.steps.as_slice() {
        [Step::UploadTemplate { bucket, key, .. }, Step::CreateChangeSet(_)] => {
            assert_eq!(
                (bucket.as_str(), key.as_str()),
                ("templates", "team-a/web/abc.template")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failed_rollback_is_continued_when_the_policy_says_so() {
    let mut case = Case::new();
    case.stack = Some(stack(Cfn::UpdateRollbackFailed));
    case.events = vec![failure_event("e1", NOW - 5, "Q", "UPDATE_FAILED", "cannot roll back Q")];
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    let (_, reason, message) = condition(&plan, STALLED).unwrap();
    assert_eq!(reason, "UpdateRollbackFailed");
    assert!(
        message.contains("cannot roll back Q") && message.contains("continue-update-rollback"),
        "{message}"
    );

    case.spec.failure_policy.on_update_rollback_failure = crate::api::UpdateRollbackFailureAction::ContinueRollback;
    case.spec.failure_policy.skip_resources = vec!["Q".into()];
    let plan = case.decide();
    assert!(matches!(plan.steps.as_slice(), [Step::ContinueRollback { skip, .. }] if skip == &vec!["Q".to_string()]));
    assert_eq!(plan.status.operation.as_ref().unwrap().action, "ContinueUpdateRollback");
    assert!(plan.notes.iter().any(|n| n.reason == "ContinuingRollback"));

    // When the rollback has finished, the operation is closed.
    let mut done = Case::new();
    done.previous = plan.status.clone();
    done.stack = Some(stack(Cfn::UpdateRollbackComplete));
    let plan = done.decide();
    assert!(
        plan.status
            .operation
            .as_ref()
            .is_none_or(|op| op.action != "ContinueUpdateRollback")
    );
    assert!(plan.notes.iter().any(|n| n.reason == "RollbackContinued"));
}

fn steady() -> Case {
    let mut case = Case::new();
    case.spec.drift.interval = Some("1h".into());
    case.previous.applied = Some(AppliedRevision {
        generation: 1,
        fingerprint: fingerprint(),
    });
    case.stack = Some(stack(Cfn::UpdateComplete));
    case
}

fn detection(
    status: crate::aws::DriftDetectionStatus,
    stack: crate::aws::StackDriftStatus,
) -> crate::aws::DriftDetection {
    crate::aws::DriftDetection {
        detection_id: "d-1".into(),
        status,
        stack_drift_status: stack,
        reason: None,
        drifted_resource_count: Some(1),
        timestamp: chrono::Utc.timestamp_opt(NOW - 5, 0).unwrap(),
    }
}

#[test]
fn drift_detection_starts_when_due_and_not_before() {
    let plan = steady().decide();
    assert_eq!(plan.steps, vec![Step::DetectDrift]);
    let drift = plan.status.drift.as_ref().unwrap();
    assert_eq!(drift.status, "Checking");
    assert_eq!(
        condition(&plan, READY).unwrap().0,
        "True",
        "a drift check does not make the stack unready"
    );

    let mut recent = steady();
    recent.previous.drift = Some(crate::api::DriftReport {
        status: "InSync".into(),
        // Scheduled from our own start time; AWS's checked_at may be skewed.
        started_at: Some(Time(Timestamp::from_second(NOW - 600).unwrap())),
        checked_at: Some(Time(Timestamp::from_second(NOW - 86_400).unwrap())),
        ..Default::default()
    });
    let plan = recent.decide();
    assert!(plan.steps.is_empty(), "checked ten minutes ago, interval one hour");
    assert!(plan.requeue <= std::time::Duration::from_secs(3600));

    recent.now = NOW + 3600;
    assert_eq!(recent.decide().steps, vec![Step::DetectDrift]);

    // A requested reconcile asks for a check now, once per request value.
    let mut asked = steady();
    asked.previous.drift = recent.previous.drift.clone();
    let requested = "2026-11-21T10:00:00Z".to_string();
    let plan = decide(&Observed {
        requested: Some(&requested),
        ..asked_observed(&asked)
    });
    assert_eq!(plan.steps, vec![Step::DetectDrift]);
    assert_eq!(
        plan.status.drift.unwrap().requested.as_deref(),
        Some(requested.as_str())
    );
}

fn asked_observed(case: &Case) -> Observed<'_> {
    Observed {
        namespace: "team-a",
        name: "web",
        uid: UID,
        generation: 1,
        spec: &case.spec,
        previous: &case.previous,
        desired: &case.desired,
        stack_name: "team-a-web",
        aws_observed: true,
        stack: case.stack.as_ref(),
        change_set: None,
        new_events: &[],
        approval: None,
        requested: None,
        drift: &case.drift,
        live_template: None,
        deleting: false,
        now: Timestamp::from_second(case.now).unwrap(),
        timing: Timing::default(),
    }
}

#[test]
fn a_finished_detection_reports_drifted_resources_with_secrets_masked() {
    use crate::aws::{
        DifferenceKind, DriftDetectionStatus, PropertyDifference, ResourceDrift, ResourceDriftStatus, StackDriftStatus,
    };
    let mut case = steady();
    case.previous.drift = Some(crate::api::DriftReport {
        status: "Checking".into(),
        detection_id: Some("d-1".into()),
        started_at: Some(Time(Timestamp::from_second(NOW - 10).unwrap())),
        ..Default::default()
    });
    case.drift.detection = Some(detection(
        DriftDetectionStatus::InProgress,
        StackDriftStatus::NotChecked,
    ));
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    assert_eq!(plan.status.drift.as_ref().unwrap().status, "Checking");
    assert_eq!(plan.requeue, Timing::default().in_flight);

    case.drift.detection = Some(detection(DriftDetectionStatus::Complete, StackDriftStatus::Drifted));
    case.drift.resources = Some(vec![ResourceDrift {
        logical_id: "Q".into(),
        physical_id: Some("queue-1".into()),
        resource_type: "AWS::SQS::Queue".into(),
        drift: ResourceDriftStatus::Modified,
        differences: vec![PropertyDifference {
            path: "/Tags/0/Value".into(),
            expected: "\"s3cret\"".into(),
            actual: "\"changed\"".into(),
            kind: DifferenceKind::NotEqual,
        }],
    }]);
    let plan = case.decide();
    let drift = plan.status.drift.as_ref().unwrap();
    assert_eq!(drift.status, "Drifted");
    assert_eq!(drift.resources[0].logical_id, "Q");
    assert_eq!(
        drift.resources[0].differences[0].expected, "\"****\"",
        "Secret value masked"
    );
    assert_eq!(drift.resources[0].differences[0].actual, "\"changed\"");
    let (status, reason, message) = condition(&plan, conditions::DRIFTED).unwrap();
    assert_eq!((status, reason), ("True", "ResourceDrift"));
    assert!(message.contains("\"Q\""));
    assert!(plan.notes.iter().any(|n| n.warning && n.reason == "ResourceDrift"));
    assert!(!serde_json::to_string(&plan.status).unwrap().contains("s3cret"));
    assert!(!drift.revert_pending, "Report is the default remediation");

    case.spec.drift.remediation = crate::api::DriftRemediation::Revert;
    let plan = case.decide();
    assert!(plan.status.drift.as_ref().unwrap().revert_pending);
    assert!(plan.notes.iter().any(|n| n.reason == "RevertingDrift"));

    // Back in sync: the condition clears with an event.
    let mut clean = steady();
    clean.previous = plan.status.clone();
    clean.previous.drift.as_mut().unwrap().status = "Checking".into();
    clean.drift.detection = Some(detection(DriftDetectionStatus::Complete, StackDriftStatus::InSync));
    clean.drift.resources = Some(vec![]);
    let plan = clean.decide();
    assert_eq!(condition(&plan, conditions::DRIFTED).unwrap().0, "False");
    assert!(plan.notes.iter().any(|n| n.reason == "DriftCleared"));
}

#[test]
fn no_drift_check_while_an_operation_runs_or_when_turned_off() {
    let mut busy = steady();
    busy.stack = Some(stack(Cfn::UpdateInProgress));
    busy.previous.drift = Some(crate::api::DriftReport {
        status: "Checking".into(),
        ..Default::default()
    });
    let plan = busy.decide();
    assert!(plan.steps.is_empty());
    assert_eq!(plan.status.drift.as_ref().unwrap().status, "Skipped");

    let mut off = steady();
    off.spec.drift.interval = Some("0".into());
    assert!(off.decide().steps.is_empty());
}

#[test]
fn an_executed_change_set_without_its_intent_counts_as_applied() {
    // The intent was lost (a crash, or a stale write); AWS shows the change
    // set executed on a settled stack.
    let mut case = Case::new();
    case.previous.change_set = Some(pending(&wanted(), "UPDATE"));
    case.previous.applied = Some(AppliedRevision {
        generation: 0,
        fingerprint: "old".into(),
    });
    case.stack = Some(stack(Cfn::UpdateComplete));
    case.change_set = Some(change_set(
        &wanted(),
        ChangeSetStatus::CreateComplete,
        ExecutionStatus::ExecuteComplete,
    ));
    let plan = case.decide();
    assert!(plan.steps.is_empty());
    assert_eq!(plan.status.applied.as_ref().unwrap().fingerprint, fingerprint());
    assert_eq!(condition(&plan, READY).unwrap().0, "True");
    // While the stack still runs it, it is in progress.
    case.stack = Some(stack(Cfn::UpdateInProgress));
    assert_eq!(condition(&case.decide(), READY).unwrap().0, "Unknown");
}

#[test]
fn a_template_edited_outside_kubernetes_is_reapplied() {
    let mut case = Case::new();
    case.previous.applied = Some(AppliedRevision {
        generation: 1,
        fingerprint: fingerprint(),
    });
    case.stack = Some(stack(Cfn::UpdateComplete));
    case.live_template = Some("Resources:\n  Q: {Type: AWS::SQS::Queue}\n".into());
    assert!(
        case.decide().steps.is_empty(),
        "same template (trailing whitespace aside)"
    );
    case.live_template = Some("Resources:\n  Other: {Type: AWS::SNS::Topic}\n".into());
    let plan = case.decide();
    let (status, reason, message) = condition(&plan, conditions::DRIFTED).unwrap();
    assert_eq!((status, reason), ("True", "ConfigurationDrift"));
    assert!(message.contains("the template"), "{message}");
    assert_eq!(plan.status.repairs, 1);
}

#[test]
fn a_superseded_change_set_is_remembered_until_deleted() {
    // A change set waits for approval; the spec goes back to the applied revision.
    let mut case = Case::new();
    case.spec.changes.approval = Approval::Manual;
    case.previous.applied = Some(AppliedRevision {
        generation: 1,
        fingerprint: fingerprint(),
    });
    case.previous.change_set = Some(pending("stackpilot-g2-aaaaaaaaaaaaaaaa", "UPDATE"));
    case.stack = Some(stack(Cfn::UpdateComplete));
    let plan = case.decide();
    assert_eq!(
        plan.steps,
        vec![Step::DeleteChangeSet {
            name: "stackpilot-g2-aaaaaaaaaaaaaaaa".into()
        }]
    );
    assert_eq!(
        plan.status.superseded_change_sets,
        vec!["stackpilot-g2-aaaaaaaaaaaaaaaa".to_string()]
    );
    assert!(plan.status.change_set.is_none());
    assert!(condition(&plan, APPROVAL_REQUIRED).is_none());

    // After a crash before the delete, the next reconcile deletes it again.
    let mut after_crash = Case::new();
    after_crash.previous = plan.status.clone();
    after_crash.stack = Some(stack(Cfn::UpdateComplete));
    let plan = after_crash.decide();
    assert_eq!(
        plan.steps,
        vec![Step::DeleteChangeSet {
            name: "stackpilot-g2-aaaaaaaaaaaaaaaa".into()
        }]
    );
}

#[test]
fn a_create_past_its_timeout_is_cancelled_then_held_or_recreated() {
    let mut case = Case::new();
    case.spec.timeout_in_minutes = Some(10);
    case.stack = Some(stack(Cfn::CreateInProgress));
    case.previous.operation = Some(operation(
        "ExecuteChangeSet",
        Some(&wanted()),
        &fingerprint(),
        NOW - 300,
    ));
    case.previous.change_set = Some(pending(&wanted(), "CREATE"));
    // Before the deadline: wait, and look again no later than the deadline.
    let plan = case.decide();
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    assert!(plan.requeue.as_secs() <= 5, "{:?}", plan.requeue);
    case.spec.timeout_in_minutes = Some(2);
    let plan = case.decide();
    assert!(plan.requeue.as_secs() <= 5);

    // Past it: the partial stack is deleted, the failure recorded and told.
    case.previous.operation = Some(operation(
        "ExecuteChangeSet",
        Some(&wanted()),
        &fingerprint(),
        NOW - 601,
    ));
    case.spec.timeout_in_minutes = Some(10);
    let cancelled = case.decide();
    let [Step::DeleteStack { token, retain }] = cancelled.steps.as_slice() else {
        panic!("{:?}", cancelled.steps)
    };
    assert!(token.contains("timeout") && retain.is_empty(), "{token}");
    assert_eq!(cancelled.status.operation.as_ref().unwrap().action, "DeleteStack");
    assert_eq!(cancelled.status.recent_failures[0].status, "CREATE_FAILED");
    assert!(
        cancelled.status.recent_failures[0]
            .reason
            .contains("timeoutInMinutes (10)")
    );
    assert!(
        cancelled
            .notes
            .iter()
            .any(|n| n.warning && n.reason == "CreateTimedOut")
    );
    // An update has no timeout, as in CloudFormation.
    case.stack = Some(stack(Cfn::UpdateInProgress));
    assert!(case.decide().steps.is_empty());

    // Gone, under Retain (the default): Stalled, no new create, also the next time.
    let mut gone = Case::new();
    gone.spec.timeout_in_minutes = Some(10);
    gone.previous = cancelled.status.clone();
    let held = gone.decide();
    assert!(held.steps.is_empty(), "{:?}", held.steps);
    let (_, reason, message) = condition(&held, STALLED).unwrap();
    assert_eq!(reason, "CreateTimedOut");
    assert!(message.contains("reconcile-requested-at"), "{message}");
    gone.previous = held.status.clone();
    assert!(gone.decide().steps.is_empty(), "held until the inputs change");
    // New inputs (a spec change or a requested reconcile) try again.
    gone.desired = Ok(DesiredStack {
        capabilities: vec!["CAPABILITY_IAM".into()],
        ..desired()
    }
    .seal(""));
    assert!(matches!(gone.decide().steps.as_slice(), [Step::CreateChangeSet(_)]));

    // Under Recreate: created again once the backoff from the timeout passed.
    let mut recreate = Case::new();
    recreate.spec.timeout_in_minutes = Some(10);
    recreate.spec.failure_policy.on_create_failure = CreateFailureAction::Recreate;
    recreate.previous = cancelled.status.clone();
    let waiting = recreate.decide();
    assert!(waiting.steps.is_empty());
    assert_eq!(condition(&waiting, READY).unwrap().1, "CreateTimedOut");
    recreate.now = NOW + 3600;
    assert!(matches!(recreate.decide().steps.as_slice(), [Step::CreateChangeSet(_)]));
}

#[test]
fn a_retained_failed_delete_is_tried_again_once_per_request() {
    let mut case = Case::new();
    case.deleting = true;
    case.stack = Some(stack(Cfn::DeleteFailed));
    case.previous.operation = Some(operation("DeleteStack", None, "", NOW - 30));
    assert!(case.decide().steps.is_empty(), "no request, no retry");
    case.requested = Some("r1".into());
    let plan = case.decide();
    assert!(matches!(plan.steps.as_slice(), [Step::DeleteStack { retain, .. }] if retain.is_empty()));
    case.previous = plan.status.clone();
    let plan = case.decide();
    assert!(plan.steps.is_empty(), "the same request is not retried twice");
    assert_eq!(condition(&plan, STALLED).unwrap().1, "DeleteFailed");
    assert!(plan.status.operation.is_some());
    case.previous = plan.status.clone();
    assert!(case.decide().steps.is_empty());
    case.requested = Some("r2".into());
    assert_eq!(case.decide().steps.len(), 1);
}

#[test]
fn an_execution_ending_in_a_failed_rollback_marks_its_change_set_failed() {
    for continue_it in [false, true] {
        let mut case = Case::new();
        if continue_it {
            case.spec.failure_policy.on_update_rollback_failure =
                crate::api::UpdateRollbackFailureAction::ContinueRollback;
        }
        case.stack = Some(stack(Cfn::UpdateRollbackFailed));
        case.previous.change_set = Some(pending(&wanted(), "UPDATE"));
        case.previous.operation = Some(operation("ExecuteChangeSet", Some(&wanted()), &fingerprint(), NOW - 30));
        let plan = case.decide();
        let cs = plan.status.change_set.as_ref().unwrap();
        assert_eq!(cs.execution_status.as_deref(), Some("EXECUTE_FAILED"));
        // Once rolled back: Stalled UpdateFailed, not a "cannot be executed" change set.
        let mut done = Case::new();
        done.previous = plan.status.clone();
        done.stack = Some(stack(Cfn::UpdateRollbackComplete));
        let plan = done.decide();
        assert_eq!(condition(&plan, STALLED).unwrap().1, "UpdateFailed", "{continue_it}");
    }
}
