//! Stages: an execution enters the stages in order (unless a stage's inbound
//! transition is disabled), runs the actions of the lowest unfinished
//! `runOrder` in parallel, and passes a stage when every action passed.

use std::collections::BTreeSet;

use super::super::plan::{
    Action, ActionCheck, ActionPhase, Execution, ExecutionPhase, Note, Observed, Plan, Stage, StagePass, Time,
    action_entry, action_path, find_action, find_stage,
};
use super::{approval, deploy, executions, failure, test_job, wait};

/// How a stage stands after one look.
enum Outcome {
    /// Actions run; `blocked_on_people` when only approvals are waited on.
    Running {
        blocked_on_people: bool,
    },
    Passed,
    Failed(String),
    Stopped,
}

/// Moves the current execution as far as it can go now.
pub fn drive(o: &Observed, plan: &mut Plan) {
    let Some(mut execution) = plan.status.current_execution.take() else {
        return;
    };
    advance(o, &mut execution, plan);
    plan.status.current_execution = Some(execution);
}

fn advance(o: &Observed, execution: &mut Execution, plan: &mut Plan) {
    for _ in 0..=o.spec.stages.len() * 2 + 2 {
        match execution.phase {
            ExecutionPhase::RollingBack => return failure::drive_rollback(o, execution, plan),
            phase if phase.is_finished() => return,
            _ => {}
        }
        let Some(stage_name) = execution.stage.clone() else {
            return executions::finish(
                o,
                execution,
                ExecutionPhase::Succeeded,
                "passed every stage".into(),
                plan,
            );
        };
        let Some(stage) = find_stage(o.spec, &stage_name) else {
            let message = format!("stage {stage_name} is no longer in the spec");
            return executions::finish(o, execution, ExecutionPhase::Failed, message, plan);
        };
        let entered = execution.actions.iter().any(|a| a.stage == stage_name);
        if !entered {
            if execution.phase == ExecutionPhase::Stopping {
                let message = format!("stopped before stage {stage_name}");
                return executions::finish(o, execution, ExecutionPhase::Stopped, message, plan);
            }
            if let Some(by) = executions::superseding(o, plan) {
                return executions::supersede(o, execution, &by, plan);
            }
            if let Some(disabled) = &stage.transition_disabled {
                let message = format!(
                    "waiting to enter stage {stage_name}: transition disabled: {}",
                    disabled.reason
                );
                if execution.message.as_deref() != Some(message.as_str()) {
                    plan.note(Note::normal(
                        "TransitionDisabled",
                        format!("execution {} {message}", execution.id),
                    ));
                    execution.message = Some(message);
                }
                return;
            }
            execution.message = None;
            plan.note(Note::normal(
                "StageStarted",
                format!("execution {} entered stage {stage_name}", execution.id),
            ));
        }
        match run_stage(o, execution, stage, plan) {
            Outcome::Running { blocked_on_people } => {
                if blocked_on_people && let Some(by) = executions::superseding(o, plan) {
                    executions::supersede(o, execution, &by, plan);
                }
                return;
            }
            Outcome::Passed => {
                record_pass(execution, stage, plan);
                plan.note(Note::normal(
                    "StagePassed",
                    format!("execution {} passed stage {stage_name}", execution.id),
                ));
                let next = o.spec.stages.iter().skip_while(|s| s.name != stage_name).nth(1);
                match next {
                    Some(next) => execution.stage = Some(next.name.clone()),
                    None => {
                        let message = "passed every stage".to_string();
                        return executions::finish(o, execution, ExecutionPhase::Succeeded, message, plan);
                    }
                }
            }
            Outcome::Failed(why) => return failure::stage_failed(o, execution, stage, why, plan),
            Outcome::Stopped => {
                let message = execution.message.clone().unwrap_or_else(|| "stopped".into());
                let message = message.replace("; running actions finish first", "");
                return executions::finish(o, execution, ExecutionPhase::Stopped, message, plan);
            }
        }
    }
}

