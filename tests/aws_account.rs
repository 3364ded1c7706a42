//! The AwsAccount controller against the real kube-apiserver, verifying
//! credentials through STS on LocalStack and moto, and the tenancy lookup
//! ([`stackpilot::account::grant_for`]) against real Namespaces.
//!
//! The controller runs in-process, watching only the AwsAccounts labelled
//! with this test's run id, so tests running side by side never reconcile
//! each other's accounts. Every test uses its own namespace and account names
//! and deletes what it creates.
//!
//! Emulator facts (LocalStack 2026.3.0, moto 5.2.5), measured:
//! - GetCallerIdentity with the `test`/`test` keys: LocalStack answers
//!   account `000000000000` (`arn:aws:iam::000000000000:root`), moto
//!   `123456789012` (`arn:aws:sts::123456789012:user/moto`).
//! - AssumeRole succeeds for any role ARN, existing or not, with any external
//!   id and session tags (no trust policy is checked); GetCallerIdentity with
//!   the returned credentials reports the account of the role ARN
//!   (`arn:aws:sts::<role account>:assumed-role/<role>/<session>`), on both.
//!   So a refused AssumeRole can only be tested with the fake.

mod support;

use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use stackpilot::account::tenancy;
use stackpilot::account::{self, FIELD_MANAGER};
use stackpilot::api::AwsAccount;
use stackpilot::aws::identity::{AccountIdentity, FakeIdentity, SdkIdentity};
use stackpilot::aws::sdk::SdkProvider;
use stackpilot::runtime::context::Shared;
use stackpilot::runtime::metrics::Metrics;
use support::{TestBed, TestNamespace, eventually, install_crds, unique_suffix};
use tokio::sync::watch;

const TIMEOUT: Duration = Duration::from_secs(60);
const RUN_LABEL: &str = "stackpilot.dev/test-run";
const LOCALSTACK_ACCOUNT: &str = "000000000000";
const MOTO_ACCOUNT: &str = "123456789012";

async fn sdk_provider(endpoint: &str) -> Arc<SdkProvider> {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .credentials_provider(Credentials::new("test", "test", None, None, "stackpilot-tests"))
        .region(Region::new("us-east-1"))
        .load()
        .await;
    Arc::new(SdkProvider::new(config, Some(endpoint.to_string())))
}

/// An in-process AwsAccount controller for the accounts of one test.
struct Controller {
    client: Client,
    run: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    accounts: Vec<String>,
}

impl Controller {
    async fn start(client: &Client, identity: Arc<dyn AccountIdentity>) -> Controller {
        install_crds(client).await;
        let ctx = Arc::new(Shared::new(client.clone(), Arc::new(Metrics::default())));
        let run = unique_suffix();
        let selector = format!("{RUN_LABEL}={run}");
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            account::run_selected(ctx, identity, Some(&selector), shutdown).await;
        });
        Controller {
            client: client.clone(),
            run,
            stop,
            task,
            accounts: Vec::new(),
        }
    }

    fn api(&self) -> Api<AwsAccount> {
        Api::all(self.client.clone())
    }

    /// Creates an AwsAccount named `<prefix>-<unique>` with this spec.
    async fn create(&mut self, prefix: &str, spec: serde_json::Value) -> String {
        let name = format!("{prefix}-{}", unique_suffix());
        let account: AwsAccount = serde_json::from_value(json!({
            "apiVersion": "stackpilot.dev/v1alpha1",
            "kind": "AwsAccount",
            "metadata": {"name": name, "labels": {RUN_LABEL: self.run}},
            "spec": spec,
        }))
        .expect("AwsAccount");
        self.api()
            .create(&PostParams::default(), &account)
            .await
            .expect("create AwsAccount");
        self.accounts.push(name.clone());
        name
    }

    /// Waits for Ready with `status` and `reason` at the current generation.
    async fn ready(&self, name: &str, status: &str, reason: &str) -> (AwsAccount, Condition) {
        let api = self.api();
        eventually(TIMEOUT, &format!("AwsAccount {name} Ready={status} {reason}"), || {
            let api = api.clone();
            async move {
                let account = api.get(name).await.ok()?;
                let ready = account
                    .status
                    .as_ref()?
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "Ready")?
                    .clone();
                let current = ready.observed_generation == account.metadata.generation;
                (current && ready.status == status && ready.reason == reason).then_some((account, ready))
            }
        })
        .await
    }

    async fn stop(self) {
        for name in &self.accounts {
            let _ = self.api().delete(name, &DeleteParams::default()).await;
        }
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// Events about a cluster-scoped object land in namespace `default`.
async fn event(client: &Client, account: &str, reason: &str) -> Event {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let selector = format!("involvedObject.kind=AwsAccount,involvedObject.name={account}");
    eventually(TIMEOUT, &format!("Event {reason} about AwsAccount {account}"), || {
        let events = events.clone();
        let params = ListParams::default().fields(&selector);
        async move {
            let list = events.list(&params).await.ok()?;
            list.items.into_iter().find(|e| e.reason.as_deref() == Some(reason))
        }
    })
    .await
}

#[tokio::test]
async fn the_right_account_id_becomes_ready() {
    let bed = TestBed::get();
    let client = bed.client().await;
    let provider = sdk_provider(&bed.aws_endpoint).await;
    let identity = Arc::new(SdkIdentity::new(provider.clone()));
    let mut controller = Controller::start(&client, identity).await;
    let role = format!("arn:aws:iam::{LOCALSTACK_ACCOUNT}:role/stackpilot-deployer");
    let name = controller
        .create(
            "acct-ok",
            json!({"accountId": LOCALSTACK_ACCOUNT, "roleArn": role, "externalId": "tenant-42", "allowedRegions": ["eu-west-1"]}),
        )
        .await;

    let (account, ready) = controller.ready(&name, "True", "Verified").await;
    assert_eq!(
        support::gitops::argo_health(&account).0,
        "Healthy",
        "Argo CD's check (the chart's Lua) reads a verified account as Healthy"
    );
    assert_eq!(
        ready.message,
        format!("role {role} resolve to account {LOCALSTACK_ACCOUNT}")
    );
    let status = account.status.unwrap();
    assert_eq!(status.observed_generation, account.metadata.generation);
    assert!(status.last_verified.is_some());
    assert!(!status.conditions.iter().any(|c| c.type_ == "Stalled"));
    // The status is owned by the controller's field manager.
    let managers: Vec<_> = account
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.subresource.as_deref() == Some("status"))
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(managers, vec![FIELD_MANAGER.to_string()]);

    let verified = event(&client, &name, "Verified").await;
    assert_eq!(verified.type_.as_deref(), Some("Normal"));
    controller.stop().await;
}

