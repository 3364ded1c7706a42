//! Stack edge cases end to end, on the real kube-apiserver and LocalStack
//! (moto where LocalStack lacks the API): adopting a stack stackpilot did not
//! create, a stack deleted outside Kubernetes, bad input that must stop
//! before AWS, the stack policy and termination protection. Each test runs
//! its own operator on its own namespace, so metrics and Events are its own.
//! The stacks "someone else" made or deleted go through a raw SDK client, not
//! through stackpilot's AWS layer.
//!
//! Emulator facts measured while writing these tests (LocalStack 2026.3.0,
//! moto 5.2.5; see also tests/aws_sdk.rs):
//! - LocalStack does not enforce `InsufficientCapabilities`: an
//!   `AWS::IAM::Role` is created without any capability, by CreateChangeSet
//!   (change set `CREATE_COMPLETE`, `AVAILABLE`) and by CreateStack alike. The
//!   missing capability is caught by stackpilot itself before any call, which
//!   is what the test checks.
//! - LocalStack answers DescribeStacks in any region name (`xx-mars-1`) and
//!   for a 140-character name with "Stack with id x does not exist"; so
//!   deleting a Stack with an unknown region or an invalid name works here.
//!   Against AWS that delete's DescribeStacks in an unknown region is a DNS
//!   failure, retried as transient.
//! - LocalStack: DescribeStacks by name of a deleted stack says "does not
//!   exist"; the bulk DescribeStacks lists it as `DELETE_COMPLETE`.
//! - LocalStack: UpdateTerminationProtection works and DescribeStacks shows
//!   `EnableTerminationProtection`, but DeleteStack of a protected stack
//!   deletes it; so "lifted before delete" is checked from the operator's
//!   calls, not from a refused delete.
//! - moto: SetStackPolicy / GetStackPolicy work (GetStackPolicy returns the
//!   body as set; nothing when no policy is set). LocalStack answers both
//!   with HTTP 501.
//! - moto: an UPDATE change set identical to the stack and without
//!   `Parameters` ends `FAILED` with "The submitted information didn't contain
//!   changes." as on AWS (while still listing a `Modify` change); with
//!   `Parameters`, even unchanged ones, it is `CREATE_COMPLETE` with no
//!   changes and executes. The policy test keeps parameters out of the spec so
//!   that a `stackPolicy`-only change takes the AWS ("no changes") path.
//! - moto: DeleteChangeSet of a change set already deleted answers HTTP 500
//!   (AWS: `ChangeSetNotFound`, which stackpilot takes as done). stackpilot
//!   deletes an empty change set at once and deletes it again as
//!   "superseded" at the next spec change, so on moto that next change is
//!   stuck retrying; the policy-only change is therefore the last one here.
//! - The apiserver refuses an invalid `spec.stackName` (CRD pattern), and
//!   adding `stackName` or changing `region` later (CEL immutability): the
//!   operator sees a bad name only as a default `<namespace>-<name>` over 128
//!   characters, and both are fixed by a new object.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_cloudformation::error::DisplayErrorContext;
use aws_sdk_cloudformation::types::Tag;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use stackpilot::stack::{TAG_NAME, TAG_NAMESPACE, TAG_UID};
use support::fixture::{Fixture, TIMEOUT, condition, ready};
use support::workload::raw_cloudformation;
use support::{TestBed, eventually};

const QUEUE: &str = r#"
Parameters:
  Visibility: {Type: Number, Default: 30}
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties: {VisibilityTimeout: !Ref Visibility}
Outputs:
  QueueArn: {Value: !GetAtt Queue.Arn}
"#;

const ROLE: &str = r#"
Resources:
  Role:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Version: "2012-10-17"
        Statement: [{Effect: Allow, Principal: {Service: lambda.amazonaws.com}, Action: "sts:AssumeRole"}]
"#;

type Raw = aws_sdk_cloudformation::Client;

/// DescribeStacks by name or id; `None` when AWS says it does not exist.
async fn raw_stack(raw: &Raw, name: &str) -> Option<aws_sdk_cloudformation::types::Stack> {
    match raw.describe_stacks().stack_name(name).send().await {
        Ok(out) => out.stacks.unwrap_or_default().into_iter().next(),
        Err(e) => {
            let text = DisplayErrorContext(&e).to_string();
            assert!(text.contains("does not exist"), "DescribeStacks {name}: {text}");
            None
        }
    }
}

