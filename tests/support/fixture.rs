//! A namespace, an operator watching it, and an AWS client, for Stack tests.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use stackpilot::api::Stack;
use stackpilot::aws::budget::{BudgetProvider, BudgetSettings};
use stackpilot::aws::sdk::SdkProvider;
use stackpilot::aws::{AwsTarget, CloudFormation, CloudFormationProvider};
use stackpilot::runtime::metrics::Metrics;

use super::{Operator, TestBed, TestNamespace, eventually, install_crds};

pub const TIMEOUT: Duration = Duration::from_secs(120);

pub fn ready(stack: &Stack) -> &Condition {
    condition(stack, "Ready").expect("a Ready condition")
}

pub fn condition<'a>(stack: &'a Stack, type_: &str) -> Option<&'a Condition> {
    stack.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

pub struct Fixture {
    pub bed: TestBed,
    pub client: Client,
    pub ns: TestNamespace,
    pub operator: Operator,
    pub aws: Arc<dyn CloudFormation>,
}

impl Fixture {
    pub async fn new(prefix: &str) -> Fixture {
        Self::with_env(prefix, &[]).await
    }

    pub async fn with_env(prefix: &str, env: &[(&str, &str)]) -> Fixture {
        Self::on(prefix, &TestBed::get().aws_endpoint, env).await
    }

    /// With the operator and the client on another AWS endpoint (moto).
    pub async fn on(prefix: &str, endpoint: &str, env: &[(&str, &str)]) -> Fixture {
        let bed = TestBed::get();
        let client = bed.client().await;
        install_crds(&client).await;
        let ns = TestNamespace::new(&client, prefix).await;
        let operator = Operator::start(&bed, &ns.name, endpoint, env).await;
        let sdk = SdkProvider::from_env(Some(endpoint.to_string()), Some("us-east-1".into())).await;
        // Through a (generous) call budget, as the operator calls AWS: the
        // SDK's CloudFormation clients make one attempt, the budget retries
        // passing faults.
        let budget = BudgetSettings {
            calls_per_second: 1000.0,
            burst: 1000.0,
        };
        let provider = BudgetProvider::new(Arc::new(sdk), budget, Arc::new(Metrics::default()));
        let aws = provider.client(&AwsTarget {
            region: "us-east-1".into(),
            role_arn: None,
            external_id: None,
            session_name: None,
            session_tags: Vec::new(),
        });
        Fixture {
            bed,
            client,
            ns,
            operator,
            aws,
        }
    }

    pub fn stacks(&self) -> Api<Stack> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    pub async fn apply(&self, name: &str, spec: Value) {
        let object =
            json!({"apiVersion": "stackpilot.dev/v1alpha1", "kind": "Stack", "metadata": {"name": name}, "spec": spec});
        self.stacks()
            .patch(name, &PatchParams::apply("e2e-test").force(), &Patch::Apply(&object))
            .await
            .expect("apply Stack");
    }

    pub async fn annotate(&self, name: &str, key: &str, value: &str) {
        let patch = json!({"metadata": {"annotations": {key: value}}});
        self.stacks()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("annotate");
    }

    /// Waits until the Stack's condition `type_` has `status` for the
    /// current generation.
    pub async fn wait_condition(&self, name: &str, type_: &str, status: &str) -> Stack {
        let api = self.stacks();
        eventually(TIMEOUT, &format!("{name} {type_}={status}"), || {
            let api = api.clone();
            async move {
                let stack = api.get(name).await.ok()?;
                let st = stack.status.as_ref()?;
                let current = st.observed_generation == stack.metadata.generation;
                let hit = st.conditions.iter().any(|c| c.type_ == type_ && c.status == status);
                (current && hit).then_some(stack)
            }
        })
        .await
    }

    pub async fn events(&self, name: &str) -> Vec<(String, String, String)> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.ns.name);
        let list = api.list(&ListParams::default()).await.expect("events");
        list.items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }

    pub async fn wait_gone(&self, name: &str) {
        let api = self.stacks();
        eventually(TIMEOUT, &format!("{name} deleted"), || {
            let api = api.clone();
            async move { api.get_opt(name).await.ok()?.is_none().then_some(()) }
        })
        .await;
    }

    pub async fn finish(self) {
        self.operator.stop().await;
        self.ns.cleanup().await;
    }
}