#[tokio::test]
async fn a_wrong_account_id_is_refused_with_an_event() {
    let bed = TestBed::get();
    let client = bed.client().await;
    let provider = sdk_provider(&bed.aws_endpoint).await;
    let identity = Arc::new(SdkIdentity::new(provider.clone()));
    let mut controller = Controller::start(&client, identity).await;
    // No role: the operator's own credentials, which LocalStack puts in
    // 000000000000.
    let name = controller
        .create("acct-wrong", json!({"accountId": MOTO_ACCOUNT}))
        .await;

    let (account, ready) = controller.ready(&name, "False", "WrongAccount").await;
    let (health, message) = support::gitops::argo_health(&account);
    assert_eq!(health, "Degraded", "Argo CD's check: {message}");
    assert!(message.starts_with("WrongAccount: "), "{message}");
    assert!(
        ready.message.contains(LOCALSTACK_ACCOUNT) && ready.message.contains(MOTO_ACCOUNT),
        "names both ids: {}",
        ready.message
    );
    let status = account.status.unwrap();
    let stalled = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled")
        .expect("Stalled");
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "WrongAccount")
    );
    assert!(status.last_verified.is_none());

    let warning = event(&client, &name, "WrongAccount").await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert_eq!(warning.message, Some(ready.message.clone()));
    controller.stop().await;
}

#[tokio::test]
async fn a_role_in_another_account_is_verified_and_rechecked_on_spec_change() {
    let bed = TestBed::get();
    let client = bed.client().await;
    let provider = sdk_provider(&bed.moto_endpoint).await;
    let identity = Arc::new(SdkIdentity::new(provider.clone()));
    let mut controller = Controller::start(&client, identity).await;
    // moto's own credentials are in 123456789012; the role is in another
    // account, which GetCallerIdentity through the role reports.
    let role = "arn:aws:iam::111111111111:role/stackpilot";
    let name = controller
        .create("acct-moto", json!({"accountId": "111111111111", "roleArn": role}))
        .await;
    let (first, _) = controller.ready(&name, "True", "Verified").await;

    let patch = json!({"spec": {"accountId": MOTO_ACCOUNT}});
    controller
        .api()
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch accountId");
    let (second, ready) = controller.ready(&name, "False", "WrongAccount").await;
    assert!(second.metadata.generation > first.metadata.generation);
    assert!(ready.message.contains("111111111111") && ready.message.contains(MOTO_ACCOUNT));
    // The last good verification stays on record.
    assert_eq!(
        second.status.unwrap().last_verified,
        first.status.unwrap().last_verified
    );
    event(&client, &name, "WrongAccount").await;
    controller.stop().await;
}

