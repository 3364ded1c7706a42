//! What every controller shares, importing no controller: conditions,
//! events, status writes, the reconcile wrapper and its error policy,
//! finalizers, backoff, reconcile slots, readiness, leader election, the
//! admin server and metrics.

pub mod admin;
pub mod backoff;
pub mod conditions;
pub mod context;
pub mod error;
pub mod events;
pub mod finalizer;
pub mod leader;
pub mod metrics;
pub mod own_writes;
pub mod problem;
pub mod readiness;
pub mod reconciler;
pub mod slots;
pub mod status;
pub mod telemetry;
pub mod watch;
