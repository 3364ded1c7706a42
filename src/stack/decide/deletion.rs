//! Deleting a Stack: the deletion policy, waiting for CloudFormation, and
//! a failed delete.

use crate::api::{DeleteFailureAction, DeletionPolicy};
use crate::runtime::conditions;

use super::super::plan::{
    Lifecycle, Note, Observed, Plan, Step, classify, client_token, delete_stack, reason_of, report,
};
use super::ownership::{Ownership, ownership};
use super::stack_events::{explain, failures_since, record_failures};

pub(super) fn decide_delete(o: &Observed, plan: &mut Plan) {
    let name = o.stack_name;
    if o.spec.deletion_policy == DeletionPolicy::Retain {
        plan.notes.push(Note::normal(
            "StackRetained",
            format!("deletionPolicy is Retain: stack {name} is left in AWS"),
        ));
        plan.release = true;
        return;
    }
    let Some(stack) = o.stack.filter(|s| classify(&s.status) != Lifecycle::Deleted) else {
        plan.notes
            .push(Note::normal("StackDeleted", format!("stack {name} is deleted")));
        plan.release = true;
        return;
    };
    if let Ownership::Foreign(_) = ownership(o, stack) {
        plan.notes.push(Note::normal(
            "StackLeftAlone",
            format!("stack {name} was never managed by this object; left in AWS"),
        ));
        plan.release = true;
        return;
    }
    let failures = failures_since(o.new_events, None);
    record_failures(&mut plan.status, &failures);
    match classify(&stack.status) {
        Lifecycle::Busy { deleting: true } => {
            report(o, plan).progressing("Deleting", &format!("CloudFormation is deleting stack {name}"));
            plan.requeue = o.timing.in_flight;
        }
        Lifecycle::Busy { deleting: false } => {
            let message = format!("waiting for {} to finish before deleting stack {name}", stack.status);
            report(o, plan).progressing("Deleting", &message);
            plan.requeue = o.timing.in_flight;
        }
        Lifecycle::DeleteFailed => {
            let why = explain(&failures, name)
                .or_else(|| {
                    plan.status
                        .recent_failures
                        .first()
                        .map(|f| format!("{}: {}", f.logical_id, f.reason))
                })
                .unwrap_or_else(|| reason_of(stack));
            match o.spec.failure_policy.on_delete_failure {
                DeleteFailureAction::RetainFailedResources => {
                    let retain: Vec<String> = plan
                        .status
                        .recent_failures
                        .iter()
                        .filter(|f| f.status == "DELETE_FAILED" && f.logical_id != name)
                        .map(|f| f.logical_id.clone())
                        .collect();
                    let token = delete_token(o, "delete-retain");
                    if failed_again(o, &token) {
                        let message = format!(
                            "deleting stack {name} again, keeping the resources that failed, failed too: {why}. Fix it in AWS and set the annotation stackpilot.dev/reconcile-requested-at to retry"
                        );
                        report(o, plan).stalled("DeleteFailed", &message);
                        return;
                    }
                    plan.notes.push(Note::warning(
                        "DeleteRetainingResources",
                        format!("deleting stack {name} again, keeping the resources that failed: {retain:?}"),
                    ));
                    let message = format!("deleting stack {name}, retaining failed resources");
                    delete_stack(o, plan, &token, retain, "Deleting", &message);
                }
                DeleteFailureAction::Retain => {
                    // A new reconcile request retries once; the failed
                    // delete's operation stays in status to remember which
                    // request was tried.
                    let token = delete_token(o, "delete");
                    let tried = o.previous.operation.as_ref().is_some_and(|op| op.client_token == token);
                    if o.requested.is_some() && !tried {
                        plan.notes.push(Note::normal(
                            "RetryingDelete",
                            format!("deleting stack {name} again, as requested"),
                        ));
                        let message = format!("deleting stack {name} again");
                        delete_stack(o, plan, &token, Vec::new(), "Deleting", &message);
                        return;
                    }
                    let message = format!(
                        "deleting stack {name} failed: {why}. Fix it in AWS and set the annotation stackpilot.dev/reconcile-requested-at to retry, or set spec.failurePolicy.onDeleteFailure: RetainFailedResources"
                    );
                    report(o, plan).stalled("DeleteFailed", &message);
                }
            }
        }
        _ => {
            if stack.termination_protection {
                plan.steps.push(Step::SetTerminationProtection { enabled: false });
            }
            let token = delete_token(o, "delete");
            let repeat = o.previous.operation.as_ref().is_some_and(|op| op.client_token == token);
            if !repeat {
                plan.notes
                    .push(Note::normal("Deleting", format!("deleting stack {name}")));
            }
            delete_stack(
                o,
                plan,
                &token,
                Vec::new(),
                "Deleting",
                &format!("deleting stack {name}"),
            );
        }
    }
}

/// One delete token per generation and reconcile request: the same request
/// never deletes twice, a new one may retry a failed delete.
fn delete_token(o: &Observed, step: &str) -> String {
    let attempt = match o.requested {
        Some(requested) => format!("{}-{requested}", o.generation),
        None => o.generation.to_string(),
    };
    client_token(o.uid, step, &attempt)
}

/// The delete sent with `token` ran and the stack is DELETE_FAILED again (or
/// this was already reported): the same token again would be a no-op call
/// every poll. A read right after the call may still show the old failure;
/// that one is sent again, harmlessly.
fn failed_again(o: &Observed, token: &str) -> bool {
    let tried = o.previous.operation.as_ref().is_some_and(|op| op.client_token == token);
    let ran = o.previous.stack_status.as_deref() != Some("DELETE_FAILED");
    let reported = conditions::find(&o.previous.conditions, conditions::STALLED)
        .is_some_and(|c| c.status == "True" && c.reason == "DeleteFailed");
    tried && (ran || reported)
}
