//! When things fail: automatic retries with exponential backoff, a failed
//! stage that fails the execution or first rolls the stage back to the
//! revision that last passed it, and stopping (finish or abandon).

use std::time::Duration;

use super::super::plan::{
    Action, ActionCheck, ActionPhase, ActionStatus, Execution, ExecutionPhase, Note, Observed, OnFailure, Plan,
    RollbackPhase, Stage, StageRollback, Time, action_path, find_stage, later,
};
use super::approval;
use super::deploy::{self, Target};
use super::executions;
use super::variables;

/// The delay before automatic retry number `retry` (1-based): the base,
/// doubled per retry, capped. No jitter: decide is deterministic, and a
/// pipeline's retries are few.
pub fn backoff(o: &Observed, retry: i32) -> Duration {
    let factor = 2u32.saturating_pow(retry.saturating_sub(1).clamp(0, 20) as u32);
    o.timing.retry_base.saturating_mul(factor).min(o.timing.retry_max)
}

/// Records a failed attempt: schedules a retry while the action has retries
/// left (approvals never retry), otherwise fails the action.
pub fn attempt_failed(
    o: &Observed,
    execution_id: &str,
    action: &Action,
    entry: &mut ActionStatus,
    check: ActionCheck,
    plan: &mut Plan,
) {
    let ActionCheck::Failed {
        reason,
        message,
        retryable,
    } = check
    else {
        return;
    };
    let path = action_path(execution_id, &entry.stage, &entry.action);
    if retryable && action.approval.is_none() && entry.retries_used < action.retries {
        entry.retries_used += 1;
        let at = later(o.now, backoff(o, entry.retries_used));
        entry.phase = ActionPhase::Retrying;
        entry.retry_at = Some(Time(at));
        entry.message = Some(format!(
            "attempt {} failed ({reason}): {message}; retry {} of {} at {at}",
            entry.attempts, entry.retries_used, action.retries
        ));
        plan.note(Note::warning(
            "ActionRetrying",
            format!(
                "{path} attempt {} failed ({reason}): {message}; retrying at {at}",
                entry.attempts
            ),
        ));
        plan.requeue_at(o.now, at);
    } else {
        entry.phase = ActionPhase::Failed;
        entry.finished_at = Some(Time(o.now));
        entry.retry_at = None;
        entry.message = Some(format!("{reason}: {message}"));
        plan.note(Note::warning(
            "ActionFailed",
            format!("{path} failed ({reason}): {message}"),
        ));
    }
}

/// Whether a retrying action's backoff is over; asks to look again when not.
pub fn retry_due(o: &Observed, entry: &ActionStatus, plan: &mut Plan) -> bool {
    match &entry.retry_at {
        Some(at) if o.now < at.0 => {
            plan.requeue_at(o.now, at.0);
            false
        }
        _ => true,
    }
}

/// A stage failed: roll it back when asked to and possible, else fail the
/// execution.
pub fn stage_failed(o: &Observed, execution: &mut Execution, stage: &Stage, why: String, plan: &mut Plan) {
    let message = format!("stage {} failed: {why}", stage.name);
    if stage.on_failure == OnFailure::Rollback {
        let pass = plan
            .status
            .passed_stages
            .iter()
            .find(|p| p.stage == stage.name && p.execution != execution.id)
            .cloned();
        match pass {
            Some(pass) => {
                plan.note(Note::warning(
                    "RollbackStarted",
                    format!(
                        "execution {}: {message}; rolling stage {} back to revision {} (execution {})",
                        execution.id, stage.name, pass.revision.revision, pass.execution
                    ),
                ));
                execution.phase = ExecutionPhase::RollingBack;
                execution.message = Some(message);
                execution.rollback = Some(StageRollback {
                    stage: stage.name.clone(),
                    revision: pass.revision,
                    execution: pass.execution,
                    phase: RollbackPhase::InProgress,
                    message: None,
                    started_at: Time(o.now),
                });
                drive_rollback(o, execution, plan);
                return;
            }
            None => {
                let message = format!(
                    "{message}; nothing to roll back to: no earlier execution passed stage {}",
                    stage.name
                );
                executions::finish(o, execution, ExecutionPhase::Failed, message, plan);
                return;
            }
        }
    }
    executions::finish(o, execution, ExecutionPhase::Failed, message, plan);
}

