//! What the fake's unit tests share: a template and a few steps.

use std::collections::BTreeMap;

use crate::aws::{
    ChangeSetRequest, ChangeSetStatus, ChangeSetType, CloudFormation, StackOptions, StackState, TemplateSource,
};

use super::FakeCloudFormation;

pub(super) const TEMPLATE: &str = r#"
Parameters:
  Env:
    Type: String
    Default: dev
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-${Env}"
  Topic:
    Type: AWS::SNS::Topic
Outputs:
  QueueUrl:
    Value: !Ref Queue
    Description: the queue
"#;

pub(super) fn request(stack: &str, cs: &str, kind: ChangeSetType, body: &str) -> ChangeSetRequest {
    ChangeSetRequest {
        stack_name: stack.into(),
        change_set_name: cs.into(),
        change_set_type: kind,
        template: TemplateSource::Body(body.into()),
        parameters: vec![],
        options: StackOptions {
            tags: BTreeMap::from([("team".into(), "a".into())]),
            ..StackOptions::default()
        },
        client_token: format!("{cs}-token"),
        description: None,
        deployment_mode: None,
    }
}

pub(super) async fn status(fake: &FakeCloudFormation, stack: &str) -> Option<StackState> {
    fake.describe_stack(stack).await.unwrap().map(|s| s.status)
}

/// Creates and executes a Create change set and waits for the stack to settle.
pub(super) async fn create(fake: &FakeCloudFormation, stack: &str) -> StackState {
    fake.create_change_set(&request(stack, "c1", ChangeSetType::Create, TEMPLATE))
        .await
        .unwrap();
    while fake.describe_change_set(stack, "c1").await.unwrap().unwrap().status == ChangeSetStatus::CreatePending {}
    fake.execute_change_set(stack, "c1", "x1").await.unwrap();
    loop {
        let status = status(fake, stack).await.unwrap();
        if !status.is_in_progress() {
            return status;
        }
    }
}