/// Keeps what a rollback of this stage needs: the revision and the
/// variable values its deploy actions used.
fn record_pass(execution: &Execution, stage: &Stage, plan: &mut Plan) {
    let mut variables = std::collections::BTreeMap::new();
    for action in stage.actions.iter().filter(|a| a.deploy.is_some()) {
        variables.extend(deploy::variables_used(action, execution));
    }
    let pass = StagePass {
        stage: stage.name.clone(),
        execution: execution.id.clone(),
        revision: super::super::plan::SourceRevision {
            revision: execution.revision.clone(),
            hash: execution.hash.clone(),
        },
        variables,
    };
    plan.status.passed_stages.retain(|p| p.stage != stage.name);
    plan.status.passed_stages.push(pass);
}

fn run_stage(o: &Observed, execution: &mut Execution, stage: &Stage, plan: &mut Plan) -> Outcome {
    let orders: BTreeSet<i32> = stage.actions.iter().map(|a| a.run_order).collect();
    for _ in 0..=orders.len() + 1 {
        follow_running(o, execution, stage, plan);
        let entries: Vec<_> = execution.actions.iter().filter(|a| a.stage == stage.name).collect();
        let failed = entries
            .iter()
            .find(|a| a.phase == ActionPhase::Failed)
            .map(|a| format!("action {} failed: {}", a.action, a.message.clone().unwrap_or_default()));
        let stopping = execution.phase == ExecutionPhase::Stopping;
        if failed.is_some() || stopping {
            return wind_down(o, execution, stage, failed, plan);
        }
        let Some(order) =
            orders.iter().copied().find(|order| {
                stage.actions.iter().filter(|a| a.run_order == *order).any(|a| {
                    find_action(execution, &stage.name, &a.name).is_none_or(|e| e.phase != ActionPhase::Succeeded)
                })
            })
        else {
            return Outcome::Passed;
        };
        let group: Vec<&Action> = stage.actions.iter().filter(|a| a.run_order == order).collect();
        let mut started = false;
        for action in &group {
            let startable = match find_action(execution, &stage.name, &action.name) {
                None => true,
                Some(entry) => match entry.phase {
                    ActionPhase::Pending => true,
                    ActionPhase::Retrying => failure::retry_due(o, entry, plan),
                    _ => false,
                },
            };
            if startable {
                start(o, execution, stage, action, plan);
                started = true;
            }
        }
        if !started {
            let blocked_on_people = group.iter().all(|a| {
                find_action(execution, &stage.name, &a.name)
                    .is_some_and(|e| matches!(e.phase, ActionPhase::Succeeded | ActionPhase::WaitingForApproval))
            });
            return Outcome::Running { blocked_on_people };
        }
    }
    Outcome::Running {
        blocked_on_people: false,
    }
}

/// A failed or stopping stage: nothing more starts, approvals are withdrawn,
/// bakes and pending retries end; running deploys and tests finish first.
fn wind_down(
    o: &Observed,
    execution: &mut Execution,
    stage: &Stage,
    failed: Option<String>,
    plan: &mut Plan,
) -> Outcome {
    let why = match &failed {
        Some(_) => format!("stage {} failed", stage.name),
        None => "execution stopped".to_string(),
    };
    approval::withdraw(o, execution, Some(&stage.name), &why, plan);
    let mut work_running = false;
    for entry in execution.actions.iter_mut().filter(|a| a.stage == stage.name) {
        let work = failure::is_work(o, entry);
        match entry.phase {
            ActionPhase::InProgress if work => work_running = true,
            ActionPhase::InProgress | ActionPhase::Retrying | ActionPhase::Pending => {
                entry.phase = ActionPhase::Stopped;
                entry.finished_at = Some(Time(o.now));
                entry.retry_at = None;
                entry.message = Some(why.clone());
            }
            _ => {}
        }
    }
    match failed {
        _ if work_running => Outcome::Running {
            blocked_on_people: false,
        },
        Some(why) => Outcome::Failed(why),
        None => Outcome::Stopped,
    }
}

