//! What the status says: Ready (the latest revision passed every stage),
//! Reconciling, Stalled (a failed or stopped execution, or a bad spec),
//! ApprovalRequired; history trimmed to `executionHistoryLimit`; the
//! snapshots still needed; and when to look again.

use super::super::plan::{ActionPhase, ExecutionPhase, Note, Observed, Plan, SourceObserved};
use super::approval;
use crate::runtime::conditions::{self, APPROVAL_REQUIRED, ConditionUpdate, Kstatus, READY, Truth};

/// Finishes the status after the execution moved.
pub fn conclude(o: &Observed, plan: &mut Plan) {
    let limit = usize::try_from(o.spec.execution_history_limit.max(0)).unwrap_or(0);
    plan.status.history.truncate(limit);
    keep_snapshots(plan);
    summarise(o, plan);
    approval_condition(o, plan);
    let running = plan
        .status
        .current_execution
        .as_ref()
        .is_some_and(|e| !e.phase.is_finished());
    if matches!(o.source, SourceObserved::Problem { .. }) {
        plan.requeue_after(o.timing.source_retry);
    }
    if running {
        plan.requeue_after(o.timing.in_flight);
    }
    plan.requeue_after(o.timing.resync);
}

/// The spec cannot run: Stalled until it is fixed; nothing moves meanwhile.
pub fn invalid_spec(o: &Observed, problems: &[String], plan: &mut Plan) {
    let message = format!("the spec cannot run: {}", problems.join("; "));
    let before = conditions::find(&plan.status.conditions, READY).map(|c| (c.reason.clone(), c.message.clone()));
    if before != Some(("InvalidSpec".into(), message.clone())) {
        plan.note(Note::warning("InvalidSpec", message.clone()));
    }
    kstatus(o, plan).stalled("InvalidSpec", &message);
    keep_snapshots(plan);
}

fn kstatus<'p>(o: &Observed, plan: &'p mut Plan) -> Kstatus<'p> {
    Kstatus {
        conditions: &mut plan.status.conditions,
        generation: o.generation,
        now: o.now,
    }
}

/// Lists the snapshots the status still refers to.
pub fn keep_snapshots(plan: &mut Plan) {
    let status = &plan.status;
    let mut keep: Vec<String> = status
        .current_execution
        .iter()
        .map(|e| e.hash.clone())
        .chain(status.queued_revisions.iter().map(|r| r.hash.clone()))
        .chain(status.passed_stages.iter().map(|p| p.revision.hash.clone()))
        .collect();
    keep.sort();
    keep.dedup();
    plan.keep_snapshots = keep;
}

