//! Whether the stack in AWS belongs to this object: ours (tagged with our
//! uid, or the stack id we recorded), adoptable, or someone else's.

use crate::api::Adoption;
use crate::aws::StackDescription;

use super::super::plan::{Lifecycle, Note, Observed, Plan, TAG_NAME, TAG_NAMESPACE, TAG_UID, classify, report};

/// Whether the existing stack belongs to this object.
pub(super) enum Ownership {
    Ours,
    Adopting,
    Foreign(String),
}

pub(super) fn ownership(o: &Observed, stack: &StackDescription) -> Ownership {
    let tagged = stack.tags.get(TAG_UID);
    if tagged.map(String::as_str) == Some(o.uid) || o.previous.stack_id.as_deref() == Some(stack.stack_id.as_str()) {
        return Ownership::Ours;
    }
    // A CREATE change set we started puts the stack in REVIEW_IN_PROGRESS,
    // possibly before its tags are visible.
    let started_here = o.previous.operation.is_some() || o.previous.change_set.is_some();
    if classify(&stack.status) == Lifecycle::Review && started_here && tagged.is_none() {
        return Ownership::Ours;
    }
    if tagged.is_some() {
        let owner = format!(
            "{}/{}",
            stack.tags.get(TAG_NAMESPACE).map(String::as_str).unwrap_or("?"),
            stack.tags.get(TAG_NAME).map(String::as_str).unwrap_or("?")
        );
        return Ownership::Foreign(format!(
            "stack {} in {} is managed by another Stack object ({owner}); choose another spec.stackName",
            stack.stack_name, o.spec.region
        ));
    }
    match o.spec.adoption {
        Adoption::Adopt => Ownership::Adopting,
        Adoption::Refuse => Ownership::Foreign(format!(
            "a stack named {} already exists in {} and was not created by stackpilot; set spec.adoption: Adopt to take it over, or choose another spec.stackName",
            stack.stack_name, o.spec.region
        )),
    }
}

/// Claims the stack for this object; false (and Stalled) when it is
/// someone else's.
pub(super) fn claim(o: &Observed, stack: &StackDescription, plan: &mut Plan) -> bool {
    match ownership(o, stack) {
        Ownership::Ours => true,
        Ownership::Adopting => {
            plan.notes.push(Note::normal(
                "Adopting",
                format!("taking over existing stack {}", stack.stack_name),
            ));
            true
        }
        Ownership::Foreign(message) => {
            // Nothing of a stack we do not own goes to status: `ownership`
            // trusts `status.stackId`, so recording it would make the next
            // reconcile take the stack over (and delete it with the object).
            plan.status.stack_id = o.previous.stack_id.clone();
            plan.status.outputs.clear();
            report(o, plan).stalled("StackNotOwned", &message);
            false
        }
    }
}
