//! StackDeployment end to end on the real test bed: the operator binary
//! against kube-apiserver and LocalStack (which must run `cloudwatch`:
//! `STACKPILOT_LOCALSTACK_SERVICES=cloudformation,s3,sqs,sns,sts,iam,ssm,cloudwatch`).
//! Results are checked in LocalStack with the SDK, per account and region,
//! not only in status. Accounts: LocalStack takes a 12-digit access key id as
//! that account; the role `deployer` is created in 222222222222 (through a
//! CloudFormation stack made with that account's keys) and an AwsAccount
//! assumes it.

mod support;

use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use stackpilot::api::{AwsAccount, DeploymentPhase, Stack};
use support::deployment::{
    Bed, OTHER_ACCOUNT, REGIONS, TIMEOUT, artifact, cloudformation, create_deployer_role, targets, visibility,
};
use support::{eventually, unique_suffix};

#[tokio::test]
async fn canary_then_rolling_over_two_accounts_and_three_regions() {
    let mut t = Bed::new("sdep-roll").await;
    let endpoint = t.bed.aws_endpoint.clone();
    create_deployer_role(&endpoint).await;
    let own = t.account("own", json!({"accountId": "000000000000"})).await;
    let other = t
        .account(
            "other",
            json!({"accountId": OTHER_ACCOUNT, "roleArn": format!("arn:aws:iam::{OTHER_ACCOUNT}:role/deployer")}),
        )
        .await;
    let stack_name = format!("sdep-{}", unique_suffix());
    // v1: a canary on one target with a timed pause, then the rest.
    let canary =
        json!({"type": "Canary", "canary": {"steps": [{"targets": ["a-useast1"], "pause": {"duration": "3s"}}]}});
    t.apply(
        "web",
        json!({"artifact": artifact("v1", "30"), "stackName": stack_name, "targets": targets(&own, &other), "strategy": canary}),
    )
    .await;
    let ready = t.wait_phase("web", DeploymentPhase::Ready, "v1").await;
    assert_eq!(
        support::gitops::argo_health(&ready).0,
        "Healthy",
        "Argo CD's check (the chart's Lua) reads a Ready deployment as Healthy"
    );
    let status = ready.status.expect("status");
    assert_eq!(status.updated.as_deref(), Some("6/6"));
    assert!(
        status.waves.len() >= 2,
        "the canary is a wave of its own: {:?}",
        status.waves
    );
    assert_eq!(status.waves[0].targets, vec!["a-useast1".to_string()]);
    assert!(
        status.waves[0].paused_at.is_some(),
        "the canary paused: {:?}",
        status.waves[0]
    );

    // v2: Rolling, two targets at a time.
    let rolling = json!({"type": "Rolling", "rolling": {"maxConcurrent": 2}});
    t.apply(
        "web",
        json!({"artifact": artifact("v2", "45"), "stackName": stack_name, "targets": targets(&own, &other), "strategy": rolling}),
    )
    .await;
    let ready = t.wait_phase("web", DeploymentPhase::Ready, "v2").await;
    let status = ready.status.expect("status");
    assert_eq!(status.waves.len(), 3, "6 targets two at a time: {:?}", status.waves);
    assert!(status.waves.iter().all(|w| w.targets.len() == 2));
    assert_eq!(status.stable_revision.as_ref().map(|r| r.revision.as_str()), Some("v2"));
    for (key, label) in [("000000000000", "own"), (OTHER_ACCOUNT, "other")] {
        for region in REGIONS {
            let seen = eventually(TIMEOUT, &format!("{label} {region} at v2"), || {
                let endpoint = endpoint.clone();
                let stack_name = stack_name.clone();
                async move {
                    visibility(&endpoint, key, region, &stack_name)
                        .await
                        .filter(|v| v == "45")
                }
            })
            .await;
            assert_eq!(seen, "45");
        }
    }
    // Every child is a Stack owned by the deployment, labelled with its target.
    let stacks: Api<Stack> = Api::namespaced(t.client.clone(), &t.ns.name);
    let children = stacks.list(&Default::default()).await.expect("stacks").items;
    assert_eq!(children.len(), 6);
    for child in &children {
        assert!(
            child
                .metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key("stackpilot.dev/target"))
        );
        assert_eq!(child.spec.stack_name.as_deref(), Some(stack_name.as_str()));
    }

    // Deleting the deployment deletes every child and its stack first.
    t.deployments()
        .delete("web", &Default::default())
        .await
        .expect("delete");
    eventually(TIMEOUT, "every stack deleted in AWS", || {
        let endpoint = endpoint.clone();
        let stack_name = stack_name.clone();
        async move {
            for key in ["000000000000", OTHER_ACCOUNT] {
                for region in REGIONS {
                    let cfn = cloudformation(&endpoint, key, region).await;
                    let live = cfn
                        .describe_stacks()
                        .stack_name(&stack_name)
                        .send()
                        .await
                        .ok()
                        .is_some_and(|a| {
                            a.stacks()
                                .iter()
                                .any(|s| s.stack_status().is_some_and(|st| st.as_str() != "DELETE_COMPLETE"))
                        });
                    if live {
                        return None;
                    }
                }
            }
            Some(())
        }
    })
    .await;
    t.finish().await;
}

