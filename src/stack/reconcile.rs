//! One Stack reconcile: observe (cluster and AWS) -> decide (pure) -> record
//! the intent -> act on AWS -> patch status -> publish Events.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::api::{Stack, StackStatus};
use std::borrow::Cow;

use crate::aws::{AwsError, AwsErrorKind, AwsTarget, ChangeSetRequest, CloudFormation, StackEvent, TemplateSource};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::metrics::{ErrorLabels, KindLabels, OutcomeLabels};

use super::decide::{APPROVE_ANNOTATION, Observed, Plan, Step, decide};
use super::desired::InputProblem;
use super::drift::DriftObservation;
use super::inputs::RECONCILE_REQUESTED_AT;
use super::inputs::{resolve, stack_name};
use super::lifecycle::{Lifecycle, classify};
use super::outputs;
use super::report::Note;
use super::status::rejected;

pub const FINALIZER: &str = "stackpilot.dev/stack";
const FIELD_MANAGER: &str = "stackpilot-stack";
const KIND: &str = "Stack";
/// Newest events read when there is no cursor yet.
const EVENT_PAGE: usize = 50;

pub async fn reconcile(stack: Arc<Stack>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let key = format!("{}/{}", stack.namespace().unwrap_or_default(), stack.name_any());
    let result = reconcile_inner(&stack, &ctx).await;
    ctx.metrics
        .reconcile_duration
        .get_or_create(&KindLabels { kind: KIND })
        .observe(started.elapsed().as_secs_f64());
    let outcome = if result.is_ok() { "ok" } else { "error" };
    ctx.metrics
        .reconciles
        .get_or_create(&OutcomeLabels { kind: KIND, outcome })
        .inc();
    if result.is_ok() {
        ctx.backoff.succeed(&key);
    }
    result
}

/// Failed reconciles retry with per-object exponential backoff; the error is
/// counted by category and shown as a Warning Event.
pub fn error_policy(stack: Arc<Stack>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("{}/{}", stack.namespace().unwrap_or_default(), stack.name_any());
    let category = error.category();
    if category == "conflict" {
        // The decision was made from a stale copy: decide again from a newer one.
        ctx.metrics
            .reconcile_errors
            .get_or_create(&ErrorLabels { kind: KIND, category })
            .inc();
        return Action::requeue(std::time::Duration::from_millis(500));
    }
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels { kind: KIND, category })
        .inc();
    let delay = ctx.backoff.fail(&key);
    warn!(stack = %key, category, %error, retry_in = ?delay, "reconcile failed");
    let reference = stack.object_ref(&());
    let message = error.to_string();
    tokio::spawn(async move {
        ctx.publish(&reference, true, "ReconcileError", &message).await;
    });
    Action::requeue(delay)
}

