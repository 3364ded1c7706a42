//! Stack-level settings end to end, on the real kube-apiserver and moto:
//! `notificationArns`, `rollbackTriggers` and `serviceRoleArn` reach
//! CloudFormation when the stack is created and follow the spec on updates.
//! Each test runs its own operator on its own namespace. The operator talks
//! to moto through a small TCP relay that records what the operator sends,
//! so the tests can check the CreateChangeSet requests on the wire where the
//! emulator does not show a setting back.
//!
//! Emulator facts measured while writing these tests (LocalStack 2026.3.0,
//! moto 5.2.5; stacks created with CreateChangeSet + ExecuteChangeSet):
//! - LocalStack reflects none of the three: DescribeStacks and
//!   DescribeChangeSet answer `NotificationARNs: []`, `RollbackConfiguration:
//!   {}` and no `RoleARN`, on create and on update. It validates nothing
//!   either: a topic, alarm and role that do not exist are accepted (and its
//!   CloudWatch is not enabled in the test bed). Hence moto here.
//! - moto, CREATE change set: DescribeStacks shows `NotificationARNs` and
//!   `RoleARN` as sent; DescribeChangeSet shows `NotificationARNs` but no
//!   `RoleARN`. `RollbackConfiguration` is shown by neither (dropped).
//! - moto, UPDATE change set: DescribeChangeSet shows the new
//!   `NotificationARNs`, but executing it changes only the resources:
//!   DescribeStacks keeps the `NotificationARNs` and `RoleARN` of the create.
//!   So after an update the new role and triggers are checked on the
//!   recorded CreateChangeSet request, the topics also on DescribeChangeSet.
//! - moto validates the notification topics (it publishes stack events to
//!   them): a topic that does not exist fails CreateChangeSet with
//!   "Endpoint does not exist". Role and alarm ARNs are not checked. The
//!   topics are made by a helper stack (`AWS::SNS::Topic`); an
//!   `AWS::CloudWatch::Alarm` in a moto stack answers HTTP 500.
//! - Both emulators: an UPDATE change set whose only difference is
//!   `NotificationARNs`, `RollbackConfiguration` or `RoleARN` (same template,
//!   no `Parameters`) ends `FAILED` with "The submitted information didn't
//!   contain changes.", so it cannot be executed.
//!
//! - moto's UpdateStack applies `RoleARN` but keeps the `NotificationARNs`
//!   of the create.
//!
//! A spec change that touches only these settings gives such an empty
//! change set; stackpilot then applies the same inputs with UpdateStack
//! (CloudFormation answers "No updates are to be performed" when there is
//! truly nothing to do, which counts as success).
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use stackpilot::api::Stack;
use support::fixture::{Fixture, TIMEOUT, condition};
use support::workload::raw_cloudformation;
use support::{TestBed, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const QUEUE: &str = r#"
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties: {VisibilityTimeout: 30}
"#;

/// Two SNS topics for the notifications (moto checks that they exist).
const TOPICS: &str = r#"
Resources:
  TopicA: {Type: AWS::SNS::Topic}
  TopicB: {Type: AWS::SNS::Topic}
Outputs:
  A: {Value: !Ref TopicA}
  B: {Value: !Ref TopicB}
"#;

const ACCOUNT: &str = "123456789012";

type Raw = aws_sdk_cloudformation::Client;

/// Everything the operator sent to the emulator, one byte stream per
/// connection.
#[derive(Clone, Default)]
struct Recorder {
    connections: Arc<Mutex<Vec<Sent>>>,
}

/// The bytes a client sent on one connection.
type Sent = Arc<Mutex<Vec<u8>>>;

impl Recorder {
    /// Listens on a free port and relays each connection to `upstream`
    /// (`http://host:port`); returns the endpoint to give the operator.
    async fn start(upstream: &str) -> (Recorder, String) {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let recorder = Recorder::default();
        let connections = recorder.connections.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let sent = Arc::new(Mutex::new(Vec::new()));
                connections.lock().unwrap().push(sent.clone());
                tokio::spawn(relay(client, server, sent));
            }
        });
        (recorder, endpoint)
    }

    /// The form parameters of every request with this `Action`, in order.
    fn requests(&self, action: &str) -> Vec<BTreeMap<String, String>> {
        let connections = self.connections.lock().unwrap().clone();
        let mut found = Vec::new();
        for sent in connections {
            let bytes = sent.lock().unwrap().clone();
            found.extend(http_bodies(&bytes).iter().map(|b| form(b)));
        }
        found.retain(|f| f.get("Action").map(String::as_str) == Some(action));
        found
    }

    /// The CreateChangeSet request that made this change set.
    fn create_change_set(&self, change_set: &str) -> BTreeMap<String, String> {
        let mut hits: Vec<_> = self
            .requests("CreateChangeSet")
            .into_iter()
            .filter(|r| r.get("ChangeSetName").map(String::as_str) == Some(change_set))
            .collect();
        assert!(!hits.is_empty(), "no CreateChangeSet {change_set} was sent");
        // Retries of the same change set carry the same inputs.
        hits.dedup();
        assert_eq!(hits.len(), 1, "different requests under one name: {hits:#?}");
        hits.remove(0)
    }
}

