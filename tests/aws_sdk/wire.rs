//! Canned HTTP answers for what no emulator does (paging, throttling, dead
//! ends): the requests the SDK sends and how their answers are read.

use super::*;

// ---- canned HTTP answers (no emulator needed)

type Handler = Box<dyn Fn(&BTreeMap<String, String>) -> (u16, String) + Send + Sync>;

/// An HTTP server on loopback answering each request (one per connection)
/// with `handler(form fields)`. Returns its URL and the requests seen.
async fn canned(handler: Handler) -> (String, Arc<Mutex<Vec<BTreeMap<String, String>>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = Arc::new(handler);
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let handler = handler.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, length) = loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    if let Some(pos) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buffer[..pos]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (pos + 4, length);
                    }
                };
                while buffer.len() < head_end + length {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                }
                let form: BTreeMap<String, String> = form_urlencoded::parse(&buffer[head_end..]).into_owned().collect();
                log.lock().unwrap().push(form.clone());
                let (status, text) = handler(&form);
                let response = format!(
                    "HTTP/1.1 {status} Canned\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (url, seen)
}

const NS: &str = "http://cloudformation.amazonaws.com/doc/2010-05-15/";

fn event_xml(id: u32) -> String {
    format!(
        "<member><EventId>e{id}</EventId><StackId>arn:aws:cloudformation:us-east-1:1:stack/s/x</StackId>\
         <StackName>s</StackName><LogicalResourceId>R{id}</LogicalResourceId>\
         <ResourceType>AWS::SNS::Topic</ResourceType><Timestamp>2024-01-01T00:00:{id:02}Z</Timestamp>\
         <ResourceStatus>CREATE_COMPLETE</ResourceStatus></member>"
    )
}

/// Nine events e9..e1, three per page, newest first.
fn events_page(form: &BTreeMap<String, String>) -> (u16, String) {
    let (ids, next) = match form.get("NextToken").map(String::as_str) {
        None => ([9, 8, 7], Some("p2")),
        Some("p2") => ([6, 5, 4], Some("p3")),
        _ => ([3, 2, 1], None),
    };
    let events: String = ids.iter().map(|id| event_xml(*id)).collect();
    let next = next.map(|t| format!("<NextToken>{t}</NextToken>")).unwrap_or_default();
    let body = format!(
        "<DescribeStackEventsResponse xmlns=\"{NS}\"><DescribeStackEventsResult>\
         <StackEvents>{events}</StackEvents>{next}</DescribeStackEventsResult>\
         <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeStackEventsResponse>"
    );
    (200, body)
}

fn change_xml(id: &str) -> String {
    format!(
        "<member><Type>Resource</Type><ResourceChange><Action>Add</Action>\
         <LogicalResourceId>{id}</LogicalResourceId><ResourceType>AWS::SNS::Topic</ResourceType>\
         </ResourceChange></member>"
    )
}

fn change_set_page(form: &BTreeMap<String, String>) -> (u16, String) {
    let (changes, next) = match form.get("NextToken").map(String::as_str) {
        None => (change_xml("A") + &change_xml("B"), "<NextToken>more</NextToken>"),
        _ => (change_xml("C"), ""),
    };
    let body = format!(
        "<DescribeChangeSetResponse xmlns=\"{NS}\"><DescribeChangeSetResult>\
         <ChangeSetName>cs</ChangeSetName><ChangeSetId>arn:cs</ChangeSetId><StackId>arn:stack</StackId>\
         <Status>CREATE_COMPLETE</Status><ExecutionStatus>AVAILABLE</ExecutionStatus>\
         <Changes>{changes}</Changes>{next}</DescribeChangeSetResult>\
         <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeChangeSetResponse>"
    );
    (200, body)
}

fn error_xml(code: &str, message: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"{NS}\"><Error><Type>Sender</Type><Code>{code}</Code>\
         <Message>{message}</Message></Error><RequestId>r</RequestId></ErrorResponse>"
    )
}