async fn reconcile_inner(stack: &Stack, ctx: &Context) -> Result<Action> {
    let namespace = stack.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<Stack> = Api::namespaced(ctx.client.clone(), &namespace);
    let deleting = stack.meta().deletion_timestamp.is_some();
    let has_finalizer = stack.finalizers().iter().any(|f| f == FINALIZER);
    if deleting && !has_finalizer {
        return Ok(Action::await_change());
    }
    if !deleting && !has_finalizer {
        // Go on with the patched copy at once: waiting for the watch to bring
        // it back would delay the first AWS write by a round trip.
        let patched = add_finalizer(&api, stack).await?;
        return Box::pin(reconcile_inner(&patched, ctx)).await;
    }

    let name = stack_name(stack);
    let previous = stack.status.clone().unwrap_or_default();
    // Who may act where is settled before anything else: a refused grant
    // means no AWS call at all.
    let grant = crate::account::grant_for(
        &ctx.client,
        ctx.settings.allow_operator_credentials,
        &namespace,
        stack.spec.account_ref.as_ref().map(|a| a.name.as_str()),
        &stack.spec.region,
        stack.spec.service_role_arn.as_deref(),
    )
    .await?
    .map_err(|r| {
        if r.transient {
            InputProblem::waiting(r.reason, r.message)
        } else {
            InputProblem::stalled(r.reason, r.message)
        }
    });
    let grant = match grant {
        Ok(grant) => grant,
        Err(problem) if deleting => return refused_delete(stack, &api, ctx, &previous, problem).await,
        Err(problem) => return not_granted(stack, &api, ctx, &previous, &name, problem).await,
    };
    if deleting && never_reached_aws(&previous) {
        // Nothing of ours can exist in AWS: no call (the region may be bogus).
        remove_finalizer(&api, stack).await?;
        return Ok(Action::await_change());
    }
    let desired = if deleting || stack.spec.suspend {
        Err(InputProblem::stalled("NotApplicable", ""))
    } else {
        resolve(&ctx.client, stack, &grant).await
    };

    // Bad input and suspended objects make no AWS calls at all.
    let ask_aws = deleting || (!stack.spec.suspend && desired.is_ok());
    let target = grant.target(&stack.name_any());
    let cfn = ctx.aws.client(&target);
    let mut observed_stack = None;
    let mut change_set = None;
    let mut events: Vec<StackEvent> = Vec::new();
    let mut drift = DriftObservation::default();
    let mut live_template = None;
    if ask_aws && !deleting {
        // A detection run under way: read where it is, and its result once done.
        let running = previous.drift.as_ref().filter(|d| d.status == "Checking");
        if let Some(id) = running.and_then(|d| d.detection_id.as_deref()) {
            let detection = cfn.drift_detection_status(id).await?;
            if detection.status != crate::aws::DriftDetectionStatus::InProgress {
                drift.resources = Some(cfn.resource_drifts(&name).await?);
            }
            drift.detection = Some(detection);
        }
    }
    if ask_aws {
        // Settled stacks come from the shared bulk read; anything in flight
        // is read on its own.
        let settled = previous
            .stack_status
            .as_deref()
            .is_some_and(|s| matches!(classify(&crate::aws::StackState::parse(s)), Lifecycle::Settled { .. }));
        observed_stack = if settled && previous.operation.is_none() && !deleting {
            ctx.directory.settled_stack(&target, cfn.as_ref(), &name).await?.0
        } else {
            cfn.describe_stack(&name).await?
        };
        if let Some(found) = &observed_stack {
            let lifecycle = classify(&found.status);
            let applied_current = match (&desired, &previous.applied) {
                (Ok(d), Some(a)) => a.fingerprint == d.fingerprint,
                _ => false,
            };
            let op = previous.operation.as_ref();
            let change_set_name = op
                .and_then(|o| o.change_set_name.clone())
                .or_else(|| previous.change_set.as_ref().map(|c| c.name.clone()));
            // While CloudFormation runs the change set, the stack's status is
            // all there is to know; the change set is read before and after.
            // An UpdateStack standing in for an empty change set never needs it again.
            let executing = op.is_some_and(|o| {
                o.action == "UpdateStack"
                    || (o.action == "ExecuteChangeSet" && matches!(lifecycle, Lifecycle::Busy { .. }))
            });
            if let Some(cs) = change_set_name.filter(|_| !deleting && !executing && (op.is_some() || !applied_current))
            {
                change_set = cfn.describe_change_set(&name, &cs).await?;
            }
            // Events are read when something may have happened: the status
            // moved under an operation of ours, or the stack is failed.
            let moved = previous.stack_status.as_deref() != Some(found.status.as_str());
            let failed = !matches!(
                lifecycle,
                Lifecycle::Settled { .. } | Lifecycle::Review | Lifecycle::Busy { .. }
            );
            // An execution that settled is always checked: a fast update can
            // end in the status it started from, and some failures show only
            // in the events.
            let finished = op.is_some_and(|o| o.action == "ExecuteChangeSet" || o.action == "UpdateStack")
                && matches!(lifecycle, Lifecycle::Settled { .. });
            if ((op.is_some() || deleting) && moved) || failed || finished {
                let cursor = previous.last_event_id.as_deref();
                events = cfn.stack_events(&found.stack_id, cursor, EVENT_PAGE).await?;
            }
        }
    }

    // When a drift check starts on a stack that matches its spec, the live
    // template is compared too (one GetTemplate per drift interval).
    let requested = stack.annotations().get(RECONCILE_REQUESTED_AT).map(String::as_str);
    let settled_and_applied = observed_stack
        .as_ref()
        .is_some_and(|s| matches!(classify(&s.status), Lifecycle::Settled { .. }))
        && previous.operation.is_none()
        && matches!((&desired, &previous.applied), (Ok(d), Some(a)) if a.fingerprint == d.fingerprint);
    if ask_aws
        && !deleting
        && settled_and_applied
        && super::drift::starts_now(&stack.spec, previous.drift.as_ref(), requested, Timestamp::now())
    {
        live_template = Some(cfn.get_template(&name).await?);
    }
    let approval = stack.annotations().get(APPROVE_ANNOTATION).map(String::as_str);
    let observed = Observed {
        namespace: &namespace,
        name: &stack.name_any(),
        uid: &stack.uid().unwrap_or_default(),
        generation: stack.meta().generation.unwrap_or(0),
        spec: &stack.spec,
        previous: &previous,
        desired: &desired,
        stack_name: &name,
        aws_observed: ask_aws,
        stack: observed_stack.as_ref(),
        change_set: change_set.as_ref(),
        new_events: &events,
        approval,
        requested: stack.annotations().get(RECONCILE_REQUESTED_AT).map(String::as_str),
        drift: &drift,
        live_template: live_template.as_deref(),
        deleting,
        now: Timestamp::now(),
        timing: ctx.settings.timing,
    };
    let mut plan = decide(&observed);
    if plan.steps.iter().any(|s| !matches!(s, Step::DetectDrift)) {
        ctx.directory.wrote(&target, &name).await;
    }
    // Outputs of a stack we do not own (refused, not adopted) are not ours to copy.
    let owned = |s: &&crate::aws::StackDescription| plan.status.stack_id.as_deref() == Some(s.stack_id.as_str());
    if let Some(found) = observed_stack
        .as_ref()
        .filter(|s| !deleting && has_outputs(s) && owned(s))
    {
        match outputs::sync(&ctx.client, stack, &found.outputs, previous.written_outputs.as_ref()).await? {
            Ok(written) => plan.status.written_outputs = written,
            Err(note) => plan.notes.push(note),
        }
    }
    act(stack, &api, ctx, Some((cfn.as_ref(), &target)), &previous, plan).await
}

