//! The reconcile wrapper and error policy every controller runs through:
//! reconcile metrics by kind and outcome, a Warning Event whose reason is a
//! static error category, and per-object backoff keyed by kind and object.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

use super::context::Shared;
use super::error::{Error, Result};
use super::events::Note;
use super::metrics::{ErrorLabels, KindLabels, OutcomeLabels};

/// The kind's name, for metric labels, Events and backoff keys: static,
/// never an object name.
pub fn kind_of<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()) {
        Cow::Borrowed(kind) => kind,
        Cow::Owned(_) => "Other",
    }
}

/// `namespace/name`, or `name` for cluster-scoped objects.
pub fn object_key<K: Resource>(object: &K) -> String {
    match object.namespace() {
        Some(ns) => format!("{ns}/{}", object.name_any()),
        None => object.name_any(),
    }
}

/// Runs one reconcile of `object`, counting its duration and outcome; a
/// success resets the object's backoff.
pub async fn instrumented<K>(shared: &Shared, object: &K, work: impl Future<Output = Result<Action>>) -> Result<Action>
where
    K: Resource<DynamicType = ()>,
{
    let kind = kind_of::<K>();
    let started = Instant::now();
    let result = work.await;
    shared
        .metrics
        .reconcile_duration
        .get_or_create(&KindLabels { kind })
        .observe(started.elapsed().as_secs_f64());
    let outcome = if result.is_ok() { "ok" } else { "error" };
    shared
        .metrics
        .reconciles
        .get_or_create(&OutcomeLabels { kind, outcome })
        .inc();
    if result.is_ok() {
        shared.backoff.succeed(kind, &object_key(object));
    }
    result
}

/// Conflicts on our own conditional writes retried at once from a fresh copy.
const CONFLICT_RETRIES: u32 = 5;

/// Runs `reconcile` from `object` (with `ctx`), or first reads it as it is now when
/// `read_first` (the cached copy is known to be older than our last write).
/// A 409 Conflict on one of our conditional writes means the decision was
/// made from a copy older than the object (the cache lags behind a write):
/// expected under load, so it runs again at once from the object as it is
/// now, quietly, rather than failing into the error policy.
pub async fn from_current<K, C>(
    api: &Api<K>,
    object: &K,
    read_first: bool,
    ctx: &C,
    reconcile: impl for<'a> Fn(&'a K, &'a C) -> BoxFuture<'a, Result<Action>>,
) -> Result<Action>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut fresh;
    let mut current = object;
    if read_first {
        match api.get_opt(&object.name_any()).await? {
            Some(newer) => fresh = newer,
            None => return Ok(Action::await_change()),
        }
        current = &fresh;
    }
    for attempt in 1.. {
        match reconcile(current, ctx).await {
            Err(error) if error.category() == "conflict" && attempt <= CONFLICT_RETRIES => {
                debug!(object = %object_key(object), attempt, "write conflict; deciding again from a fresh copy");
                match api.get_opt(&object.name_any()).await? {
                    Some(newer) => fresh = newer,
                    None => return Ok(Action::await_change()),
                }
                current = &fresh;
            }
            other => return other,
        }
    }
    unreachable!("the loop returns")
}

/// A failed reconcile: counted by category, shown as a Warning Event, and
/// retried with the object's exponential backoff. A conflict on our own
/// conditional write means the decision was made from a stale copy: decide
/// again soon from a newer one.
pub fn error_policy<K>(shared: &Shared, object: &K, error: &Error) -> Action
where
    K: Resource<DynamicType = ()>,
{
    let kind = kind_of::<K>();
    let category = error.category();
    shared
        .metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels { kind, category })
        .inc();
    if category == "conflict" {
        return Action::requeue(Duration::from_millis(500));
    }
    let key = object_key(object);
    let delay = shared.backoff.fail(kind, &key);
    warn!(kind, object = %key, category, %error, retry_in = ?delay, "reconcile failed");
    let note = Note::warning(error.reason(), error.to_string());
    shared.events.publish_later(object.object_ref(&()), vec![note]);
    Action::requeue(delay)
}

/// Drives a controller's result stream to its end, logging what the
/// controller itself could not do. A failed reconcile is not logged again
/// here: the error policy has counted it, logged it and made its Event.
pub async fn drain<T, R, Q>(
    results: impl futures::Stream<Item = std::result::Result<T, kube::runtime::controller::Error<R, Q>>>,
    controller: &str,
) where
    R: std::error::Error + 'static,
    Q: std::error::Error + 'static,
{
    use futures::StreamExt;
    use kube::runtime::controller::Error as ControllerError;
    results
        .for_each(|result| async move {
            match result {
                Ok(_) => {}
                Err(ControllerError::ReconcilerFailed(error, object)) => {
                    debug!(%error, %object, controller, "reconcile failed");
                }
                Err(error) => warn!(%error, controller, "controller"),
            }
        })
        .await;
}
