//! What a finished change of ours leaves in status: the applied revision
//! (and the stack policy that came with it), or a rolled-back update.

use crate::api::{AppliedRevision, Operation};
use crate::aws::StackDescription;

use super::super::plan::{Note, Observed, Plan, Step, report};

/// The operation `op` (an execution or an UpdateStack) succeeded: its inputs
/// are applied, and a stack policy that came with them is set now.
pub(super) fn record_applied(o: &Observed, op: &Operation, plan: &mut Plan) {
    plan.status.applied = Some(AppliedRevision {
        generation: op.generation,
        fingerprint: op.fingerprint.clone().unwrap_or_default(),
        revision: op.revision.clone(),
    });
    apply_stack_policy(o, plan);
}

/// The desired inputs are in AWS already (an empty change set, or one that
/// ran without its intent): recorded as applied for this generation.
pub(super) fn record_desired_applied(o: &Observed, fingerprint: &str, plan: &mut Plan) {
    plan.status.applied = Some(AppliedRevision {
        generation: o.generation,
        fingerprint: fingerprint.to_string(),
        revision: o.revision.map(str::to_string),
    });
}

/// An update of ours (`op`) was rolled back. Stalled until the spec changes
/// or a retry is asked for; returns true then. When the spec changed to other
/// inputs while it ran (a StackDeployment rolling back a bad revision), the
/// failure is told in an Event and the new spec goes on at once: Stalled at
/// the new generation would say the new inputs failed.
pub(super) fn update_failed(
    o: &Observed,
    stack: &StackDescription,
    op: &Operation,
    why: &str,
    plan: &mut Plan,
) -> bool {
    let newer = o
        .desired
        .as_ref()
        .is_ok_and(|d| op.generation < o.generation && op.fingerprint.as_deref() != Some(d.fingerprint.as_str()));
    if newer {
        plan.notes.push(Note::warning(
            "UpdateFailed",
            format!(
                "the update of generation {} failed and CloudFormation rolled it back ({}): {why}. Going on with generation {}",
                op.generation, stack.status, o.generation
            ),
        ));
        return false;
    }
    let message = format!(
        "the update failed and CloudFormation rolled it back ({}): {why}. Fix the spec, or set the annotation stackpilot.dev/reconcile-requested-at to retry",
        stack.status
    );
    report(o, plan).stalled("UpdateFailed", &message);
    true
}

/// CloudFormation takes the stack policy through its own call, after the
/// change that a new policy came with.
pub(super) fn apply_stack_policy(o: &Observed, plan: &mut Plan) {
    if let Some(body) = o.desired.as_ref().ok().and_then(|d| d.stack_policy.clone()) {
        plan.steps.push(Step::SetStackPolicy { body });
    }
}