fn status_of(stack: &aws_sdk_cloudformation::types::Stack) -> &str {
    stack.stack_status().map(|s| s.as_str()).unwrap_or("")
}

fn tags_of(stack: &aws_sdk_cloudformation::types::Stack) -> BTreeMap<String, String> {
    stack
        .tags()
        .iter()
        .map(|t| (t.key().unwrap_or("").to_string(), t.value().unwrap_or("").to_string()))
        .collect()
}

/// Waits until the stack (by name or id) is in `status`.
async fn wait_raw_status(raw: &Raw, stack: &str, status: &str) -> aws_sdk_cloudformation::types::Stack {
    eventually(TIMEOUT, &format!("{stack} is {status}"), || async {
        raw_stack(raw, stack).await.filter(|s| status_of(s) == status)
    })
    .await
}

/// CreateStack without stackpilot; returns the stack id once created.
async fn create_foreign(raw: &Raw, name: &str, tags: &[(&str, &str)]) -> String {
    let mut request = raw.create_stack().stack_name(name).template_body(QUEUE);
    for (key, value) in tags {
        request = request.tags(Tag::builder().key(*key).value(*value).build());
    }
    let out = request.send().await.map_err(|e| DisplayErrorContext(e).to_string());
    let id = out.expect("CreateStack").stack_id.expect("a stack id");
    wait_raw_status(raw, &id, "CREATE_COMPLETE").await;
    id
}

/// AWS writes the operator made: every operation that changes something.
async fn aws_writes(f: &Fixture) -> f64 {
    let writes: Vec<&str> = stackpilot::aws::Action::writes().collect();
    calls(f, &writes).await
}

/// AWS calls the operator made, by operation (all operations when empty).
async fn calls(f: &Fixture, operations: &[&str]) -> f64 {
    if operations.is_empty() {
        return f.operator.metric("stackpilot_aws_calls_total", &[]).await;
    }
    let mut total = 0.0;
    for operation in operations {
        let label = format!("operation=\"{operation}\"");
        total += f.operator.metric("stackpilot_aws_calls_total", &[&label]).await;
    }
    total
}

async fn reconciles(f: &Fixture) -> f64 {
    f.operator
        .metric("stackpilot_reconciles_total", &["kind=\"Stack\""])
        .await
}

/// Waits for an Event about `name` with this type and reason whose note
/// contains `fragment`.
async fn wait_event(f: &Fixture, name: &str, type_: &str, reason: &str, fragment: &str) {
    let what = format!("{type_} event {reason} on {name} mentioning {fragment:?}");
    eventually(TIMEOUT, &what, || async {
        let events = f.events(name).await;
        let hit = events
            .iter()
            .any(|(t, r, n)| t == type_ && r == reason && n.contains(fragment));
        hit.then_some(())
    })
    .await
}

/// Waits until Ready has this status and reason for the current generation.
async fn wait_ready_reason(f: &Fixture, name: &str, status: &str, reason: &str) -> stackpilot::api::Stack {
    let api = f.stacks();
    eventually(TIMEOUT, &format!("{name} Ready={status} ({reason})"), || {
        let api = api.clone();
        async move {
            let stack = api.get(name).await.ok()?;
            let current = stack.status.as_ref()?.observed_generation == stack.metadata.generation;
            let c = condition(&stack, "Ready")?;
            (current && c.status == status && c.reason == reason).then_some(stack)
        }
    })
    .await
}

