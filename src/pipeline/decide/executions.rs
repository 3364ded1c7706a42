//! Executions: a new source revision starts one (or waits in the queue),
//! `Superseded` mode keeps only the newest waiting revision and replaces the
//! running execution at its next stage boundary, `Queued` runs them in
//! order. The same source applied again starts nothing.

use super::super::plan::{
    Execution, ExecutionMode, ExecutionPhase, Note, Observed, Plan, Snapshot, SourceObserved, SourceRevision, Time,
    execution_id,
};
use super::approval;

/// Takes in the observed source: a revision not seen before starts an
/// execution when none runs, or waits.
pub fn take_source(o: &Observed, plan: &mut Plan) {
    let SourceObserved::Found(revision) = o.source else {
        return;
    };
    if plan.status.latest_source.as_ref() == Some(revision) {
        return;
    }
    plan.status.latest_source = Some(revision.clone());
    plan.snapshots.push(Snapshot {
        revision: revision.clone(),
    });
    let running = plan
        .status
        .current_execution
        .as_ref()
        .is_some_and(|e| !e.phase.is_finished());
    if !running && plan.status.queued_revisions.is_empty() {
        start(o, revision.clone(), plan);
        return;
    }
    match o.spec.execution_mode {
        ExecutionMode::Queued => {
            plan.status.queued_revisions.push(revision.clone());
            plan.note(Note::normal(
                "RevisionQueued",
                format!(
                    "revision {} queued ({} waiting)",
                    revision.revision,
                    plan.status.queued_revisions.len()
                ),
            ));
        }
        ExecutionMode::Superseded => {
            for skipped in plan.status.queued_revisions.drain(..) {
                plan.notes.push(Note::normal(
                    "RevisionSkipped",
                    format!(
                        "revision {} skipped: revision {} arrived before it started",
                        skipped.revision, revision.revision
                    ),
                ));
            }
            plan.status.queued_revisions.push(revision.clone());
            plan.note(Note::normal(
                "RevisionWaiting",
                format!(
                    "revision {} supersedes the running execution at its next stage boundary",
                    revision.revision
                ),
            ));
        }
    }
}

/// Starts the next execution for `revision`; the current one moves to history.
pub fn start(o: &Observed, revision: SourceRevision, plan: &mut Plan) {
    plan.status.execution_count += 1;
    let id = execution_id(o.uid, &revision, plan.status.execution_count);
    if let Some(mut previous) = plan.status.current_execution.take() {
        for action in previous.actions.iter_mut() {
            action.outputs.clear();
        }
        plan.status.history.insert(0, previous);
    }
    plan.note(Note::normal(
        "ExecutionStarted",
        format!("execution {id} started for revision {}", revision.revision),
    ));
    plan.status.current_execution = Some(Execution {
        id,
        revision: revision.revision,
        hash: revision.hash,
        phase: ExecutionPhase::InProgress,
        stage: o.spec.stages.first().map(|s| s.name.clone()),
        message: None,
        started_at: Time(o.now),
        finished_at: None,
        rollback: None,
        actions: Vec::new(),
    });
}

/// Starts the oldest waiting revision once the current execution finished.
/// Returns whether one started.
pub fn start_next(o: &Observed, plan: &mut Plan) -> bool {
    let idle = plan
        .status
        .current_execution
        .as_ref()
        .is_none_or(|e| e.phase.is_finished());
    if !idle || plan.status.queued_revisions.is_empty() {
        return false;
    }
    let revision = plan.status.queued_revisions.remove(0);
    start(o, revision, plan);
    true
}

/// The revision that will supersede the running execution, if any.
pub fn superseding(o: &Observed, plan: &Plan) -> Option<SourceRevision> {
    match o.spec.execution_mode {
        ExecutionMode::Superseded => plan.status.queued_revisions.last().cloned(),
        ExecutionMode::Queued => None,
    }
}

/// Ends an execution with a phase and a message, with its Event.
pub fn finish(o: &Observed, execution: &mut Execution, phase: ExecutionPhase, message: String, plan: &mut Plan) {
    execution.phase = phase;
    execution.finished_at = Some(Time(o.now));
    let (reason, warning) = match phase {
        ExecutionPhase::Succeeded => ("ExecutionSucceeded", false),
        ExecutionPhase::Failed => ("ExecutionFailed", true),
        ExecutionPhase::Superseded => ("ExecutionSuperseded", false),
        ExecutionPhase::Stopped => ("ExecutionStopped", false),
        _ => ("ExecutionUpdated", false),
    };
    let text = format!(
        "execution {} (revision {}): {message}",
        execution.id, execution.revision
    );
    execution.message = Some(message);
    plan.note(if warning {
        Note::warning(reason, text)
    } else {
        Note::normal(reason, text)
    });
}

/// Replaces the execution by the newer revision: its waiting approvals are
/// withdrawn, and status and an Event say by which revision.
pub fn supersede(o: &Observed, execution: &mut Execution, by: &SourceRevision, plan: &mut Plan) {
    let why = format!("superseded by revision {}", by.revision);
    approval::withdraw(o, execution, None, &why, plan);
    finish(o, execution, ExecutionPhase::Superseded, why, plan);
}
