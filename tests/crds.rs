//! The generated CRDs against a real kube-apiserver: accepted, Established,
//! valid objects round-trip through server-side apply, invalid ones are
//! refused with the schema or CEL message. Also checks `crds/` is current.

mod support;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use support::{TestBed, TestNamespace, install_crds};

#[test]
fn crds_in_the_repo_match_the_rust_types() {
    let dir = support::repo_path("");
    for (file, crd) in stackpilot::api::crds() {
        let expected = stackpilot::api::crd_yaml(&crd);
        for copy in [
            dir.join("crds").join(file),
            dir.join("charts/stackpilot/crds").join(file),
        ] {
            let actual = std::fs::read_to_string(&copy).unwrap_or_default();
            assert!(
                actual == expected,
                "{} is out of date: run `cargo run -- crd --out-dir crds && cp crds/*.yaml charts/stackpilot/crds/`",
                copy.display()
            );
        }
    }
}

fn api(client: &kube::Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("stackpilot.dev", "v1alpha1", kind));
    if kind == "AwsAccount" {
        Api::all_with(client.clone(), &resource)
    } else {
        Api::namespaced_with(client.clone(), ns, &resource)
    }
}

async fn apply(client: &kube::Client, ns: &str, object: Value) -> Result<DynamicObject, kube::Error> {
    let kind = object["kind"].as_str().unwrap().to_string();
    let name = object["metadata"]["name"].as_str().unwrap().to_string();
    api(client, ns, &kind)
        .patch(&name, &PatchParams::apply("crd-test"), &Patch::Apply(&object))
        .await
}

fn stack(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "stackpilot.dev/v1alpha1", "kind": "Stack", "metadata": {"name": name}, "spec": spec})
}

const BODY: &str = "Resources:\n  Q: {Type: AWS::SQS::Queue}\n";

fn rejection(result: Result<DynamicObject, kube::Error>) -> String {
    match result {
        Ok(_) => panic!("the API server accepted an invalid object"),
        Err(kube::Error::Api(status)) => status.message,
        Err(other) => panic!("unexpected error: {other}"),
    }
}

