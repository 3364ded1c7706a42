//! What every controller shares: the Kubernetes client, Events, metrics,
//! per-object backoff and the readiness registry. Each controller wraps it
//! in a context of its own for what only it needs.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;

use crate::source::{SourceSettings, Sources};

use super::backoff::Backoff;
use super::events::Events;
use super::metrics::Metrics;
use super::readiness::Readiness;

pub struct Shared {
    pub client: Client,
    pub events: Events,
    pub metrics: Arc<Metrics>,
    /// Failed reconciles, keyed by kind and object.
    pub backoff: Backoff,
    /// `/readyz`: ready once every running controller's caches have synced.
    pub readiness: Readiness,
    /// Templates from Flux sources (`sourceRef`).
    pub sources: Sources,
}

impl Shared {
    pub fn new(client: Client, metrics: Arc<Metrics>) -> Self {
        Self {
            events: Events::new(client.clone()),
            client,
            metrics,
            backoff: Backoff::new(Duration::from_secs(2), Duration::from_secs(300)),
            readiness: Readiness::default(),
            sources: Sources::new(SourceSettings::default()),
        }
    }
}