#[tokio::test]
async fn change_set_changes_are_read_from_every_page() {
    let (url, seen) = canned(Box::new(change_set_page)).await;
    let cf = client(&url).await;
    let cs = cf.describe_change_set("s", "cs").await.unwrap().unwrap();
    let ids: Vec<&str> = cs.changes.iter().map(|c| c.logical_id.as_str()).collect();
    assert_eq!(ids, ["A", "B", "C"]);
    assert_eq!(cs.status, ChangeSetStatus::CreateComplete);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].get("NextToken").map(String::as_str), Some("more"));
}

#[tokio::test]
async fn stack_events_page_only_until_the_cursor() {
    let (url, seen) = canned(Box::new(events_page)).await;
    let cf = client(&url).await;

    let newer = cf.stack_events("s", Some("e5"), 100).await.unwrap();
    let ids: Vec<&str> = newer.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["e9", "e8", "e7", "e6"]);
    assert_eq!(seen.lock().unwrap().len(), 2, "stopped on the page holding the cursor");

    seen.lock().unwrap().clear();
    let newest = cf.stack_events("s", None, 2).await.unwrap();
    assert_eq!(newest.len(), 2);
    assert_eq!(newest[0].timestamp.to_rfc3339(), "2024-01-01T00:00:09+00:00");
    assert_eq!(seen.lock().unwrap().len(), 1);

    seen.lock().unwrap().clear();
    let all = cf.stack_events("s", None, 100).await.unwrap();
    assert_eq!(all.len(), 9);
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn the_sdk_client_makes_one_attempt_and_leaves_retries_to_the_budget() {
    let (url, seen) = canned(Box::new(|_: &BTreeMap<String, String>| {
        (400, error_xml("Throttling", "Rate exceeded"))
    }))
    .await;
    let cf = client(&url).await;
    let err = cf.describe_stack("s").await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::Throttled, "{err}");
    assert_eq!(err.code, "Throttling");
    assert_eq!(err.message, "Rate exceeded");
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "one request: the call budget decides retries"
    );
}

/// The call budget is the one place that retries: against an endpoint that
/// throttles every request, each call goes on the wire `MAX_ATTEMPTS` times
/// (not that times the SDK's own attempts), and in no window of time do the
/// requests exceed what the budget allows (burst + rate x window).
#[tokio::test]
async fn requests_on_the_wire_stay_within_the_budget_under_throttling() {
    const CALLS: usize = 3;
    let settings = BudgetSettings {
        calls_per_second: 20.0,
        burst: 5.0,
    };
    let sent = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let log = sent.clone();
    let (url, _) = canned(Box::new(move |_: &BTreeMap<String, String>| {
        log.lock().unwrap().push(Instant::now());
        (400, error_xml("Throttling", "Rate exceeded"))
    }))
    .await;
    let metrics = Arc::new(Metrics::default());
    let sdk: Arc<dyn CloudFormationProvider> = Arc::new(provider(&url).await);
    let counted = Arc::new(InstrumentedProvider {
        inner: sdk,
        metrics: metrics.clone(),
    });
    let cf = BudgetProvider::new(counted, settings, metrics).client(&target());
    let calls = (0..CALLS).map(|i| {
        let cf = cf.clone();
        async move { cf.describe_stack(&format!("s{i}")).await }
    });
    let results = futures::future::join_all(calls).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_err_and(|e| e.kind == AwsErrorKind::Throttled)),
        "{results:?}"
    );
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent.len(), CALLS * MAX_ATTEMPTS as usize, "requests on the wire");
    for (i, first) in sent.iter().enumerate() {
        for (j, last) in sent.iter().enumerate().skip(i) {
            let window = last.duration_since(*first).as_secs_f64();
            let allowed = settings.burst + settings.calls_per_second * window;
            // +1: a request landing exactly on a window's edge.
            assert!(
                (j - i + 1) as f64 <= allowed + 1.0,
                "{} requests in {window:.3} s, the budget allows {allowed:.1}",
                j - i + 1
            );
        }
    }
}