/// The intent is recorded before every AWS write, so with no operation, no
/// change set, no stack id and nothing applied, this object created nothing.
fn never_reached_aws(previous: &StackStatus) -> bool {
    previous.stack_id.is_none()
        && previous.operation.is_none()
        && previous.change_set.is_none()
        && previous.applied.is_none()
        && previous.superseded_change_sets.is_empty()
}

/// Outputs are final only once the stack settled.
fn has_outputs(stack: &crate::aws::StackDescription) -> bool {
    matches!(
        classify(&stack.status),
        Lifecycle::Settled { .. } | Lifecycle::UpdateFailed
    )
}

/// The namespace may not use the account (or it is not ready): report it,
/// touch nothing in AWS.
async fn not_granted(
    stack: &Stack,
    api: &Api<Stack>,
    ctx: &Context,
    previous: &StackStatus,
    name: &str,
    problem: InputProblem,
) -> Result<Action> {
    let desired = Err(problem);
    let observed = Observed {
        namespace: &stack.namespace().unwrap_or_default(),
        name: &stack.name_any(),
        uid: &stack.uid().unwrap_or_default(),
        generation: stack.meta().generation.unwrap_or(0),
        spec: &stack.spec,
        previous,
        desired: &desired,
        stack_name: name,
        aws_observed: false,
        stack: None,
        change_set: None,
        new_events: &[],
        approval: None,
        requested: None,
        drift: &DriftObservation::default(),
        live_template: None,
        deleting: false,
        now: Timestamp::now(),
        timing: ctx.settings.timing,
    };
    let plan = decide(&observed);
    debug_assert!(plan.steps.is_empty(), "no grant, no AWS steps");
    act(stack, api, ctx, None, previous, plan).await
}