/// Redeploys the failed stage's deploy actions at the revision (and with the
/// variable values) of the execution that last passed it.
pub fn drive_rollback(o: &Observed, execution: &mut Execution, plan: &mut Plan) {
    let Some(rollback) = execution.rollback.clone() else {
        return;
    };
    let failed_because = execution.message.clone().unwrap_or_default();
    let Some(stage) = find_stage(o.spec, &rollback.stage) else {
        executions::finish(o, execution, ExecutionPhase::Failed, failed_because, plan);
        return;
    };
    let values = plan
        .status
        .passed_stages
        .iter()
        .find(|p| p.stage == rollback.stage && p.execution == rollback.execution)
        .map(|p| p.variables.clone())
        .unwrap_or_default();
    let mut running = false;
    let mut failure = None;
    for action in stage.actions.iter().filter(|a| a.deploy.is_some()) {
        let parameters = match variables::resolve(variables::deploy_parameters(action.deploy.as_ref()), &values) {
            Ok((parameters, _)) => parameters,
            Err(problem) => {
                failure.get_or_insert(format!("{}: {problem}", action.name));
                continue;
            }
        };
        let check = deploy::drive(
            o,
            Target {
                stage: &stage.name,
                action,
                revision: &rollback.revision,
                parameters,
                request: format!("{}/rollback", execution.id),
                since: rollback.started_at.0,
            },
            plan,
        );
        match check {
            ActionCheck::Running => running = true,
            ActionCheck::Passed { .. } => {}
            ActionCheck::Failed { message, .. } => {
                failure.get_or_insert(format!("{}: {message}", action.name));
            }
        }
    }
    let state = execution.rollback.as_mut().expect("checked above");
    if let Some(failure) = failure.filter(|_| !running) {
        state.phase = RollbackPhase::Failed;
        state.message = Some(failure.clone());
        let message = format!(
            "{failed_because}; rolling back to revision {} failed too: {failure}",
            rollback.revision.revision
        );
        executions::finish(o, execution, ExecutionPhase::Failed, message, plan);
    } else if !running {
        state.phase = RollbackPhase::Succeeded;
        for entry in execution
            .actions
            .iter_mut()
            .filter(|a| a.stage == rollback.stage && a.phase == ActionPhase::Succeeded)
        {
            let is_deploy = stage
                .actions
                .iter()
                .any(|a| a.name == entry.action && a.deploy.is_some());
            if is_deploy {
                entry.phase = ActionPhase::RolledBack;
                entry.message = Some(format!("rolled back to revision {}", rollback.revision.revision));
            }
        }
        let message = format!(
            "{failed_because}; rolled back to revision {} (execution {})",
            rollback.revision.revision, rollback.execution
        );
        executions::finish(o, execution, ExecutionPhase::Failed, message, plan);
    }
}

/// Stops starting actions; approvals are withdrawn and bakes and pending
/// retries end now. With `abandon`, running deploys and tests are left to
/// themselves and the execution stops at once; without, they finish first.
pub fn stop(o: &Observed, execution: &mut Execution, abandon: bool, why: &str, plan: &mut Plan) {
    approval::withdraw(o, execution, None, why, plan);
    for entry in execution.actions.iter_mut() {
        let running_work = entry.phase == ActionPhase::InProgress && is_work(o, entry);
        let ends_now = matches!(entry.phase, ActionPhase::Retrying | ActionPhase::Pending)
            || (entry.phase == ActionPhase::InProgress && !running_work);
        if ends_now {
            entry.phase = ActionPhase::Stopped;
            entry.finished_at = Some(Time(o.now));
            entry.retry_at = None;
            entry.message = Some(why.to_string());
        } else if running_work && abandon {
            entry.phase = ActionPhase::Abandoned;
            entry.finished_at = Some(Time(o.now));
            entry.message = Some(format!("{why}; left running"));
        }
    }
    if abandon {
        executions::finish(o, execution, ExecutionPhase::Stopped, why.to_string(), plan);
    } else {
        execution.phase = ExecutionPhase::Stopping;
        execution.message = Some(format!("{why}; running actions finish first"));
        plan.note(Note::normal(
            "ExecutionStopping",
            format!("execution {}: {why}; running actions finish first", execution.id),
        ));
    }
}

/// Deploys and tests are work that runs outside the pipeline; approvals
/// and bakes are only waiting.
pub fn is_work(o: &Observed, entry: &ActionStatus) -> bool {
    find_stage(o.spec, &entry.stage)
        .and_then(|s| s.actions.iter().find(|a| a.name == entry.action))
        .is_some_and(|a| a.deploy.is_some() || a.test.is_some())
}
