//! Manual approval of a change set: bound to the change set's name, so a
//! new revision never runs on an old approval.

use crate::api::{Approval, ChangeAction, ChangeSetSummary, OperationAction, Replacement};
use crate::runtime::conditions;

use super::super::plan::{APPROVE_ANNOTATION, Note, Observed, Plan, Step, client_token, executing, record, report};

/// Under `Manual`, whether change set `name` is approved; if not, says what
/// it `plans` and how to approve it (an Event the first time).
pub(super) fn approved(o: &Observed, name: &str, plans: &str, plan: &mut Plan) -> bool {
    if o.spec.changes.approval != Approval::Manual {
        return true;
    }
    if o.approval == Some(name) {
        plan.approval_used = true;
        plan.notes
            .push(Note::normal("ChangeSetApproved", format!("change set {name} approved")));
        return true;
    }
    // The namespace is spelled out: the hint is pasted into shells whose
    // current namespace is another one.
    let mut message = format!(
        "{plans}. Approve it with: stackpilot approve {stack} -n {ns} --change-set {name} (or kubectl annotate -n {ns} stack/{stack} {APPROVE_ANNOTATION}={name} --overwrite)",
        stack = o.name,
        ns = o.namespace,
    );
    if let Some(other) = o.approval {
        message.push_str(&format!(
            ". The current approval names {other:?}, which is not this change set"
        ));
    }
    if conditions::find(&plan.status.conditions, conditions::APPROVAL_REQUIRED).is_none() {
        plan.notes.push(Note::normal("ApprovalRequired", message.clone()));
    }
    report(o, plan).approval_required(&message);
    false
}

/// "2 Add, 1 Modify (1 replacement)".
pub fn change_summary(summary: &ChangeSetSummary) -> String {
    let count = |action: ChangeAction| summary.changes.iter().filter(|c| c.action == action).count();
    let replacements = summary
        .changes
        .iter()
        .filter(|c| c.replacement == Some(Replacement::True))
        .count();
    let mut parts: Vec<String> = [
        ChangeAction::Add,
        ChangeAction::Modify,
        ChangeAction::Remove,
        ChangeAction::Import,
        ChangeAction::Dynamic,
    ]
    .into_iter()
    .filter(|a| count(*a) > 0)
    .map(|a| format!("{} {a:?}", count(a)))
    .collect();
    if replacements > 0 {
        parts.push(format!("{replacements} replacement(s)"));
    }
    if parts.is_empty() {
        "no resource changes".into()
    } else {
        parts.join(", ")
    }
}

/// An available change set: executed once approved (at once under
/// `Automatic`), with the fingerprint and revision of the inputs it applies.
pub(super) fn approve_or_execute(o: &Observed, summary: &ChangeSetSummary, plan: &mut Plan) {
    let name = &summary.name;
    let plans = format!(
        "change set {name} plans {} change(s) ({})",
        summary.changes.len(),
        change_summary(summary)
    );
    if !approved(o, name, &plans, plan) {
        return;
    }
    let token = client_token(o.uid, "execute", name);
    plan.steps.push(Step::ExecuteChangeSet {
        name: name.clone(),
        token: token.clone(),
    });
    let fingerprint = plan.status.operation.as_ref().and_then(|op| op.fingerprint.clone());
    let fingerprint = fingerprint.or_else(|| o.desired.as_ref().ok().map(|d| d.fingerprint.clone()));
    plan.status.operation = Some(record(
        o,
        OperationAction::ExecuteChangeSet,
        Some(name),
        &token,
        fingerprint.as_deref(),
    ));
    plan.notes.push(Note::normal(
        "ChangeSetExecuting",
        format!("executing change set {name}: {}", change_summary(summary)),
    ));
    executing(o, plan, name);
    plan.requeue = o.timing.in_flight;
}