/// Deleting an object whose account grant was withdrawn: if it never
/// created anything, let it go; otherwise stay (the stack must not be
/// orphaned silently) and say how to get out.
async fn refused_delete(
    stack: &Stack,
    api: &Api<Stack>,
    ctx: &Context,
    previous: &StackStatus,
    problem: InputProblem,
) -> Result<Action> {
    if never_reached_aws(previous) {
        remove_finalizer(api, stack).await?;
        return Ok(Action::await_change());
    }
    let mut status = previous.clone();
    let message = format!(
        "cannot delete the CloudFormation stack: {}. Restore the account grant, or remove the finalizer {FINALIZER} to leave the stack in AWS",
        problem.message
    );
    super::report::Report {
        status: &mut status,
        generation: stack.meta().generation.unwrap_or(0),
        now: Timestamp::now(),
    }
    .stalled(problem.reason, &message);
    let mut version = stack.resource_version();
    write_status(api, ctx, &stack.name_any(), &mut version, previous, &status).await?;
    Ok(Action::requeue(ctx.settings.timing.resync))
}

async fn act(
    stack: &Stack,
    api: &Api<Stack>,
    ctx: &Context,
    aws: Option<(&dyn CloudFormation, &AwsTarget)>,
    previous: &StackStatus,
    plan: Plan,
) -> Result<Action> {
    let Plan {
        mut status,
        steps,
        mut notes,
        requeue,
        release,
        approval_used,
    } = plan;
    let name = stack.name_any();
    let stack_name = status.stack_name.clone().unwrap_or_default();
    // Record the intent before any AWS write: a crash after the call finds
    // the operation in status and repeats it with the same token.
    let mut written = previous.clone();
    let mut version = stack.resource_version();
    if !steps.is_empty() {
        write_status(api, ctx, &name, &mut version, &written, &status).await?;
        written = status.clone();
    }
    let mut outcome = Ok(());
    if let Some((cfn, target)) = aws {
        let mut uploaded = None;
        for step in &steps {
            debug!(stack = %name, step = %step.label(), "aws step");
            let result = run_step(ctx, cfn, target, &stack_name, step, &mut uploaded).await;
            if let (Ok(_), Step::DeleteChangeSet { name }) = (&result, step) {
                status.superseded_change_sets.retain(|n| n != name);
            }
            if let (Ok(Some(id)), Some(drift)) = (&result, status.drift.as_mut()) {
                drift.detection_id = Some(id.clone());
            }
            if let Err(error) = result {
                if matches!(step, Step::DetectDrift) {
                    // Detection is best effort: say why it did not start, go on.
                    // A passing fault is tried again at the next poll.
                    let passing = matches!(error.kind, AwsErrorKind::Throttled | AwsErrorKind::Transient);
                    if let Some(drift) = status.drift.as_mut() {
                        drift.status = if passing { "Unknown" } else { "Failed" }.into();
                        drift.reason = Some(error.to_string());
                        if passing {
                            drift.started_at = None;
                        }
                    }
                    if passing {
                        continue;
                    }
                    if previous.drift.as_ref().is_none_or(|d| d.status != "Failed") {
                        notes.push(Note::warning(
                            "DriftDetectionFailed",
                            format!("drift detection failed: {error}"),
                        ));
                    }
                    continue;
                }
                match error.kind {
                    AwsErrorKind::Validation | AwsErrorKind::AccessDenied => {
                        let generation = stack.meta().generation.unwrap_or(0);
                        notes.push(rejected(&mut status, step, &error, generation, Timestamp::now()));
                    }
                    _ => outcome = Err(error),
                }
                break;
            }
        }
    }
    if approval_used && outcome.is_ok() {
        version = clear_approval(api, &name).await?;
    }
    write_status(api, ctx, &name, &mut version, &written, &status).await?;
    let reference = stack.object_ref(&());
    for note in &notes {
        info!(stack = %name, reason = %note.reason, message = %note.message, "event");
    }
    let events = notes.into_iter().map(|n| (n.warning, n.reason, n.message)).collect();
    ctx.publish_later(reference, events);
    outcome?;
    if release {
        remove_finalizer(api, stack).await?;
        return Ok(Action::await_change());
    }
    // Spread objects created together over the interval.
    Ok(Action::requeue(crate::backoff::jitter(requeue, rand::random::<f64>())))
}

async fn run_step(
    ctx: &Context,
    cfn: &dyn CloudFormation,
    target: &AwsTarget,
    stack_name: &str,
    step: &Step,
    uploaded: &mut Option<String>,
) -> Result<Option<String>, AwsError> {
    if let Step::DetectDrift = step {
        return cfn.detect_stack_drift(stack_name).await.map(Some);
    }
    run_write(ctx, cfn, target, stack_name, step, uploaded)
        .await
        .map(|()| None)
}

