//! Fleet preview: what a revision plans on each target (adds, modifies,
//! removes, replacements and the replaced resources), summed. Under
//! `approval: Manual` it covers every target and the approval names the
//! revision hash; under `Automatic` it covers the first wave, so
//! replacements show in status before they run.

use crate::deployment::plan::{
    APPROVE_REVISION_ANNOTATION, Approval, ChangeSetState, FleetPreview, Note, Observed, Plan, RolloutKind,
    RolloutPhase, TargetPreview, bound_hash, describe,
};

/// Updates `status.preview` while the rollout is waiting for approval or on
/// its first wave; otherwise keeps the last one.
pub fn summarise(o: &Observed, plan: &mut Plan) {
    let Some(rollout) = plan.status.rollout.clone().filter(|r| r.phase.is_active()) else {
        return;
    };
    if rollout.kind != RolloutKind::Update {
        return;
    }
    let names: Vec<String> = if o.spec.approval == Approval::Manual {
        o.spec.targets.iter().map(|t| t.name.clone()).collect()
    } else if rollout.wave == 0 {
        plan.status.waves.first().map(|w| w.targets.clone()).unwrap_or_default()
    } else {
        return;
    };
    let hash = rollout.revision.hash.as_str();
    let mut preview = FleetPreview {
        revision: rollout.revision.clone(),
        complete: true,
        ..FleetPreview::default()
    };
    for name in names {
        let child = o.children.get(&name).filter(|c| c.at(hash));
        // A change set still being planned has no changes listed yet.
        let change_set = child.and_then(|c| {
            c.change_set
                .as_ref()
                .filter(|s| s.generation == c.generation && s.state != ChangeSetState::Planning)
        });
        let mut row = TargetPreview {
            name: name.clone(),
            ..TargetPreview::default()
        };
        match change_set {
            Some(set) => {
                row.change_set = Some(set.name.clone());
                row.adds = set.adds;
                row.modifies = set.modifies;
                row.removes = set.removes;
                row.replacements = i32::try_from(set.replaced.len()).unwrap_or(i32::MAX);
                row.replaced = set.replaced.clone();
            }
            // Ready at the revision without a change set: nothing to change.
            None if child.is_some_and(|c| c.ready_at(hash)) => {}
            None => preview.complete = false,
        }
        preview.adds += row.adds;
        preview.modifies += row.modifies;
        preview.removes += row.removes;
        preview.replacements += row.replacements;
        preview.targets.push(row);
    }
    let before = plan.status.preview.as_ref().filter(|p| p.revision.hash == hash);
    let newly_replaced: Vec<String> = preview
        .targets
        .iter()
        .filter(|t| !t.replaced.is_empty())
        .filter(|t| !before.is_some_and(|b| b.targets.iter().any(|p| p.name == t.name && !p.replaced.is_empty())))
        .map(|t| format!("{}: {}", t.name, t.replaced.join(", ")))
        .collect();
    if !newly_replaced.is_empty() {
        plan.events.push(Note::warning(
            "ReplacementsPlanned",
            format!(
                "{} replaces resources on {}",
                describe(&rollout.revision),
                newly_replaced.join("; ")
            ),
        ));
    }
    plan.status.preview = Some(preview);
}

/// The ApprovalRequired message: what the revision plans and how to approve it.
pub fn approval_message(o: &Observed, plan: &Plan) -> Option<String> {
    let rollout = plan.status.rollout.as_ref()?;
    if rollout.phase != RolloutPhase::WaitingForApproval {
        return None;
    }
    let hash = &rollout.revision.hash;
    let plans = match plan.status.preview.as_ref().filter(|p| &p.revision.hash == hash) {
        Some(p) if p.complete => {
            let replaced: Vec<String> = p
                .targets
                .iter()
                .filter(|t| !t.replaced.is_empty())
                .map(|t| format!("{}: {}", t.name, t.replaced.join(", ")))
                .collect();
            let replaced = if replaced.is_empty() {
                String::new()
            } else {
                format!(" (replaced: {})", replaced.join("; "))
            };
            format!(
                "{} plans {} add(s), {} modify(ies), {} remove(s), {} replacement(s) on {} target(s){replaced}",
                describe(&rollout.revision),
                p.adds,
                p.modifies,
                p.removes,
                p.replacements,
                p.targets.len()
            )
        }
        _ => format!(
            "{} is being planned on every target (see status.preview)",
            describe(&rollout.revision)
        ),
    };
    let mut message = format!(
        "{plans}. Approve it with: kubectl annotate stackdeployment/{name} -n {ns} {APPROVE_REVISION_ANNOTATION}={hash} --overwrite, or: stackpilot approve stackdeployment/{name} -n {ns} --revision {hash}",
        name = o.name,
        ns = o.namespace,
    );
    if let Some(other) = o.annotations.get(APPROVE_REVISION_ANNOTATION)
        && bound_hash(other) != hash.as_str()
    {
        message.push_str(&format!(". The current approval names revision {other}, not this one"));
    }
    Some(message)
}
