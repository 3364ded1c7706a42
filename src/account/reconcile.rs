//! One AwsAccount reconcile: check the spec -> GetCallerIdentity through the
//! account's credentials -> decide (pure) -> patch status -> Event on change.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use crate::api::{AwsAccount, AwsAccountStatus};
use crate::backoff::jitter;
use crate::error::{Error, Result};
use crate::metrics::{ErrorLabels, KindLabels, OutcomeLabels};

use super::AccountContext;
use super::verify::{Note, Outcome, decide, plan};

pub const FIELD_MANAGER: &str = "stackpilot-awsaccount";
const KIND: &str = "AwsAccount";

fn backoff_key(account: &AwsAccount) -> String {
    format!("{KIND}/{}", account.name_any())
}

pub async fn reconcile(account: Arc<AwsAccount>, ctx: Arc<AccountContext>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_inner(&account, &ctx).await;
    let metrics = &ctx.ctx.metrics;
    metrics
        .reconcile_duration
        .get_or_create(&KindLabels { kind: KIND })
        .observe(started.elapsed().as_secs_f64());
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics
        .reconciles
        .get_or_create(&OutcomeLabels { kind: KIND, outcome })
        .inc();
    if result.is_ok() {
        ctx.ctx.backoff.succeed(&backoff_key(&account));
    }
    result
}

/// Failed reconciles retry with per-object exponential backoff; the error is
/// counted by category and shown as a Warning Event.
pub fn error_policy(account: Arc<AwsAccount>, error: &Error, ctx: Arc<AccountContext>) -> Action {
    let key = backoff_key(&account);
    let category = error.category();
    ctx.ctx
        .metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels { kind: KIND, category })
        .inc();
    let delay = ctx.ctx.backoff.fail(&key);
    warn!(account = %account.name_any(), category, %error, retry_in = ?delay, "reconcile failed");
    let reference = account.object_ref(&());
    let message = error.to_string();
    tokio::spawn(async move {
        ctx.ctx.publish(&reference, true, "ReconcileError", &message).await;
    });
    Action::requeue(delay)
}

async fn reconcile_inner(account: &AwsAccount, ctx: &AccountContext) -> Result<Action> {
    if account.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = account.name_any();
    let generation = account.meta().generation.unwrap_or(0);
    let previous = account.status.clone().unwrap_or_default();
    let outcome = match plan(&name, &account.spec) {
        Ok(target) => Outcome::Answer(ctx.identity.account_id(&target).await),
        Err(invalid) => invalid,
    };
    let verdict = decide(&account.spec, generation, &previous, outcome, Timestamp::now());
    let api: Api<AwsAccount> = Api::all(ctx.ctx.client.clone());
    let mut version = account.resource_version();
    write_status(&api, ctx, &name, &mut version, &previous, &verdict.status).await?;
    if let Some(Note {
        warning,
        reason,
        message,
    }) = &verdict.event
    {
        info!(account = %name, reason, message = %message, "event");
        ctx.ctx
            .publish(&account.object_ref(&()), *warning, reason, message)
            .await;
    }
    if let Some(error) = verdict.retry {
        return Err(Error::Aws(error));
    }
    Ok(Action::requeue(jitter(verdict.requeue, rand::random::<f64>())))
}

/// Server-side apply of the status, skipped when only timestamps would change.
async fn write_status(
    api: &Api<AwsAccount>,
    ctx: &AccountContext,
    name: &str,
    version: &mut Option<String>,
    before: &AwsAccountStatus,
    after: &AwsAccountStatus,
) -> Result<()> {
    Ok(crate::status_patch::write(api, &ctx.ctx.metrics, FIELD_MANAGER, name, version, before, after).await?)
}
