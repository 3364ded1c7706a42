//! What a Pipeline does with its inputs, end to end (operator binary,
//! kube-apiserver, LocalStack): a variable `#{stage.action.Output}` carries a
//! dev stack's output into the prod stack's parameters (checked in
//! LocalStack); a variable naming an output the action does not have, and a
//! deploy action naming an AwsAccount the namespace may not use, end in a
//! clear condition and no AWS write.

mod support;

use kube::api::{Api, PostParams};
use serde_json::json;
use stackpilot::api::{ActionPhase, AwsAccount, ExecutionPhase};
use support::fixture::Fixture;
use support::pipeline::*;
use support::unique_suffix;
use support::workload::raw_cloudformation;

const TEMPLATE: &str = r#"
Parameters:
  Upstream: {Type: String, Default: none}
Resources:
  Queue:
    Type: AWS::SQS::Queue
Outputs:
  QueueArn: {Value: !GetAtt Queue.Arn}
  Upstream: {Value: !Ref Upstream}
"#;

fn spec(variable: &str) -> serde_json::Value {
    json!({"source": {"artifact": {"revision": "v1", "template": {"body": TEMPLATE}}},
        "stages": [
            {"name": "dev", "actions": [{"name": "app", "deploy": {"stack": {"region": "us-east-1"}}}]},
            {"name": "prod", "actions": [{"name": "app", "deploy": {"stack": {"region": "us-east-1",
                "parameters": [{"name": "Upstream", "value": format!("from {variable}")}]}}}]}]})
}

/// The `Upstream` parameter of a stack in LocalStack.
async fn upstream(f: &Fixture, stack: &str) -> Option<String> {
    let cfn = raw_cloudformation(&f.bed.aws_endpoint).await;
    let answer = cfn.describe_stacks().stack_name(stack).send().await.ok()?;
    answer.stacks().first()?.parameters().iter().find_map(|p| {
        (p.parameter_key() == Some("Upstream"))
            .then(|| p.parameter_value().map(str::to_string))
            .flatten()
    })
}

#[tokio::test]
async fn an_output_variable_reaches_a_later_stack() {
    let f = Fixture::new("pipe-vars").await;
    apply(&f, "web", spec("#{dev.app.QueueArn}")).await;
    apply(&f, "typo", spec("#{dev.app.QueueArm}")).await;

    let done = wait_execution(&f, "web", "the execution succeeds", |e| e.phase.is_finished()).await;
    assert_eq!(done.phase, ExecutionPhase::Succeeded, "{done:?}");
    let dev = f.stacks().get("web-dev-app").await.unwrap();
    let arn = dev
        .status
        .unwrap()
        .outputs
        .get("QueueArn")
        .cloned()
        .expect("dev QueueArn");
    assert!(arn.starts_with("arn:aws:sqs:"), "{arn}");
    let prod_name = format!("{}-web-prod-app", f.ns.name);
    assert_eq!(upstream(&f, &prod_name).await, Some(format!("from {arn}")));

    // An output dev/app does not have: the prod action fails, saying which.
    let typo = wait_execution(&f, "typo", "the unknown output fails", |e| e.phase.is_finished()).await;
    assert_eq!(typo.phase, ExecutionPhase::Failed, "{typo:?}");
    let prod = typo.actions.iter().find(|a| a.stage == "prod").unwrap();
    assert_eq!(prod.phase, ActionPhase::Failed);
    let message = prod.message.clone().unwrap_or_default();
    assert!(
        message.contains("UnknownOutput") && message.contains("QueueArm"),
        "{message}"
    );
    let pipeline = pipelines(&f).get("typo").await.unwrap();
    assert_eq!(condition(&pipeline, "Stalled").map(|c| c.0).as_deref(), Some("True"));
    assert!(
        f.stacks().get_opt("typo-prod-app").await.unwrap().is_none(),
        "nothing deployed"
    );
    settled(&f, "typo").await;
    f.finish().await;
}

#[tokio::test]
async fn an_account_the_namespace_may_not_use_is_a_clear_condition() {
    let f = Fixture::new("pipe-tenant").await;
    let account = format!("foreign-{}", unique_suffix());
    let body: AwsAccount = serde_json::from_value(json!({
        "apiVersion": "stackpilot.dev/v1alpha1", "kind": "AwsAccount",
        "metadata": {"name": account, "labels": {"stackpilot.dev/test-namespace": f.ns.name}},
        "spec": {"accountId": "000000000000", "allowedRegions": ["us-east-1"],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "elsewhere"}}}}))
    .unwrap();
    let accounts: Api<AwsAccount> = Api::all(f.client.clone());
    accounts
        .create(&PostParams::default(), &body)
        .await
        .expect("AwsAccount");
    apply(
        &f,
        "web",
        json!({"source": {"artifact": {"revision": "v1", "template": {"body": TEMPLATE}}},
            "stages": [{"name": "dev", "actions": [{"name": "app",
                "deploy": {"stack": {"region": "us-east-1", "accountRef": {"name": account}}}}]}]}),
    )
    .await;
    let failed = wait_execution(&f, "web", "the refused deploy fails", |e| e.phase.is_finished()).await;
    let _ = accounts.delete(&account, &Default::default()).await;
    assert_eq!(failed.phase, ExecutionPhase::Failed, "{failed:?}");
    let app = failed.actions.iter().find(|a| a.action == "app").unwrap();
    let message = app.message.clone().unwrap_or_default();
    assert!(
        message.contains(&account) && message.contains("Stack web-dev-app"),
        "{message}"
    );
    let pipeline = pipelines(&f).get("web").await.unwrap();
    let stalled = condition(&pipeline, "Stalled").unwrap();
    assert_eq!(stalled.0, "True");
    assert!(stalled.2.contains(&account), "{stalled:?}");
    let writes = f
        .operator
        .metric("stackpilot_aws_calls_total", &["CreateChangeSet"])
        .await;
    assert_eq!(writes, 0.0, "no AWS write");
    settled(&f, "web").await;
    f.finish().await;
}
