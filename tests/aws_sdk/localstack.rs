//! The SDK mapping against LocalStack (what differs from AWS: see main.rs).

use super::*;

const LOCALSTACK_TEMPLATE: &str = r#"
Parameters:
  Env:
    Type: String
Resources:
  Topic:
    Type: AWS::SNS::Topic
  Setting:
    Type: AWS::SSM::Parameter
    Properties:
      Type: String
      Value: !Ref Env
Outputs:
  TopicArn:
    Value: !Ref Topic
    Description: the topic
  SettingName:
    Value: !Ref Setting
"#;

#[tokio::test]
async fn localstack_create_update_empty_and_delete() {
    let cf = client(&endpoint("STACKPILOT_TEST_AWS_ENDPOINT")).await;
    let stack = unique("life");
    cleanup_after(&cf, &[&stack], async {
        // Create through a change set: the stack waits in REVIEW_IN_PROGRESS.
        let id = cf
            .create_change_set(&request(&stack, "create-1", ChangeSetType::Create, LOCALSTACK_TEMPLATE))
            .await
            .expect("create_change_set");
        assert!(id.contains(":changeSet/create-1/"), "{id}");
        let review = cf.describe_stack(&stack).await.unwrap().unwrap();
        assert_eq!(review.status, StackState::ReviewInProgress);

        let cs = settled_change_set(&cf, &stack, "create-1").await;
        assert_eq!(cs.status, ChangeSetStatus::CreateComplete);
        assert_eq!(cs.execution_status, ExecutionStatus::Available);
        assert_eq!(cs.change_set_id, id);
        assert_eq!(cs.stack_id.as_deref(), Some(review.stack_id.as_str()));
        let mut adds: Vec<(&str, &str, &str)> = cs
            .changes
            .iter()
            .map(|c| (c.action.as_str(), c.logical_id.as_str(), c.resource_type.as_str()))
            .collect();
        adds.sort();
        assert_eq!(
            adds,
            [
                ("Add", "Setting", "AWS::SSM::Parameter"),
                ("Add", "Topic", "AWS::SNS::Topic")
            ]
        );

        cf.execute_change_set(&stack, "create-1", &unique("exec"))
            .await
            .expect("execute_change_set");
        let (created, seen) = settled_stack(&cf, &stack).await;
        assert_eq!(created.status, StackState::CreateComplete, "seen {seen:?}");
        // LocalStack usually shows CREATE_IN_PROGRESS first, but a quick create
        // can finish before the first describe; only the states seen are checked.
        assert!(
            seen.iter()
                .all(|s| matches!(s, StackState::CreateInProgress | StackState::CreateComplete)),
            "unexpected states during create: {seen:?}"
        );
        assert_eq!(created.stack_name, stack);
        assert_eq!(created.tags.get("team").map(String::as_str), Some("platform"));
        assert_eq!(
            created.parameters,
            [Parameter {
                key: "Env".into(),
                value: "one".into()
            }]
        );
        let mut outputs: Vec<&str> = created.outputs.iter().map(|o| o.key.as_str()).collect();
        outputs.sort();
        assert_eq!(outputs, ["SettingName", "TopicArn"]);
        let topic = created.outputs.iter().find(|o| o.key == "TopicArn").unwrap();
        assert!(topic.value.starts_with("arn:aws:sns:us-east-1:"), "{topic:?}");
        // LocalStack drops output descriptions (AWS returns them).
        assert!(created.creation_time.is_some());
        let by_id = cf.describe_stack(&created.stack_id).await.unwrap().unwrap();
        assert_eq!(by_id.stack_name, stack);

        // Events: newest first, the stack's own CREATE_COMPLETE on top.
        let events = cf.stack_events(&stack, None, 100).await.expect("stack_events");
        assert_eq!(events[0].logical_id, stack);
        assert_eq!(events[0].status, "CREATE_COMPLETE");
        assert!(
            events
                .iter()
                .any(|e| e.logical_id == "Topic" && e.status == "CREATE_COMPLETE")
        );
        assert_eq!(cf.stack_events(&stack, None, 2).await.unwrap().len(), 2);
        let cursor = events[0].event_id.clone();
        assert_eq!(cf.stack_events(&stack, Some(&cursor), 100).await.unwrap(), []);

        // Update with a changed parameter: the parameter resource is modified.
        let mut update = request(&stack, "update-1", ChangeSetType::Update, LOCALSTACK_TEMPLATE);
        update.parameters[0].value = "two".into();
        cf.create_change_set(&update).await.expect("update change set");
        let cs = settled_change_set(&cf, &stack, "update-1").await;
        assert_eq!(cs.status, ChangeSetStatus::CreateComplete, "{cs:?}");
        let modify = cs
            .changes
            .iter()
            .find(|c| c.logical_id == "Setting")
            .expect("Setting changes");
        assert_eq!(modify.action, "Modify");
        assert!(modify.physical_id.is_some());
        assert!(modify.replacement.is_some(), "{modify:?}");
        assert!(!cs.changes.iter().any(|c| c.logical_id == "Topic"), "{cs:?}");

        cf.execute_change_set(&stack, "update-1", &unique("exec"))
            .await
            .unwrap();
        let (updated, seen) = settled_stack(&cf, &stack).await;
        assert_eq!(updated.status, StackState::UpdateComplete, "seen {seen:?}");
        assert_eq!(updated.parameters[0].value, "two");

        // Only events after the cursor, newest first.
        let newer = cf.stack_events(&stack, Some(&cursor), 100).await.unwrap();
        assert!(!newer.is_empty());
        assert!(
            newer
                .iter()
                .all(|e| events.iter().all(|old| old.event_id != e.event_id))
        );
        assert_eq!(newer[0].status, "UPDATE_COMPLETE");
        assert!(
            newer
                .iter()
                .any(|e| e.logical_id == "Setting" && e.status == "UPDATE_COMPLETE")
        );
        assert!(newer.windows(2).all(|w| w[0].timestamp >= w[1].timestamp));

        // Nothing changed: an empty change set, which stackpilot treats as success.
        update.change_set_name = "update-2".into();
        update.client_token = "update-2-token".into();
        cf.create_change_set(&update).await.expect("empty change set");
        let empty = settled_change_set(&cf, &stack, "update-2").await;
        assert!(empty.is_empty_failure(), "{empty:?}");
        assert!(empty.changes.is_empty());
        cf.delete_change_set(&stack, "update-2")
            .await
            .expect("delete_change_set");
        assert_eq!(cf.describe_change_set(&stack, "update-2").await.unwrap(), None);
        cf.delete_change_set(&stack, "never-existed")
            .await
            .expect("missing change set");

        // A Create change set for an existing stack.
        let again = cf
            .create_change_set(&request(&stack, "create-2", ChangeSetType::Create, LOCALSTACK_TEMPLATE))
            .await
            .unwrap_err();
        assert_eq!(again.kind, AwsErrorKind::AlreadyExists, "{again}");

        // Delete: gone by name, DELETE_COMPLETE by id.
        cf.delete_stack(&stack, &unique("delete"), &[])
            .await
            .expect("delete_stack");
        gone(&cf, &stack).await;
        let deleted = cf.describe_stack(&created.stack_id).await.unwrap().unwrap();
        assert_eq!(deleted.status, StackState::DeleteComplete);
    })
    .await;
}