#[tokio::test]
async fn crds_are_established_and_validate_objects() {
    let bed = TestBed::get();
    let client = bed.client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "crds").await;
    let n = ns.name.as_str();

    // A valid object of each kind round-trips.
    let valid = [
        stack(
            "full",
            json!({
                "stackName": "crd-test-full", "region": "eu-west-1",
                "template": {"body": BODY},
                "parameters": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                "tags": {"team": "a"}, "capabilities": ["CAPABILITY_IAM"],
                "changes": {"approval": "Manual"}, "drift": {"interval": "6h", "remediation": "Report"},
                "failurePolicy": {"onCreateFailure": "Recreate"}, "deletionPolicy": "Retain",
                "writeOutputsTo": {"kind": "ConfigMap", "name": "out"}, "dependsOn": [{"name": "other"}]
            }),
        ),
        json!({"apiVersion": "stackpilot.dev/v1alpha1", "kind": "StackDeployment", "metadata": {"name": "sd"}, "spec": {
            "artifact": {"revision": "v42", "template": {"body": BODY}},
            "targets": [{"name": "us", "region": "us-east-1"}, {"name": "eu", "region": "eu-west-1"}],
            "strategy": {"type": "Canary", "canary": {"steps": [{"targets": ["us"], "pause": {"duration": "10m"}}]}}
        }}),
        json!({"apiVersion": "stackpilot.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": "p"}, "spec": {
            "source": {"artifact": {"revision": "v1", "template": {"body": BODY}}},
            "stages": [{"name": "dev", "actions": [
                {"name": "deploy", "deploy": {"stack": {"region": "us-east-1"}}},
                {"name": "fleet", "deploy": {"deployment": {"targets": [{"name": "us", "region": "us-east-1"}],
                    "strategy": {"type": "Rolling", "rolling": {"maxConcurrent": "50%", "failureTolerance": 1}}}}},
                {"name": "approve", "runOrder": 2, "approval": {"timeout": "24h"}},
                {"name": "smoke", "runOrder": 3, "test": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "t", "image": "busybox"}], "restartPolicy": "Never"}}}}}}
            ]}]
        }}),
        json!({"apiVersion": "stackpilot.dev/v1alpha1", "kind": "AwsAccount", "metadata": {"name": format!("acct-{n}")}, "spec": {
            "accountId": "123456789012", "roleArn": "arn:aws:iam::123456789012:role/deployer",
            "allowedRegions": ["us-east-1"], "namespaceSelector": {"matchLabels": {"team": "a"}}
        }}),
    ];
    for object in valid {
        let kind = object["kind"].as_str().unwrap().to_string();
        let applied = apply(&client, n, object.clone())
            .await
            .unwrap_or_else(|e| panic!("valid {kind} refused: {e}"));
        assert_eq!(applied.data["spec"]["targets"], object["spec"]["targets"]);
        assert!(applied.metadata.generation.is_some(), "{kind} has a generation");
    }
    let full = api(&client, n, "Stack").get("full").await.unwrap();
    assert_eq!(
        full.data["spec"]["parameters"][1]["valueFrom"]["secretKeyRef"]["key"],
        "k"
    );
    assert_eq!(full.data["spec"]["failurePolicy"]["onCreateFailure"], "Recreate");

    // Two template sources.
    let message = rejection(
        apply(
            &client,
            n,
            stack(
                "two",
                json!({"region": "us-east-1", "template": {"body": BODY, "url": "https://x"}}),
            ),
        )
        .await,
    );
    assert!(message.contains("exactly one of template.body"), "{message}");
    // No template source.
    let message = rejection(
        apply(
            &client,
            n,
            stack("none", json!({"region": "us-east-1", "template": {}})),
        )
        .await,
    );
    assert!(message.contains("exactly one of template.body"), "{message}");
    // A bad enum value.
    let message = rejection(
        apply(
            &client,
            n,
            stack(
                "enum",
                json!({"region": "us-east-1", "template": {"body": BODY}, "deletionPolicy": "Sometimes"}),
            ),
        )
        .await,
    );
    assert!(
        message.contains("Unsupported value") && message.contains("Sometimes"),
        "{message}"
    );
    // A parameter with both value and valueFrom.
    let message = rejection(
        apply(
            &client,
            n,
            stack(
                "param",
                json!({"region": "us-east-1", "template": {"body": BODY},
        "parameters": [{"name": "A", "value": "1", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]}),
            ),
        )
        .await,
    );
    assert!(message.contains("exactly one of value or valueFrom"), "{message}");
    // An invalid stack name and region.
    let message = rejection(
        apply(
            &client,
            n,
            stack(
                "badname",
                json!({"stackName": "1-bad_name", "region": "us-east-1", "template": {"body": BODY}}),
            ),
        )
        .await,
    );
    assert!(message.contains("stackName"), "{message}");
    let message = rejection(
        apply(
            &client,
            n,
            stack("badregion", json!({"region": "Mars", "template": {"body": BODY}})),
        )
        .await,
    );
    assert!(message.contains("region"), "{message}");

    // Immutable fields.
    let mut changed = stack(
        "full",
        json!({"stackName": "crd-test-other", "region": "eu-west-1", "template": {"body": BODY}}),
    );
    let message = rejection(apply(&client, n, changed.clone()).await);
    assert!(message.contains("stackName is immutable"), "{message}");
    changed["spec"]["stackName"] = json!("crd-test-full");
    changed["spec"]["region"] = json!("us-west-2");
    let message = rejection(apply(&client, n, changed.clone()).await);
    assert!(message.contains("region is immutable"), "{message}");
    changed["spec"]["region"] = json!("eu-west-1");
    changed["spec"]["accountRef"] = json!({"name": "acct"});
    let message = rejection(apply(&client, n, changed).await);
    assert!(message.contains("accountRef is immutable"), "{message}");
    // Dropping a defaulted stackName is also a change of name.
    let message = rejection(
        apply(
            &client,
            n,
            stack("full", json!({"region": "eu-west-1", "template": {"body": BODY}})),
        )
        .await,
    );
    assert!(message.contains("stackName is immutable"), "{message}");

    // A pipeline action with two kinds, and duplicate stage names.
    let message = rejection(
        apply(
            &client,
            n,
            json!({"apiVersion": "stackpilot.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": "p2"}, "spec": {
                "source": {"revision": "v1", "artifactRef": {"configMap": "a"}},
                "stages": [{"name": "dev", "actions": [{"name": "a", "wait": {"duration": "1m"}, "approval": {}}]}]
            }}),
        )
        .await,
    );
    assert!(
        message.contains("exactly one of deploy, approval, wait or test"),
        "{message}"
    );
    let message = rejection(apply(&client, n, json!({"apiVersion": "stackpilot.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": "p3"}, "spec": {
        "source": {"revision": "v1", "artifactRef": {"configMap": "a"}},
        "stages": [{"name": "dev", "actions": [{"name": "a", "wait": {"duration": "1m"}}]}, {"name": "dev", "actions": [{"name": "b", "wait": {"duration": "1m"}}]}]
    }})).await);
    // Stages, actions and targets are lists keyed by name.
    assert!(
        message.contains(r#"duplicate entries for key [name="dev"]"#),
        "{message}"
    );
    let message = rejection(apply(&client, n, json!({"apiVersion": "stackpilot.dev/v1alpha1", "kind": "StackDeployment", "metadata": {"name": "sd1"}, "spec": {
        "artifact": {"revision": "v1", "template": {"body": BODY}},
        "targets": [{"name": "east", "region": "us-east-1"}, {"name": "east", "region": "us-west-2"}]
    }})).await);
    assert!(
        message.contains(r#"duplicate entries for key [name="east"]"#),
        "{message}"
    );
    // A canary strategy without steps.
    let message = rejection(apply(&client, n, json!({"apiVersion": "stackpilot.dev/v1alpha1", "kind": "StackDeployment", "metadata": {"name": "sd2"}, "spec": {
        "artifact": {"revision": "v1", "template": {"body": BODY}}, "targets": [{"name": "a", "region": "us-east-1"}],
        "strategy": {"type": "Canary"}
    }})).await);
    assert!(message.contains("strategy.canary is required"), "{message}");
    // Rolling without its settings.
    let message = rejection(apply(&client, n, json!({"apiVersion": "stackpilot.dev/v1alpha1", "kind": "StackDeployment", "metadata": {"name": "sd3"}, "spec": {
        "artifact": {"revision": "v1", "template": {"body": BODY}}, "targets": [{"name": "a", "region": "us-east-1"}],
        "strategy": {"type": "Rolling"}
    }})).await);
    assert!(message.contains("strategy.rolling is required"), "{message}");
    // A deploy action is a stack or a deployment, not both.
    let message = rejection(
        apply(
            &client,
            n,
            json!({"apiVersion": "stackpilot.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": "p4"}, "spec": {
                "source": {"artifactRef": {"configMap": "a"}},
                "stages": [{"name": "dev", "actions": [{"name": "a", "deploy": {
                    "stack": {"region": "us-east-1"},
                    "deployment": {"targets": [{"name": "us", "region": "us-east-1"}]}}}]}]
            }}),
        )
        .await,
    );
    assert!(
        message.contains("deploy needs exactly one of stack or deployment"),
        "{message}"
    );

    api(&client, n, "AwsAccount")
        .delete(&format!("acct-{n}"), &Default::default())
        .await
        .unwrap();
    ns.cleanup().await;
}

#[tokio::test]
async fn printer_columns_and_category_are_served() {
    let bed = TestBed::get();
    let client = bed.client().await;
    install_crds(&client).await;
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let group = discovery.get("stackpilot.dev").expect("group served");
    let kinds: Vec<String> = group.recommended_resources().into_iter().map(|(r, _)| r.kind).collect();
    for kind in ["Stack", "StackDeployment", "Pipeline", "AwsAccount"] {
        assert!(
            kinds.contains(&kind.to_string()),
            "{kind} missing from discovery: {kinds:?}"
        );
    }
    let output = std::process::Command::new("kubectl")
        .args([
            "--kubeconfig",
            bed.kubeconfig.to_str().unwrap(),
            "api-resources",
            "--categories=stackpilot",
            "-o",
            "name",
        ])
        .output()
        .expect("kubectl");
    let listed = String::from_utf8_lossy(&output.stdout);
    for plural in ["stacks", "stackdeployments", "pipelines", "awsaccounts"] {
        assert!(
            listed.contains(&format!("{plural}.stackpilot.dev")),
            "category lists {listed}"
        );
    }
}