fn summarise(o: &Observed, plan: &mut Plan) {
    let source_problem = match o.source {
        SourceObserved::Problem { reason, message } => Some((reason.clone(), message.clone())),
        SourceObserved::Found(_) => None,
    };
    let up_to_date = plan.status.queued_revisions.is_empty()
        && match (&plan.status.current_execution, &plan.status.latest_source) {
            (Some(e), Some(latest)) => e.hash == latest.hash && e.revision == latest.revision,
            _ => false,
        };
    let before = conditions::find(&plan.status.conditions, READY).map(|c| c.reason.clone());
    let Some(execution) = plan.status.current_execution.clone() else {
        let (reason, message) =
            source_problem.unwrap_or_else(|| ("NoRevision".into(), "waiting for a source revision".into()));
        if before.as_deref() != Some(reason.as_str()) && reason != "NoRevision" {
            plan.note(Note::warning(reason.clone(), message.clone()));
        }
        kstatus(o, plan).waiting(&reason, &message);
        return;
    };
    let about = format!("execution {} (revision {})", execution.id, execution.revision);
    let stage = execution.stage.clone().unwrap_or_default();
    if execution.phase.is_finished()
        && let Some((reason, problem)) = &source_problem
    {
        if before.as_deref() != Some(reason.as_str()) {
            plan.note(Note::warning(reason.clone(), problem.clone()));
        }
        kstatus(o, plan).waiting(reason, &format!("the source cannot be read: {problem}"));
        return;
    }
    let mut k = kstatus(o, plan);
    if !execution.phase.is_finished() {
        let source = source_problem
            .as_ref()
            .map(|(_, m)| format!(" (the source cannot be read: {m})"))
            .unwrap_or_default();
        let waiting_approval = execution
            .actions
            .iter()
            .any(|a| a.phase == ActionPhase::WaitingForApproval);
        let retrying: Vec<&str> = execution
            .actions
            .iter()
            .filter(|a| a.phase == ActionPhase::Retrying)
            .map(|a| a.action.as_str())
            .collect();
        let running: Vec<&str> = execution
            .actions
            .iter()
            .filter(|a| a.phase == ActionPhase::InProgress)
            .map(|a| a.action.as_str())
            .collect();
        match execution.phase {
            ExecutionPhase::Stopping => k.progressing("Stopping", &format!("{about} is stopping{source}")),
            ExecutionPhase::RollingBack => k.progressing(
                "RollingBack",
                &format!(
                    "{about} rolls stage {stage} back: {}{source}",
                    execution.message.unwrap_or_default()
                ),
            ),
            _ if waiting_approval => k.waiting(
                "WaitingForApproval",
                &format!("{about} waits for approval in stage {stage}{source}"),
            ),
            _ if running.is_empty()
                && execution
                    .message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("waiting to enter")) =>
            {
                k.waiting(
                    "TransitionDisabled",
                    &format!("{about} is {}{source}", execution.message.unwrap_or_default()),
                )
            }
            _ if !retrying.is_empty() => k.waiting(
                "Retrying",
                &format!("{about} retries {} in stage {stage}{source}", retrying.join(", ")),
            ),
            _ => k.progressing(
                "Executing",
                &format!("{about} runs stage {stage}: {}{source}", running.join(", ")),
            ),
        }
        return;
    }
    let message = execution.message.clone().unwrap_or_default();
    match execution.phase {
        ExecutionPhase::Succeeded if up_to_date => {
            k.ready("Succeeded", &format!("revision {} passed every stage ({about})", execution.revision))
        }
        ExecutionPhase::Failed => k.stalled(
            "ExecutionFailed",
            &format!(
                "{about} failed: {message}. Retry it with `stackpilot pipeline retry {} {}` (or --all), or push a new revision",
                o.name, execution.id
            ),
        ),
        ExecutionPhase::Stopped => k.stalled(
            "ExecutionStopped",
            &format!(
                "{about} {message}. Retry it with `stackpilot pipeline retry {} {}`, or push a new revision",
                o.name, execution.id
            ),
        ),
        _ => k.progressing("Executing", &format!("{about} is {:?}", execution.phase)),
    }
}

fn approval_condition(o: &Observed, plan: &mut Plan) {
    let waiting = plan
        .status
        .current_execution
        .as_ref()
        .and_then(|e| approval::waiting_message(o, e));
    let ignored = plan
        .status
        .requests
        .iter()
        .filter(|r| r.outcome == super::super::plan::RequestOutcome::Ignored)
        .filter(|r| r.annotation.ends_with("/approve") || r.annotation.ends_with("/reject"))
        .map(|r| r.message.clone())
        .next_back();
    let update = match waiting {
        Some(mut message) => {
            if let Some(ignored) = ignored {
                message.push_str(&format!(". Last request: {ignored}"));
            }
            ConditionUpdate::new(APPROVAL_REQUIRED, Truth::True, "WaitingForApproval", message)
        }
        None => ConditionUpdate::new(APPROVAL_REQUIRED, Truth::False, "NoApprovalPending", ""),
    };
    conditions::set(&mut plan.status.conditions, update, o.generation, o.now);
}
