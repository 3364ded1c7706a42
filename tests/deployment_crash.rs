//! The operator is SIGKILLed while a StackDeployment moves through its waves
//! and while it rolls back (kube-apiserver and LocalStack, two accounts):
//! no target executes a change set twice (counted from each stack's own
//! events in LocalStack, which outlive the operator's metrics), no wave is
//! skipped, no rejected revision is lost. CI runs a few kills;
//! `scripts/fault-test deployment` runs many (STACKPILOT_FAULT_DEPLOYMENT_KILLS).

mod support;

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use stackpilot::api::{DeploymentPhase, RolloutKind, RolloutPhase, WavePhase};
use support::deployment::{
    Bed, OTHER_ACCOUNT, alarm_everywhere, artifact, cloudwatch, every_placement, executions, set_alarm, target_name,
    targets, wait_visibility,
};
use support::unique_suffix;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn active(d: &stackpilot::api::StackDeployment) -> bool {
    let status = d.status.as_ref();
    status
        .and_then(|s| s.rollout.as_ref())
        .is_none_or(|r| r.phase.is_active())
}

#[tokio::test]
async fn sigkills_during_waves_and_rollback_repeat_nothing_and_lose_nothing() {
    let kills = knob("STACKPILOT_FAULT_DEPLOYMENT_KILLS", 4).max(2);
    let seed = knob("STACKPILOT_FAULT_SEED", u64::from(rand::random::<u32>()));
    println!("deployment crash safety: {kills} kills during the waves, seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = Bed::new("sdep-crash").await;
    let endpoint = t.endpoint();
    let (own, other) = t.two_accounts().await;
    let alarm = alarm_everywhere(&endpoint).await;
    let stack_name = format!("sdep-{}", unique_suffix());
    let spec = |artifact: Value, max: u32, bake: &str| {
        json!({"artifact": artifact, "stackName": stack_name, "targets": targets(&own, &other),
            "strategy": {"type": "Rolling", "rolling": {"maxConcurrent": max}},
            "health": {"alarms": [alarm], "bakeTime": bake}})
    };
    t.apply("web", spec(artifact("v1", "30"), 6, "1s")).await;
    t.wait_phase("web", DeploymentPhase::Ready, "v1").await;
    wait_visibility(&endpoint, &stack_name, &every_placement(), "30").await;

    // v2 one target at a time; the operator dies at random points.
    t.apply("web", spec(artifact("v2", "45"), 1, "1s")).await;
    let mut made = 0;
    while made < kills {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..=3000))).await;
        if !active(&t.get("web").await) {
            break;
        }
        t.kill_operator().await;
        made += 1;
    }
    println!("{made} kills during v2's waves");
    assert!(made >= 2, "the rollout outran the kills: make the waves slower");
    let ready = t.wait_phase("web", DeploymentPhase::Ready, "v2").await;
    let waves = ready.status.unwrap().waves;
    assert_eq!(waves.len(), 6, "{waves:?}");
    for pair in waves.windows(2) {
        assert_eq!(pair[0].phase, WavePhase::Succeeded);
        let (finished, next) = (
            pair[0].finished.as_ref().unwrap().0,
            pair[1].started.as_ref().unwrap().0,
        );
        assert!(
            finished <= next,
            "wave {} started before wave {} ended",
            pair[1].index,
            pair[0].index
        );
    }
    wait_visibility(&endpoint, &stack_name, &every_placement(), "45").await;

    // v3 two at a time; an alarm in the second wave starts a rollback,
    // during which the operator dies twice.
    t.apply("web", spec(artifact("v3", "60"), 2, "30s")).await;
    t.wait_status("web", "v3's second wave baking", |s| {
        s.rollout.as_ref().is_some_and(|r| r.revision.revision == "v3")
            && s.waves.get(1).is_some_and(|w| w.phase == WavePhase::Baking)
    })
    .await;
    let cw = cloudwatch(&endpoint, OTHER_ACCOUNT, "us-east-1").await;
    set_alarm(&cw, &alarm, "ALARM", "Threshold Crossed: e2e").await;
    t.wait_status("web", "rolling back", |s| s.phase == Some(DeploymentPhase::RollingBack))
        .await;
    t.kill_operator().await;
    tokio::time::sleep(Duration::from_millis(rng.random_range(200..=1500))).await;
    t.kill_operator().await;
    let done = t
        .wait_status("web", "rolled back to v2", |s| {
            s.phase == Some(DeploymentPhase::Rejected)
                && s.rollout.as_ref().is_some_and(|r| {
                    r.kind == RolloutKind::Rollback && r.phase == RolloutPhase::Succeeded && r.revision.revision == "v2"
                })
        })
        .await;
    let rejected: Vec<String> = done
        .status
        .unwrap()
        .rejected_revisions
        .into_iter()
        .map(|r| r.revision.revision)
        .collect();
    assert_eq!(rejected, ["v3"]);
    wait_visibility(&endpoint, &stack_name, &every_placement(), "45").await;
    // One more restart: the rejection is still there and nothing runs.
    t.kill_operator().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = t.get("web").await.status.unwrap();
    assert_eq!(after.phase, Some(DeploymentPhase::Rejected));
    assert_eq!(after.rejected_revisions.len(), 1);

    // Executions per stack: the create, v2, and for the first two waves v3
    // and its rollback.
    let took_v3 = [
        target_name("a", "us-east-1"),
        target_name("a", "eu-west-1"),
        target_name("a", "us-west-2"),
        target_name("b", "us-east-1"),
    ];
    for (key, region) in every_placement() {
        let short = if key == OTHER_ACCOUNT { "b" } else { "a" };
        let name = target_name(short, region);
        let want = if took_v3.contains(&name) { 4 } else { 2 };
        let seen = executions(&endpoint, key, region, &stack_name).await;
        assert_eq!(seen, want, "{name}: change sets executed");
    }
    t.finish().await;
}
