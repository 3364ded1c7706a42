//! Templates from Flux sources (`template.sourceRef`) on the test bed: a push
//! to the Git server becomes a GitRepository artifact (real source-controller)
//! and the Stack follows it in LocalStack; a source that is not Ready, a
//! missing path, another namespace, a tampered artifact and an oversize one
//! each give a condition and an Event and no stack.
//!
//! Needs the whole test bed (`testbed/up.sh` without `--no-gitops`).

mod support;

use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use stackpilot::api::{Execution, ExecutionPhase, Pipeline, Stack, StackDeployment};
use support::eventually;
use support::fixture::{Fixture, TIMEOUT, condition};
use support::gitops::{GitRepo, apply_git_repository, bed_dir, field, git_repositories, wait_artifact};
use support::workload::{cloudformation_in, raw_cloudformation};

fn template(version: &str) -> String {
    format!(
        "Parameters:\n  Env: {{Type: String}}\nResources:\n  Queue: {{Type: AWS::SQS::Queue}}\nOutputs:\n  Version: {{Value: \"{version}\"}}\n  Env: {{Value: !Ref Env}}\n"
    )
}

fn source_spec(repo: &str, path: &str, parameters_file: Option<&str>) -> Value {
    let mut source = json!({"kind": "GitRepository", "name": repo, "path": path});
    if let Some(file) = parameters_file {
        source["parametersFile"] = json!(file);
    }
    json!({"region": "us-east-1", "template": {"sourceRef": source}})
}

/// Waits until the Stack's Ready condition has `reason` (any status).
async fn wait_reason(fx: &Fixture, name: &str, reason: &str) -> Stack {
    let api = fx.stacks();
    eventually(TIMEOUT, &format!("{name} Ready reason {reason}"), || {
        let api = api.clone();
        async move {
            let stack = api.get(name).await.ok()?;
            (condition(&stack, "Ready")?.reason == reason).then_some(stack)
        }
    })
    .await
}

/// Waits until the Stack is Ready at `revision` (status.applied.revision).
async fn wait_ready_at(fx: &Fixture, name: &str, revision: &str) -> Stack {
    let api = fx.stacks();
    eventually(TIMEOUT, &format!("{name} Ready at {revision}"), || {
        let api = api.clone();
        async move {
            let stack = api.get(name).await.ok()?;
            let applied = stack.status.as_ref()?.applied.as_ref()?.revision.clone();
            let ready = condition(&stack, "Ready").is_some_and(|c| c.status == "True");
            (ready && applied.as_deref() == Some(revision)).then_some(stack)
        }
    })
    .await
}