#[tokio::test]
async fn localstack_failed_resource_shows_in_events() {
    let cf = client(&endpoint("STACKPILOT_TEST_AWS_ENDPOINT")).await;
    let stack = unique("fail");
    let template = r#"
Resources:
  Topic:
    Type: AWS::SNS::Topic
  Broken:
    Type: AWS::SSM::Parameter
    Properties:
      Type: NotAType
      Value: x
"#;
    cleanup_after(&cf, &[&stack], async {
        let mut create = request(&stack, "create-1", ChangeSetType::Create, template);
        create.parameters.clear();
        cf.create_change_set(&create).await.expect("create_change_set");
        settled_change_set(&cf, &stack, "create-1").await;
        cf.execute_change_set(&stack, "create-1", "").await.unwrap();
        let (failed, seen) = settled_stack(&cf, &stack).await;
        assert!(
            matches!(
                failed.status,
                StackState::RollbackComplete | StackState::CreateFailed | StackState::RollbackFailed
            ),
            "seen {seen:?}"
        );
        let events = cf.stack_events(&stack, None, 100).await.unwrap();
        let first_failure = events.iter().rev().find(|e| e.is_failure()).expect("a failed event");
        assert_eq!(first_failure.logical_id, "Broken");
        assert_eq!(first_failure.status, "CREATE_FAILED");
        assert_eq!(first_failure.resource_type, "AWS::SSM::Parameter");
        let reason = first_failure.reason.as_deref().unwrap_or_default();
        assert!(reason.contains("NotAType"), "{reason}");
        // A stack in ROLLBACK_COMPLETE cannot take an update change set.
        if failed.status == StackState::RollbackComplete {
            let mut update = request(&stack, "update-1", ChangeSetType::Update, template);
            update.parameters.clear();
            if let Err(err) = cf.create_change_set(&update).await {
                assert_eq!(err.kind, AwsErrorKind::Validation, "{err}");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn localstack_missing_things_and_validation_errors() {
    let cf = client(&endpoint("STACKPILOT_TEST_AWS_ENDPOINT")).await;
    let missing = unique("missing");
    assert_eq!(cf.describe_stack(&missing).await.unwrap(), None);
    assert_eq!(cf.describe_change_set(&missing, "cs").await.unwrap(), None);
    cf.delete_change_set(&missing, "cs").await.expect("missing is success");
    cf.delete_stack(&missing, "", &[])
        .await
        .expect("deleting a missing stack succeeds");
    let err = cf.stack_events(&missing, None, 10).await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::NotFound, "{err}");
    let err = cf.execute_change_set(&missing, "cs", "").await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::NotFound, "{err}");
    let err = cf
        .create_change_set(&request(&missing, "cs", ChangeSetType::Update, LOCALSTACK_TEMPLATE))
        .await
        .unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::NotFound, "{err}");

    let stack = unique("invalid");
    cleanup_after(&cf, &[&stack], async {
        let err = cf
            .create_change_set(&request(&stack, "cs", ChangeSetType::Create, "Resources: [unclosed"))
            .await
            .unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::Validation, "{err}");
        assert_eq!(err.code, "ValidationError");
        assert!(err.message.starts_with("Template format error"), "{err}");

        cf.create_change_set(&request(&stack, "cs", ChangeSetType::Create, LOCALSTACK_TEMPLATE))
            .await
            .unwrap();
        assert_eq!(cf.describe_change_set(&stack, "other").await.unwrap(), None);
        let err = cf.execute_change_set(&stack, "other", "").await.unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::NotFound, "{err}");
        assert_eq!(err.code, "ChangeSetNotFound");
    })
    .await;
}