#[tokio::test]
async fn service_errors_keep_code_and_message() {
    let (url, _) = canned(Box::new(|form: &BTreeMap<String, String>| {
        match form.get("Action").map(String::as_str) {
            Some("DescribeStacks") => (400, error_xml("ValidationError", "Stack with id s does not exist")),
            Some("CreateChangeSet") => (
                400,
                error_xml(
                    "InsufficientCapabilitiesException",
                    "Requires capabilities : [CAPABILITY_IAM]",
                ),
            ),
            Some("ExecuteChangeSet") => (
                400,
                error_xml(
                    "ValidationError",
                    "Stack:arn is in UPDATE_IN_PROGRESS state and can not be updated.",
                ),
            ),
            Some("DeleteStack") => (403, error_xml("AccessDenied", "not authorized")),
            _ => (500, "<html>oops</html>".to_string()),
        }
    }))
    .await;
    let cf = client(&url).await;
    assert_eq!(cf.describe_stack("s").await.unwrap(), None);
    let err = cf
        .create_change_set(&request("s", "cs", ChangeSetType::Create, "{}"))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind, err.code.as_str()),
        (AwsErrorKind::Validation, "InsufficientCapabilitiesException")
    );
    let err = cf.execute_change_set("s", "cs", "t").await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::InProgress, "{err}");
    let err = cf.delete_stack("s", "t", &[]).await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::AccessDenied, "{err}");
    let err = cf.stack_events("s", None, 10).await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::Transient, "HTML 500: {err}");
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let cf = client(&format!("http://127.0.0.1:{port}")).await;
    let started = Instant::now();
    let err = cf.describe_stack("s").await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::Transient, "{err}");
    assert!(
        started.elapsed() < SdkLimits::default().operation_timeout,
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_silent_endpoint_times_out() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    // The default bounds (30 s per call) with shorter numbers, same mechanism.
    let limits = SdkLimits {
        attempt_timeout: Duration::from_millis(500),
        operation_timeout: Duration::from_secs(2),
        ..SdkLimits::default()
    };
    let cf = provider_with(&url, limits).await.client(&target());
    let started = Instant::now();
    let err = cf.describe_stack("s").await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::Transient, "{err}");
    assert_eq!(err.code, "Timeout", "{err}");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

fn stack_xml(name: &str, status: &str) -> String {
    format!(
        "<member><StackId>arn:aws:cloudformation:us-east-1:1:stack/{name}/x</StackId><StackName>{name}</StackName>\
         <StackStatus>{status}</StackStatus><CreationTime>2024-01-01T00:00:00Z</CreationTime>\
         <Parameters><member><ParameterKey>Env</ParameterKey><ParameterValue>prod</ParameterValue></member></Parameters>\
         <Tags><member><Key>team</Key><Value>a</Value></member></Tags>\
         <Outputs><member><OutputKey>Url</OutputKey><OutputValue>https://{name}</OutputValue>\
         <Description>the url</Description><ExportName>{name}-url</ExportName></member></Outputs>\
         <EnableTerminationProtection>true</EnableTerminationProtection></member>"
    )
}

fn response(action: &str, result: &str) -> (u16, String) {
    (
        200,
        format!(
            "<{action}Response xmlns=\"{NS}\"><{action}Result>{result}</{action}Result>\
             <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></{action}Response>"
        ),
    )
}