/// The stack's outputs in LocalStack, read with the SDK.
async fn outputs(fx: &Fixture, stack_name: &str) -> Vec<(String, String)> {
    let cfn = raw_cloudformation(&fx.bed.aws_endpoint).await;
    let described = cfn
        .describe_stacks()
        .stack_name(stack_name)
        .send()
        .await
        .expect("DescribeStacks");
    let stack = &described.stacks()[0];
    let mut outputs: Vec<(String, String)> = stack
        .outputs()
        .iter()
        .map(|o| {
            (
                o.output_key().unwrap_or_default().to_string(),
                o.output_value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    outputs.sort();
    outputs
}

async fn has_event(fx: &Fixture, name: &str, reason: &str) -> bool {
    fx.events(name).await.iter().any(|(_, r, _)| r == reason)
}

#[tokio::test]
async fn a_pushed_template_becomes_a_stack_and_the_next_push_updates_it() {
    let fx = Fixture::new("gitops-src").await;
    let ns = fx.ns.name.clone();
    let repo = GitRepo::new("src");
    repo.write("stacks/queue.yaml", &template("1"));
    repo.write("params/dev.yaml", "Env: dev\n");
    let first = repo.commit("queue v1");
    apply_git_repository(&fx.client, &ns, "app", &repo.url).await;
    wait_artifact(&fx.client, &ns, "app", &first).await;

    fx.apply(
        "queue",
        source_spec("app", "stacks/queue.yaml", Some("params/dev.yaml")),
    )
    .await;
    let stack = wait_ready_at(&fx, "queue", &format!("main@sha1:{first}")).await;
    let stack_name = stack.status.as_ref().unwrap().stack_name.clone().unwrap();
    assert_eq!(
        outputs(&fx, &stack_name).await,
        vec![("Env".into(), "dev".into()), ("Version".into(), "1".into())],
        "the template and parameters file of the first commit are in LocalStack"
    );

    // The next commit: the GitRepository's new artifact wakes the Stack (the
    // Stack itself is not touched).
    repo.write("stacks/queue.yaml", &template("2"));
    repo.write("params/dev.yaml", "Env: staging\n");
    let second = repo.commit("queue v2");
    wait_artifact(&fx.client, &ns, "app", &second).await;
    let artifact_at = Instant::now();
    wait_ready_at(&fx, "queue", &format!("main@sha1:{second}")).await;
    println!(
        "artifact main@sha1:{second} -> Stack Ready at it in {:?}",
        artifact_at.elapsed()
    );
    assert_eq!(
        outputs(&fx, &stack_name).await,
        vec![("Env".into(), "staging".into()), ("Version".into(), "2".into())],
        "the second commit is in LocalStack"
    );

    // A commit that leaves the template alone: Ready at the new revision with
    // no new change set.
    let change_set = |s: &Stack| {
        s.status
            .as_ref()
            .and_then(|st| st.change_set.as_ref())
            .map(|c| c.name.clone())
    };
    let before = change_set(&fx.stacks().get("queue").await.unwrap());
    repo.write("README.md", "docs only\n");
    let third = repo.commit("docs");
    wait_artifact(&fx.client, &ns, "app", &third).await;
    let after = wait_ready_at(&fx, "queue", &format!("main@sha1:{third}")).await;
    assert_eq!(
        change_set(&after),
        before,
        "no change set for a commit that changes nothing"
    );

    // The stack goes with the Stack.
    fx.stacks()
        .delete("queue", &Default::default())
        .await
        .expect("delete Stack");
    fx.wait_gone("queue").await;
    let cfn = raw_cloudformation(&fx.bed.aws_endpoint).await;
    let gone = match cfn.describe_stacks().stack_name(&stack_name).send().await {
        Ok(d) => d
            .stacks()
            .iter()
            .all(|s| s.stack_status().map(|s| s.as_str()) == Some("DELETE_COMPLETE")),
        Err(_) => true,
    };
    assert!(gone, "stack {stack_name} deleted in LocalStack");
    fx.finish().await;
}

#[tokio::test]
async fn source_problems_are_conditions_and_events_and_create_nothing() {
    let fx = Fixture::new("gitops-bad").await;
    let ns = fx.ns.name.clone();
    let repo = GitRepo::new("bad");
    repo.write("stacks/queue.yaml", &template("1"));
    let first = repo.commit("queue v1");
    apply_git_repository(&fx.client, &ns, "app", &repo.url).await;
    wait_artifact(&fx.client, &ns, "app", &first).await;

    // A source that cannot be fetched has no artifact: the Stack waits.
    let missing_repo = format!(
        "{}/never-pushed-{}.git",
        support::gitops::bed_var("STACKPILOT_TEST_GIT_URL"),
        ns
    );
    apply_git_repository(&fx.client, &ns, "broken", &missing_repo).await;
    fx.apply("not-ready", source_spec("broken", "stacks/queue.yaml", None))
        .await;
    let stack = wait_reason(&fx, "not-ready", "SourceNotReady").await;
    assert_eq!(
        condition(&stack, "Reconciling").map(|c| c.status.as_str()),
        Some("True")
    );
    assert!(
        condition(&stack, "Stalled").is_none(),
        "a source not Ready yet is a wait"
    );

    // No such source object: a wait too.
    fx.apply("no-source", source_spec("nothing-here", "stacks/queue.yaml", None))
        .await;
    wait_reason(&fx, "no-source", "SourceNotFound").await;

    // A path the artifact lacks: Stalled until a commit brings it.
    // (Env given here: the template has no default for it.)
    let mut no_path = source_spec("app", "stacks/later.yaml", None);
    no_path["parameters"] = json!([{"name": "Env", "value": "dev"}]);
    fx.apply("no-path", no_path).await;
    let stack = wait_reason(&fx, "no-path", "SourcePathNotFound").await;
    assert_eq!(condition(&stack, "Stalled").map(|c| c.status.as_str()), Some("True"));
    let message = &condition(&stack, "Ready").unwrap().message;
    assert!(message.contains(&format!("main@sha1:{first}")), "{message}");

    // Another namespace's source: refused.
    let mut other = source_spec("app", "stacks/queue.yaml", None);
    other["template"]["sourceRef"]["namespace"] = json!("flux-system");
    fx.apply("cross-ns", other).await;
    wait_reason(&fx, "cross-ns", "CrossNamespaceSourceRefused").await;

    // A tampered artifact: the download does not match status.artifact.digest.
    // Its content is unique: Flux's tarballs are reproducible, so equal
    // content has an equal digest, and an archive the operator verified
    // before is kept by digest and not downloaded again. Suspended first, so
    // source-controller does not put the right file back.
    let tampered = GitRepo::new("tampered");
    tampered.write("stacks/queue.yaml", &template(&format!("tampered-{ns}")));
    let sha = tampered.commit("v1");
    apply_git_repository(&fx.client, &ns, "tampered", &tampered.url).await;
    let object = wait_artifact(&fx.client, &ns, "tampered", &sha).await;
    git_repositories(&fx.client, &ns)
        .patch(
            "tampered",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"suspend": true}})),
        )
        .await
        .expect("suspend GitRepository");
    let url = field(&object, &["status", "artifact", "url"])
        .and_then(Value::as_str)
        .unwrap();
    let path = url.splitn(4, '/').nth(3).expect("artifact path");
    let file = bed_dir().join("flux-artifacts").join(path);
    assert!(
        file.exists(),
        "source-controller keeps the artifact at {}",
        file.display()
    );
    std::fs::write(&file, b"not the artifact Flux made").unwrap();
    let mut params = source_spec("tampered", "stacks/queue.yaml", None);
    params["parameters"] = json!([{"name": "Env", "value": "dev"}]);
    fx.apply("tampered", params).await;
    let stack = wait_reason(&fx, "tampered", "SourceDigestMismatch").await;
    assert_eq!(condition(&stack, "Stalled").map(|c| c.status.as_str()), Some("True"));

    for (name, reason) in [
        ("not-ready", "SourceNotReady"),
        ("no-path", "SourcePathNotFound"),
        ("cross-ns", "CrossNamespaceSourceRefused"),
        ("tampered", "SourceDigestMismatch"),
    ] {
        eventually(
            Duration::from_secs(10),
            &format!("Event {reason} on {name}"),
            || async { has_event(&fx, name, reason).await.then_some(()) },
        )
        .await;
        let stack = fx.stacks().get(name).await.unwrap();
        let status = stack.status.unwrap_or_default();
        assert!(
            status.stack_id.is_none() && status.operation.is_none() && status.change_set.is_none(),
            "{name}: nothing was asked of CloudFormation: {status:?}"
        );
    }

    // The missing file arrives with the next commit: the Stalled Stack is
    // woken by the new artifact and created.
    repo.write("stacks/later.yaml", &template("later"));
    let second = repo.commit("add later.yaml");
    wait_artifact(&fx.client, &ns, "app", &second).await;
    wait_ready_at(&fx, "no-path", &format!("main@sha1:{second}")).await;
    fx.finish().await;
}

