//! StackDeployment failure paths end to end on the test bed (kube-apiserver
//! and LocalStack, two accounts, three regions, through AwsAccounts): an
//! alarm that fires during a wave's bake rolls every updated target back and
//! rejects the revision for good; a target whose update fails stops the
//! rollout with `failureTolerance: 0` and leaves it Degraded with 1. Stack
//! contents are checked in LocalStack with the SDK, per account and region.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use serde_json::{Value, json};
use stackpilot::api::{DeploymentPhase, RolloutKind, RolloutPhase, Stack, StackDeploymentStatus, WavePhase};
use support::deployment::{
    Bed, OTHER_ACCOUNT, alarm_everywhere, artifact, cloudwatch, condition, every_placement, set_alarm, target_name,
    targets, wait_visibility,
};
use support::unique_suffix;

/// The revision hash each child Stack is written at, by target.
async fn child_revisions(t: &Bed) -> BTreeMap<String, String> {
    let stacks: Api<Stack> = Api::namespaced(t.client.clone(), &t.ns.name);
    let children = stacks.list(&Default::default()).await.expect("stacks").items;
    children
        .into_iter()
        .filter_map(|s| {
            let target = s.labels().get("stackpilot.dev/target")?.clone();
            Some((target, s.annotations().get("stackpilot.dev/revision")?.clone()))
        })
        .collect()
}

fn rolled_back_to(status: &StackDeploymentStatus, revision: &str) -> bool {
    status.rollout.as_ref().is_some_and(|r| {
        r.kind == RolloutKind::Rollback && r.phase == RolloutPhase::Succeeded && r.revision.revision == revision
    })
}