#[tokio::test]
async fn localstack_assumes_the_target_role() {
    let endpoint = endpoint("STACKPILOT_TEST_AWS_ENDPOINT");
    let provider = provider(&endpoint).await;
    let target = AwsTarget {
        region: REGION.into(),
        role_arn: Some("arn:aws:iam::000000000000:role/stackpilot-test".into()),
        external_id: Some("external".into()),
        session_name: Some("team-a/my stack (needs sanitizing)".into()),
        session_tags: Vec::new(),
    };
    let cf = provider.client(&target);
    assert!(
        Arc::ptr_eq(&cf, &provider.client(&target)),
        "one cached client per target"
    );
    assert!(!Arc::ptr_eq(&cf, &provider.client(&self::target())));
    // The call goes through STS AssumeRole (on the emulator) first.
    assert_eq!(cf.describe_stack(&unique("role")).await.unwrap(), None);
}

#[tokio::test]
async fn localstack_template_protection_bulk_read_and_missing_operations() {
    let endpoint = endpoint("STACKPILOT_TEST_AWS_ENDPOINT");
    let cf = client(&endpoint).await;
    let stack = unique("ops");
    cleanup_after(&cf, &[&stack], async {
        let created = create_stack(&cf, &stack, LOCALSTACK_TEMPLATE).await;
        assert!(!created.termination_protection);
        assert_eq!(
            cf.get_template(&stack).await.unwrap(),
            LOCALSTACK_TEMPLATE,
            "as submitted"
        );
        assert_eq!(cf.get_template(&created.stack_id).await.unwrap(), LOCALSTACK_TEMPLATE);
        let err = cf.get_template(&unique("missing")).await.unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::NotFound, "{err}");

        cf.update_termination_protection(&stack, true).await.expect("protect");
        let protected = cf.describe_stack(&stack).await.unwrap().unwrap();
        assert!(protected.termination_protection);

        // The bulk read has the stack, described as fully as by name.
        let listing = cf.describe_all_stacks().await.expect("describe_all_stacks");
        assert!(listing.pages >= 1);
        let listed = listing
            .stacks
            .iter()
            .find(|s| s.stack_name == stack)
            .expect("stack listed");
        assert_eq!(listed, &protected);
        assert_eq!(listed.outputs.len(), 2);
        assert!(listing.stacks.iter().all(|s| s.status != StackState::DeleteComplete));
        cf.update_termination_protection(&stack, false)
            .await
            .expect("unprotect");

        // Not emulated: stack policies, drift detection, ContinueUpdateRollback.
        let cf1 = client_in(&endpoint, REGION, one_attempt()).await;
        let policy = r#"{"Statement":[{"Effect":"Allow","Action":"Update:*","Principal":"*","Resource":"*"}]}"#;
        assert_unimplemented(&cf1.set_stack_policy(&stack, policy).await.unwrap_err(), "localstack");
        assert_unimplemented(&cf1.get_stack_policy(&stack).await.unwrap_err(), "localstack");
        assert_unimplemented(&cf1.detect_stack_drift(&stack).await.unwrap_err(), "localstack");
        assert_unimplemented(&cf1.drift_detection_status("x").await.unwrap_err(), "localstack");
        assert_unimplemented(&cf1.resource_drifts(&stack).await.unwrap_err(), "localstack");
        assert_unimplemented(
            &cf1.continue_update_rollback(&stack, &[], "t").await.unwrap_err(),
            "localstack",
        );

        // DeploymentMode=REVERT_DRIFT is accepted (and, with no drift
        // detection, makes an ordinary change set).
        let mut revert = request(&stack, "revert-1", ChangeSetType::Update, LOCALSTACK_TEMPLATE);
        revert.parameters[0].value = "two".into();
        revert.deployment_mode = Some(DeploymentMode::RevertDrift);
        cf.create_change_set(&revert).await.expect("revert drift change set");
        let cs = settled_change_set(&cf, &stack, "revert-1").await;
        assert_eq!(cs.status, ChangeSetStatus::CreateComplete, "{cs:?}");

        cf.delete_stack(&stack, "", &[]).await.unwrap();
        gone(&cf, &stack).await;
        let listing = cf.describe_all_stacks().await.unwrap();
        assert!(!listing.stacks.iter().any(|s| s.stack_name == stack));
    })
    .await;
}

