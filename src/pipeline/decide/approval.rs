//! Approval actions: wait for a person, bound to `<execution>/<stage>/<action>`;
//! approved or rejected with a comment, failed by their timeout, withdrawn
//! when the execution is superseded, stopped or its stage fails.

use k8s_openapi::jiff::Timestamp;

use super::super::plan::{
    APPROVE_ANNOTATION, ActionCheck, ActionPhase, ApprovalAction, ApprovalDecision, ApprovalRecord, ApprovalRequest,
    Execution, Note, Observed, Plan, PlannedChanges, Time, action_path, child_name, find_stage, later, parse_duration,
};

/// Fails the approval when its timeout has passed.
pub fn check(o: &Observed, approval: &ApprovalAction, started: Timestamp, plan: &mut Plan) -> ActionCheck {
    let Some(timeout) = approval.timeout.as_deref().and_then(|t| parse_duration(t).ok()) else {
        return ActionCheck::Running;
    };
    let deadline = later(started, timeout);
    if o.now >= deadline {
        return ActionCheck::failed(
            "ApprovalTimedOut",
            format!(
                "nobody approved within {}",
                approval.timeout.as_deref().unwrap_or_default()
            ),
            false,
        );
    }
    plan.requeue_at(o.now, deadline);
    ActionCheck::Running
}

/// Withdraws every approval of the execution still waiting (in `stage`, or
/// in any stage), saying why.
pub fn withdraw(o: &Observed, execution: &mut Execution, stage: Option<&str>, why: &str, plan: &mut Plan) {
    for entry in execution
        .actions
        .iter_mut()
        .filter(|a| a.phase == ActionPhase::WaitingForApproval && stage.is_none_or(|s| s == a.stage))
    {
        entry.phase = ActionPhase::Withdrawn;
        entry.finished_at = Some(Time(o.now));
        entry.message = Some(format!("approval withdrawn: {why}"));
        entry.approval = Some(ApprovalRecord {
            decision: ApprovalDecision::Withdrawn,
            by: None,
            comment: Some(why.to_string()),
            at: Time(o.now),
        });
        let path = action_path(&execution.id, &entry.stage, &entry.action);
        plan.note(Note::normal(
            "ApprovalWithdrawn",
            format!("approval {path} withdrawn: {why}"),
        ));
        plan.withdrawn_approvals.push(path);
    }
}

/// Applies an approve or reject request to the current execution, or says
/// why it does not apply.
pub fn decide_request(
    o: &Observed,
    execution: Option<&mut Execution>,
    request: &ApprovalRequest,
    approve: bool,
    plan: &mut Plan,
) -> Result<String, String> {
    let verb = if approve { "approval" } else { "rejection" };
    let mut parts = request.target.splitn(3, '/');
    let (Some(id), Some(stage), Some(action)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!(
            "{verb} target {:?} is not <execution>/<stage>/<action>",
            request.target
        ));
    };
    let Some(execution) = execution else {
        return Err(format!(
            "{verb} for {} ignored: no execution is running",
            request.target
        ));
    };
    if execution.id != id {
        return Err(format!(
            "{verb} for {} ignored: it names execution {id}, but the current execution is {} (revision {})",
            request.target, execution.id, execution.revision
        ));
    }
    let Some(entry) = execution
        .actions
        .iter_mut()
        .find(|a| a.stage == stage && a.action == action)
        .filter(|a| a.phase == ActionPhase::WaitingForApproval)
    else {
        return Err(format!(
            "{verb} for {} ignored: that action is not waiting for approval",
            request.target
        ));
    };
    let by = request.by.clone().unwrap_or_else(|| "unknown".into());
    entry.finished_at = Some(Time(o.now));
    entry.approval = Some(ApprovalRecord {
        decision: if approve {
            ApprovalDecision::Approved
        } else {
            ApprovalDecision::Rejected
        },
        by: request.by.clone(),
        comment: request.comment.clone(),
        at: Time(o.now),
    });
    let comment = request.comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default();
    if approve {
        entry.phase = ActionPhase::Succeeded;
        entry.message = Some(format!("approved by {by}{comment}"));
        plan.note(Note::normal(
            "Approved",
            format!("{} approved by {by}{comment}", request.target),
        ));
    } else {
        entry.phase = ActionPhase::Failed;
        entry.message = Some(format!("rejected by {by}{comment}"));
        plan.note(Note::warning(
            "Rejected",
            format!("{} rejected by {by}{comment}", request.target),
        ));
    }
    Ok(format!(
        "{} {}",
        request.target,
        if approve { "approved" } else { "rejected" }
    ))
}

fn summary(planned: &PlannedChanges) -> String {
    format!(
        "{} to add, {} to modify, {} to remove, {} replacements",
        planned.add, planned.modify, planned.remove, planned.replace
    )
}

/// The ApprovalRequired message: what to approve, the approver's message,
/// what comes next (with change-set summaries where children have planned
/// them) and how to answer.
pub fn waiting_message(o: &Observed, execution: &Execution) -> Option<String> {
    let waiting: Vec<_> = execution
        .actions
        .iter()
        .filter(|a| a.phase == ActionPhase::WaitingForApproval)
        .collect();
    if waiting.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    for entry in waiting {
        let path = action_path(&execution.id, &entry.stage, &entry.action);
        let note = find_stage(o.spec, &entry.stage)
            .and_then(|s| s.actions.iter().find(|a| a.name == entry.action))
            .and_then(|a| a.approval.as_ref())
            .and_then(|a| a.message.clone());
        let mut text = format!("{path} (revision {}) waits for approval", execution.revision);
        if let Some(note) = note {
            text.push_str(&format!(": {note}"));
        }
        let next = next_changes(o, &entry.stage, &entry.action);
        if !next.is_empty() {
            text.push_str(&format!(". Next: {}", next.join("; ")));
        }
        text.push_str(&format!(
            ". Approve with `stackpilot approve pipeline/{} -n {}` (or the annotation {APPROVE_ANNOTATION} {{\"id\":..,\"target\":\"{path}\"}})",
            o.name, o.namespace
        ));
        parts.push(text);
    }
    Some(parts.join(". "))
}

/// The deploy actions that follow an approval (later run orders of its
/// stage, then the next stage), with what their children plan.
fn next_changes(o: &Observed, stage: &str, action: &str) -> Vec<String> {
    let Some(index) = o.spec.stages.iter().position(|s| s.name == stage) else {
        return Vec::new();
    };
    let here = &o.spec.stages[index];
    let order = here
        .actions
        .iter()
        .find(|a| a.name == action)
        .map_or(0, |a| a.run_order);
    let mut following: Vec<(&str, &super::super::plan::Action)> = here
        .actions
        .iter()
        .filter(|a| a.run_order > order)
        .map(|a| (here.name.as_str(), a))
        .collect();
    if let Some(next) = o.spec.stages.get(index + 1) {
        following.extend(next.actions.iter().map(|a| (next.name.as_str(), a)));
    }
    following
        .into_iter()
        .filter(|(_, a)| a.deploy.is_some())
        .map(|(stage, a)| {
            let planned = o
                .children
                .get(&child_name(o.name, stage, &a.name))
                .and_then(|c| c.planned.as_ref())
                .map_or_else(|| "no change set planned yet".to_string(), summary);
            format!("deploy {stage}/{}: {planned}", a.name)
        })
        .collect()
}