#[tokio::test]
async fn an_alarm_during_the_second_wave_rolls_every_updated_target_back_for_good() {
    let mut t = Bed::new("sdep-alarm").await;
    let endpoint = t.endpoint();
    let (own, other) = t.two_accounts().await;
    // The alarm exists in every target's account and region (a missing one
    // fails the gate); the SDK's CloudWatch path runs against LocalStack here.
    let alarm = alarm_everywhere(&endpoint).await;
    let stack_name = format!("sdep-{}", unique_suffix());
    let spec = |artifact: Value, strategy: Value, bake: &str| {
        json!({"artifact": artifact, "stackName": stack_name, "targets": targets(&own, &other),
            "strategy": strategy, "health": {"alarms": [alarm], "bakeTime": bake}})
    };
    t.apply("web", spec(artifact("v1", "30"), json!({"type": "AllAtOnce"}), "1s"))
        .await;
    let v1 = t.wait_phase("web", DeploymentPhase::Ready, "v1").await;
    let v1_hash = v1.status.unwrap().stable_revision.expect("stable v1").hash;
    wait_visibility(&endpoint, &stack_name, &every_placement(), "30").await;
    let reads = t
        .operator
        .metric("stackpilot_aws_calls_total", &["DescribeAlarms", "\"ok\""])
        .await;
    assert!(reads > 0.0, "DescribeAlarms answered through the SDK");

    // v2, two targets at a time, each wave baking 20 s.
    let rolling = json!({"type": "Rolling", "rolling": {"maxConcurrent": 2}});
    let v2 = spec(artifact("v2", "45"), rolling, "20s");
    t.apply("web", v2.clone()).await;
    let baking = t
        .wait_status("web", "v2's second wave baking", |s| {
            s.rollout.as_ref().is_some_and(|r| r.revision.revision == "v2")
                && s.waves.get(1).is_some_and(|w| w.phase == WavePhase::Baking)
        })
        .await;
    let status = baking.status.unwrap();
    let v2_hash = status.update_revision.clone().unwrap().hash;
    let wave2 = status.waves[1].targets.clone();
    let other_east = target_name("b", "us-east-1");
    assert_eq!(wave2, vec![target_name("a", "us-west-2"), other_east.clone()]);
    let untouched = status.waves[2].targets.clone();
    // Fire the alarm in the other account's us-east-1 (through the role).
    let why = format!("Threshold Crossed: 5xx rate 7% > 1% ({})", unique_suffix());
    let cw = cloudwatch(&endpoint, OTHER_ACCOUNT, "us-east-1").await;
    set_alarm(&cw, &alarm, "ALARM", &why).await;

    let done = t
        .wait_status("web", "rolled back to v1 after the alarm", |s| {
            s.phase == Some(DeploymentPhase::Rejected) && rolled_back_to(s, "v1")
        })
        .await;
    let status = done.status.clone().unwrap();
    let rejected = &status.rejected_revisions;
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].revision.hash, v2_hash);
    assert_eq!(rejected[0].alarm.as_deref(), Some(alarm.as_str()));
    assert_eq!(rejected[0].target.as_deref(), Some(other_east.as_str()));
    assert!(
        rejected[0].reason.contains(&why),
        "state reason kept: {}",
        rejected[0].reason
    );
    let stalled = condition(&done, "Stalled").expect("Stalled");
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "RevisionRejected")
    );
    assert!(stalled.message.contains(&alarm), "{}", stalled.message);
    let (health, message) = support::gitops::argo_health(&done);
    assert_eq!(health, "Degraded", "Argo CD's check (the chart's Lua): {message}");
    assert!(message.starts_with("RevisionRejected: "), "{message}");
    assert_eq!(condition(&done, "Ready").unwrap().status, "False");
    assert_eq!(
        status.stable_revision.as_ref().map(|r| r.hash.as_str()),
        Some(v1_hash.as_str())
    );
    // Every target went back to (or stayed at) v1, in Kubernetes and in AWS;
    // the third wave never took v2.
    let children = child_revisions(&t).await;
    assert!(children.values().all(|r| r == &v1_hash), "{children:?}");
    wait_visibility(&endpoint, &stack_name, &every_placement(), "30").await;
    assert_eq!(
        untouched,
        vec![target_name("b", "eu-west-1"), target_name("b", "us-west-2")]
    );

    // Re-applying the same spec (a GitOps tool's periodic sync) starts nothing.
    let writes = t.child_writes().await;
    let revisions = t.controller_revisions().await.len();
    t.apply("web", v2.clone()).await;
    t.annotate("web", "e2e/resync", Some("1")).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        t.child_writes().await,
        writes,
        "no child written after re-applying a rejected spec"
    );
    assert_eq!(
        t.controller_revisions().await.len(),
        revisions,
        "no new ControllerRevision"
    );
    let again = t.get("web").await;
    let status = again.status.unwrap();
    assert_eq!(status.phase, Some(DeploymentPhase::Rejected));
    assert!(rolled_back_to(&status, "v1"), "{:?}", status.rollout);
    assert!(child_revisions(&t).await.values().all(|r| r == &v1_hash));

    // A new revision rolls out (the alarm is back to OK).
    set_alarm(&cw, &alarm, "OK", "recovered").await;
    let v3 = spec(
        artifact("v3", "60"),
        json!({"type": "Rolling", "rolling": {"maxConcurrent": 3}}),
        "1s",
    );
    t.apply("web", v3).await;
    let ready = t.wait_phase("web", DeploymentPhase::Ready, "v3").await;
    let status = ready.status.unwrap();
    assert_eq!(status.stable_revision.map(|r| r.revision), Some("v3".to_string()));
    assert_eq!(status.rejected_revisions.len(), 1, "v2 stays rejected");
    wait_visibility(&endpoint, &stack_name, &every_placement(), "60").await;

    // An alarm that fires and clears between two polls (back-to-back calls,
    // well under the operator's poll) still fails the wave: its history
    // (DescribeAlarmHistory) is read because its state changed during the wave.
    t.apply("web", spec(artifact("v4", "75"), json!({"type": "AllAtOnce"}), "30s"))
        .await;
    t.wait_status("web", "v4 baking", |s| {
        s.rollout.as_ref().is_some_and(|r| r.revision.revision == "v4")
            && s.waves.first().is_some_and(|w| w.phase == WavePhase::Baking)
    })
    .await;
    let blink = format!("Threshold Crossed: a blink ({})", unique_suffix());
    set_alarm(&cw, &alarm, "ALARM", &blink).await;
    set_alarm(&cw, &alarm, "OK", "cleared at once").await;
    let done = t
        .wait_status("web", "v4 rejected after the blink", |s| {
            s.phase == Some(DeploymentPhase::Rejected) && rolled_back_to(s, "v3")
        })
        .await;
    let status = done.status.unwrap();
    let v4 = status.rejected_revisions.iter().find(|r| r.revision.revision == "v4");
    let v4 = v4.unwrap_or_else(|| panic!("v4 rejected: {:?}", status.rejected_revisions));
    assert_eq!(v4.alarm.as_deref(), Some(alarm.as_str()));
    assert!(v4.reason.contains("ALARM"), "{}", v4.reason);
    let history_reads = t
        .operator
        .metric("stackpilot_aws_calls_total", &["DescribeAlarmHistory", "\"ok\""])
        .await;
    assert!(history_reads > 0.0, "DescribeAlarmHistory answered through the SDK");
    wait_visibility(&endpoint, &stack_name, &every_placement(), "60").await;
    t.finish().await;
}

/// v2 of the template: a queue whose name CloudFormation refuses is added,
/// only in us-west-2 of 222222222222 (a resource that fails in one place).
const BROKEN: &str = "Parameters:\n  Visibility: {Type: Number}\nConditions:\n  Here: !And [!Equals [!Ref \"AWS::Region\", us-west-2], !Equals [!Ref \"AWS::AccountId\", \"222222222222\"]]\nResources:\n  Topic:\n    Type: AWS::SNS::Topic\n  Broken:\n    Type: AWS::SQS::Queue\n    Condition: Here\n    Properties: {QueueName: \"not a valid name!\"}\nOutputs:\n  Seen: {Value: !Ref Visibility}\n";

