//! Stacks at a small scale under AWS faults: the operator binary with the
//! in-memory fake (`--fake-aws`) throttling 50% and failing 5% (HTTP 5xx) of
//! all calls, against the real kube-apiserver. Every Stack still converges,
//! and the calls stay bounded: no more than 4x the calls of a clean run of
//! the same Stacks, made at the same time, and never faster than the call
//! budget allows.
//!
//! Why 4x: with 55% of attempts failing, a call takes 1 / 0.45 = 2.2
//! attempts on average (throttled attempts are retried within the budget);
//! a 5xx fails its reconcile, which repeats that reconcile's reads on the
//! retry, and slower progress means a few more polls: about 2.5x in all. A
//! retry storm (retries that do not wait for the budget, or that multiply
//! per layer) is orders of magnitude above that.

mod support;

use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use stackpilot::api::Stack;
use support::{Operator, TestBed, TestNamespace, eventually, install_crds};

const STACKS: usize = 30;
/// The operator's call budget (per account and region) in this test.
const CALLS_PER_SECOND: f64 = 100.0;
const BURST: f64 = 20.0;
const TEMPLATE: &str =
    "Resources:\n  Queue:\n    Type: AWS::SQS::Queue\nOutputs:\n  QueueUrl:\n    Value: !Ref Queue\n";

struct Run {
    calls: f64,
    throttled: f64,
    transient: f64,
    seconds: f64,
    throttle_errors: f64,
    slowdowns: f64,
}

/// Applies `STACKS` Stacks in a namespace of its own, with an operator in
/// fake mode with the given fault rates, and waits until every one is Ready.
/// Returns the AWS calls it took. Drift detection is off: its first run right
/// after the create is a separate concern (and its own calls).
async fn converge(bed: &TestBed, prefix: &str, throttled: &str, server_errors: &str) -> Run {
    let client = bed.client().await;
    let ns = TestNamespace::new(&client, prefix).await;
    let budget = CALLS_PER_SECOND.to_string();
    let burst = BURST.to_string();
    let operator = Operator::start(
        bed,
        &ns.name,
        &bed.aws_endpoint,
        &[
            ("STACKPILOT_FAKE_AWS", "true"),
            ("STACKPILOT_FAKE_AWS_THROTTLED", throttled),
            ("STACKPILOT_FAKE_AWS_SERVER_ERRORS", server_errors),
            ("STACKPILOT_AWS_CALLS_PER_SECOND", &budget),
            ("STACKPILOT_AWS_CALL_BURST", &burst),
            ("RUST_LOG", "info"),
        ],
    )
    .await;
    let api: Api<Stack> = Api::namespaced(client.clone(), &ns.name);
    let started = Instant::now();
    for i in 0..STACKS {
        let name = format!("q{i:02}");
        let object = json!({"apiVersion": "stackpilot.dev/v1alpha1", "kind": "Stack",
            "metadata": {"name": name}, "spec": {"region": "us-east-1", "template": {"body": TEMPLATE}, "drift": {"interval": "0"}}});
        api.patch(
            &name,
            &PatchParams::apply("throttling-test").force(),
            &Patch::Apply(&object),
        )
        .await
        .expect("apply Stack");
    }
    let what = format!("{STACKS} Stacks Ready ({prefix})");
    eventually(Duration::from_secs(240), &what, || {
        let api = api.clone();
        async move {
            let stacks = api.list(&Default::default()).await.ok()?;
            let done = stacks
                .items
                .iter()
                .filter(|s| {
                    let Some(status) = s.status.as_ref() else { return false };
                    let ready = status.observed_generation == s.metadata.generation
                        && status
                            .conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.status == "True");
                    ready && status.operation.is_none()
                })
                .count();
            (done == STACKS).then_some(())
        }
    })
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let run = Run {
        calls: operator.metric("stackpilot_aws_calls_total", &[]).await,
        throttled: operator
            .metric("stackpilot_aws_calls_total", &["outcome=\"throttled\""])
            .await,
        transient: operator
            .metric("stackpilot_aws_calls_total", &["outcome=\"transient\""])
            .await,
        seconds,
        throttle_errors: operator
            .metric("stackpilot_reconcile_errors_total", &["category=\"aws_throttled\""])
            .await,
        slowdowns: operator.metric("stackpilot_aws_slowdowns_total", &[]).await,
    };
    operator.stop().await;
    // The fake's stacks died with the operator: nothing to delete in AWS.
    for i in 0..STACKS {
        let patch = json!({"metadata": {"finalizers": null}});
        let _ = api
            .patch(&format!("q{i:02}"), &PatchParams::default(), &Patch::Merge(&patch))
            .await;
    }
    ns.cleanup().await;
    run
}

#[tokio::test]
async fn stacks_converge_under_throttling_and_server_errors_without_a_retry_storm() {
    let bed = TestBed::get();
    install_crds(&bed.client().await).await;
    let (clean, faulty) = tokio::join!(
        converge(&bed, "throttle-clean", "0", "0"),
        converge(&bed, "throttle-faulty", "0.5", "0.05"),
    );
    eprintln!(
        "clean: {} calls in {:.1} s; faulty: {} calls ({} throttled, {} 5xx) in {:.1} s, {} slowdowns, {} reconciles failed throttled",
        clean.calls,
        clean.seconds,
        faulty.calls,
        faulty.throttled,
        faulty.transient,
        faulty.seconds,
        faulty.slowdowns,
        faulty.throttle_errors
    );
    assert_eq!(clean.throttled + clean.transient, 0.0);
    // CreateChangeSet, DescribeChangeSet, ExecuteChangeSet and a read of
    // the outcome at the least: the clean run did the work it is compared to.
    assert!(
        clean.calls >= (STACKS * 4) as f64,
        "a create takes several calls: {}",
        clean.calls
    );
    // The faults did happen, in about the proportions asked for.
    let throttled_share = faulty.throttled / faulty.calls;
    assert!(
        (0.4..0.6).contains(&throttled_share),
        "throttled share {throttled_share}"
    );
    assert!(faulty.transient > 0.0);
    assert!(faulty.slowdowns > 0.0, "throttling slowed the account and region down");
    // No retry storm: bounded against the clean run, and never above the budget.
    assert!(
        faulty.calls <= 4.0 * clean.calls,
        "{} calls under faults vs {} clean",
        faulty.calls,
        clean.calls
    );
    let rate = faulty.calls / faulty.seconds;
    assert!(
        rate <= CALLS_PER_SECOND + BURST / faulty.seconds,
        "{rate:.1} calls/s over a budget of {CALLS_PER_SECOND}/s"
    );
}