#[tokio::test]
async fn a_refused_role_is_assume_role_failed() {
    let bed = TestBed::get();
    let client = bed.client().await;
    let role = "arn:aws:iam::111122223333:role/untrusted";
    let fake = Arc::new(FakeIdentity::new("111122223333"));
    fake.deny_role(role);
    let mut controller = Controller::start(&client, fake.clone()).await;
    let name = controller
        .create(
            "acct-denied",
            json!({"accountId": "111122223333", "roleArn": role, "externalId": "ext-1", "allowedRegions": ["eu-central-1"]}),
        )
        .await;

    let (_, ready) = controller.ready(&name, "False", "AssumeRoleFailed").await;
    assert!(ready.message.contains(role), "{}", ready.message);
    event(&client, &name, "AssumeRoleFailed").await;
    let calls = fake.calls();
    let call = calls.first().expect("one GetCallerIdentity");
    assert_eq!(call.role_arn.as_deref(), Some(role));
    assert_eq!(call.external_id.as_deref(), Some("ext-1"));
    assert_eq!(call.region, "eu-central-1");
    assert_eq!(
        call.session_name.as_deref(),
        Some(format!("stackpilot-awsaccount-{name}").as_str())
    );
    controller.stop().await;
}

#[tokio::test]
async fn one_namespace_cannot_use_another_namespaces_account() {
    let bed = TestBed::get();
    let client = bed.client().await;
    let fake = Arc::new(FakeIdentity::new("111122223333"));
    let mut controller = Controller::start(&client, fake.clone()).await;
    let team_a = TestNamespace::new(&client, "tenancy-a").await;
    let team_b = TestNamespace::new(&client, "tenancy-b").await;
    let role = "arn:aws:iam::111122223333:role/stackpilot";
    let service_role = "arn:aws:iam::111122223333:role/cfn/deployer";
    let name = controller
        .create(
            "acct-team-a",
            json!({
                "accountId": "111122223333",
                "roleArn": role,
                "allowedRegions": ["eu-west-1"],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": team_a.name}},
                "allowedServiceRoles": ["arn:aws:iam::111122223333:role/cfn/*"],
                "defaultTags": {"cost-center": "42"},
            }),
        )
        .await;
    controller.ready(&name, "True", "Verified").await;
    let verifications = fake.calls().len();

    // No watch fills this cache: every grant reads the API server.
    let tenancy = account::TenancyCache::new(client.clone());
    let grant = account::grant_for(
        &tenancy,
        false,
        &team_a.name,
        Some(&name),
        "eu-west-1",
        Some(service_role),
    )
    .await
    .expect("kube")
    .expect("team a may use its account");
    let target = grant.target("web");
    assert_eq!(target.role_arn.as_deref(), Some(role));
    assert_eq!(target.session_name, Some(format!("stackpilot-{}-web", team_a.name)));
    assert_eq!(grant.session_tags("web")[tenancy::SESSION_TAG_NAMESPACE], team_a.name);
    assert_eq!(grant.default_tags["cost-center"], "42");

    let refusal = |result: Result<Result<tenancy::Grant, tenancy::Refusal>, kube::Error>| {
        result.expect("kube").expect_err("refused")
    };
    let cross = refusal(account::grant_for(&tenancy, true, &team_b.name, Some(&name), "eu-west-1", None).await);
    assert_eq!(cross.reason, "NamespaceNotAllowed");
    assert!(cross.message.contains(&team_b.name), "{}", cross.message);
    let region = refusal(account::grant_for(&tenancy, false, &team_a.name, Some(&name), "us-west-2", None).await);
    assert_eq!(region.reason, "RegionNotAllowed");
    let admin = "arn:aws:iam::111122223333:role/admin";
    let passed =
        refusal(account::grant_for(&tenancy, false, &team_a.name, Some(&name), "eu-west-1", Some(admin)).await);
    assert_eq!(passed.reason, "ServiceRoleNotAllowed");
    let missing = refusal(
        account::grant_for(
            &tenancy,
            false,
            &team_a.name,
            Some("no-such-account-x"),
            "eu-west-1",
            None,
        )
        .await,
    );
    assert_eq!((missing.reason, missing.transient), ("AccountNotFound", true));
    let own = refusal(account::grant_for(&tenancy, false, &team_b.name, None, "eu-west-1", None).await);
    assert_eq!(own.reason, "NoAccount");
    assert!(
        account::grant_for(&tenancy, true, &team_b.name, None, "eu-west-1", None)
            .await
            .expect("kube")
            .is_ok()
    );
    // The checks themselves never reach AWS.
    assert_eq!(fake.calls().len(), verifications);

    controller.stop().await;
    team_a.cleanup().await;
    team_b.cleanup().await;
}