/// Applies a Stack and returns the apiserver's refusal, if any.
async fn try_apply(f: &Fixture, name: &str, spec: Value) -> Result<(), String> {
    let object = json!({"apiVersion": "stackpilot.dev/v1alpha1", "kind": "Stack",
        "metadata": {"name": name}, "spec": spec});
    f.stacks()
        .patch(name, &PatchParams::apply("e2e-test").force(), &Patch::Apply(&object))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn delete_stack_object(f: &Fixture, name: &str) {
    f.stacks().delete(name, &DeleteParams::default()).await.unwrap();
    f.wait_gone(name).await;
}

async fn put_config_map(f: &Fixture, name: &str, data: Value) {
    let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data});
    Api::<ConfigMap>::namespaced(f.client.clone(), &f.ns.name)
        .patch(name, &PatchParams::apply("test").force(), &Patch::Apply(&config_map))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_foreign_stack_is_refused_untouched_until_adopted() {
    let f = Fixture::new("edge-adopt").await;
    let raw = raw_cloudformation(&f.bed.aws_endpoint).await;
    let stack_name = format!("{}-legacy", f.ns.name);
    let stack_id = create_foreign(&raw, &stack_name, &[("team", "legacy")]).await;
    let before = raw_stack(&raw, &stack_name).await.unwrap();

    // Without `adoption` the same-named stack is refused, with a way out.
    let spec = json!({"region": "us-east-1", "template": {"body": QUEUE},
        "parameters": [{"name": "Visibility", "value": "45"}]});
    f.apply("legacy", spec.clone()).await;
    let stack = f.wait_condition("legacy", "Stalled", "True").await;
    let refused = ready(&stack);
    assert_eq!(
        (refused.status.as_str(), refused.reason.as_str()),
        ("False", "StackNotOwned")
    );
    assert!(
        refused.message.contains("was not created by stackpilot") && refused.message.contains("adoption: Adopt"),
        "{}",
        refused.message
    );
    wait_event(&f, "legacy", "Warning", "StackNotOwned", "adoption: Adopt").await;

    // It stays refused over three 2 s polls (6 s): nothing is written to the stack.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let stack = f.stacks().get("legacy").await.unwrap();
    assert_eq!(ready(&stack).reason, "StackNotOwned", "{:?}", ready(&stack));
    assert_eq!(aws_writes(&f).await, 0.0, "a refused stack gets no AWS writes");
    let after = raw_stack(&raw, &stack_name).await.unwrap();
    assert_eq!(status_of(&after), "CREATE_COMPLETE");
    assert_eq!(after.last_updated_time(), before.last_updated_time(), "not updated");
    assert_eq!(tags_of(&after), tags_of(&before), "tags untouched");
    assert_eq!(
        stack.status.as_ref().unwrap().stack_id,
        None,
        "status must not claim the foreign stack"
    );

    // Adopt: the same stack (same id) is updated in place and tagged.
    let mut adopt = spec.clone();
    adopt["adoption"] = json!("Adopt");
    f.apply("legacy", adopt).await;
    let stack = f.wait_condition("legacy", "Ready", "True").await;
    let status = stack.status.clone().unwrap();
    assert_eq!(status.stack_id.as_deref(), Some(stack_id.as_str()));
    wait_event(&f, "legacy", "Normal", "Adopting", &stack_name).await;
    let adopted = raw_stack(&raw, &stack_name).await.unwrap();
    assert_eq!(adopted.stack_id(), Some(stack_id.as_str()), "not recreated");
    assert_eq!(status_of(&adopted), "UPDATE_COMPLETE");
    let tags = tags_of(&adopted);
    assert_eq!(tags.get(TAG_UID), stack.uid().as_ref(), "{tags:?}");
    assert_eq!(tags.get(TAG_NAMESPACE), Some(&f.ns.name));
    assert_eq!(tags.get(TAG_NAME).map(String::as_str), Some("legacy"));
    let visibility = adopted
        .parameters()
        .iter()
        .find(|p| p.parameter_key() == Some("Visibility"));
    assert_eq!(visibility.and_then(|p| p.parameter_value()), Some("45"));
    assert_eq!(calls(&f, &["DeleteStack"]).await, 0.0, "adoption never deletes");

    // Once adopted it is ours: deleting the object deletes the stack.
    delete_stack_object(&f, "legacy").await;
    wait_raw_status(&raw, &stack_id, "DELETE_COMPLETE").await;
    f.finish().await;
}