async fn relay(mut client: TcpStream, mut server: TcpStream, sent: Sent) {
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let upstream = async {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            sent.lock().unwrap().extend_from_slice(&buffer[..n]);
            if server_write.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let downstream = async {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::join!(upstream, downstream);
}

/// The bodies of the HTTP/1.1 requests in one connection's byte stream.
fn http_bodies(mut bytes: &[u8]) -> Vec<String> {
    let mut bodies = Vec::new();
    while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let start = end + 4;
        let stop = (start + length).min(bytes.len());
        bodies.push(String::from_utf8_lossy(&bytes[start..stop]).into_owned());
        bytes = &bytes[stop..];
    }
    bodies
}

/// An `application/x-www-form-urlencoded` body (AWS query protocol).
fn form(body: &str) -> BTreeMap<String, String> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The settings one revision of the spec asks for.
struct Settings {
    topic: String,
    alarm: String,
    minutes: i32,
    role: String,
}

impl Settings {
    fn new(ns: &str, topic: &str, label: &str, minutes: i32) -> Settings {
        Settings {
            topic: topic.to_string(),
            alarm: format!("arn:aws:cloudwatch:us-east-1:{ACCOUNT}:alarm:{ns}-errors-{label}"),
            minutes,
            role: format!("arn:aws:iam::{ACCOUNT}:role/{ns}-deployer-{label}"),
        }
    }

    fn spec(&self, template: &str) -> Value {
        json!({"region": "us-east-1", "template": {"body": template},
            "notificationArns": [self.topic],
            "rollbackTriggers": {"alarms": [self.alarm], "monitoringTimeInMinutes": self.minutes},
            "serviceRoleArn": self.role})
    }

    /// The request carries exactly these settings, in CloudFormation's names.
    /// `kind`: the change set type, or None for UpdateStack.
    fn assert_sent(&self, request: &BTreeMap<String, String>, kind: Option<&str>) {
        let get = |key: &str| request.get(key).map(String::as_str);
        let name = get("ChangeSetName").or(get("Action")).unwrap_or("?");
        assert_eq!(get("ChangeSetType"), kind, "{name}: {request:#?}");
        assert_eq!(get("NotificationARNs.member.1"), Some(self.topic.as_str()), "{name}");
        assert_eq!(get("NotificationARNs.member.2"), None, "{name}: one topic");
        assert_eq!(get("RoleARN"), Some(self.role.as_str()), "{name}");
        let trigger = "RollbackConfiguration.RollbackTriggers.member.1";
        assert_eq!(get(&format!("{trigger}.Arn")), Some(self.alarm.as_str()), "{name}");
        assert_eq!(
            get(&format!("{trigger}.Type")),
            Some("AWS::CloudWatch::Alarm"),
            "{name}"
        );
        assert_eq!(
            get("RollbackConfiguration.RollbackTriggers.member.2.Arn"),
            None,
            "{name}: one trigger"
        );
        let minutes = self.minutes.to_string();
        assert_eq!(
            get("RollbackConfiguration.MonitoringTimeInMinutes"),
            Some(minutes.as_str()),
            "{name}"
        );
    }
}

/// Creates the helper stack with two topics; returns their ARNs.
async fn create_topics(raw: &Raw, name: &str) -> (String, String) {
    raw.create_stack()
        .stack_name(name)
        .template_body(TOPICS)
        .send()
        .await
        .unwrap();
    eventually(TIMEOUT, "the topics stack is created", || async {
        let out = raw.describe_stacks().stack_name(name).send().await.ok()?;
        let stack = out.stacks().first()?.clone();
        if stack.stack_status().map(|s| s.as_str()) != Some("CREATE_COMPLETE") {
            return None;
        }
        let output = |key: &str| {
            stack
                .outputs()
                .iter()
                .find(|o| o.output_key() == Some(key))
                .and_then(|o| o.output_value())
                .map(str::to_string)
        };
        Some((output("A")?, output("B")?))
    })
    .await
}

async fn live_stack(raw: &Raw, name: &str) -> aws_sdk_cloudformation::types::Stack {
    let out = raw.describe_stacks().stack_name(name).send().await.unwrap();
    out.stacks().first().cloned().expect("the stack")
}

/// What DescribeChangeSet reports as the change set's notification topics.
async fn change_set_topics(raw: &Raw, stack: &str, change_set: &str) -> Vec<String> {
    let out = raw
        .describe_change_set()
        .stack_name(stack)
        .change_set_name(change_set)
        .send()
        .await
        .unwrap();
    out.notification_arns().to_vec()
}

/// Waits until the current generation is applied and Ready=True.
async fn wait_applied(f: &Fixture, name: &str) -> Stack {
    let api = f.stacks();
    eventually(TIMEOUT, &format!("{name} applied and Ready"), || {
        let api = api.clone();
        async move {
            let stack = api.get(name).await.ok()?;
            let status = stack.status.as_ref()?;
            let generation = stack.metadata.generation;
            let applied = status.applied.as_ref().map(|a| a.generation) == generation;
            let current = status.observed_generation == generation;
            let ok = condition(&stack, "Ready").is_some_and(|c| c.status == "True");
            (applied && current && ok && status.operation.is_none()).then_some(stack)
        }
    })
    .await
}

fn change_set_name(stack: &Stack) -> String {
    let status = stack.status.as_ref().expect("a status");
    status.change_set.as_ref().expect("a change set").name.clone()
}

async fn executions(f: &Fixture) -> f64 {
    f.operator
        .metric("stackpilot_aws_calls_total", &["operation=\"ExecuteChangeSet\""])
        .await
}

async fn delete_all(f: &Fixture, raw: &Raw, name: &str, stack_name: &str, topics: &str) {
    f.stacks().delete(name, &Default::default()).await.unwrap();
    f.wait_gone(name).await;
    let left = raw.describe_stacks().stack_name(stack_name).send().await;
    let status = left.ok().and_then(|o| o.stacks().first().cloned());
    let status = status.and_then(|s| s.stack_status().map(|s| s.as_str().to_string()));
    assert!(
        status.as_deref().is_none_or(|s| s == "DELETE_COMPLETE"),
        "stack deleted: {status:?}"
    );
    raw.delete_stack().stack_name(topics).send().await.unwrap();
}

#[tokio::test]
async fn settings_are_applied_on_create_and_sent_again_with_an_update() {
    let moto = TestBed::get().moto_endpoint;
    let (recorder, endpoint) = Recorder::start(&moto).await;
    let f = Fixture::on("settings-sync", &endpoint, &[]).await;
    let raw = raw_cloudformation(&moto).await;
    let ns = f.ns.name.clone();
    let topics_stack = format!("{ns}-topics");
    let (topic_a, topic_b) = create_topics(&raw, &topics_stack).await;
    let stack_name = format!("{ns}-configured");
    let first = Settings::new(&ns, &topic_a, "a", 5);

    // Create: moto shows the topics and the role on the stack.
    f.apply("configured", first.spec(QUEUE)).await;
    let stack = wait_applied(&f, "configured").await;
    let status = stack.status.as_ref().unwrap();
    assert_eq!(status.stack_status.as_deref(), Some("CREATE_COMPLETE"));
    let live = live_stack(&raw, &stack_name).await;
    assert_eq!(
        live.notification_arns(),
        std::slice::from_ref(&topic_a),
        "NotificationARNs on create"
    );
    assert_eq!(live.role_arn(), Some(first.role.as_str()), "RoleARN on create");
    // moto drops RollbackConfiguration: the request shows it was sent.
    let created = change_set_name(&stack);
    first.assert_sent(&recorder.create_change_set(&created), Some("CREATE"));
    assert_eq!(
        change_set_topics(&raw, &stack_name, &created).await,
        std::slice::from_ref(&topic_a)
    );

    // An update with a resource change and new settings: one change set
    // carries all of them and is executed.
    let second = Settings::new(&ns, &topic_b, "b", 10);
    let executed = executions(&f).await;
    f.apply("configured", second.spec(&QUEUE.replace("30", "60"))).await;
    let stack = wait_applied(&f, "configured").await;
    let updated = change_set_name(&stack);
    assert_ne!(updated, created, "a new change set for the new settings");
    let summary = stack.status.as_ref().unwrap().change_set.clone().unwrap();
    assert_eq!(
        summary.status,
        Some(stackpilot::api::ChangeSetState::CreateComplete),
        "{summary:?}"
    );
    assert_eq!(
        summary.execution_status,
        Some(stackpilot::api::ExecutionState::ExecuteComplete),
        "{summary:?}"
    );
    assert_eq!(
        stack.status.as_ref().unwrap().stack_status.as_deref(),
        Some("UPDATE_COMPLETE")
    );
    second.assert_sent(&recorder.create_change_set(&updated), Some("UPDATE"));
    assert_eq!(
        change_set_topics(&raw, &stack_name, &updated).await,
        std::slice::from_ref(&topic_b)
    );
    assert_eq!(executions(&f).await, executed + 1.0, "the update was executed");
    let execute = recorder.requests("ExecuteChangeSet");
    assert!(
        execute
            .iter()
            .any(|r| r.get("ChangeSetName").map(String::as_str) == Some(updated.as_str())),
        "ExecuteChangeSet {updated} on the wire"
    );

    delete_all(&f, &raw, "configured", &stack_name, &topics_stack).await;
    f.finish().await;
}

#[tokio::test]
async fn a_settings_only_change_is_applied_with_update_stack() {
    let moto = TestBed::get().moto_endpoint;
    let (recorder, endpoint) = Recorder::start(&moto).await;
    let f = Fixture::on("settings-only", &endpoint, &[]).await;
    let raw = raw_cloudformation(&moto).await;
    let ns = f.ns.name.clone();
    let topics_stack = format!("{ns}-topics");
    let (topic_a, topic_b) = create_topics(&raw, &topics_stack).await;
    let stack_name = format!("{ns}-quiet");
    let first = Settings::new(&ns, &topic_a, "a", 5);
    f.apply("quiet", first.spec(QUEUE)).await;
    let stack = wait_applied(&f, "quiet").await;
    let created = change_set_name(&stack);
    first.assert_sent(&recorder.create_change_set(&created), Some("CREATE"));

    // Only the settings change: the UPDATE change set has no resource
    // change, so it cannot run; UpdateStack carries the settings instead.
    let second = Settings::new(&ns, &topic_b, "b", 10);
    let executed = executions(&f).await;
    f.apply("quiet", second.spec(QUEUE)).await;
    let stack = wait_applied(&f, "quiet").await;
    let planned = change_set_name(&stack);
    assert_ne!(planned, created);
    second.assert_sent(&recorder.create_change_set(&planned), Some("UPDATE"));
    let summary = stack.status.as_ref().unwrap().change_set.clone().unwrap();
    assert_eq!(
        summary.status,
        Some(stackpilot::api::ChangeSetState::Failed),
        "{summary:?}"
    );
    assert_eq!(executions(&f).await, executed, "nothing to execute");
    let updates = recorder.requests("UpdateStack");
    assert_eq!(updates.len(), 1, "one UpdateStack: {updates:#?}");
    second.assert_sent(&updates[0], None);
    assert_eq!(updates[0].get("StackName"), Some(&stack_name));
    assert!(
        updates[0]
            .get("ClientRequestToken")
            .is_some_and(|t| t.contains("update")),
        "{:#?}",
        updates[0]
    );
    let live = live_stack(&raw, &stack_name).await;
    // moto's UpdateStack takes the role but keeps the topics of the create
    // (see the header): the topics are checked on the request above.
    assert_eq!(live.role_arn(), Some(second.role.as_str()), "new role on the stack");
    eventually(TIMEOUT, "UpdatingStack event", || async {
        f.events("quiet")
            .await
            .iter()
            .any(|(_, reason, _)| reason == "UpdatingStack")
            .then_some(())
    })
    .await;

    delete_all(&f, &raw, "quiet", &stack_name, &topics_stack).await;
    f.finish().await;
}

#[tokio::test]
async fn settings_removed_from_the_spec_are_cleared_by_the_next_update() {
    let moto = TestBed::get().moto_endpoint;
    let (recorder, endpoint) = Recorder::start(&moto).await;
    let f = Fixture::on("settings-clear", &endpoint, &[]).await;
    let raw = raw_cloudformation(&moto).await;
    let ns = f.ns.name.clone();
    let topics_stack = format!("{ns}-topics");
    let (topic_a, _) = create_topics(&raw, &topics_stack).await;
    let stack_name = format!("{ns}-plain");
    let first = Settings::new(&ns, &topic_a, "a", 5);
    f.apply("plain", first.spec(QUEUE)).await;
    wait_applied(&f, "plain").await;

    // Left out of an update, CloudFormation keeps the previous topics and
    // triggers: the update must say "none" explicitly.
    let spec = json!({"region": "us-east-1", "template": {"body": QUEUE.replace("30", "60")}});
    f.apply("plain", spec).await;
    let stack = wait_applied(&f, "plain").await;
    let request = recorder.create_change_set(&change_set_name(&stack));
    let get = |key: &str| request.get(key).map(String::as_str);
    assert_eq!(get("ChangeSetType"), Some("UPDATE"), "{request:#?}");
    assert_eq!(get("NotificationARNs"), Some(""), "an empty list: {request:#?}");
    assert_eq!(get("NotificationARNs.member.1"), None, "{request:#?}");
    assert_eq!(get("RollbackConfiguration.RollbackTriggers"), Some(""), "{request:#?}");
    assert_eq!(
        get("RollbackConfiguration.MonitoringTimeInMinutes"),
        Some("0"),
        "{request:#?}"
    );
    assert_eq!(
        stack.status.as_ref().unwrap().stack_status.as_deref(),
        Some("UPDATE_COMPLETE")
    );

    delete_all(&f, &raw, "plain", &stack_name, &topics_stack).await;
    f.finish().await;
}