/// Looks at every running action of the stage and records what changed.
fn follow_running(o: &Observed, execution: &mut Execution, stage: &Stage, plan: &mut Plan) {
    for action in &stage.actions {
        let Some(entry) = find_action(execution, &stage.name, &action.name) else {
            continue;
        };
        let started = entry.started_at.as_ref().map_or(o.now, |t| t.0);
        let check = match entry.phase {
            ActionPhase::InProgress => {
                if action.deploy.is_some() {
                    deploy::check(o, execution, &stage.name, action, entry.attempts, started, plan)
                } else if let Some(wait_action) = &action.wait {
                    wait::check(o, wait_action, started, plan)
                } else if action.test.is_some() {
                    let name = entry.object.clone().unwrap_or_default();
                    test_job::check(o, &name, started, plan)
                } else {
                    continue;
                }
            }
            ActionPhase::WaitingForApproval => match &action.approval {
                Some(approval_action) => approval::check(o, approval_action, started, plan),
                None => continue,
            },
            _ => continue,
        };
        record(o, execution, &stage.name, action, check, plan);
    }
}

/// Records the result of a look at one action.
fn record(o: &Observed, execution: &mut Execution, stage: &str, action: &Action, check: ActionCheck, plan: &mut Plan) {
    let id = execution.id.clone();
    let entry = action_entry(execution, stage, &action.name);
    match check {
        ActionCheck::Running => {}
        ActionCheck::Passed { outputs } => {
            entry.phase = ActionPhase::Succeeded;
            entry.finished_at = Some(Time(o.now));
            entry.retry_at = None;
            entry.message = None;
            entry.outputs = outputs;
            plan.note(Note::normal(
                "ActionSucceeded",
                format!(
                    "{} succeeded (attempt {})",
                    action_path(&id, stage, &action.name),
                    entry.attempts
                ),
            ));
        }
        failed @ ActionCheck::Failed { .. } => {
            if let (Some(_), ActionCheck::Failed { reason, message, .. }) = (&action.approval, &failed) {
                entry.approval = Some(super::super::plan::ApprovalRecord {
                    decision: super::super::plan::ApprovalDecision::TimedOut,
                    by: None,
                    comment: Some(format!("{reason}: {message}")),
                    at: Time(o.now),
                });
            }
            failure::attempt_failed(o, &id, action, entry, failed, plan);
        }
    }
}

/// Starts one attempt of an action.
fn start(o: &Observed, execution: &mut Execution, stage: &Stage, action: &Action, plan: &mut Plan) {
    let attempt = find_action(execution, &stage.name, &action.name).map_or(0, |a| a.attempts) + 1;
    let path = action_path(&execution.id, &stage.name, &action.name);
    let mut object = None;
    let mut check = ActionCheck::Running;
    let mut phase = ActionPhase::InProgress;
    if action.deploy.is_some() {
        check = deploy::check(o, execution, &stage.name, action, attempt, o.now, plan);
        object = Some(super::super::plan::child_name(o.name, &stage.name, &action.name));
    } else if let Some(test) = &action.test {
        object = Some(test_job::start(
            o,
            execution,
            &stage.name,
            &action.name,
            attempt,
            test,
            plan,
        ));
    } else if let Some(wait_action) = &action.wait {
        check = wait::check(o, wait_action, o.now, plan);
    } else if action.approval.is_some() {
        phase = ActionPhase::WaitingForApproval;
    }
    let entry = action_entry(execution, &stage.name, &action.name);
    entry.phase = phase;
    entry.attempts = attempt;
    entry.started_at = Some(Time(o.now));
    entry.finished_at = None;
    entry.retry_at = None;
    entry.message = None;
    entry.object = object;
    entry.approval = None;
    entry.outputs.clear();
    if phase == ActionPhase::WaitingForApproval {
        plan.note(Note::normal("ApprovalRequired", format!("{path} waits for approval")));
    } else {
        plan.note(Note::normal(
            "ActionStarted",
            format!("{path} started (attempt {attempt})"),
        ));
    }
    if let Some(approval_action) = &action.approval {
        check = approval::check(o, approval_action, o.now, plan);
    }
    record(o, execution, &stage.name, action, check, plan);
}