#[tokio::test]
async fn a_stack_of_another_stack_object_is_never_adopted_nor_deleted() {
    let f = Fixture::new("edge-owned").await;
    let raw = raw_cloudformation(&f.bed.aws_endpoint).await;
    let stack_name = format!("{}-shared", f.ns.name);
    f.apply(
        "owner",
        json!({"region": "us-east-1", "stackName": stack_name, "template": {"body": QUEUE}}),
    )
    .await;
    let owner = f.wait_condition("owner", "Ready", "True").await;
    let before = raw_stack(&raw, &stack_name).await.unwrap();
    let writes = aws_writes(&f).await;

    // Even with `adoption: Adopt`, another object's stack is not taken.
    f.apply(
        "intruder",
        json!({"region": "us-east-1", "stackName": stack_name, "template": {"body": QUEUE},
            "parameters": [{"name": "Visibility", "value": "99"}], "adoption": "Adopt"}),
    )
    .await;
    let stack = wait_ready_reason(&f, "intruder", "False", "StackNotOwned").await;
    let expected = format!("managed by another Stack object ({}/owner)", f.ns.name);
    assert!(ready(&stack).message.contains(&expected), "{}", ready(&stack).message);
    assert_eq!(condition(&stack, "Stalled").map(|c| c.status.as_str()), Some("True"));
    wait_event(
        &f,
        "intruder",
        "Warning",
        "StackNotOwned",
        "managed by another Stack object",
    )
    .await;

    // Three 2 s polls later (6 s): still refused, and the stack is as the owner left it.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let stack = f.stacks().get("intruder").await.unwrap();
    assert_eq!(ready(&stack).reason, "StackNotOwned", "{:?}", ready(&stack));
    assert_eq!(aws_writes(&f).await, writes, "no AWS writes for the intruder");
    let after = raw_stack(&raw, &stack_name).await.unwrap();
    assert_eq!(tags_of(&after).get(TAG_UID), owner.uid().as_ref());
    assert_eq!(after.last_updated_time(), before.last_updated_time(), "not updated");

    // Deleting the intruder leaves the owner's stack alone: it never owned
    // anything in AWS, so it goes at once, without a call.
    delete_stack_object(&f, "intruder").await;
    let after = raw_stack(&raw, &stack_name).await.expect("the owner's stack survives");
    assert_eq!(status_of(&after), status_of(&before));
    assert_eq!(calls(&f, &["DeleteStack"]).await, 0.0);
    f.wait_condition("owner", "Ready", "True").await;

    delete_stack_object(&f, "owner").await;
    assert!(raw_stack(&raw, &stack_name).await.is_none(), "owner deleted its stack");
    f.finish().await;
}

#[tokio::test]
async fn a_stack_deleted_outside_kubernetes_is_recreated() {
    let f = Fixture::new("edge-gone").await;
    let raw = raw_cloudformation(&f.bed.aws_endpoint).await;
    f.apply("gone", json!({"region": "us-east-1", "template": {"body": QUEUE}}))
        .await;
    let stack = f.wait_condition("gone", "Ready", "True").await;
    let first_id = stack.status.unwrap().stack_id.expect("a stack id");
    let stack_name = format!("{}-gone", f.ns.name);

    raw.delete_stack().stack_name(&stack_name).send().await.unwrap();
    wait_raw_status(&raw, &first_id, "DELETE_COMPLETE").await;

    // The next poll finds it missing, says so, and creates it again.
    wait_event(&f, "gone", "Warning", "StackMissing", "deleted outside Kubernetes").await;
    let api = f.stacks();
    let stack = eventually(TIMEOUT, "gone is Ready on a new stack", || {
        let api = api.clone();
        let first_id = first_id.clone();
        async move {
            let stack = api.get("gone").await.ok()?;
            let status = stack.status.as_ref()?;
            let renewed = status.stack_id.as_ref().is_some_and(|id| *id != first_id);
            let ok = condition(&stack, "Ready").is_some_and(|c| c.status == "True");
            (renewed && ok && status.operation.is_none()).then_some(stack)
        }
    })
    .await;
    let second_id = stack.status.as_ref().unwrap().stack_id.clone().unwrap();
    let live = raw_stack(&raw, &stack_name).await.expect("recreated in AWS");
    assert_eq!(live.stack_id(), Some(second_id.as_str()));
    assert_eq!(status_of(&live), "CREATE_COMPLETE");
    assert_eq!(tags_of(&live).get(TAG_UID), stack.uid().as_ref());
    assert!(stack.status.unwrap().outputs.contains_key("QueueArn"));

    delete_stack_object(&f, "gone").await;
    wait_raw_status(&raw, &second_id, "DELETE_COMPLETE").await;
    f.finish().await;
}

/// Checks the refusal of one bad Stack: Ready=False with `reason` and a
/// message containing `fragment`, Stalled or Reconciling as given, and a
/// Warning Event naming the reason.
async fn expect_refused(f: &Fixture, name: &str, reason: &str, fragment: &str, stalled: bool) {
    let stack = wait_ready_reason(f, name, "False", reason).await;
    let message = &ready(&stack).message;
    assert!(message.contains(fragment), "{name}: {message}");
    let kind = if stalled { "Stalled" } else { "Reconciling" };
    assert_eq!(
        condition(&stack, kind).map(|c| c.status.as_str()),
        Some("True"),
        "{name}: {:?}",
        stack.status
    );
    wait_event(f, name, "Warning", reason, "").await;
}

