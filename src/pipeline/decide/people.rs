//! What people ask through annotations: approve, reject, retry, stop. Each
//! request carries an id; the last id handled per annotation is kept in
//! `status.requests`, so a request acts once even though its annotation stays.

use serde::de::DeserializeOwned;

use super::super::plan::{
    APPROVE_ANNOTATION, ActionPhase, ApprovalRequest, ExecutionPhase, HandledRequest, Note, Observed, Plan,
    REJECT_ANNOTATION, RETRY_ANNOTATION, RequestOutcome, RetryRequest, STOP_ANNOTATION, StopRequest, Time, short_hash,
};
use super::{approval, failure};

/// Handles every request not handled yet, in a fixed order: stop, retry,
/// reject, approve.
pub fn handle(o: &Observed, plan: &mut Plan) {
    for annotation in [STOP_ANNOTATION, RETRY_ANNOTATION, REJECT_ANNOTATION, APPROVE_ANNOTATION] {
        let Some(value) = o.annotations.get(annotation) else {
            continue;
        };
        let handled = |plan: &Plan, id: &str| {
            plan.status
                .requests
                .iter()
                .any(|r| r.annotation == annotation && r.id == id)
        };
        let (id, result) = match annotation {
            STOP_ANNOTATION => match read::<StopRequest>(value, |r| &r.id) {
                Ok(r) if handled(plan, &r.id) => continue,
                Ok(r) => (r.id.clone(), stop(o, plan, &r)),
                Err(invalid) => invalid,
            },
            RETRY_ANNOTATION => match read::<RetryRequest>(value, |r| &r.id) {
                Ok(r) if handled(plan, &r.id) => continue,
                Ok(r) => (r.id.clone(), retry(plan, &r)),
                Err(invalid) => invalid,
            },
            _ => match read::<ApprovalRequest>(value, |r| &r.id) {
                Ok(r) if handled(plan, &r.id) => continue,
                Ok(r) => {
                    let mut execution = plan.status.current_execution.take();
                    let approve = annotation == APPROVE_ANNOTATION;
                    let result = approval::decide_request(o, execution.as_mut(), &r, approve, plan);
                    plan.status.current_execution = execution;
                    (r.id.clone(), result)
                }
                Err(invalid) => invalid,
            },
        };
        if handled(plan, &id) {
            continue;
        }
        let (outcome, message) = match result {
            Ok(message) => (RequestOutcome::Applied, message),
            Err(message) => {
                plan.note(Note::warning("RequestIgnored", format!("{annotation}: {message}")));
                (RequestOutcome::Ignored, message)
            }
        };
        plan.status.requests.retain(|r| r.annotation != annotation);
        plan.status.requests.push(HandledRequest {
            annotation: annotation.to_string(),
            id,
            outcome,
            message,
            at: Time(o.now),
        });
    }
}

/// A request read from its annotation; one that does not parse (or has no
/// id) comes back as its own "ignored" result, keyed by a hash of the value
/// so it is reported once.
#[allow(clippy::type_complexity)]
fn read<R: DeserializeOwned>(
    value: &str,
    id_of: impl Fn(&R) -> &String,
) -> Result<R, (String, Result<String, String>)> {
    let problem = match serde_json::from_str::<R>(value) {
        Ok(request) if !id_of(&request).is_empty() => return Ok(request),
        Ok(_) => "the request has no id".to_string(),
        Err(e) => e.to_string(),
    };
    Err((
        format!("invalid-{}", short_hash(&[value], 8)),
        Err(format!("not a valid request ({problem}): {value}")),
    ))
}

fn stop(o: &Observed, plan: &mut Plan, request: &StopRequest) -> Result<String, String> {
    let Some(mut execution) = plan.status.current_execution.take() else {
        return Err(format!(
            "stop of {} ignored: no execution is running",
            request.execution
        ));
    };
    let result = if execution.id != request.execution {
        Err(format!(
            "stop of {} ignored: the current execution is {}",
            request.execution, execution.id
        ))
    } else if !matches!(execution.phase, ExecutionPhase::InProgress | ExecutionPhase::Stopping) {
        Err(format!(
            "stop of {} ignored: it is {:?}, not running",
            request.execution, execution.phase
        ))
    } else {
        let by = request.by.as_deref().unwrap_or("unknown");
        let mut why = format!("stopped by {by}");
        if let Some(reason) = &request.reason {
            why.push_str(&format!(": {reason}"));
        }
        failure::stop(o, &mut execution, request.abandon, &why, plan);
        Ok(format!(
            "execution {} {}",
            request.execution,
            if request.abandon {
                "stopped, running actions abandoned"
            } else {
                "stopping"
            }
        ))
    };
    plan.status.current_execution = Some(execution);
    result
}

fn retry(plan: &mut Plan, request: &RetryRequest) -> Result<String, String> {
    let Some(execution) = plan.status.current_execution.as_mut() else {
        return Err(format!("retry of {} ignored: there is no execution", request.execution));
    };
    if execution.id != request.execution {
        return Err(format!(
            "retry of {} ignored: the current execution is {} (revision {})",
            request.execution, execution.id, execution.revision
        ));
    }
    if !matches!(execution.phase, ExecutionPhase::Failed | ExecutionPhase::Stopped) {
        return Err(format!(
            "retry of {} ignored: it is {:?}; only a failed or stopped execution can be retried",
            request.execution, execution.phase
        ));
    }
    let stage = execution.stage.clone().unwrap_or_default();
    let by = request.by.as_deref().unwrap_or("unknown");
    let scope = if request.all {
        "every action"
    } else {
        "the actions that did not pass"
    };
    for entry in execution
        .actions
        .iter_mut()
        .filter(|a| a.stage == stage && (request.all || a.phase != ActionPhase::Succeeded))
    {
        entry.phase = ActionPhase::Pending;
        entry.retries_used = 0;
        entry.retry_at = None;
        entry.finished_at = None;
        entry.outputs.clear();
        let before = entry.message.take().map(|m| format!(" (was: {m})")).unwrap_or_default();
        entry.message = Some(format!("retried by {by}{before}"));
    }
    execution.phase = ExecutionPhase::InProgress;
    execution.finished_at = None;
    execution.rollback = None;
    execution.message = Some(format!("stage {stage} retried by {by}: {scope}"));
    plan.note(Note::normal(
        "ExecutionRetried",
        format!(
            "execution {}: stage {stage} retried by {by}: {scope}",
            request.execution
        ),
    ));
    Ok(format!(
        "execution {} stage {stage} retried ({scope})",
        request.execution
    ))
}
