//! Test Jobs: names, environment, results, and resuming after a crash.

use std::time::Duration;

use super::*;
use crate::runtime::conditions::READY;

/// dev deploys `api` (with outputs), then runs the `smoke` test.
fn deployed_then_test(retry: i32) -> (World, Plan) {
    let mut world = World::new(spec(vec![stage(
        "dev",
        vec![deploy("api", 1), retries(test("smoke", 2), retry)],
    )]));
    let plan = world.step();
    world.child_ready(
        write_for(&plan, "api"),
        &[("ApiURL", "https://api.example"), ("QueueArn", "arn:q")],
    );
    let plan = world.step();
    (world, plan)
}

fn env_of(job: &Job) -> Vec<(String, String)> {
    job.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0]
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect()
}

#[test]
fn a_test_job_gets_the_outputs_of_earlier_deploys() {
    let (world, plan) = deployed_then_test(0);
    let execution = world.execution();
    assert_eq!(plan.job_creates.len(), 1);
    let job = &plan.job_creates[0];
    let name = job_name("web", &execution.id, "dev", "smoke", 1);
    assert_eq!(job.metadata.name.as_deref(), Some(name.as_str()));
    assert!(name.len() <= 63);
    assert_eq!(job.metadata.namespace.as_deref(), Some("team-a"));
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Pipeline", UID, Some(true))
    );
    let labels = job.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[LABEL_EXECUTION], execution.id);
    assert_eq!(labels[LABEL_ATTEMPT], "1");
    assert_eq!(
        env_of(job),
        vec![
            ("API_API_URL".to_string(), "https://api.example".to_string()),
            ("API_QUEUE_ARN".to_string(), "arn:q".to_string()),
            (ENV_REVISION.to_string(), "v1".to_string()),
            (ENV_EXECUTION.to_string(), execution.id.clone()),
        ]
    );
    // The template's limits stay as written.
    let spec = job.spec.as_ref().unwrap();
    assert_eq!((spec.active_deadline_seconds, spec.backoff_limit), (Some(300), Some(1)));
    assert_eq!(world.entry("dev", "smoke").object.as_deref(), Some(name.as_str()));
}

#[test]
fn after_a_crash_decide_from_the_written_status_creates_no_second_job() {
    let (mut world, _) = deployed_then_test(0);
    // The operator restarts; the Job is not in its cache yet.
    let plan = world.step();
    assert!(plan.job_creates.is_empty());
    assert!(plan.child_writes.is_empty(), "the passed deploy does not run again");
    assert_eq!(world.entry("dev", "smoke").attempts, 1);
    // Once the cache has it, still none.
    let name = world.entry("dev", "smoke").object.clone().unwrap();
    world.job_running(&name);
    world.advance(600);
    let plan = world.step();
    assert!(plan.job_creates.is_empty());
    world.job_done(&name);
    let plan = world.step();
    assert_eq!(world.execution().phase, ExecutionPhase::Succeeded);
    assert_eq!(condition(&plan, READY).0, "True");
}

#[test]
fn a_crash_before_the_status_write_repeats_the_same_job_name() {
    let mut world = World::new(spec(vec![stage("dev", vec![test("smoke", 1)])]));
    let before = world.status.clone();
    let first = world.step();
    world.status = before;
    let again = world.step();
    assert_eq!(
        first.job_creates[0].metadata.name, again.job_creates[0].metadata.name,
        "the create is idempotent: AlreadyExists"
    );
}

#[test]
fn a_failed_job_is_retried_as_a_new_job() {
    let (mut world, plan) = deployed_then_test(1);
    let first = plan.job_creates[0].metadata.name.clone().unwrap();
    world.job_failed(
        &first,
        "DeadlineExceeded",
        "Job was active longer than specified deadline",
    );
    let plan = world.step();
    assert_eq!(world.entry("dev", "smoke").phase, ActionPhase::Retrying);
    assert!(plan.job_creates.is_empty());
    world.advance(30);
    let plan = world.step();
    let second = plan.job_creates[0].metadata.name.clone().unwrap();
    assert_ne!(first, second);
    assert!(second.ends_with("-2"));
    world.job_failed(
        &second,
        "BackoffLimitExceeded",
        "Job has reached the specified backoff limit",
    );
    world.step();
    let entry = world.entry("dev", "smoke");
    assert_eq!(entry.phase, ActionPhase::Failed);
    assert!(entry.message.as_deref().unwrap().contains("BackoffLimitExceeded"));
    assert_eq!(world.execution().phase, ExecutionPhase::Failed);
}

#[test]
fn a_job_that_disappears_fails_its_attempt() {
    let (mut world, _) = deployed_then_test(0);
    world.advance(119);
    let plan = world.step();
    assert_eq!(world.entry("dev", "smoke").phase, ActionPhase::InProgress);
    assert_eq!(plan.requeue, Some(Duration::from_secs(1)));
    world.advance(1);
    world.step();
    let entry = world.entry("dev", "smoke");
    assert_eq!(entry.phase, ActionPhase::Failed);
    assert!(entry.message.as_deref().unwrap().starts_with("JobLost"));
}

#[test]
fn names_stay_within_kubernetes_limits() {
    let long = "a".repeat(60);
    let job = job_name(&long, "e12-0123abcd", &long, &long, 10);
    assert!(job.len() <= 63, "{job}");
    assert!(job.ends_with("-e12-0123abcd-10"));
    assert_ne!(job, job_name(&long, "e12-0123abcd", &long, "other", 10));
    let child = child_name(&"p".repeat(200), &long, &long);
    assert!(child.len() <= 253);
    assert_eq!(child_name("web", "prod", "app"), "web-prod-app");
}

#[test]
fn outputs_become_upper_snake_case() {
    for (text, want) in [
        ("ApiURL", "API_URL"),
        ("api-gw", "API_GW"),
        ("QueueArn", "QUEUE_ARN"),
        ("bucketName2", "BUCKET_NAME2"),
        ("HTTPPort", "HTTP_PORT"),
    ] {
        assert_eq!(upper_snake(text), want);
    }
}
