//! One AwsAccount reconcile: check the spec -> GetCallerIdentity through the
//! account's credentials -> decide (pure) -> patch status -> Event on change.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::info;

use crate::api::{AwsAccount, AwsAccountStatus};
use crate::runtime::backoff::jitter;
use crate::runtime::error::{Error, Result};
use crate::runtime::{reconciler, status};

use super::AccountContext;
use super::verify::{Outcome, decide, plan};

pub const FIELD_MANAGER: &str = "stackpilot-awsaccount";

pub async fn reconcile(account: Arc<AwsAccount>, ctx: Arc<AccountContext>) -> Result<Action> {
    reconciler::instrumented(&ctx.shared, account.as_ref(), reconcile_inner(&account, &ctx)).await
}

pub fn error_policy(account: Arc<AwsAccount>, error: &Error, ctx: Arc<AccountContext>) -> Action {
    reconciler::error_policy(&ctx.shared, account.as_ref(), error)
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
    let api: Api<AwsAccount> = Api::all(ctx.shared.client.clone());
    let mut version = account.resource_version();
    write_status(&api, ctx, &name, &mut version, &previous, &verdict.status).await?;
    if let Some(note) = &verdict.event {
        info!(account = %name, reason = %note.reason, message = %note.message, "event");
        ctx.shared.events.publish(&account.object_ref(&()), note).await;
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
    Ok(status::write(api, &ctx.shared.metrics, FIELD_MANAGER, name, version, before, after).await?)
}