#[tokio::test]
async fn an_artifact_over_the_size_limit_is_refused() {
    let fx = Fixture::with_env("gitops-big", &[("STACKPILOT_MAX_SOURCE_ARTIFACT_BYTES", "4096")]).await;
    let ns = fx.ns.name.clone();
    let repo = GitRepo::new("big");
    repo.write("stacks/queue.yaml", &template("1"));
    // ~64 KB that gzip cannot shrink below the limit.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: String = (0..65_536)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            char::from(b'!' + (seed % 90) as u8)
        })
        .collect();
    repo.write("blob.txt", &noise);
    let sha = repo.commit("big");
    apply_git_repository(&fx.client, &ns, "app", &repo.url).await;
    wait_artifact(&fx.client, &ns, "app", &sha).await;
    fx.apply("big", source_spec("app", "stacks/queue.yaml", None)).await;
    let stack = wait_reason(&fx, "big", "SourceArtifactTooLarge").await;
    assert_eq!(condition(&stack, "Stalled").map(|c| c.status.as_str()), Some("True"));
    assert!(
        has_event(&fx, "big", "SourceArtifactTooLarge").await || {
            tokio::time::sleep(Duration::from_secs(2)).await;
            has_event(&fx, "big", "SourceArtifactTooLarge").await
        }
    );
    assert!(stack.status.unwrap_or_default().stack_id.is_none());
    fx.finish().await;
}

/// The Pipeline's current execution once it has `revision` and `phase`.
async fn wait_execution(fx: &Fixture, name: &str, revision: &str, phase: ExecutionPhase) -> Execution {
    let api: Api<Pipeline> = Api::namespaced(fx.client.clone(), &fx.ns.name);
    eventually(TIMEOUT, &format!("pipeline {name} {phase:?} at {revision}"), || {
        let api = api.clone();
        async move {
            let execution = api.get(name).await.ok()?.status?.current_execution?;
            (execution.revision == revision && execution.phase == phase).then_some(execution)
        }
    })
    .await
}