/// Over 6 s, three 2 s polls of each object: no AWS call at all, and no
/// more reconciles than those polls, so no hot loop either.
async fn expect_quiet(f: &Fixture, objects: usize) {
    let errors = || f.operator.metric("stackpilot_reconcile_errors_total", &[]);
    let (reconciled, failed) = (reconciles(f).await, errors().await);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(calls(f, &[]).await, 0.0, "bad input must not reach AWS");
    let more = reconciles(f).await - reconciled;
    assert!(more <= 4.0 * objects as f64, "{more} reconciles in 6 s: a hot loop");
    assert_eq!(
        errors().await,
        failed,
        "bad input is a condition, not a reconcile error"
    );
}

#[tokio::test]
async fn bad_names_regions_and_capabilities_stop_before_aws_and_recover() {
    let f = Fixture::new("edge-bad").await;
    let raw = raw_cloudformation(&f.bed.aws_endpoint).await;
    let body = json!({"body": QUEUE});

    // An invalid spec.stackName never gets past the apiserver.
    let refused = try_apply(
        &f,
        "named",
        json!({"region": "us-east-1", "stackName": "1-bad_name",
        "template": body}),
    )
    .await;
    let error = refused.expect_err("the CRD pattern refuses it");
    assert!(error.contains("stackName"), "{error}");

    // A default name (<namespace>-<name>) over 128 characters reaches the
    // operator, which refuses it.
    let long = format!("long-{}", "x".repeat(130));
    f.apply(&long, json!({"region": "us-east-1", "template": body})).await;
    expect_refused(&f, &long, "InvalidStackName", "at most 128 characters; recreate", true).await;
    // A region that passes the CRD pattern but does not exist.
    f.apply("mars", json!({"region": "xx-mars-1", "template": body})).await;
    let hint = "xx-mars-1 is not an AWS region stackpilot knows; spec.region cannot be changed";
    expect_refused(&f, "mars", "UnknownRegion", hint, true).await;
    // IAM resources without the capability (LocalStack would not refuse).
    f.apply("role", json!({"region": "us-east-1", "template": {"body": ROLE}}))
        .await;
    expect_refused(&f, "role", "InsufficientCapabilities", "CAPABILITY_IAM", true).await;
    expect_quiet(&f, 3).await;

    // Fixes. Capabilities can be added in place.
    f.apply(
        "role",
        json!({"region": "us-east-1", "template": {"body": ROLE}, "capabilities": ["CAPABILITY_IAM"]}),
    )
    .await;
    let stack = f.wait_condition("role", "Ready", "True").await;
    assert!(stack.status.unwrap().conditions.iter().all(|c| c.type_ != "Stalled"));
    // Name and region are immutable: the apiserver says so, and the fix is a
    // new object. The refused ones are deleted without leaving anything.
    let error = try_apply(&f, "mars", json!({"region": "us-east-1", "template": body}))
        .await
        .expect_err("region is immutable");
    assert!(error.contains("region is immutable"), "{error}");
    let error = try_apply(
        &f,
        &long,
        json!({"region": "us-east-1", "stackName": "short", "template": body}),
    )
    .await
    .expect_err("stackName cannot be added");
    assert!(error.contains("stackName is immutable"), "{error}");
    for name in [long.as_str(), "mars"] {
        delete_stack_object(&f, name).await;
    }
    let named = format!("{}-named", f.ns.name);
    f.apply(
        "named",
        json!({"region": "us-east-1", "stackName": named, "template": body}),
    )
    .await;
    f.wait_condition("named", "Ready", "True").await;
    assert!(raw_stack(&raw, &named).await.is_some());
    assert_eq!(
        calls(&f, &["DeleteStack"]).await,
        0.0,
        "nothing to delete for refused objects"
    );

    for name in ["role", "named"] {
        delete_stack_object(&f, name).await;
    }
    f.finish().await;
}

