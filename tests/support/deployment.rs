//! StackDeployment tests on the test bed: a namespace with the operator,
//! AwsAccounts over two LocalStack accounts (the own one, and 222222222222
//! through the `deployer` role), and SDK readers of what each target's
//! account and region holds (stacks, alarms). LocalStack must run
//! `cloudwatch` (`STACKPILOT_LOCALSTACK_SERVICES=...,cloudwatch`).

use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use stackpilot::api::{AwsAccount, DeploymentPhase, StackDeployment};

use super::{Operator, TestBed, TestNamespace, eventually, install_crds, unique_suffix};

pub const TIMEOUT: Duration = Duration::from_secs(240);
pub const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "us-west-2"];
/// LocalStack's default account (the access key `test`).
pub const OWN_ACCOUNT: &str = "000000000000";
pub const OTHER_ACCOUNT: &str = "222222222222";

pub const TEMPLATE: &str = "Parameters:\n  Visibility: {Type: Number}\nResources:\n  Topic:\n    Type: AWS::SNS::Topic\nOutputs:\n  Seen: {Value: !Ref Visibility}\n";

async fn sdk_config(endpoint: &str, credentials: Credentials, region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .credentials_provider(credentials)
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// LocalStack takes a 12-digit access key id as that account.
pub async fn cloudformation(endpoint: &str, key: &str, region: &str) -> aws_sdk_cloudformation::Client {
    let credentials = Credentials::new(key, "test", None, None, "deployment-e2e");
    aws_sdk_cloudformation::Client::new(&sdk_config(endpoint, credentials, region).await)
}

/// The `Visibility` parameter of `stack` in that account and region, if it
/// exists and has settled.
pub async fn visibility(endpoint: &str, key: &str, region: &str, stack: &str) -> Option<String> {
    let cfn = cloudformation(endpoint, key, region).await;
    let answer = cfn.describe_stacks().stack_name(stack).send().await.ok()?;
    let found = answer.stacks().first()?;
    let status = found.stack_status()?.as_str().to_string();
    if !status.ends_with("_COMPLETE") || status.contains("ROLLBACK") || status.contains("REVIEW") {
        return None;
    }
    found
        .parameters()
        .iter()
        .find(|p| p.parameter_key() == Some("Visibility"))
        .and_then(|p| p.parameter_value().map(str::to_string))
}

/// How many times a change set was executed on `stack` in that account and
/// region: the stack's own CREATE/UPDATE_IN_PROGRESS events.
pub async fn executions(endpoint: &str, key: &str, region: &str, stack: &str) -> usize {
    let cfn = cloudformation(endpoint, key, region).await;
    let mut count = 0;
    let mut token = None;
    loop {
        let page = cfn
            .describe_stack_events()
            .stack_name(stack)
            .set_next_token(token)
            .send()
            .await
            .expect("DescribeStackEvents");
        count += page
            .stack_events()
            .iter()
            .filter(|e| e.logical_resource_id() == Some(stack))
            .filter(|e| {
                matches!(
                    e.resource_status().map(|s| s.as_str()),
                    Some("CREATE_IN_PROGRESS" | "UPDATE_IN_PROGRESS")
                )
            })
            .count();
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return count;
        }
    }
}

/// Waits until `stack` shows `Visibility = want` in every placement given.
pub async fn wait_visibility(endpoint: &str, stack: &str, placements: &[(&str, &str)], want: &str) {
    for (key, region) in placements {
        eventually(
            TIMEOUT,
            &format!("{stack} in {key}/{region} at Visibility {want}"),
            || async move { visibility(endpoint, key, region, stack).await.filter(|v| v == want) },
        )
        .await;
    }
}

/// The role `deployer` in 222222222222, made with that account's own keys.
pub async fn create_deployer_role(endpoint: &str) {
    let cfn = cloudformation(endpoint, OTHER_ACCOUNT, "us-east-1").await;
    let template = r#"{"Resources": {"Role": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "deployer",
        "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}}}}}"#;
    let created = cfn
        .create_stack()
        .stack_name("deployer-role")
        .template_body(template)
        .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityNamedIam)
        .send()
        .await;
    if let Err(error) = created {
        let text = format!("{error:?}");
        assert!(text.contains("AlreadyExists"), "create the deployer role: {text}");
    }
}