#[tokio::test]
async fn bulk_describe_reads_every_page_without_a_stack_name() {
    let (url, seen) = canned(Box::new(|form: &BTreeMap<String, String>| {
        let (stacks, next) = match form.get("NextToken").map(String::as_str) {
            None => (
                stack_xml("a", "CREATE_COMPLETE") + &stack_xml("b", "UPDATE_IN_PROGRESS"),
                "<NextToken>p2</NextToken>",
            ),
            Some("p2") => (
                stack_xml("gone", "DELETE_COMPLETE") + &stack_xml("c", "ROLLBACK_COMPLETE"),
                "<NextToken>p3</NextToken>",
            ),
            _ => (String::new(), ""),
        };
        response("DescribeStacks", &format!("<Stacks>{stacks}</Stacks>{next}"))
    }))
    .await;
    let cf = client(&url).await;
    let listing = cf.describe_all_stacks().await.unwrap();
    assert_eq!(listing.pages, 3);
    let names: Vec<&str> = listing.stacks.iter().map(|s| s.stack_name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"], "DELETE_COMPLETE left out");
    let a = &listing.stacks[0];
    assert_eq!(a.status, StackState::CreateComplete);
    assert_eq!(
        a.parameters,
        [Parameter {
            key: "Env".into(),
            value: "prod".into()
        }]
    );
    assert_eq!(a.tags.get("team").map(String::as_str), Some("a"));
    assert_eq!(a.outputs[0].value, "https://a");
    assert_eq!(a.outputs[0].export_name.as_deref(), Some("a-url"));
    assert!(a.termination_protection);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|form| !form.contains_key("StackName")), "{seen:?}");
    assert_eq!(seen[2].get("NextToken").map(String::as_str), Some("p3"));
}

fn drift_member(id: &str, status: &str) -> String {
    format!(
        "<member><StackId>arn:stack</StackId><LogicalResourceId>{id}</LogicalResourceId>\
         <PhysicalResourceId>phys-{id}</PhysicalResourceId><ResourceType>AWS::SQS::Queue</ResourceType>\
         <StackResourceDriftStatus>{status}</StackResourceDriftStatus><Timestamp>2024-01-01T00:00:00Z</Timestamp>\
         <PropertyDifferences><member><PropertyPath>/DelaySeconds</PropertyPath><ExpectedValue>0</ExpectedValue>\
         <ActualValue>5</ActualValue><DifferenceType>NOT_EQUAL</DifferenceType></member></PropertyDifferences></member>"
    )
}

#[tokio::test]
async fn drift_detection_calls_send_and_read_the_right_fields() {
    let (url, seen) = canned(Box::new(|form: &BTreeMap<String, String>| {
        match form.get("Action").map(String::as_str) {
            Some("DetectStackDrift") => {
                response("DetectStackDrift", "<StackDriftDetectionId>d-1</StackDriftDetectionId>")
            }
            Some("DescribeStackDriftDetectionStatus") => response(
                "DescribeStackDriftDetectionStatus",
                "<StackId>arn:stack</StackId><StackDriftDetectionId>d-1</StackDriftDetectionId>\
                 <StackDriftStatus>DRIFTED</StackDriftStatus><DetectionStatus>DETECTION_COMPLETE</DetectionStatus>\
                 <DriftedStackResourceCount>3</DriftedStackResourceCount><Timestamp>2024-01-01T00:00:05Z</Timestamp>",
            ),
            Some("DescribeStackResourceDrifts") => {
                let (members, next) = match form.get("NextToken").map(String::as_str) {
                    None => (
                        drift_member("A", "MODIFIED") + &drift_member("B", "IN_SYNC"),
                        "<NextToken>n</NextToken>",
                    ),
                    _ => (drift_member("C", "DELETED"), ""),
                };
                response(
                    "DescribeStackResourceDrifts",
                    &format!("<StackResourceDrifts>{members}</StackResourceDrifts>{next}"),
                )
            }
            _ => (400, error_xml("ValidationError", "unexpected")),
        }
    }))
    .await;
    let cf = client(&url).await;
    let id = cf.detect_stack_drift("s").await.unwrap();
    assert_eq!(id, "d-1");
    let detection = cf.drift_detection_status(&id).await.unwrap();
    assert_eq!(detection.status, DriftDetectionStatus::Complete);
    assert_eq!(detection.stack_drift_status, StackDriftStatus::Drifted);
    assert_eq!(detection.drifted_resource_count, Some(3));
    assert_eq!(detection.timestamp.to_rfc3339(), "2024-01-01T00:00:05+00:00");
    let drifts = cf.resource_drifts("s").await.unwrap();
    let summary: Vec<(&str, &ResourceDriftStatus)> = drifts.iter().map(|d| (d.logical_id.as_str(), &d.drift)).collect();
    assert_eq!(
        summary,
        [
            ("A", &ResourceDriftStatus::Modified),
            ("C", &ResourceDriftStatus::Deleted)
        ],
        "IN_SYNC left out even when the filter is ignored"
    );
    assert_eq!(drifts[0].physical_id.as_deref(), Some("phys-A"));
    assert_eq!(drifts[0].differences[0].kind, DifferenceKind::NotEqual);
    assert_eq!(
        (
            drifts[0].differences[0].expected.as_str(),
            drifts[0].differences[0].actual.as_str()
        ),
        ("0", "5")
    );

    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].get("StackName").map(String::as_str), Some("s"));
    assert_eq!(seen[1].get("StackDriftDetectionId").map(String::as_str), Some("d-1"));
    let page = &seen[2];
    assert_eq!(
        page.get("StackResourceDriftStatusFilters.member.1").map(String::as_str),
        Some("MODIFIED")
    );
    assert_eq!(
        page.get("StackResourceDriftStatusFilters.member.2").map(String::as_str),
        Some("DELETED")
    );
    assert_eq!(page.get("MaxResults").map(String::as_str), Some("100"));
    assert_eq!(seen[3].get("NextToken").map(String::as_str), Some("n"));
    assert_eq!(seen.len(), 4);
}

