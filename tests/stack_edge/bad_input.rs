//! Bad input stops before AWS and recovers once fixed.

use super::*;

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
