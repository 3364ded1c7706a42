//! The AwsAccount controller: verifies that each account's credentials (its
//! role assumed through STS, or the operator's own) resolve to
//! `spec.accountId`, and says so in the `Ready` condition, again every 30
//! minutes. [`grant_for`] is what the controllers that act in AWS call to find
//! out whether an object may use an account.

pub mod cache;
mod grant;
mod reconcile;
pub mod tenancy;
mod verify;

use std::sync::Arc;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{Config, Controller};
use kube::runtime::{Predicate, WatchStreamExt, predicates, reflector, watcher};

use crate::api::AwsAccount;
use crate::aws::identity::AccountIdentity;
use crate::runtime::context::Shared;

pub use cache::{TenancyCache, TenancyWriters};
pub use grant::{grant_for, grants_for};
pub use reconcile::FIELD_MANAGER;
pub use verify::{
    ASSUME_ROLE_FAILED, CREDENTIALS_REJECTED, INVALID_SPEC, Outcome, RETRY_REFUSED, REVERIFY, VERIFICATION_FAILED,
    VERIFIED, VERIFYING, Verdict, WRONG_ACCOUNT, decide, plan, status_changed, verify_target,
};

/// The AwsAccount cache, in `/readyz`.
pub const CACHE: &str = "awsaccounts";

/// Accounts are few; two checks at a time is plenty.
const CONCURRENCY: u16 = 2;

/// What an AwsAccount reconcile shares.
pub struct AccountContext {
    pub shared: Arc<Shared>,
    pub identity: Arc<dyn AccountIdentity>,
}

/// Runs the AwsAccount controller (cluster-wide) until `shutdown` resolves.
pub async fn run(
    shared: Arc<Shared>,
    identity: Arc<dyn AccountIdentity>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    run_selected(shared, identity, None, shutdown).await;
}

/// [`run`] for the AwsAccounts matching a label selector only (tests, or
/// sharding accounts over operators).
pub async fn run_selected(
    shared: Arc<Shared>,
    identity: Arc<dyn AccountIdentity>,
    label_selector: Option<&str>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<AwsAccount> = Api::all(shared.client.clone());
    let (reader, writer) = reflector::store();
    let mut config = watcher::Config::default().any_semantic();
    if let Some(selector) = label_selector {
        config = config.labels(selector);
    }
    // Status writes change neither generation nor annotations, so they do
    // not wake the controller; a spec edit or the reconcile-requested-at
    // annotation does, and so does the 30-minute requeue.
    let synced = shared.readiness.register(CACHE);
    let stream = watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .inspect(synced.on_init_done(CACHE))
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::annotations),
            Default::default(),
        );
    let context = Arc::new(AccountContext { shared, identity });
    let results = Controller::for_stream(stream, reader)
        .with_config(Config::default().concurrency(CONCURRENCY))
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, context);
    crate::runtime::reconciler::drain(results, "awsaccount").await;
}
