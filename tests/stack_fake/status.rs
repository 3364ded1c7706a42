//! Status writes under contention, and the DRIFTED column of `kubectl get`.

use super::*;

/// Under load the cache lags behind the API server, and a status write made
/// from an older copy gets 409 Conflict (the write is conditional on the
/// version decided from). Here a second writer relabels the Stack every 50
/// milliseconds, so the controller's copy is often stale: each conflict is
/// retried at once from a fresh copy, and none counts as a failed reconcile
/// (no error backoff, no Warning Event).
#[tokio::test]
async fn a_conflict_on_our_own_status_write_is_retried_at_once_not_a_failure() {
    let h = Harness::start("fake-conflict").await;
    h.apply("busy", spec("30", json!({}))).await;
    let api = h.stacks();
    let relabel = tokio::spawn(async move {
        for i in 0u64.. {
            let patch = json!({"metadata": {"labels": {"touched": i.to_string()}}});
            let _ = api.patch("busy", &PatchParams::default(), &Patch::Merge(&patch)).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    // Several versions of the spec, so there are many status writes.
    for visibility in ["31", "32", "33"] {
        h.wait_ready("busy").await;
        h.apply("busy", spec(visibility, json!({}))).await;
    }
    h.wait_for("busy", "Ready at the last spec", |stack, status| {
        status
            .applied
            .as_ref()
            .is_some_and(|a| Some(a.generation) == stack.metadata.generation)
            && condition(stack, "Ready").is_some_and(|c| c.status == "True")
    })
    .await;
    relabel.abort();
    let conflicts = h
        .metrics
        .status_writes
        .get_or_create(&OutcomeLabels {
            kind: "Stack",
            outcome: "conflict",
        })
        .get();
    let failed = h
        .metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            kind: "Stack",
            category: "conflict",
        })
        .get();
    let errors = h
        .metrics
        .reconciles
        .get_or_create(&OutcomeLabels {
            kind: "Stack",
            outcome: "error",
        })
        .get();
    assert!(
        conflicts > 0,
        "the relabelling made no status write conflict: the test proves nothing"
    );
    assert_eq!(
        (failed, errors),
        (0, 0),
        "{conflicts} conflicts; failed reconciles: {failed} conflicts, {errors} in all"
    );
    let events: Api<Event> = Api::namespaced(h.client.clone(), &h.ns.name);
    let conflict_events = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Conflict"))
        .count();
    assert_eq!(conflict_events, 0);
    h.finish().await;
}

/// The DRIFTED column of `kubectl get stack`, by Stack name.
fn drifted_column(h: &Harness) -> std::collections::BTreeMap<String, String> {
    let output = std::process::Command::new("kubectl")
        .args([
            "--kubeconfig",
            TestBed::get().kubeconfig.to_str().unwrap(),
            "get",
            "stacks",
            "-n",
            &h.ns.name,
        ])
        .output()
        .expect("kubectl");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let (start, end) = (
        header.find("DRIFTED").expect("a DRIFTED column"),
        header.find("MESSAGE").expect("a MESSAGE column"),
    );
    lines
        .map(|l| {
            let name = l.split_whitespace().next().unwrap_or_default().to_string();
            (name, l.get(start..end).unwrap_or_default().trim().to_string())
        })
        .collect()
}

/// One rule for the DRIFTED column: blank only when drift checks are off;
/// with checks on, `Unknown` from the first Ready until a check says
/// `False` (in sync) or `True`.
#[tokio::test]
async fn the_drifted_column_follows_one_rule_for_every_stack() {
    let h = Harness::start("fake-column").await;
    h.apply("on", spec("30", json!({"drift": {"interval": "1h"}}))).await;
    h.apply("off", spec("30", json!({"drift": {"interval": "0"}}))).await;
    h.wait_ready("on").await;
    h.wait_ready("off").await;
    let columns = drifted_column(&h);
    assert_eq!(columns.get("on").map(String::as_str), Some("Unknown"), "{columns:?}");
    assert_eq!(columns.get("off").map(String::as_str), Some(""), "{columns:?}");
    // A check asked for now finds the stack in sync.
    h.annotate("on", RECONCILE_REQUESTED_AT, "check").await;
    h.wait_condition("on", "Drifted", "False", "InSync").await;
    let columns = drifted_column(&h);
    assert_eq!(columns.get("on").map(String::as_str), Some("False"), "{columns:?}");
    assert_eq!(columns.get("off").map(String::as_str), Some(""), "{columns:?}");
    h.finish().await;
}
