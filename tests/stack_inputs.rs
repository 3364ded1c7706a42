//! Stacks wired through Kubernetes, end to end on the real kube-apiserver
//! and LocalStack: parameters from Secrets, ConfigMaps and other Stacks'
//! outputs (and updates when those change), dependency cycles, outputs
//! written to a Secret or ConfigMap, AwsAccount tenancy, and a stack changed
//! outside Kubernetes brought back to the spec.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use stackpilot::api::AwsAccount;
use stackpilot::aws::{ChangeSetRequest, ChangeSetType, Parameter, StackOptions, TemplateSource};
use support::eventually;
use support::fixture::{Fixture, TIMEOUT, condition, ready};

const TAGGED_QUEUE: &str = r#"
Parameters:
  Label: {Type: String}
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      Tags:
        - {Key: label, Value: !Ref Label}
Outputs:
  QueueArn: {Value: !GetAtt Queue.Arn}
"#;

const NUMBER_QUEUE: &str = r#"
Parameters:
  Visibility: {Type: Number, Default: 30}
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties: {VisibilityTimeout: !Ref Visibility}
Outputs:
  Visibility: {Value: !Ref Visibility}
  QueueArn: {Value: !GetAtt Queue.Arn}
  QueueUrl: {Value: !Ref Queue}
"#;

async fn put_secret(client: &Client, ns: &str, name: &str, key: &str, value: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {key: value}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::apply("test").force(), &Patch::Apply(&secret))
        .await
        .unwrap();
}

async fn put_config_map(client: &Client, ns: &str, name: &str, key: &str, value: &str) {
    let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {key: value}});
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::apply("test").force(), &Patch::Apply(&config_map))
        .await
        .unwrap();
}

/// Waits until the stack is Ready on a change set other than `previous`.
async fn wait_new_revision(f: &Fixture, name: &str, previous: &str) -> stackpilot::api::Stack {
    let api = f.stacks();
    eventually(TIMEOUT, &format!("{name} applied a new change set"), || {
        let api = api.clone();
        async move {
            let stack = api.get(name).await.ok()?;
            let status = stack.status.as_ref()?;
            let moved = status.change_set.as_ref()?.name != previous;
            let ok = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            (moved && ok && status.operation.is_none()).then_some(stack)
        }
    })
    .await
}

#[tokio::test]
async fn secret_and_config_map_changes_update_the_stack_and_secrets_never_leak() {
    let f = Fixture::new("in-secret").await;
    let ns = f.ns.name.clone();
    let secret_value = format!("s3cr3t-{}", support::unique_suffix());
    put_secret(&f.client, &ns, "label", "value", &secret_value).await;
    put_config_map(&f.client, &ns, "template", "body", TAGGED_QUEUE).await;
    f.apply(
        "tagged",
        json!({"region": "us-east-1", "template": {"configMapRef": {"name": "template", "key": "body"}},
            "parameters": [{"name": "Label", "valueFrom": {"secretKeyRef": {"name": "label", "key": "value"}}}]}),
    )
    .await;
    let stack = f.wait_condition("tagged", "Ready", "True").await;
    let first = stack.status.as_ref().unwrap().change_set.clone().unwrap().name;

    // A new Secret value updates the stack (the watch on Secrets wakes it).
    let new_value = format!("{secret_value}-2");
    put_secret(&f.client, &ns, "label", "value", &new_value).await;
    let stack = wait_new_revision(&f, "tagged", &first).await;
    let second = stack.status.as_ref().unwrap().change_set.clone().unwrap();
    assert_eq!(second.change_type, stackpilot::api::ChangeSetKind::Update);

    // A new template in the ConfigMap does too.
    put_config_map(
        &f.client,
        &ns,
        "template",
        "body",
        &TAGGED_QUEUE.replace("Tags:", "DelaySeconds: 5\n      Tags:"),
    )
    .await;
    let stack = wait_new_revision(&f, "tagged", &second.name).await;
    let third = stack.status.as_ref().unwrap().change_set.clone().unwrap();
    assert!(
        third
            .changes
            .iter()
            .any(|c| c.action == stackpilot::api::ChangeAction::Modify),
        "{third:?}"
    );

    // The value is nowhere: status, events, operator log.
    let status = serde_json::to_string(&stack.status).unwrap();
    assert!(!status.contains(&secret_value), "secret in status: {status}");
    let events = f.events("tagged").await;
    assert!(events.iter().all(|e| !e.2.contains(&secret_value)), "secret in events");
    let log = std::fs::read_to_string(&f.operator.log).unwrap_or_default();
    assert!(!log.is_empty(), "operator log exists");
    assert!(!log.contains(&secret_value), "secret in the operator log");
    assert!(
        !log.contains('\u{1b}'),
        "terminal colour codes in a log written to a file"
    );

    f.stacks().delete("tagged", &DeleteParams::default()).await.unwrap();
    f.wait_gone("tagged").await;
    f.finish().await;
}