#[tokio::test]
async fn missing_config_maps_keys_and_dependencies_wait_and_recover() {
    let f = Fixture::new("edge-refs").await;
    let raw = raw_cloudformation(&f.bed.aws_endpoint).await;
    let from_map =
        |key: &str| json!([{"name": "Visibility", "valueFrom": {"configMapKeyRef": {"name": "params", "key": key}}}]);
    let from_stack = |stack: &str, output: &str| json!([{"name": "Visibility", "valueFrom": {"stackOutput": {"stack": stack, "output": output}}}]);
    // Template from a ConfigMap that does not exist.
    f.apply(
        "nomap",
        json!({"region": "us-east-1", "template": {"configMapRef": {"name": "tpl", "key": "body"}}}),
    )
    .await;
    expect_refused(
        &f,
        "nomap",
        "ConfigMapNotFound",
        "template: ConfigMap tpl not found",
        false,
    )
    .await;
    // A ConfigMap without the key.
    put_config_map(&f, "params", json!({"other": "1"})).await;
    f.apply(
        "nokey",
        json!({"region": "us-east-1", "template": {"body": QUEUE}, "parameters": from_map("visibility")}),
    )
    .await;
    let fragment = "parameter Visibility: ConfigMap params has no key visibility";
    expect_refused(&f, "nokey", "ConfigMapKeyNotFound", fragment, false).await;
    // An output of a Stack that does not exist.
    f.apply(
        "nodep",
        json!({"region": "us-east-1", "template": {"body": QUEUE}, "parameters": from_stack("base", "Timeout")}),
    )
    .await;
    expect_refused(&f, "nodep", "DependencyNotReady", "Stack base not found", false).await;
    expect_quiet(&f, 3).await;

    // Creating what was missing lets each of them through.
    put_config_map(&f, "tpl", json!({"body": QUEUE})).await;
    f.wait_condition("nomap", "Ready", "True").await;
    put_config_map(&f, "params", json!({"other": "1", "visibility": "50"})).await;
    f.wait_condition("nokey", "Ready", "True").await;
    let base_template = format!("{QUEUE}  Timeout: {{Value: !Ref Visibility}}\n");
    f.apply(
        "base",
        json!({"region": "us-east-1", "template": {"body": base_template}}),
    )
    .await;
    f.wait_condition("base", "Ready", "True").await;
    let stack = f.wait_condition("nodep", "Ready", "True").await;
    assert!(stack.status.unwrap().outputs.contains_key("QueueArn"));

    // An output the (Ready) dependency does not have: waits, no stack made.
    let writes = aws_writes(&f).await;
    f.apply(
        "nooutput",
        json!({"region": "us-east-1", "template": {"body": QUEUE}, "parameters": from_stack("base", "Nope")}),
    )
    .await;
    expect_refused(
        &f,
        "nooutput",
        "DependencyNotReady",
        "Stack base has no output Nope",
        false,
    )
    .await;
    // 6 s: three 2 s polls.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(aws_writes(&f).await, writes, "no AWS writes while waiting");
    let nooutput = format!("{}-nooutput", f.ns.name);
    assert!(raw_stack(&raw, &nooutput).await.is_none(), "no stack created");
    f.apply(
        "nooutput",
        json!({"region": "us-east-1", "template": {"body": QUEUE}, "parameters": from_stack("base", "Timeout")}),
    )
    .await;
    f.wait_condition("nooutput", "Ready", "True").await;
    assert!(raw_stack(&raw, &nooutput).await.is_some());

    for name in ["nomap", "nokey", "nodep", "nooutput", "base"] {
        delete_stack_object(&f, name).await;
    }
    f.finish().await;
}

