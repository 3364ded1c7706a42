//! A batch of Stacks driven through create, update and delete while a fault
//! is injected, and the checks afterwards: every object converges, and AWS
//! holds exactly one stack per live object (no duplicate, no orphan), with
//! the parameter its object asks for. Used by tests/crash_safety.rs and
//! tests/api_restart.rs.
//!
//! Each object is `r<round>-s<index>` with an SQS queue whose
//! `VisibilityTimeout` is the parameter `Visibility` (30, +15 per update).
//! LocalStack's ListChangeSets leaves out executed change sets, so the change
//! set check sees the unexecuted ones only: a change set left `AVAILABLE`, or
//! created twice under one name, is reported.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_cloudformation::config::Credentials;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use stackpilot::api::Stack;
use stackpilot::stack::{TAG_NAMESPACE, TAG_UID};

pub const TEMPLATE: &str = r#"
Parameters:
  Visibility:
    Type: Number
    Default: 30
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: !Ref Visibility
Outputs:
  Visibility:
    Value: !Ref Visibility
"#;

/// What the test asked for, per object.
pub struct Wanted {
    pub round: u64,
    pub index: u64,
    pub visibility: u32,
    pub deleted: bool,
    pub uid: String,
    pub updates: u32,
}

pub struct Workload {
    pub client: Client,
    pub ns: String,
    pub objects: BTreeMap<String, Wanted>,
}

impl Workload {
    pub fn new(client: &Client, ns: &str) -> Workload {
        Workload {
            client: client.clone(),
            ns: ns.to_string(),
            objects: BTreeMap::new(),
        }
    }

    /// Deletes every live object (the operator then deletes the stacks).
    pub async fn delete_all(&mut self) {
        let names: Vec<String> = self.live().map(|(n, _)| n.clone()).collect();
        for name in &names {
            self.api()
                .delete(name, &DeleteParams::default())
                .await
                .unwrap_or_else(|e| panic!("delete {name}: {e}"));
            self.objects.get_mut(name).unwrap().deleted = true;
        }
    }

    pub fn api(&self) -> Api<Stack> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub async fn apply(&self, name: &str, visibility: u32) -> Stack {
        let object = json!({
            "apiVersion": "stackpilot.dev/v1alpha1", "kind": "Stack", "metadata": {"name": name},
            "spec": {"region": "us-east-1", "template": {"body": TEMPLATE},
                     "parameters": [{"name": "Visibility", "value": visibility.to_string()}]},
        });
        self.api()
            .patch(name, &PatchParams::apply("crash-test").force(), &Patch::Apply(&object))
            .await
            .unwrap_or_else(|e| panic!("apply {name}: {e}"))
    }

    pub async fn create_batch(&mut self, round: u64, size: u64) {
        for index in 0..size {
            let name = format!("r{round}-s{index:02}");
            let stack = self.apply(&name, 30).await;
            let wanted = Wanted {
                round,
                index,
                visibility: 30,
                deleted: false,
                uid: stack.uid().expect("uid"),
                updates: 0,
            };
            self.objects.insert(name, wanted);
        }
    }

    pub fn live(&self) -> impl Iterator<Item = (&String, &Wanted)> {
        self.objects.iter().filter(|(_, w)| !w.deleted)
    }