#[tokio::test]
async fn outputs_flow_to_dependents_and_to_secrets_and_config_maps() {
    let f = Fixture::new("in-deps").await;
    let ns = f.ns.name.clone();
    // The dependent is applied first and waits for its dependency.
    f.apply(
        "app",
        json!({"region": "us-east-1", "template": {"body": TAGGED_QUEUE},
            "parameters": [{"name": "Label", "valueFrom": {"stackOutput": {"stack": "net", "output": "QueueArn"}}}],
            "writeOutputsTo": {"kind": "ConfigMap", "name": "app-outputs"}}),
    )
    .await;
    let waiting = f.wait_condition("app", "Ready", "False").await;
    assert_eq!(ready(&waiting).reason, "DependencyNotReady");
    f.apply(
        "net",
        json!({"region": "us-east-1", "template": {"body": NUMBER_QUEUE},
            "writeOutputsTo": {"kind": "Secret", "name": "net-outputs"}, "sensitiveOutputs": ["QueueUrl"]}),
    )
    .await;
    let net = f.wait_condition("net", "Ready", "True").await;
    f.wait_condition("app", "Ready", "True").await;
    let arn = net.status.as_ref().unwrap().outputs.get("QueueArn").unwrap().clone();
    let described = f.aws.describe_stack(&format!("{ns}-app")).await.unwrap().unwrap();
    assert_eq!(
        described.parameters.iter().find(|p| p.key == "Label").map(|p| &p.value),
        Some(&arn)
    );

    // Sensitive outputs go only to the Secret.
    let status = net.status.as_ref().unwrap();
    assert!(!status.outputs.contains_key("QueueUrl"), "sensitive output in status");
    let secret = Api::<Secret>::namespaced(f.client.clone(), &ns)
        .get("net-outputs")
        .await
        .unwrap();
    let data = secret.data.clone().unwrap();
    assert!(data.contains_key("QueueUrl") && data.contains_key("QueueArn") && data.contains_key("Visibility"));
    let owner = &secret.owner_references()[0];
    assert_eq!((owner.kind.as_str(), Some(owner.uid.clone())), ("Stack", net.uid()));
    let config_map = Api::<ConfigMap>::namespaced(f.client.clone(), &ns)
        .get("app-outputs")
        .await
        .unwrap();
    assert!(config_map.data.unwrap().contains_key("QueueArn"));
    // Status records what was written (the write that made Ready may come
    // before the one that mirrors the outputs).
    let stacks = f.stacks();
    eventually(Duration::from_secs(30), "app's written outputs in status", || {
        let stacks = stacks.clone();
        async move {
            let app = stacks.get("app").await.ok()?;
            app.status?.written_outputs.map(|_| ())
        }
    })
    .await;

    // An output change reaches the Secret.
    f.apply(
        "net",
        json!({"region": "us-east-1", "template": {"body": NUMBER_QUEUE},
            "parameters": [{"name": "Visibility", "value": "45"}],
            "writeOutputsTo": {"kind": "Secret", "name": "net-outputs"}, "sensitiveOutputs": ["QueueUrl"]}),
    )
    .await;
    let secrets = Api::<Secret>::namespaced(f.client.clone(), &ns);
    eventually(TIMEOUT, "Secret shows the new output", || {
        let secrets = secrets.clone();
        async move {
            let secret = secrets.get("net-outputs").await.ok()?;
            let value = secret.data?.get("Visibility")?.0.clone();
            (value == b"45").then_some(())
        }
    })
    .await;

    for name in ["app", "net"] {
        f.stacks().delete(name, &DeleteParams::default()).await.unwrap();
        f.wait_gone(name).await;
    }
    // The garbage collector removes the owned Secret with its Stack.
    eventually(TIMEOUT, "owned Secret removed", || {
        let secrets = secrets.clone();
        async move { secrets.get_opt("net-outputs").await.ok()?.is_none().then_some(()) }
    })
    .await;
    f.finish().await;
}