/// A CloudWatch client in `account` (the own one with the operator's keys,
/// 222222222222 through the `deployer` role, as the AwsAccount assumes it).
pub async fn cloudwatch(endpoint: &str, account: &str, region: &str) -> aws_sdk_cloudwatch::Client {
    let own = Credentials::new("test", "test", None, None, "deployment-e2e");
    let credentials = if account == OWN_ACCOUNT {
        own
    } else {
        let sts = aws_sdk_sts::Client::new(&sdk_config(endpoint, own, region).await);
        let assumed = sts
            .assume_role()
            .role_arn(format!("arn:aws:iam::{account}:role/deployer"))
            .role_session_name("deployment-e2e")
            .send()
            .await
            .expect("assume the deployer role");
        let c = assumed.credentials().expect("credentials");
        Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            None,
            "deployment-e2e-role",
        )
    };
    aws_sdk_cloudwatch::Client::new(&sdk_config(endpoint, credentials, region).await)
}

/// A metric alarm nobody feeds: it stays INSUFFICIENT_DATA (a gate passes)
/// until a test sets its state. Its period is an hour, so LocalStack's own
/// evaluation does not reset a state set by the test during the test.
pub async fn put_alarm(cw: &aws_sdk_cloudwatch::Client, name: &str) {
    use aws_sdk_cloudwatch::types::{ComparisonOperator, Statistic};
    cw.put_metric_alarm()
        .alarm_name(name)
        .namespace("StackpilotE2E")
        .metric_name("Errors")
        .statistic(Statistic::Sum)
        .period(3600)
        .evaluation_periods(1)
        .threshold(1.0)
        .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
        .send()
        .await
        .unwrap_or_else(|e| panic!("PutMetricAlarm {name}: {e:?}"));
}

/// A fresh alarm, created (OK) in every target's account and region: a
/// missing one fails the gate. Returns its name.
pub async fn alarm_everywhere(endpoint: &str) -> String {
    let alarm = format!("sdep-errors-{}", unique_suffix());
    for (account, region) in every_placement() {
        put_alarm(&cloudwatch(endpoint, account, region).await, &alarm).await;
    }
    alarm
}

pub async fn set_alarm(cw: &aws_sdk_cloudwatch::Client, name: &str, state: &str, reason: &str) {
    cw.set_alarm_state()
        .alarm_name(name)
        .state_value(state.into())
        .state_reason(reason)
        .send()
        .await
        .unwrap_or_else(|e| panic!("SetAlarmState {name} {state}: {e:?}"));
}

/// One namespace, its operator, and the AwsAccounts made for it.
pub struct Bed {
    pub bed: TestBed,
    pub client: kube::Client,
    pub ns: TestNamespace,
    pub operator: Operator,
    pub accounts: Vec<String>,
}

impl Bed {
    pub async fn new(prefix: &str) -> Bed {
        let bed = TestBed::get();
        let client = bed.client().await;
        install_crds(&client).await;
        let ns = TestNamespace::new(&client, prefix).await;
        let operator = Operator::start(&bed, &ns.name, &bed.aws_endpoint, &[]).await;
        Bed {
            bed,
            client,
            ns,
            operator,
            accounts: Vec::new(),
        }
    }

    pub fn endpoint(&self) -> String {
        self.bed.aws_endpoint.clone()
    }

