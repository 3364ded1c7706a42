//! Stack edge cases end to end, on the real kube-apiserver and LocalStack
//! (moto where LocalStack lacks the API): adopting a stack stackpilot did not
//! create, a stack deleted outside Kubernetes, bad input that must stop
//! before AWS, the stack policy and termination protection. Each test runs
//! its own operator on its own namespace, so metrics and Events are its own.
//! The stacks "someone else" made or deleted go through a raw SDK client, not
//! through stackpilot's AWS layer.
//!
//! Emulator facts measured while writing these tests (LocalStack 2026.3.0,
//! moto 5.2.5; see also tests/aws_sdk/):
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

mod bad_input;
mod foreign;
mod protection;
#[path = "../support/mod.rs"]
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
