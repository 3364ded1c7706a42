//! The act step: record the intent, make the plan's AWS calls, mirror the
//! outputs, write the status, publish the Events, release the finalizer.

use std::borrow::Cow;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info};

use crate::api::{DriftState, Stack, StackStatus};
use crate::aws::{
    Action as AwsAction, AwsError, AwsErrorKind, AwsTarget, ChangeSetRequest, CloudFormation, StackDescription,
    TemplateSource,
};
use crate::runtime::error::Result;
use crate::runtime::{finalizer, status};

use super::context::StackContext;
use super::decide::rejected;
use super::outputs;
use super::plan::{APPROVE_ANNOTATION, Lifecycle, Note, Plan, Step, classify, execution_started};

pub const FINALIZER: &str = "stackpilot.dev/stack";
const FIELD_MANAGER: &str = "stackpilot-stack";

/// Where the plan's AWS calls go; `None` when the object may not act in AWS.
pub struct Door<'a> {
    pub cfn: &'a dyn CloudFormation,
    pub target: &'a AwsTarget,
    /// The stack as observed, for mirroring its outputs.
    pub found: Option<&'a StackDescription>,
}

pub async fn act(
    stack: &Stack,
    api: &Api<Stack>,
    ctx: &StackContext,
    door: Option<Door<'_>>,
    previous: &StackStatus,
    plan: Plan,
) -> Result<Action> {
    let Plan {
        status: mut next,
        steps,
        mut notes,
        requeue,
        release,
        approval_used,
    } = plan;
    let name = stack.name_any();
    let stack_name = next.stack_name.clone().unwrap_or_default();
    // Record the intent before an AWS write that needs it: a crash after the
    // call finds the operation in status and repeats it with the same token.
    let mut written = previous.clone();
    let mut version = stack.resource_version();
    if steps.iter().any(Step::needs_intent) {
        write_status(api, ctx, stack, &mut version, &written, &next).await?;
        written = next.clone();
    }
    let mut outcome = Ok(());
    if let Some(door) = &door {
        outcome = run_steps(stack, ctx, door, &stack_name, &steps, previous, &mut next, &mut notes).await;
        // After the calls returned: a bulk read that started earlier may not
        // show them yet.
        if steps.iter().any(|s| !matches!(s, Step::DetectDrift)) {
            ctx.directory.wrote(door.target, &stack_name).await;
        }
        mirror_outputs(stack, ctx, door, previous, &mut next, &mut notes).await?;
    }
    if approval_used && outcome.is_ok() {
        version = clear_approval(api, &name).await?;
        ctx.own_writes.wrote(stack, version.as_deref());
    }
    write_status(api, ctx, stack, &mut version, &written, &next).await?;
    for note in &notes {
        info!(stack = %name, reason = %note.reason, message = %note.message, "event");
    }
    ctx.shared.events.publish_later(stack.object_ref(&()), notes);
    outcome?;
    if release {
        finalizer::remove(api, stack, FINALIZER).await?;
        ctx.own_writes.forget(stack);
        return Ok(Action::await_change());
    }
    // Spread objects created together over the interval.
    Ok(Action::requeue(crate::runtime::backoff::jitter(
        requeue,
        rand::random::<f64>(),
    )))
}

/// The steps in order; the first refused one stops the rest. Drift
/// detection is best effort and never stops them.
#[allow(clippy::too_many_arguments)]
async fn run_steps(
    stack: &Stack,
    ctx: &StackContext,
    door: &Door<'_>,
    stack_name: &str,
    steps: &[Step],
    previous: &StackStatus,
    next: &mut StackStatus,
    notes: &mut Vec<Note>,
) -> std::result::Result<(), crate::runtime::error::Error> {
    let mut uploaded = None;
    for step in steps {
        debug!(stack = %stack.name_any(), step = %step.label(), "aws step");
        let result = run_step(ctx, door, stack_name, step, &mut uploaded).await;
        match (&result, step) {
            (Ok(_), Step::DeleteChangeSet { name }) => next.superseded_change_sets.retain(|n| n != name),
            (Ok(_), Step::ExecuteChangeSet { .. }) => execution_started(next),
            _ => {}
        }
        if let (Ok(Some(id)), Some(drift)) = (&result, next.drift.as_mut()) {
            drift.detection_id = Some(id.clone());
        }
        let Err(error) = result else { continue };
        if matches!(step, Step::DetectDrift) {
            if error.kind == AwsErrorKind::Unsupported {
                drift_unsupported(ctx, door.target, next, notes);
            } else {
                drift_not_started(previous, next, notes, &error);
            }
            continue;
        }
        return match error.kind {
            AwsErrorKind::Validation | AwsErrorKind::AccessDenied => {
                let generation = stack.meta().generation.unwrap_or(0);
                notes.push(rejected(next, step, &error, generation, Timestamp::now()));
                Ok(())
            }
            _ => Err(error.into()),
        };
    }
    Ok(())
}

/// The endpoint has no drift detection: one Warning Event for the account
/// and region (by whichever stack found out first), a note in each stack's
/// status, and no call again until the back-off has passed.
fn drift_unsupported(ctx: &StackContext, target: &AwsTarget, next: &mut StackStatus, notes: &mut Vec<Note>) {
    let news = ctx.unsupported.found(target, AwsAction::DetectStackDrift);
    let why = news
        .clone()
        .or_else(|| ctx.unsupported.missing(target, AwsAction::DetectStackDrift))
        .unwrap_or_default();
    if let Some(drift) = next.drift.as_mut() {
        drift.status = DriftState::Unknown;
        drift.reason = Some(why);
    }
    if let Some(message) = news {
        notes.push(Note::warning("DriftDetectionUnavailable", message));
    }
}