async fn run_write(
    ctx: &Context,
    cfn: &dyn CloudFormation,
    target: &AwsTarget,
    stack_name: &str,
    step: &Step,
    uploaded: &mut Option<String>,
) -> Result<(), AwsError> {
    match step {
        Step::DetectDrift => Ok(()),
        Step::UploadTemplate {
            bucket,
            key,
            region,
            body,
        } => {
            let store = ctx.aws.template_store(&AwsTarget {
                region: region.clone(),
                ..target.clone()
            });
            *uploaded = Some(store.put_template(bucket, key, body).await?);
            Ok(())
        }
        Step::CreateChangeSet(request) => {
            let request = match uploaded.take() {
                Some(url) => Cow::Owned(ChangeSetRequest {
                    template: TemplateSource::Url(url),
                    ..(**request).clone()
                }),
                None => Cow::Borrowed(&**request),
            };
            match cfn.create_change_set(&request).await {
                // Same deterministic name: it is the one we asked for before.
                Err(e) if e.kind == AwsErrorKind::AlreadyExists => Ok(()),
                other => other.map(|_| ()),
            }
        }
        Step::UpdateStack(request) => match uploaded.take() {
            Some(url) => {
                let request = ChangeSetRequest {
                    template: TemplateSource::Url(url),
                    ..(**request).clone()
                };
                cfn.update_stack(&request).await
            }
            None => cfn.update_stack(request).await,
        },
        Step::ExecuteChangeSet { name, token } => cfn.execute_change_set(stack_name, name, token).await,
        Step::DeleteChangeSet { name } => match cfn.delete_change_set(stack_name, name).await {
            Err(e) if e.kind == AwsErrorKind::NotFound => Ok(()),
            other => other,
        },
        Step::DeleteStack { token, retain } => cfn.delete_stack(stack_name, token, retain).await,
        Step::SetTerminationProtection { enabled } => cfn.update_termination_protection(stack_name, *enabled).await,
        Step::SetStackPolicy { body } => cfn.set_stack_policy(stack_name, body).await,
        Step::ContinueRollback { token, skip } => cfn.continue_update_rollback(stack_name, skip, token).await,
    }
}

/// Server-side apply of the status, skipped when only timestamps would change.
async fn write_status(
    api: &Api<Stack>,
    ctx: &Context,
    name: &str,
    version: &mut Option<String>,
    before: &StackStatus,
    after: &StackStatus,
) -> Result<()> {
    Ok(crate::status_patch::write(api, &ctx.metrics, FIELD_MANAGER, name, version, before, after).await?)
}

async fn add_finalizer(api: &Api<Stack>, stack: &Stack) -> Result<Stack> {
    // A JSON patch that fails if someone else changed the list meanwhile.
    let patch = if stack.finalizers().is_empty() {
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    } else {
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": stack.finalizers()},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ])
    };
    let patch: json_patch::Patch = serde_json::from_value(patch).expect("well-formed JSON patch");
    Ok(api
        .patch(&stack.name_any(), &PatchParams::default(), &Patch::Json::<()>(patch))
        .await?)
}

async fn remove_finalizer(api: &Api<Stack>, stack: &Stack) -> Result<()> {
    let Some(index) = stack.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let path = format!("/metadata/finalizers/{index}");
    let patch = json!([
        {"op": "test", "path": path, "value": FINALIZER},
        {"op": "remove", "path": path},
    ]);
    match json_patch(api, stack, patch).await {
        Err(Error::Kube(kube::Error::Api(status))) if status.code == 404 => Ok(()),
        other => other,
    }
}

async fn json_patch(api: &Api<Stack>, stack: &Stack, patch: serde_json::Value) -> Result<()> {
    let patch: json_patch::Patch = serde_json::from_value(patch).expect("well-formed JSON patch");
    api.patch::<Stack>(&stack.name_any(), &PatchParams::default(), &Patch::Json(patch))
        .await?;
    Ok(())
}

async fn clear_approval(api: &Api<Stack>, name: &str) -> Result<Option<String>> {
    let patch = json!({"metadata": {"annotations": {APPROVE_ANNOTATION: null}}});
    let patched = api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(patched.resource_version())
}
