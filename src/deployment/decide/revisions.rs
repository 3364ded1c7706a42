//! Revisions: the content hash of an artifact, the ControllerRevisions that
//! keep them, trimming to `revisionHistoryLimit`, and `status.history`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sha2::{Digest, Sha256};

use crate::deployment::plan::{
    Artifact, KeptRevision, NewRevision, Note, Observed, Plan, RevisionId, RevisionOutcome, RevisionRecord, describe,
};

/// Hash of what a revision deploys (template, parameters, tags,
/// capabilities), not its label: a new label on the same content is the
/// same revision. 16 hex characters.
pub fn artifact_hash(artifact: &Artifact) -> String {
    let Artifact {
        revision: _,
        template,
        parameters,
        tags,
        capabilities,
    } = artifact;
    let content = serde_json::json!({
        "template": template,
        "parameters": parameters,
        "tags": tags,
        "capabilities": capabilities,
    });
    let digest = Sha256::digest(content.to_string().as_bytes());
    hex::encode(&digest[..8])
}

/// The revision the spec's artifact is.
pub fn spec_revision(o: &Observed) -> RevisionId {
    RevisionId {
        revision: o.spec.artifact.revision.clone(),
        hash: artifact_hash(&o.spec.artifact),
    }
}

/// A kept revision by hash, or by label (the newest with that label).
pub fn resolve<'a>(o: &'a Observed, reference: &str) -> Option<&'a KeptRevision> {
    o.revisions.iter().find(|r| r.hash == reference).or_else(|| {
        o.revisions
            .iter()
            .filter(|r| r.label == reference)
            .max_by_key(|r| r.number)
    })
}

pub fn id_of(kept: &KeptRevision) -> RevisionId {
    RevisionId {
        revision: kept.label.clone(),
        hash: kept.hash.clone(),
    }
}

/// Name of the ControllerRevision that keeps `hash`.
pub fn controller_revision_name(deployment: &str, hash: &str) -> String {
    let short: String = hash.chars().take(10).collect();
    format!("{deployment}-{short}")
}

/// Makes sure the spec's revision is kept: a new ControllerRevision for new
/// content; an Event when content changed under a label already used.
pub fn keep(o: &Observed, update: &RevisionId, plan: &mut Plan) {
    if o.revisions.iter().any(|r| r.hash == update.hash) {
        return;
    }
    if let Some(same_label) = o.revisions.iter().find(|r| r.label == update.revision) {
        plan.event(Note::warning(
            "RevisionContentChanged",
            format!(
                "artifact revision {} now has different content (hash {} was {}): it is rolled out as a new revision",
                update.revision, update.hash, same_label.hash
            ),
        ));
    }
    let number = o.revisions.iter().map(|r| r.number).max().unwrap_or(0) + 1;
    plan.create_revisions.push(NewRevision {
        name: controller_revision_name(o.name, &update.hash),
        hash: update.hash.clone(),
        label: update.revision.clone(),
        number,
    });
    plan.event(Note::normal(
        "RevisionCreated",
        format!("new revision {} (number {number})", describe(update)),
    ));
}

/// Deletes the oldest ControllerRevisions beyond `revisionHistoryLimit`,
/// never the ones in use: `protected` (update, stable, rollout, rollbackTo).
pub fn trim(o: &Observed, protected: &[&str], plan: &mut Plan) {
    let limit = usize::try_from(o.spec.revision_history_limit).unwrap_or(0);
    let mut others: Vec<&KeptRevision> = o
        .revisions
        .iter()
        .filter(|r| !protected.contains(&r.hash.as_str()))
        .collect();
    others.sort_by_key(|r| std::cmp::Reverse(r.number));
    plan.delete_revisions = others.iter().skip(limit).map(|r| r.name.clone()).collect();
}

/// Records the outcome of a revision's latest rollout in the history.
pub fn set_outcome(plan: &mut Plan, revision: &RevisionId, outcome: RevisionOutcome, at: Time) {
    let history = &mut plan.status.history;
    match history.iter_mut().find(|h| h.hash == revision.hash) {
        Some(record) => {
            record.outcome = outcome;
            record.deployed_at = Some(at);
            record.revision = revision.revision.clone();
        }
        None => history.push(RevisionRecord {
            revision: revision.revision.clone(),
            hash: revision.hash.clone(),
            controller_revision: String::new(),
            deployed_at: Some(at),
            outcome,
        }),
    }
}

/// `status.history`: the kept revisions, newest first, with outcomes.
pub fn history(o: &Observed, plan: &mut Plan) {
    let mut kept: Vec<(i64, String, String, String)> = o
        .revisions
        .iter()
        .filter(|r| !plan.delete_revisions.contains(&r.name))
        .map(|r| (r.number, r.hash.clone(), r.label.clone(), r.name.clone()))
        .collect();
    kept.extend(
        plan.create_revisions
            .iter()
            .map(|r| (r.number, r.hash.clone(), r.label.clone(), r.name.clone())),
    );
    kept.sort_by_key(|k| std::cmp::Reverse(k.0));
    let old = std::mem::take(&mut plan.status.history);
    plan.status.history = kept
        .into_iter()
        .map(|(_, hash, label, name)| {
            let known = old.iter().find(|h| h.hash == hash);
            RevisionRecord {
                revision: known.map_or(label, |h| h.revision.clone()),
                hash,
                controller_revision: name,
                deployed_at: known.and_then(|h| h.deployed_at.clone()),
                outcome: known.map_or(RevisionOutcome::Pending, |h| h.outcome),
            }
        })
        .collect();
}