    pub fn deployments(&self) -> Api<StackDeployment> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    /// An AwsAccount for this test's namespace, verified by the operator.
    pub async fn account(&mut self, prefix: &str, spec: Value) -> String {
        let name = format!("{prefix}-{}", unique_suffix());
        let mut spec = spec;
        spec["allowedRegions"] = json!(REGIONS);
        spec["namespaceSelector"] = json!({"matchLabels": {"kubernetes.io/metadata.name": self.ns.name}});
        let account: AwsAccount = serde_json::from_value(json!({
            "apiVersion": "stackpilot.dev/v1alpha1", "kind": "AwsAccount",
            "metadata": {"name": name, "labels": {"stackpilot.dev/test-namespace": self.ns.name}},
            "spec": spec,
        }))
        .expect("AwsAccount");
        let api: Api<AwsAccount> = Api::all(self.client.clone());
        api.create(&PostParams::default(), &account)
            .await
            .expect("create AwsAccount");
        self.accounts.push(name.clone());
        eventually(TIMEOUT, &format!("AwsAccount {name} Ready"), || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let a = api.get(&name).await.ok()?;
                let ready = a
                    .status?
                    .conditions
                    .into_iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                ready.then_some(())
            }
        })
        .await;
        name
    }

    /// The own account and 222222222222 (through the `deployer` role).
    pub async fn two_accounts(&mut self) -> (String, String) {
        create_deployer_role(&self.endpoint()).await;
        let own = self.account("own", json!({"accountId": OWN_ACCOUNT})).await;
        let role = format!("arn:aws:iam::{OTHER_ACCOUNT}:role/deployer");
        let other = self
            .account("other", json!({"accountId": OTHER_ACCOUNT, "roleArn": role}))
            .await;
        (own, other)
    }

    pub async fn apply(&self, name: &str, spec: Value) {
        let object = json!({"apiVersion": "stackpilot.dev/v1alpha1", "kind": "StackDeployment",
            "metadata": {"name": name}, "spec": spec});
        self.deployments()
            .patch(name, &PatchParams::apply("e2e-test").force(), &Patch::Apply(&object))
            .await
            .expect("apply StackDeployment");
    }

    pub async fn annotate(&self, name: &str, key: &str, value: Option<&str>) {
        let patch = json!({"metadata": {"annotations": {key: value}}});
        self.deployments()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("annotate StackDeployment");
    }

    pub async fn get(&self, name: &str) -> StackDeployment {
        self.deployments().get(name).await.expect("get StackDeployment")
    }

    pub async fn wait_phase(&self, name: &str, phase: DeploymentPhase, revision: &str) -> StackDeployment {
        let api = self.deployments();
        eventually(TIMEOUT, &format!("{name} {phase:?} at {revision}"), || {
            let api = api.clone();
            async move {
                let d = api.get(name).await.ok()?;
                let status = d.status.as_ref()?;
                let current = status.observed_generation == d.metadata.generation;
                let at = status.update_revision.as_ref().is_some_and(|r| r.revision == revision);
                (current && at && status.phase == Some(phase)).then_some(d)
            }
        })
        .await
    }

    /// Waits until `check` holds on the deployment's status.
    pub async fn wait_status<F>(&self, name: &str, what: &str, check: F) -> StackDeployment
    where
        F: Fn(&stackpilot::api::StackDeploymentStatus) -> bool,
    {
        let api = self.deployments();
        eventually(TIMEOUT, &format!("{name}: {what}"), || {
            let api = api.clone();
            let check = &check;
            async move {
                let d = api.get(name).await.ok()?;
                let current = d.status.as_ref()?.observed_generation == d.metadata.generation;
                (current && check(d.status.as_ref()?)).then_some(d)
            }
        })
        .await
    }

    /// The Stalled condition of a deployment refused as invalid at v1.
    pub async fn stalled(&self, name: &str) -> Condition {
        let d = self.wait_phase(name, DeploymentPhase::Invalid, "v1").await;
        condition(&d, "Stalled").expect("Stalled")
    }

    /// ControllerRevisions in the namespace (every one is the deployment's).
    pub async fn controller_revisions(&self) -> Vec<ControllerRevision> {
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &self.ns.name);
        api.list(&ListParams::default())
            .await
            .expect("ControllerRevisions")
            .items
    }

    /// Child Stack writes (server-side applies) the operator made so far.
    pub async fn child_writes(&self) -> f64 {
        self.operator
            .metric("stackpilot_status_writes_total", &["StackDeployment", "\"child\""])
            .await
    }

    /// SIGKILLs the operator (no chance to clean up), then starts a new one.
    pub async fn kill_operator(&mut self) {
        use std::os::unix::process::ExitStatusExt;
        let pid = self.operator.pid().to_string();
        let _ = std::process::Command::new("kill").args(["-KILL", &pid]).status();
        let status = self
            .operator
            .wait_exit(Duration::from_secs(10))
            .await
            .expect("operator exits");
        assert_eq!(
            status.signal(),
            Some(9),
            "killed, not ended on its own; log {}",
            self.operator.log.display()
        );
        self.operator = Operator::start(&self.bed, &self.ns.name, &self.bed.aws_endpoint, &[]).await;
    }

    pub async fn finish(self) {
        let api: Api<AwsAccount> = Api::all(self.client.clone());
        for name in &self.accounts {
            let _ = api.delete(name, &Default::default()).await;
        }
        self.operator.stop().await;
        self.ns.cleanup().await;
    }
}

pub fn condition(d: &StackDeployment, type_: &str) -> Option<Condition> {
    d.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_).cloned()
}

/// Six targets: `a-<region>` in `first`, `b-<region>` in `second`, in that order.
pub fn targets(first: &str, second: &str) -> Value {
    let mut targets = Vec::new();
    for (account, short) in [(first, "a"), (second, "b")] {
        for region in REGIONS {
            targets
                .push(json!({"name": target_name(short, region), "region": region, "accountRef": {"name": account}}));
        }
    }
    Value::Array(targets)
}

pub fn target_name(short: &str, region: &str) -> String {
    format!("{short}-{}", region.replace('-', ""))
}

/// Every (access key = account, region) pair the six targets cover.
pub fn every_placement() -> Vec<(&'static str, &'static str)> {
    [OWN_ACCOUNT, OTHER_ACCOUNT]
        .into_iter()
        .flat_map(|a| REGIONS.into_iter().map(move |r| (a, r)))
        .collect()
}

pub fn artifact(revision: &str, visibility: &str) -> Value {
    json!({"revision": revision, "template": {"body": TEMPLATE},
        "parameters": [{"name": "Visibility", "value": visibility}]})
}
