//! One Stack reconcile, one path: finalizer -> grant -> observe -> decide
//! -> act (AWS calls, outputs, status, Events).

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use crate::account;
use crate::api::{Stack, StackStatus};
use crate::runtime::error::{Error, Result};
use crate::runtime::{finalizer, reconciler};
use tracing::debug;

use super::act::{Door, FINALIZER, act, write_status};
use super::context::StackContext;
use super::decide::decide;
use super::decide::drift::Schedule;
use super::inputs::{resolve, stack_name};
use super::observe::{AwsReads, FollowUpInputs, created, first_reads, never_reached_aws, observed, read};
use super::plan::{Problem, RECONCILE_REQUESTED_AT, Report};

/// A copy older than our own last write waits for the watch event of that
/// write; this is the safety net should it not come.
const SUPERSEDED_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn reconcile(stack: Arc<Stack>, ctx: Arc<StackContext>) -> Result<Action> {
    reconciler::instrumented(&ctx.shared, stack.as_ref(), reconcile_fresh(&stack, &ctx)).await
}

/// A copy older than our own last write waits for that write's event; a
/// conflict on our own write decides again at once from the object as it
/// is now (see `reconciler::from_current`).
async fn reconcile_fresh(stack: &Stack, ctx: &StackContext) -> Result<Action> {
    if ctx.own_writes.superseded(stack) {
        debug!(stack = %stack.name_any(), "the cached copy is older than our last write; waiting for it");
        return Ok(Action::requeue(SUPERSEDED_RECHECK));
    }
    let namespace = stack.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<Stack> = Api::namespaced(ctx.shared.client.clone(), &namespace);
    reconciler::from_current(&api, stack, false, ctx, |current, ctx| {
        Box::pin(reconcile_inner(current, ctx))
    })
    .await
}

pub fn error_policy(stack: Arc<Stack>, error: &Error, ctx: Arc<StackContext>) -> Action {
    reconciler::error_policy(&ctx.shared, stack.as_ref(), error)
}

async fn reconcile_inner(stack: &Stack, ctx: &StackContext) -> Result<Action> {
    let namespace = stack.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<Stack> = Api::namespaced(ctx.shared.client.clone(), &namespace);
    let deleting = stack.meta().deletion_timestamp.is_some();
    if !finalizer::has(stack, FINALIZER) {
        if deleting {
            return Ok(Action::await_change());
        }
        // Go on with the patched copy at once: waiting for the watch to bring
        // it back would delay the first AWS write by a round trip.
        let patched = finalizer::add(&api, stack, FINALIZER).await?;
        ctx.own_writes.wrote(&patched, patched.resource_version().as_deref());
        return Box::pin(reconcile_inner(&patched, ctx)).await;
    }

    let name = stack_name(stack);
    let previous = stack.status.clone().unwrap_or_default();
    // Who may act where is settled before anything else: a refused grant
    // means no AWS call at all.
    let grant = account::grant_for(
        &ctx.tenancy,
        ctx.settings.allow_operator_credentials,
        &namespace,
        stack.spec.account_ref.as_ref().map(|a| a.name.as_str()),
        &stack.spec.region,
        stack.spec.service_role_arn.as_deref(),
    )
    .await?;
    let grant = match grant {
        Ok(grant) => grant,
        Err(problem) if deleting => return refused_delete(stack, &api, ctx, &previous, problem).await,
        Err(problem) => {
            let desired = Err(problem);
            let reads = AwsReads::default();
            let o = observed(
                stack,
                &previous,
                &desired,
                &name,
                &reads,
                Timestamp::now(),
                ctx.settings.timing,
            );
            let plan = decide(&o);
            debug_assert!(plan.steps.is_empty(), "no grant, no AWS steps");
            return act(stack, &api, ctx, None, &previous, plan).await;
        }
    };
    if deleting && never_reached_aws(&previous) {
        // Nothing of ours can exist in AWS: no call (the region may be bogus).
        finalizer::remove(&api, stack, FINALIZER).await?;
        ctx.own_writes.forget(stack);
        return Ok(Action::await_change());
    }
    let desired = if deleting || stack.spec.suspend {
        Err(Problem::stalled("NotApplicable", ""))
    } else {
        resolve(&ctx.shared, &ctx.stacks, stack, &grant).await
    };

    let now = Timestamp::now();
    let target = grant.target(&stack.name_any());
    let cfn = ctx.aws.client(&target);
    let first = first_reads(&previous, &stack.spec, deleting, desired.is_ok());
    let inputs = FollowUpInputs {
        previous: &previous,
        spec: &stack.spec,
        desired: &desired,
        deleting,
        requested: stack.annotations().get(RECONCILE_REQUESTED_AT).map(String::as_str),
        schedule: Schedule {
            uid: stack.meta().uid.as_deref().unwrap_or_default(),
            created: created(stack),
        },
        now,
    };
    let reads = read(ctx, cfn.as_ref(), &target, &name, &first, &inputs).await?;
    let o = observed(stack, &previous, &desired, &name, &reads, now, ctx.settings.timing);
    let plan = decide(&o);
    let door = Door {
        cfn: cfn.as_ref(),
        target: &target,
        found: reads.stack.as_ref(),
    };
    act(stack, &api, ctx, Some(door), &previous, plan).await
}

/// Deleting an object whose account grant was withdrawn: if it never
/// created anything, let it go; otherwise stay (the stack must not be
/// orphaned silently) and say how to get out.
async fn refused_delete(
    stack: &Stack,
    api: &Api<Stack>,
    ctx: &StackContext,
    previous: &StackStatus,
    problem: Problem,
) -> Result<Action> {
    if never_reached_aws(previous) {
        finalizer::remove(api, stack, FINALIZER).await?;
        ctx.own_writes.forget(stack);
        return Ok(Action::await_change());
    }
    let mut status = previous.clone();
    let message = format!(
        "cannot delete the CloudFormation stack: {}. Restore the account grant, or remove the finalizer {FINALIZER} to leave the stack in AWS",
        problem.message
    );
    Report {
        status: &mut status,
        generation: stack.meta().generation.unwrap_or(0),
        now: Timestamp::now(),
    }
    .stalled(problem.reason, &message);
    let mut version = stack.resource_version();
    write_status(api, ctx, stack, &mut version, previous, &status).await?;
    Ok(Action::requeue(ctx.settings.timing.resync))
}