#[tokio::test]
async fn localstack_large_template_goes_through_s3() {
    let endpoint = endpoint("STACKPILOT_TEST_AWS_ENDPOINT");
    let provider = provider(&endpoint).await;
    let cf = provider.client(&target());
    let store = provider.template_store(&target());
    // A bucket of its own (S3 test set-up, outside stackpilot's trait).
    let config = aws_config::defaults(BehaviorVersion::latest())
        .credentials_provider(Credentials::new("test", "test", None, None, "stackpilot-tests"))
        .region(Region::new(REGION))
        .endpoint_url(&endpoint)
        .load()
        .await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let bucket = unique("templates").to_lowercase();
    s3.create_bucket().bucket(&bucket).send().await.expect("create bucket");
    let stack = unique("big");
    let key = format!("stacks/{stack}/template v1.yaml");
    // Comments count towards the size and change nothing else.
    let body = format!(
        "{LOCALSTACK_TEMPLATE}# {}\n",
        "padding ".repeat(MAX_TEMPLATE_BODY_BYTES / 8 + 100)
    );
    assert!(body.len() > MAX_TEMPLATE_BODY_BYTES);
    cleanup_after(&cf, &[&stack], async {
        // Inline, LocalStack enforces the limit as AWS does.
        let inline = cf
            .create_change_set(&request(&stack, "inline", ChangeSetType::Create, &body))
            .await
            .unwrap_err();
        assert_eq!(inline.kind, AwsErrorKind::Validation);
        assert!(
            inline.message.contains("less than or equal to 51200"),
            "{}",
            &inline.message[inline.message.len().saturating_sub(200)..]
        );

        let url = store.put_template(&bucket, &key, &body).await.expect("put_template");
        assert_eq!(
            url,
            format!(
                "{}/{bucket}/stacks/{stack}/template%20v1.yaml",
                endpoint.trim_end_matches('/')
            )
        );
        let stored = s3
            .get_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .expect("get_object");
        let bytes = stored.body.collect().await.unwrap().into_bytes();
        assert_eq!(bytes.len(), body.len());

        let mut create = request(&stack, "create-url", ChangeSetType::Create, "");
        create.template = TemplateSource::Url(url);
        cf.create_change_set(&create)
            .await
            .expect("create_change_set with TemplateURL");
        let cs = settled_change_set(&cf, &stack, "create-url").await;
        assert_eq!(cs.status, ChangeSetStatus::CreateComplete, "{cs:?}");
        cf.execute_change_set(&stack, "create-url", "").await.unwrap();
        let (created, seen) = settled_stack(&cf, &stack).await;
        assert_eq!(created.status, StackState::CreateComplete, "seen {seen:?}");
        assert_eq!(cf.get_template(&stack).await.unwrap().len(), body.len());

        let err = store
            .put_template(&unique("no-such-bucket").to_lowercase(), "k", "x")
            .await
            .unwrap_err();
        assert_eq!(err.code, "NoSuchBucket", "{err}");
    })
    .await;
    let _ = s3.delete_object().bucket(&bucket).key(&key).send().await;
    let _ = s3.delete_bucket().bucket(&bucket).send().await;
}