#[tokio::test]
async fn stack_policy_is_set_after_create_and_follows_the_spec_on_moto() {
    let f = Fixture::on("edge-policy", &TestBed::get().moto_endpoint, &[]).await;
    let raw = raw_cloudformation(&f.bed.moto_endpoint).await;
    let policy = |action: &str| {
        json!({"Statement": [{"Effect": "Allow", "Action": action, "Principal": "*", "Resource": "*"}]}).to_string()
    };
    let stack_name = format!("{}-guarded", f.ns.name);
    let live_policy = || async {
        let out = raw.get_stack_policy().stack_name(&stack_name).send().await.unwrap();
        out.stack_policy_body().map(str::to_string)
    };

    let first = policy("Update:*");
    f.apply(
        "guarded",
        json!({"region": "us-east-1", "template": {"body": QUEUE}, "stackPolicy": first}),
    )
    .await;
    f.wait_condition("guarded", "Ready", "True").await;
    eventually(TIMEOUT, "the first policy is set", || async {
        (live_policy().await.as_deref() == Some(first.as_str())).then_some(())
    })
    .await;

    // A policy change that comes with an update is set after the update.
    let second = policy("Update:Modify");
    // No `parameters` in the spec: with them moto never sees a change set as empty.
    let updated = QUEUE.replace("Default: 30", "Default: 60");
    f.apply(
        "guarded",
        json!({"region": "us-east-1", "template": {"body": updated}, "stackPolicy": second}),
    )
    .await;
    eventually(TIMEOUT, "the second policy is set", || async {
        (live_policy().await.as_deref() == Some(second.as_str())).then_some(())
    })
    .await;
    let stack = f.wait_condition("guarded", "Ready", "True").await;
    assert_eq!(stack.status.unwrap().stack_status.as_deref(), Some("UPDATE_COMPLETE"));

    // A policy change alone (last: see the header): an empty change set
    // ("no changes"), nothing executed, then the new policy.
    let executed = calls(&f, &["ExecuteChangeSet"]).await;
    let third = policy("Update:Replace");
    f.apply(
        "guarded",
        json!({"region": "us-east-1", "template": {"body": updated}, "stackPolicy": third}),
    )
    .await;
    eventually(TIMEOUT, "the third policy is set", || async {
        (live_policy().await.as_deref() == Some(third.as_str())).then_some(())
    })
    .await;
    let stack = f.wait_condition("guarded", "Ready", "True").await;
    let change_set = stack.status.unwrap().change_set.expect("the empty change set");
    assert_eq!(
        change_set.status,
        Some(stackpilot::api::ChangeSetState::Failed),
        "{change_set:?}"
    );
    let reason = change_set.status_reason.unwrap_or_default();
    assert!(reason.contains("didn't contain changes"), "{reason}");
    assert_eq!(calls(&f, &["ExecuteChangeSet"]).await, executed, "nothing to execute");
    let set = f
        .operator
        .metric(
            "stackpilot_aws_calls_total",
            &["operation=\"SetStackPolicy\"", "outcome=\"ok\""],
        )
        .await;
    assert_eq!(set, 3.0, "one SetStackPolicy per applied revision");

    delete_stack_object(&f, "guarded").await;
    let left = raw_stack(&raw, &stack_name).await;
    assert!(left.is_none_or(|s| status_of(&s) == "DELETE_COMPLETE"), "stack deleted");
    f.finish().await;
}

#[tokio::test]
async fn termination_protection_follows_the_spec_and_is_lifted_for_delete() {
    let f = Fixture::new("edge-protect").await;
    let raw = raw_cloudformation(&f.bed.aws_endpoint).await;
    let stack_name = format!("{}-kept", f.ns.name);
    let spec =
        |protect: bool| json!({"region": "us-east-1", "template": {"body": QUEUE}, "terminationProtection": protect});
    let protection_becomes = |wanted: bool| {
        let raw = raw.clone();
        let stack_name = stack_name.clone();
        async move {
            let what = format!("EnableTerminationProtection={wanted}");
            eventually(TIMEOUT, &what, || async {
                let stack = raw_stack(&raw, &stack_name).await?;
                (stack.enable_termination_protection() == Some(wanted)).then_some(())
            })
            .await
        }
    };

    f.apply("kept", spec(true)).await;
    f.wait_condition("kept", "Ready", "True").await;
    protection_becomes(true).await;
    f.apply("kept", spec(false)).await;
    protection_becomes(false).await;
    f.apply("kept", spec(true)).await;
    protection_becomes(true).await;
    f.wait_condition("kept", "Ready", "True").await;
    let toggles = calls(&f, &["UpdateTerminationProtection"]).await;
    assert_eq!(toggles, 3.0, "one call per change");

    // Deleting the object lifts the protection first, then deletes.
    delete_stack_object(&f, "kept").await;
    assert!(raw_stack(&raw, &stack_name).await.is_none(), "stack deleted");
    assert_eq!(calls(&f, &["UpdateTerminationProtection"]).await, toggles + 1.0);
    let log = std::fs::read_to_string(&f.operator.log).unwrap();
    let lifted = log
        .rfind("UpdateTerminationProtection false")
        .expect("protection lifted");
    let deleted = log.rfind("DeleteStack (retaining").expect("stack deleted");
    assert!(lifted < deleted, "the protection is lifted before the delete");
    f.finish().await;
}