#[tokio::test]
async fn bad_input_is_a_condition_with_no_aws_call() {
    let mut t = Bed::new("sdep-bad").await;
    let own = t.account("own", json!({"accountId": "000000000000"})).await;
    let duplicate = json!([
        {"name": "one", "region": "eu-west-1", "accountRef": {"name": own}},
        {"name": "two", "region": "eu-west-1", "accountRef": {"name": own}},
    ]);
    t.apply("dup", json!({"artifact": artifact("v1", "30"), "targets": duplicate}))
        .await;
    let stalled = t.stalled("dup").await;
    assert_eq!(stalled.reason, "DuplicateTarget");
    let (health, message) = support::gitops::argo_health(&t.get("dup").await);
    assert_eq!(health, "Degraded", "Argo CD's check: {message}");
    assert!(message.starts_with("DuplicateTarget: "), "{message}");
    assert!(
        stalled.message.contains("one") && stalled.message.contains("two"),
        "{}",
        stalled.message
    );

    let unknown = json!({"type": "Canary", "canary": {"steps": [{"targets": ["nowhere"]}]}});
    let one = json!([{"name": "one", "region": "eu-west-1", "accountRef": {"name": own}}]);
    t.apply(
        "canary",
        json!({"artifact": artifact("v1", "30"), "targets": one, "strategy": unknown}),
    )
    .await;
    let stalled = t.stalled("canary").await;
    assert_eq!(stalled.reason, "UnknownCanaryTarget");

    // A percentage out of range: a Stalled condition from the controller
    // (not CEL, which would push the Pipeline CRD over its cost budget).
    let bad = json!({"type": "Rolling", "rolling": {"maxConcurrent": "150%"}});
    t.apply(
        "pct",
        json!({"artifact": artifact("v1", "30"), "targets": one, "strategy": bad}),
    )
    .await;
    let stalled = t.stalled("pct").await;
    assert_eq!(stalled.reason, "InvalidStrategy");
    assert!(stalled.message.contains("150%"), "{}", stalled.message);

    // A namespace the account does not allow: refused, nothing written.
    let foreign = t.account("foreign", json!({"accountId": "000000000000"})).await;
    let api: Api<AwsAccount> = Api::all(t.client.clone());
    let patch = json!({"spec": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "elsewhere"}}}});
    api.patch(&foreign, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("narrow the account");
    let elsewhere = json!([{"name": "one", "region": "eu-west-1", "accountRef": {"name": foreign}}]);
    t.apply(
        "tenant",
        json!({"artifact": artifact("v1", "30"), "targets": elsewhere}),
    )
    .await;
    let stalled = t.stalled("tenant").await;
    assert!(stalled.message.contains("target one"), "{}", stalled.message);

    tokio::time::sleep(Duration::from_secs(3)).await;
    let stacks: Api<Stack> = Api::namespaced(t.client.clone(), &t.ns.name);
    assert!(
        stacks.list(&Default::default()).await.unwrap().items.is_empty(),
        "no child written"
    );
    let calls = t
        .operator
        .metric("stackpilot_aws_calls_total", &["CreateChangeSet"])
        .await;
    assert_eq!(calls, 0.0, "no AWS call for bad input");
    t.finish().await;
}