/// The StackDeployment's stable revision label once it is `revision`.
async fn wait_stable(fx: &Fixture, name: &str, revision: &str) -> StackDeployment {
    let api: Api<StackDeployment> = Api::namespaced(fx.client.clone(), &fx.ns.name);
    eventually(TIMEOUT, &format!("deployment {name} stable at {revision}"), || {
        let api = api.clone();
        async move {
            let deployment = api.get(name).await.ok()?;
            let stable = deployment.status.as_ref()?.stable_revision.as_ref()?;
            (stable.revision == revision).then_some(deployment)
        }
    })
    .await
}

#[tokio::test]
async fn a_commit_starts_a_pipeline_execution_and_a_deployment_rollout() {
    let fx = Fixture::new("gitops-kinds").await;
    let ns = fx.ns.name.clone();
    let repo = GitRepo::new("kinds");
    repo.write("stacks/queue.yaml", &template("1"));
    repo.write("params.yaml", "Env: from-git\n");
    let first = repo.commit("v1");
    apply_git_repository(&fx.client, &ns, "app", &repo.url).await;
    wait_artifact(&fx.client, &ns, "app", &first).await;

    let source =
        json!({"kind": "GitRepository", "name": "app", "path": "stacks/queue.yaml", "parametersFile": "params.yaml"});
    let pipeline = json!({
        "apiVersion": "stackpilot.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": "web"},
        "spec": {
            "source": {"sourceRef": source},
            "stages": [{"name": "dev", "actions": [{"name": "app", "deploy": {"stack": {"region": "us-east-1"}}}]}]
        }
    });
    let deployment = json!({
        "apiVersion": "stackpilot.dev/v1alpha1", "kind": "StackDeployment", "metadata": {"name": "fleet"},
        "spec": {
            "artifact": {"template": {"sourceRef": source}, "parameters": [{"name": "Env", "value": "fleet"}]},
            "targets": [{"name": "east", "region": "us-east-1"}, {"name": "west", "region": "us-west-2"}]
        }
    });
    let apply = |object: &Value| {
        let kind = object["kind"].as_str().unwrap();
        let name = object["metadata"]["name"].as_str().unwrap();
        let resource =
            kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk("stackpilot.dev", "v1alpha1", kind));
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(fx.client.clone(), &ns, &resource);
        let object = object.clone();
        let name = name.to_string();
        async move {
            api.patch(
                &name,
                &PatchParams::apply("gitops-test").force(),
                &Patch::Apply(&object),
            )
            .await
            .expect("apply");
        }
    };
    apply(&pipeline).await;
    apply(&deployment).await;

    let revision = format!("main@sha1:{first}");
    wait_execution(&fx, "web", &revision, ExecutionPhase::Succeeded).await;
    wait_stable(&fx, "fleet", &revision).await;
    let dev_stack = format!("{ns}-web-dev-app");
    assert_eq!(
        outputs(&fx, &dev_stack).await,
        vec![("Env".into(), "from-git".into()), ("Version".into(), "1".into())]
    );
    let fleet_stack = format!("{ns}-fleet");
    assert_eq!(
        outputs(&fx, &fleet_stack).await,
        vec![("Env".into(), "fleet".into()), ("Version".into(), "1".into())],
        "the deployment's own parameters win over the file's"
    );

    // The next commit starts an execution and a rollout, with no edit of
    // either object.
    repo.write("stacks/queue.yaml", &template("2"));
    let second = repo.commit("v2");
    wait_artifact(&fx.client, &ns, "app", &second).await;
    let started = Instant::now();
    let revision = format!("main@sha1:{second}");
    let execution = wait_execution(&fx, "web", &revision, ExecutionPhase::Succeeded).await;
    let deployment = wait_stable(&fx, "fleet", &revision).await;
    println!(
        "artifact {revision} -> execution {} Succeeded and rollout stable in {:?}",
        execution.id,
        started.elapsed()
    );
    assert_eq!(
        deployment.metadata.generation,
        Some(1),
        "the StackDeployment was not edited"
    );
    assert_eq!(outputs(&fx, &dev_stack).await[1], ("Version".into(), "2".into()));
    assert_eq!(outputs(&fx, &fleet_stack).await[1], ("Version".into(), "2".into()));
    let west = cloudformation_in(&fx.bed.aws_endpoint, "us-west-2").await;
    let described = west
        .describe_stacks()
        .stack_name(&fleet_stack)
        .send()
        .await
        .expect("west stack");
    let version = described.stacks()[0]
        .outputs()
        .iter()
        .find(|o| o.output_key() == Some("Version"))
        .and_then(|o| o.output_value())
        .map(str::to_string);
    assert_eq!(version.as_deref(), Some("2"), "us-west-2 runs the second commit too");
    fx.finish().await;
}