    /// Half of this round's objects (likely still being created) and half of
    /// the previous round's get a new parameter value.
    pub async fn update_half(&mut self, round: u64) -> usize {
        let chosen: Vec<String> = self
            .live()
            .filter(|(_, w)| {
                (w.round == round && w.index.is_multiple_of(2))
                    || (w.round + 1 == round && (w.index + round).is_multiple_of(2))
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in &chosen {
            let wanted = self.objects.get_mut(name).unwrap();
            wanted.visibility += 15;
            wanted.updates += 1;
            let visibility = wanted.visibility;
            self.apply(name, visibility).await;
        }
        chosen.len()
    }

    /// A third of this round's objects, and one of the previous round's.
    pub async fn delete_third(&mut self, round: u64) -> usize {
        let mut chosen: Vec<String> = self
            .live()
            .filter(|(_, w)| w.round == round && w.index % 3 == 1)
            .map(|(n, _)| n.clone())
            .collect();
        if let Some((name, _)) = self.live().find(|(_, w)| w.round + 1 == round) {
            chosen.push(name.clone());
        }
        for name in &chosen {
            self.api()
                .delete(name, &DeleteParams::default())
                .await
                .unwrap_or_else(|e| panic!("delete {name}: {e}"));
            self.objects.get_mut(name).unwrap().deleted = true;
        }
        chosen.len()
    }

    /// Objects that have not converged yet, with why; empty when all did.
    pub async fn not_converged(&self) -> Vec<String> {
        let list = self.api().list(&ListParams::default()).await.expect("list Stacks");
        let found: BTreeMap<String, Stack> = list.items.into_iter().map(|s| (s.name_any(), s)).collect();
        let mut pending = Vec::new();
        for (name, wanted) in &self.objects {
            let Some(stack) = found.get(name) else {
                if !wanted.deleted {
                    pending.push(format!("{name}: object missing"));
                }
                continue;
            };
            if wanted.deleted {
                pending.push(format!("{name}: still there ({})", describe(stack)));
                continue;
            }
            let status = stack.status.clone().unwrap_or_default();
            let ready = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            let current = status.observed_generation == stack.metadata.generation;
            let visibility = status.outputs.get("Visibility").cloned().unwrap_or_default();
            if !(ready && current && visibility == wanted.visibility.to_string() && status.operation.is_none()) {
                pending.push(format!(
                    "{name}: want Visibility {} ({})",
                    wanted.visibility,
                    describe(stack)
                ));
            }
        }
        pending
    }
}

pub fn describe(stack: &Stack) -> String {
    let status = stack.status.clone().unwrap_or_default();
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    format!(
        "generation {:?} observed {:?}, deleting {}, stack {:?}, operation {:?}, outputs {:?}, Ready {:?}",
        stack.metadata.generation,
        status.observed_generation,
        stack.metadata.deletion_timestamp.is_some(),
        status.stack_status,
        status.operation.as_ref().map(|o| (&o.action, &o.change_set_name)),
        status.outputs,
        ready.map(|c| (&c.status, &c.reason, &c.message)),
    )
}

/// Waits until `workload` has converged, or panics listing what has not.
pub async fn converge(workload: &Workload, timeout: Duration, log: &std::path::Path) {
    let deadline = Instant::now() + timeout;
    loop {
        let pending = workload.not_converged().await;
        if pending.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "not converged after {timeout:?} (operator log {}):\n  {}",
                log.display(),
                pending.join("\n  ")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn raw_cloudformation(endpoint: &str) -> aws_sdk_cloudformation::Client {
    raw_cloudformation_in(endpoint, "us-east-1").await
}

pub async fn raw_cloudformation_in(endpoint: &str, region: &str) -> aws_sdk_cloudformation::Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .credentials_provider(Credentials::new("test", "test", None, None, "stackpilot-tests"))
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .load()
        .await;
    aws_sdk_cloudformation::Client::new(&config)
}

/// One stack as the emulator lists it, DELETE_COMPLETE ones included.
#[derive(Debug)]
pub struct Seen {
    pub name: String,
    pub id: String,
    pub status: String,
    pub tags: BTreeMap<String, String>,
    pub parameters: BTreeMap<String, String>,
}

pub async fn every_stack(cfn: &aws_sdk_cloudformation::Client) -> Vec<Seen> {
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = cfn
            .describe_stacks()
            .set_next_token(next.take())
            .send()
            .await
            .expect("DescribeStacks");
        for s in page.stacks() {
            seen.push(Seen {
                name: s.stack_name().unwrap_or_default().to_string(),
                id: s.stack_id().unwrap_or_default().to_string(),
                status: s.stack_status().map(|x| x.as_str().to_string()).unwrap_or_default(),
                tags: s
                    .tags()
                    .iter()
                    .map(|t| {
                        (
                            t.key().unwrap_or_default().to_string(),
                            t.value().unwrap_or_default().to_string(),
                        )
                    })
                    .collect(),
                parameters: s
                    .parameters()
                    .iter()
                    .map(|p| {
                        (
                            p.parameter_key().unwrap_or_default().to_string(),
                            p.parameter_value().unwrap_or_default().to_string(),
                        )
                    })
                    .collect(),
            });
        }
        match page.next_token() {
            Some(token) if !token.is_empty() => next = Some(token.to_string()),
            _ => return seen,
        }
    }
}

/// When the newest execution of a change set on the stack started (epoch
/// seconds): the stack's own newest CREATE/UPDATE_IN_PROGRESS event.
pub async fn last_execution(cfn: &aws_sdk_cloudformation::Client, stack_name: &str) -> Option<f64> {
    let events = cfn
        .describe_stack_events()
        .stack_name(stack_name)
        .send()
        .await
        .expect("DescribeStackEvents");
    events
        .stack_events()
        .iter()
        .filter(|e| e.logical_resource_id() == Some(stack_name))
        .filter(|e| {
            matches!(
                e.resource_status().map(|s| s.as_str()),
                Some("CREATE_IN_PROGRESS" | "UPDATE_IN_PROGRESS")
            )
        })
        .filter_map(|e| e.timestamp())
        .map(|t| t.secs() as f64 + f64::from(t.subsec_nanos()) / 1e9)
        .fold(None, |newest: Option<f64>, t| Some(newest.map_or(t, |n| n.max(t))))
}

/// Checks AWS against the workload; returns the problems found.
pub async fn audit(workload: &Workload, cfn: &aws_sdk_cloudformation::Client) -> (Vec<String>, String) {
    let ns = &workload.ns;
    let prefix = format!("{ns}-");
    let uids: BTreeMap<&str, &str> = workload
        .objects
        .iter()
        .map(|(name, w)| (w.uid.as_str(), name.as_str()))
        .collect();
    let all: Vec<Seen> = every_stack(cfn)
        .await
        .into_iter()
        .filter(|s| s.name.starts_with(&prefix) || s.tags.get(TAG_NAMESPACE) == Some(ns))
        .collect();
    let mut problems = Vec::new();
    let mut ever: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for s in &all {
        ever.entry(s.name.as_str()).or_default().insert(s.id.as_str());
    }
    let alive: Vec<&Seen> = all.iter().filter(|s| s.status != "DELETE_COMPLETE").collect();
    let mut by_name: BTreeMap<&str, Vec<&Seen>> = BTreeMap::new();
    for s in &alive {
        by_name.entry(s.name.as_str()).or_default().push(s);
        // Orphans: a stack whose object is gone or never was.
        let owner = s.name.strip_prefix(&prefix).and_then(|n| workload.objects.get(n));
        match owner {
            None => problems.push(format!("orphan: stack {} ({}) has no object", s.name, s.status)),
            Some(w) if w.deleted => problems.push(format!(
                "orphan: stack {} ({}) outlived its deleted object",
                s.name, s.status
            )),
            Some(_) => {}
        }
        if let Some(uid) = s.tags.get(TAG_UID)
            && !uids.contains_key(uid.as_str())
        {
            problems.push(format!("orphan: stack {} carries unknown uid {uid}", s.name));
        }
    }
    for (name, stacks) in &by_name {
        if stacks.len() > 1 {
            problems.push(format!("duplicate: {} live stacks named {name}", stacks.len()));
        }
    }
    let (mut change_sets, mut superseded) = (0, 0);
    for (name, wanted) in workload.live() {
        let stack_name = format!("{prefix}{name}");
        let ids = ever.get(stack_name.as_str()).map(|s| s.len()).unwrap_or(0);
        if ids > 1 {
            problems.push(format!(
                "{stack_name}: {ids} stacks were created for one object that was never deleted"
            ));
        }
        let Some(stacks) = by_name.get(stack_name.as_str()) else {
            problems.push(format!("missing: object {name} has no stack"));
            continue;
        };
        let s = stacks[0];
        if s.tags.get(TAG_UID) != Some(&wanted.uid) {
            problems.push(format!(
                "{stack_name}: uid tag {:?}, object uid {}",
                s.tags.get(TAG_UID),
                wanted.uid
            ));
        }
        if !matches!(s.status.as_str(), "CREATE_COMPLETE" | "UPDATE_COMPLETE") {
            problems.push(format!("{stack_name}: status {}", s.status));
        }
        let visibility = s.parameters.get("Visibility").map(String::as_str);
        if visibility != Some(wanted.visibility.to_string().as_str()) {
            problems.push(format!(
                "{stack_name}: parameter Visibility {visibility:?}, want {}",
                wanted.visibility
            ));
        }
        let listed = cfn
            .list_change_sets()
            .stack_name(&stack_name)
            .send()
            .await
            .expect("ListChangeSets");
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        let executed = last_execution(cfn, &stack_name).await;
        for cs in listed.summaries() {
            change_sets += 1;
            let cs_name = cs.change_set_name().unwrap_or_default();
            *names.entry(cs_name).or_default() += 1;
            let execution = cs.execution_status().map(|e| e.as_str()).unwrap_or_default();
            if execution != "AVAILABLE" {
                continue;
            }
            // AWS deletes a stack's other change sets when one is executed;
            // LocalStack keeps them. Only a leftover newer than the last
            // execution would also be left on AWS.
            let created = cs
                .creation_time()
                .map(|t| t.secs() as f64 + f64::from(t.subsec_nanos()) / 1e9);
            match (created, executed) {
                (Some(c), Some(e)) if c < e => superseded += 1,
                _ => problems.push(format!(
                    "{stack_name}: change set {cs_name} left unexecuted ({:?}), created after the last execution",
                    cs.status()
                )),
            }
        }
        for (cs_name, count) in names {
            if count > 1 {
                problems.push(format!("{stack_name}: change set {cs_name} was created {count} times"));
            }
        }
    }
    let summary = format!(
        "{} stacks with our names ever, {} live, {change_sets} unexecuted change sets on live stacks \
         ({superseded} older than the stack's last execution: left by LocalStack, deleted by AWS)",
        all.len(),
        alive.len()
    );
    (problems, summary)
}