fn broken_artifact(revision: &str, visibility: &str) -> Value {
    json!({"revision": revision, "template": {"body": BROKEN},
        "parameters": [{"name": "Visibility", "value": visibility}]})
}

/// The six targets with the one that fails (other account, us-west-2) first.
fn failing_first(own: &str, other: &str) -> (Value, String) {
    let mut list = targets(own, other).as_array().cloned().unwrap();
    let failing = target_name("b", "us-west-2");
    let at = list.iter().position(|t| t["name"] == failing.as_str()).unwrap();
    let one = list.remove(at);
    list.insert(0, one);
    (Value::Array(list), failing)
}

async fn failing_target(tolerance: u32) {
    let mut t = Bed::new(&format!("sdep-fail{tolerance}")).await;
    let endpoint = t.endpoint();
    let (own, other) = t.two_accounts().await;
    let (list, failing) = failing_first(&own, &other);
    let stack_name = format!("sdep-{}", unique_suffix());
    let spec = |artifact: Value| {
        json!({"artifact": artifact, "stackName": stack_name, "targets": list,
            "strategy": {"type": "Rolling", "rolling": {"maxConcurrent": 2, "failureTolerance": tolerance}}})
    };
    t.apply("web", spec(artifact("v1", "30"))).await;
    let v1 = t.wait_phase("web", DeploymentPhase::Ready, "v1").await;
    let v1_hash = v1.status.unwrap().stable_revision.unwrap().hash;
    wait_visibility(&endpoint, &stack_name, &every_placement(), "30").await;

    t.apply("web", spec(broken_artifact("v2", "45"))).await;
    let placements: Vec<(&str, &str)> = every_placement()
        .into_iter()
        .filter(|p| *p != (OTHER_ACCOUNT, "us-west-2"))
        .collect();
    if tolerance == 0 {
        // The rollback ends; on LocalStack the failed target's own rollback
        // to v1 fails too (after its native UPDATE_ROLLBACK_COMPLETE,
        // LocalStack keeps the never-created queue in its model, and the
        // v1 change set's Remove of it fails), so it may end Failed.
        let done = t
            .wait_status("web", "v2 rejected and the rollback over", |s| {
                s.phase == Some(DeploymentPhase::Rejected)
                    && s.rollout.as_ref().is_some_and(|r| {
                        r.kind == RolloutKind::Rollback && !r.phase.is_active() && r.revision.revision == "v1"
                    })
            })
            .await;
        let status = done.status.clone().unwrap();
        let rejected = &status.rejected_revisions[0];
        assert_eq!(rejected.revision.revision, "v2");
        assert_eq!(rejected.target.as_deref(), Some(failing.as_str()));
        assert_eq!(rejected.resource.as_deref(), Some("Broken"), "{rejected:?}");
        assert!(
            rejected.reason.contains("CreateQueue"),
            "CloudFormation's reason: {}",
            rejected.reason
        );
        // Waves after the first never started: their children stay at v1.
        let children = child_revisions(&t).await;
        for wave in &status.waves[1..] {
            assert_eq!(wave.phase, WavePhase::Pending, "{wave:?}");
            for name in &wave.targets {
                assert_eq!(children.get(name), Some(&v1_hash), "{name} untouched");
            }
        }
        assert!(children.values().all(|r| r == &v1_hash), "{children:?}");
        wait_visibility(&endpoint, &stack_name, &placements, "30").await;
    } else {
        let done = t.wait_phase("web", DeploymentPhase::Degraded, "v2").await;
        let degraded = condition(&done, "Degraded").expect("Degraded");
        assert_eq!(degraded.status, "True");
        assert!(degraded.message.contains(&failing), "{}", degraded.message);
        let status = done.status.unwrap();
        assert!(status.rejected_revisions.is_empty(), "within tolerance: not rejected");
        assert_eq!(status.updated.as_deref(), Some("5/6"));
        let row = status.targets.iter().find(|r| r.name == failing).unwrap();
        assert_eq!(row.failure.as_ref().and_then(|f| f.resource.as_deref()), Some("Broken"));
        assert!(
            status.waves.iter().all(|w| w.phase == WavePhase::Succeeded),
            "{:?}",
            status.waves
        );
        wait_visibility(&endpoint, &stack_name, &placements, "45").await;
    }
    t.finish().await;
}

#[tokio::test]
async fn a_target_failing_in_one_region_rolls_everything_back_with_no_tolerance() {
    failing_target(0).await;
}

#[tokio::test]
async fn a_target_failing_in_one_region_is_degraded_within_tolerance() {
    failing_target(1).await;
}