#[tokio::test]
async fn a_dependency_cycle_is_named() {
    let f = Fixture::new("in-cycle").await;
    let body = "Resources:\n  Q: {Type: AWS::SQS::Queue}\n";
    f.apply(
        "a",
        json!({"region": "us-east-1", "template": {"body": body}, "dependsOn": [{"name": "b"}]}),
    )
    .await;
    f.apply(
        "b",
        json!({"region": "us-east-1", "template": {"body": body}, "dependsOn": [{"name": "c"}]}),
    )
    .await;
    f.apply(
        "c",
        json!({"region": "us-east-1", "template": {"body": body}, "dependsOn": [{"name": "a"}]}),
    )
    .await;
    let stack = f.wait_condition("a", "Stalled", "True").await;
    assert_eq!(ready(&stack).reason, "DependencyCycle");
    assert_eq!(ready(&stack).message, "dependency cycle: a -> b -> c -> a");
    assert_eq!(f.operator.metric("stackpilot_aws_calls_total", &[]).await, 0.0);

    // Breaking the cycle lets all three converge.
    f.apply("c", json!({"region": "us-east-1", "template": {"body": body}}))
        .await;
    for name in ["c", "b", "a"] {
        f.wait_condition(name, "Ready", "True").await;
    }
    for name in ["a", "b", "c"] {
        f.stacks().delete(name, &DeleteParams::default()).await.unwrap();
        f.wait_gone(name).await;
    }
    f.finish().await;
}