#[tokio::test]
async fn write_calls_send_their_parameters() {
    let (url, seen) = canned(Box::new(|form: &BTreeMap<String, String>| {
        match form.get("Action").map(String::as_str).unwrap_or_default() {
            "CreateChangeSet" => response("CreateChangeSet", "<Id>arn:cs</Id><StackId>arn:stack</StackId>"),
            "UpdateTerminationProtection" => response("UpdateTerminationProtection", "<StackId>arn:stack</StackId>"),
            "GetTemplate" => response("GetTemplate", "<TemplateBody>Resources: {}</TemplateBody>"),
            "GetStackPolicy" => response("GetStackPolicy", ""),
            action => response(action, ""),
        }
    }))
    .await;
    let cf = client(&url).await;
    let mut revert = request("s", "cs", ChangeSetType::Update, "Resources: {}");
    revert.deployment_mode = Some(DeploymentMode::RevertDrift);
    assert_eq!(cf.create_change_set(&revert).await.unwrap(), "arn:cs");
    cf.create_change_set(&request("s", "cs2", ChangeSetType::Update, "Resources: {}"))
        .await
        .unwrap();
    cf.update_termination_protection("s", true).await.unwrap();
    cf.set_stack_policy("s", r#"{"Statement":[]}"#).await.unwrap();
    assert_eq!(cf.get_stack_policy("s").await.unwrap(), None);
    assert_eq!(cf.get_template("s").await.unwrap(), "Resources: {}");
    cf.continue_update_rollback("s", &["A".into(), "Nested.B".into()], "tok")
        .await
        .unwrap();
    cf.continue_update_rollback("s", &[], "").await.unwrap();

    let seen = seen.lock().unwrap();
    let field = |i: usize, key: &str| seen[i].get(key).cloned();
    assert_eq!(field(0, "DeploymentMode").as_deref(), Some("REVERT_DRIFT"));
    assert_eq!(field(1, "DeploymentMode"), None);
    assert_eq!(field(2, "EnableTerminationProtection").as_deref(), Some("true"));
    assert_eq!(field(3, "StackPolicyBody").as_deref(), Some(r#"{"Statement":[]}"#));
    assert_eq!(field(5, "TemplateStage").as_deref(), Some("Original"));
    assert_eq!(field(6, "Action").as_deref(), Some("ContinueUpdateRollback"));
    assert_eq!(field(6, "ResourcesToSkip.member.1").as_deref(), Some("A"));
    assert_eq!(field(6, "ResourcesToSkip.member.2").as_deref(), Some("Nested.B"));
    assert_eq!(field(6, "ClientRequestToken").as_deref(), Some("tok"));
    assert_eq!(field(7, "ClientRequestToken"), None);
    assert!(
        !seen[7].keys().any(|k| k.starts_with("ResourcesToSkip")),
        "{:?}",
        seen[7]
    );
}
