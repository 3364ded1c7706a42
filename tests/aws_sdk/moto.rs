//! The SDK mapping against moto (what differs from AWS: see main.rs).

use super::*;

const MOTO_TEMPLATE: &str = r#"
Parameters:
  Env:
    Type: String
Resources:
  Topic:
    Type: AWS::SNS::Topic
    Properties:
      DisplayName: !Ref Env
  Queue:
    Type: AWS::SQS::Queue
Outputs:
  TopicArn:
    Value: !Ref Topic
"#;

#[tokio::test]
async fn moto_create_describe_delete() {
    let cf = client(&endpoint("STACKPILOT_TEST_MOTO_ENDPOINT")).await;
    let stack = unique("moto");
    assert_eq!(cf.describe_stack(&stack).await.unwrap(), None);
    cleanup_after(&cf, &[&stack], async {
        cf.create_change_set(&request(&stack, "create-1", ChangeSetType::Create, MOTO_TEMPLATE))
            .await
            .expect("create_change_set");
        assert_eq!(
            cf.describe_stack(&stack).await.unwrap().unwrap().status,
            StackState::ReviewInProgress
        );
        let cs = settled_change_set(&cf, &stack, "create-1").await;
        assert_eq!(cs.execution_status, ExecutionStatus::Available);
        let mut adds: Vec<(&str, &str)> = cs
            .changes
            .iter()
            .map(|c| (c.action.as_str(), c.logical_id.as_str()))
            .collect();
        adds.sort();
        assert_eq!(adds, [("Add", "Queue"), ("Add", "Topic")]);

        cf.execute_change_set(&stack, "create-1", "exec-1")
            .await
            .expect("execute");
        let (created, _) = settled_stack(&cf, &stack).await;
        assert_eq!(created.status, StackState::CreateComplete);
        assert!(created.stack_id.contains(":123456789012:stack/"));
        assert_eq!(created.tags.get("team").map(String::as_str), Some("platform"));
        assert_eq!(
            created.parameters,
            [Parameter {
                key: "Env".into(),
                value: "one".into()
            }]
        );
        let events = cf.stack_events(&stack, None, 100).await.unwrap();
        assert!(
            events
                .iter()
                .any(|e| e.logical_id == stack && e.status == "CREATE_COMPLETE")
        );

        cf.delete_stack(&stack, "delete-1", &[]).await.expect("delete");
        gone(&cf, &stack).await;
    })
    .await;
}

/// Client for the emulator at `endpoint` in `region`, for tests that keep to
/// a region of their own.

#[tokio::test]
async fn moto_policy_template_and_missing_operations() {
    let endpoint = endpoint("STACKPILOT_TEST_MOTO_ENDPOINT");
    let cf = client(&endpoint).await;
    let stack = unique("moto-ops");
    cleanup_after(&cf, &[&stack], async {
        create_stack(&cf, &stack, MOTO_TEMPLATE).await;
        assert_eq!(cf.get_template(&stack).await.unwrap(), MOTO_TEMPLATE);
        assert_eq!(cf.get_stack_policy(&stack).await.unwrap(), None);
        let policy = r#"{"Statement":[{"Effect":"Deny","Action":"Update:Replace","Principal":"*","Resource":"*"}]}"#;
        cf.set_stack_policy(&stack, policy).await.expect("set_stack_policy");
        assert_eq!(cf.get_stack_policy(&stack).await.unwrap().as_deref(), Some(policy));
        let err = cf.get_stack_policy(&unique("missing")).await.unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::NotFound, "{err}");

        let cf1 = client_in(&endpoint, REGION, one_attempt()).await;
        assert_unimplemented(
            &cf1.update_termination_protection(&stack, true).await.unwrap_err(),
            "moto",
        );
        assert_unimplemented(&cf1.detect_stack_drift(&stack).await.unwrap_err(), "moto");
        assert_unimplemented(&cf1.drift_detection_status("x").await.unwrap_err(), "moto");
        assert_unimplemented(&cf1.resource_drifts(&stack).await.unwrap_err(), "moto");
        assert_unimplemented(
            &cf1.continue_update_rollback(&stack, &[], "t").await.unwrap_err(),
            "moto",
        );
    })
    .await;
}

#[tokio::test]
async fn moto_bulk_read_follows_every_page() {
    // A region of its own, so other tests' stacks do not shift moto's pages
    // (its NextToken is a stack id, looked up in the live list).
    let cf = client_in(
        &endpoint("STACKPILOT_TEST_MOTO_ENDPOINT"),
        "ap-northeast-3",
        SdkLimits::default(),
    )
    .await;
    let prefix = unique("bulk");
    let names: Vec<String> = (0..55).map(|i| format!("{prefix}-{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    cleanup_after(&cf, &refs, async {
        for name in &names {
            cf.create_change_set(&request(name, "create-1", ChangeSetType::Create, MOTO_TEMPLATE))
                .await
                .expect("create_change_set");
            cf.execute_change_set(name, "create-1", "").await.expect("execute");
        }
        let listing = cf.describe_all_stacks().await.expect("describe_all_stacks");
        assert!(listing.pages >= 2, "moto pages by 50: {} pages", listing.pages);
        let listed: Vec<&StackDescription> = listing
            .stacks
            .iter()
            .filter(|s| s.stack_name.starts_with(&prefix))
            .collect();
        assert_eq!(listed.len(), names.len());
        let one = cf.describe_stack(&names[7]).await.unwrap().unwrap();
        assert_eq!(listed.iter().find(|s| s.stack_name == names[7]), Some(&&one));
        assert_eq!(one.tags.get("team").map(String::as_str), Some("platform"));
        assert_eq!(one.parameters[0].value, "one");
    })
    .await;
}
