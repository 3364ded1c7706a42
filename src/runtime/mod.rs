//! What every controller shares, importing no controller: conditions,
//! events, status writes, the reconcile wrapper and its error policy,
//! finalizers, backoff, reconcile slots, readiness, leader election, the
//! admin server and metrics.

pub mod conditions;
pub mod events;