/// Detection is best effort: say why it did not start, go on. A passing
/// fault is tried again at the next poll.
fn drift_not_started(previous: &StackStatus, next: &mut StackStatus, notes: &mut Vec<Note>, error: &AwsError) {
    let passing = matches!(error.kind, AwsErrorKind::Throttled | AwsErrorKind::Transient);
    if let Some(drift) = next.drift.as_mut() {
        drift.status = if passing {
            DriftState::Unknown
        } else {
            DriftState::Failed
        };
        drift.reason = Some(error.to_string());
        if passing {
            drift.started_at = None;
        }
    }
    if !passing && previous.drift.as_ref().is_none_or(|d| d.status != DriftState::Failed) {
        notes.push(Note::warning(
            "DriftDetectionFailed",
            format!("drift detection failed: {error}"),
        ));
    }
}

/// `writeOutputsTo`: outputs of a settled stack of ours (never of a refused,
/// foreign one) mirrored into the Secret or ConfigMap.
async fn mirror_outputs(
    stack: &Stack,
    ctx: &StackContext,
    door: &Door<'_>,
    previous: &StackStatus,
    next: &mut StackStatus,
    notes: &mut Vec<Note>,
) -> Result<()> {
    let deleting = stack.meta().deletion_timestamp.is_some();
    let settled =
        |s: &StackDescription| matches!(classify(&s.status), Lifecycle::Settled { .. } | Lifecycle::UpdateFailed);
    let owned = |s: &StackDescription| next.stack_id.as_deref() == Some(s.stack_id.as_str());
    let Some(found) = door
        .found
        .filter(|s| !deleting && !s.outputs.is_empty() && settled(s) && owned(s))
    else {
        return Ok(());
    };
    match outputs::sync(
        &ctx.shared.client,
        stack,
        &found.outputs,
        previous.written_outputs.as_ref(),
    )
    .await?
    {
        Ok(written) => next.written_outputs = written,
        Err(note) => notes.push(note),
    }
    Ok(())
}

async fn run_step(
    ctx: &StackContext,
    door: &Door<'_>,
    stack_name: &str,
    step: &Step,
    uploaded: &mut Option<String>,
) -> std::result::Result<Option<String>, AwsError> {
    let cfn = door.cfn;
    match step {
        Step::DetectDrift => return cfn.detect_stack_drift(stack_name).await.map(Some),
        Step::UploadTemplate {
            bucket,
            key,
            region,
            body,
        } => {
            let store = ctx.aws.template_store(&AwsTarget {
                region: region.clone(),
                ..door.target.clone()
            });
            *uploaded = Some(store.put_template(bucket, key, body).await?);
        }
        Step::CreateChangeSet(request) => {
            let request = with_upload(request, uploaded);
            match cfn.create_change_set(&request).await {
                // Same deterministic name: it is the one we asked for before.
                Err(e) if e.kind == AwsErrorKind::AlreadyExists => {}
                other => {
                    other?;
                }
            }
        }
        Step::UpdateStack(request) => cfn.update_stack(&with_upload(request, uploaded)).await?,
        Step::ExecuteChangeSet { name, token } => cfn.execute_change_set(stack_name, name, token).await?,
        Step::DeleteChangeSet { name } => match cfn.delete_change_set(stack_name, name).await {
            Err(e) if e.kind == AwsErrorKind::NotFound => {}
            other => other?,
        },
        Step::DeleteStack { token, retain } => cfn.delete_stack(stack_name, token, retain).await?,
        Step::SetTerminationProtection { enabled } => cfn.update_termination_protection(stack_name, *enabled).await?,
        Step::SetStackPolicy { body } => cfn.set_stack_policy(stack_name, body).await?,
        Step::ContinueRollback { token, skip } => cfn.continue_update_rollback(stack_name, skip, token).await?,
    }
    Ok(None)
}

/// The request with the URL of the template uploaded just before it.
fn with_upload<'r>(request: &'r ChangeSetRequest, uploaded: &mut Option<String>) -> Cow<'r, ChangeSetRequest> {
    match uploaded.take() {
        Some(url) => Cow::Owned(ChangeSetRequest {
            template: TemplateSource::Url(url),
            ..request.clone()
        }),
        None => Cow::Borrowed(request),
    }
}

/// Server-side apply of the status, skipped when only timestamps would change.
pub async fn write_status(
    api: &Api<Stack>,
    ctx: &StackContext,
    stack: &Stack,
    version: &mut Option<String>,
    before: &StackStatus,
    after: &StackStatus,
) -> Result<()> {
    let name = stack.name_any();
    status::write(api, &ctx.shared.metrics, FIELD_MANAGER, &name, version, before, after).await?;
    ctx.own_writes.wrote(stack, version.as_deref());
    Ok(())
}

async fn clear_approval(api: &Api<Stack>, name: &str) -> Result<Option<String>> {
    let patch = json!({"metadata": {"annotations": {APPROVE_ANNOTATION: null}}});
    let patched = api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(patched.resource_version())
}