#[tokio::test]
async fn accounts_bind_namespaces_regions_and_service_roles() {
    let f = Fixture::with_env("in-tenant", &[("STACKPILOT_ALLOW_OPERATOR_CREDENTIALS", "false")]).await;
    let ns = f.ns.name.clone();
    // LocalStack answers GetCallerIdentity with the account of the assumed role.
    let namespaces: Api<Namespace> = Api::all(f.client.clone());
    let label = json!({"metadata": {"labels": {"team": ns.clone()}}});
    namespaces
        .patch(&ns, &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
    let accounts: Api<AwsAccount> = Api::all(f.client.clone());
    let account_name = format!("acct-{ns}");
    let account: AwsAccount = serde_json::from_value(json!({
        "apiVersion": "stackpilot.dev/v1alpha1", "kind": "AwsAccount",
        "metadata": {"name": account_name, "labels": {"stackpilot.dev/test-namespace": ns}},
        "spec": {"accountId": "111111111111", "roleArn": "arn:aws:iam::111111111111:role/deployer",
            "allowedRegions": ["us-east-1"], "namespaceSelector": {"matchLabels": {"team": ns}},
            "allowedServiceRoles": ["arn:aws:iam::111111111111:role/cfn-*"],
            "defaultTags": {"cost-center": "42"}}
    }))
    .unwrap();
    accounts.create(&PostParams::default(), &account).await.unwrap();
    let body = "Resources:\n  Q: {Type: AWS::SQS::Queue}\n";

    // Without an account, and the operator's own credentials not allowed.
    f.apply("none", json!({"region": "us-east-1", "template": {"body": body}}))
        .await;
    let stack = f.wait_condition("none", "Stalled", "True").await;
    assert_eq!(ready(&stack).reason, "NoAccount");
    // A region the account does not allow, and a service role it does not list.
    f.apply(
        "region",
        json!({"region": "eu-west-1", "accountRef": {"name": account_name}, "template": {"body": body}}),
    )
    .await;
    let stack = f.wait_condition("region", "Stalled", "True").await;
    assert_eq!(ready(&stack).reason, "RegionNotAllowed", "{}", ready(&stack).message);
    f.apply(
        "role",
        json!({"region": "us-east-1", "accountRef": {"name": account_name}, "template": {"body": body},
            "serviceRoleArn": "arn:aws:iam::111111111111:role/admin"}),
    )
    .await;
    let stack = f.wait_condition("role", "Stalled", "True").await;
    assert_eq!(
        ready(&stack).reason,
        "ServiceRoleNotAllowed",
        "{}",
        ready(&stack).message
    );
    // None of these reached AWS (the account's own verification is STS only).
    let cfn_calls = f.operator.metric("stackpilot_aws_calls_total", &[]).await
        - f.operator
            .metric("stackpilot_aws_calls_total", &["GetCallerIdentity"])
            .await;
    assert_eq!(cfn_calls, 0.0, "refused Stacks must not call CloudFormation");

    // An allowed Stack works through the account, with its default tags.
    f.apply(
        "ok",
        json!({"region": "us-east-1", "accountRef": {"name": account_name}, "template": {"body": body}}),
    )
    .await;
    let stack = f.wait_condition("ok", "Ready", "True").await;
    assert!(
        stack
            .status
            .as_ref()
            .unwrap()
            .stack_id
            .as_deref()
            .unwrap()
            .contains(":111111111111:")
    );
    let account = accounts.get(&account_name).await.unwrap();
    let verified = account
        .status
        .unwrap()
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    assert!(verified, "the account was verified");

    // Another namespace that the selector does not match cannot use it.
    let other = Fixture::with_env("in-other", &[("STACKPILOT_ALLOW_OPERATOR_CREDENTIALS", "false")]).await;
    other
        .apply(
            "steal",
            json!({"region": "us-east-1", "accountRef": {"name": account_name}, "template": {"body": body}}),
        )
        .await;
    let stack = other.wait_condition("steal", "Stalled", "True").await;
    assert_eq!(ready(&stack).reason, "NamespaceNotAllowed");
    assert_eq!(other.operator.metric("stackpilot_aws_calls_total", &[]).await, 0.0);
    other.stacks().delete("steal", &DeleteParams::default()).await.unwrap();
    other.wait_gone("steal").await;
    other.finish().await;

    for name in ["none", "region", "role", "ok"] {
        f.stacks().delete(name, &DeleteParams::default()).await.unwrap();
        f.wait_gone(name).await;
    }
    accounts.delete(&account_name, &DeleteParams::default()).await.unwrap();
    f.finish().await;
}

#[tokio::test]
async fn a_stack_changed_outside_kubernetes_is_brought_back() {
    let f = Fixture::new("in-oob").await;
    let ns = f.ns.name.clone();
    f.apply(
        "oob",
        json!({"region": "us-east-1", "template": {"body": NUMBER_QUEUE},
            "parameters": [{"name": "Visibility", "value": "40"}], "tags": {"team": "a"}}),
    )
    .await;
    f.wait_condition("oob", "Ready", "True").await;

    // Someone changes the parameter and a tag with the AWS API directly.
    let stack_name = format!("{ns}-oob");
    let current = f.aws.describe_stack(&stack_name).await.unwrap().unwrap();
    let mut tags: BTreeMap<String, String> = current.tags.clone();
    tags.insert("team".into(), "b".into());
    let request = ChangeSetRequest {
        stack_name: stack_name.clone(),
        change_set_name: "manual-change".into(),
        change_set_type: ChangeSetType::Update,
        template: TemplateSource::Body(NUMBER_QUEUE.into()),
        parameters: vec![Parameter {
            key: "Visibility".into(),
            value: "99".into(),
        }],
        options: StackOptions {
            tags,
            ..StackOptions::default()
        },
        client_token: "manual-change".into(),
        description: None,
        deployment_mode: None,
    };
    f.aws.create_change_set(&request).await.unwrap();
    eventually(Duration::from_secs(30), "manual change set ready", || async {
        let cs = f.aws.describe_change_set(&stack_name, "manual-change").await.ok()??;
        (cs.execution_status == stackpilot::aws::ExecutionStatus::Available).then_some(())
    })
    .await;
    f.aws
        .execute_change_set(&stack_name, "manual-change", "manual-exec")
        .await
        .unwrap();

    // stackpilot notices on its next look, says so, and restores the spec.
    let api = f.stacks();
    eventually(TIMEOUT, "configuration drift reported", || {
        let api = api.clone();
        async move {
            let stack = api.get("oob").await.ok()?;
            let drifted = condition(&stack, "Drifted")?;
            (drifted.reason == "ConfigurationDrift").then_some(())
        }
    })
    .await;
    let restored = eventually(TIMEOUT, "spec restored", || async {
        let stack = f.aws.describe_stack(&stack_name).await.ok()??;
        let value = stack.parameters.iter().find(|p| p.key == "Visibility")?.value.clone();
        (value == "40" && stack.tags.get("team").map(String::as_str) == Some("a")).then_some(stack)
    })
    .await;
    assert!(!restored.status.is_in_progress());
    let stack = f.wait_condition("oob", "Ready", "True").await;
    let events = f.events("oob").await;
    assert!(
        events
            .iter()
            .any(|(t, r, n)| t == "Warning" && r == "ConfigurationDrift" && n.contains("Visibility"))
    );
    assert_eq!(stack.status.unwrap().repairs, 1);
    f.stacks().delete("oob", &DeleteParams::default()).await.unwrap();
    f.wait_gone("oob").await;
    f.finish().await;
}

#[tokio::test]
async fn a_template_edited_outside_kubernetes_is_found_at_the_next_drift_check() {
    let f = Fixture::new("in-tpl").await;
    let ns = f.ns.name.clone();
    f.apply(
        "tpl",
        json!({"region": "us-east-1", "template": {"body": NUMBER_QUEUE}, "drift": {"interval": "3s"}}),
    )
    .await;
    f.wait_condition("tpl", "Ready", "True").await;

    // Someone deploys another template to the stack with the AWS API.
    let stack_name = format!("{ns}-tpl");
    let current = f.aws.describe_stack(&stack_name).await.unwrap().unwrap();
    let edited = NUMBER_QUEUE.replace(
        "Properties: {VisibilityTimeout: !Ref Visibility}",
        "Properties: {VisibilityTimeout: !Ref Visibility, DelaySeconds: 7}",
    );
    let request = ChangeSetRequest {
        stack_name: stack_name.clone(),
        change_set_name: "manual-template".into(),
        change_set_type: ChangeSetType::Update,
        template: TemplateSource::Body(edited.clone()),
        parameters: vec![],
        options: StackOptions {
            tags: current.tags.clone(),
            ..StackOptions::default()
        },
        client_token: "manual-template".into(),
        description: None,
        deployment_mode: None,
    };
    f.aws.create_change_set(&request).await.unwrap();
    eventually(Duration::from_secs(30), "manual change set ready", || async {
        let cs = f.aws.describe_change_set(&stack_name, "manual-template").await.ok()??;
        (cs.execution_status == stackpilot::aws::ExecutionStatus::Available).then_some(())
    })
    .await;
    f.aws
        .execute_change_set(&stack_name, "manual-template", "manual-template-exec")
        .await
        .unwrap();

    let events = || f.events("tpl");
    eventually(TIMEOUT, "template drift reported and repaired", || async {
        let found = events()
            .await
            .into_iter()
            .any(|(t, r, n)| t == "Warning" && r == "ConfigurationDrift" && n.contains("the template"));
        found.then_some(())
    })
    .await;
    eventually(TIMEOUT, "the spec's template is back in AWS", || async {
        let live = f.aws.get_template(&stack_name).await.ok()?;
        (live.trim_end() == NUMBER_QUEUE.trim_end()).then_some(())
    })
    .await;
    f.wait_condition("tpl", "Ready", "True").await;
    f.stacks().delete("tpl", &DeleteParams::default()).await.unwrap();
    f.wait_gone("tpl").await;
    f.finish().await;
}

#[tokio::test]
async fn relabelling_a_namespace_grants_its_stacks_at_once() {
    // A resync far beyond the test's timeout: only the namespace watch can help.
    let env = [
        ("STACKPILOT_ALLOW_OPERATOR_CREDENTIALS", "false"),
        ("STACKPILOT_RESYNC_SECONDS", "3600"),
    ];
    let f = Fixture::with_env("relabel", &env).await;
    let ns = f.ns.name.clone();
    let accounts: Api<AwsAccount> = Api::all(f.client.clone());
    let account_name = format!("acct-{ns}");
    let account: AwsAccount = serde_json::from_value(json!({
        "apiVersion": "stackpilot.dev/v1alpha1", "kind": "AwsAccount",
        "metadata": {"name": account_name, "labels": {"stackpilot.dev/test-namespace": ns}},
        "spec": {"accountId": "111111111111", "roleArn": "arn:aws:iam::111111111111:role/deployer",
            "allowedRegions": ["us-east-1"], "namespaceSelector": {"matchLabels": {"granted": ns}}}
    }))
    .unwrap();
    accounts.create(&PostParams::default(), &account).await.unwrap();
    let body = "Resources:\n  Q: {Type: AWS::SQS::Queue}\n";
    f.apply(
        "late",
        json!({"region": "us-east-1", "accountRef": {"name": account_name}, "template": {"body": body}}),
    )
    .await;
    let stack = f.wait_condition("late", "Stalled", "True").await;
    assert_eq!(ready(&stack).reason, "NamespaceNotAllowed", "{}", ready(&stack).message);

    // Granting the namespace by a label is acted on at once, not at the next resync.
    let namespaces: Api<Namespace> = Api::all(f.client.clone());
    let label = json!({"metadata": {"labels": {"granted": ns.clone()}}});
    namespaces
        .patch(&ns, &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
    f.wait_condition("late", "Ready", "True").await;
    accounts.delete(&account_name, &DeleteParams::default()).await.unwrap();
    f.finish().await;
}
