//! What every reconcile shares: clients, the AWS provider, events, metrics
//! and settings.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tracing::warn;

use crate::aws::CloudFormationProvider;
use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::runtime::conditions::truncate;
use crate::stack::{Directory, Timing};

/// Operator-wide settings from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Stacks without `accountRef` may use the operator's own credentials.
    pub allow_operator_credentials: bool,
    pub timing: Timing,
}

pub struct Context {
    pub client: Client,
    pub aws: Arc<dyn CloudFormationProvider>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    pub backoff: Backoff,
    /// Shared bulk reads of settled stacks, per account and region.
    pub directory: Directory,
    /// Set once the controllers' caches have synced (`/readyz`).
    pub ready: AtomicBool,
}

impl Context {
    pub fn new(
        client: Client,
        aws: Arc<dyn CloudFormationProvider>,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Self {
        let reporter = Reporter {
            controller: "stackpilot".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let directory = Directory::new(settings.timing.resync);
        Self {
            directory,
            recorder: Recorder::new(client.clone(), reporter),
            client,
            aws,
            metrics,
            settings,
            backoff: Backoff::new(std::time::Duration::from_secs(2), std::time::Duration::from_secs(300)),
            ready: AtomicBool::new(false),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Publishes Events in the background, in order: a reconcile does not
    /// wait for the API server to take them (Events are best effort).
    pub fn publish_later(&self, regarding: ObjectReference, events: Vec<(bool, String, String)>) {
        let recorder = self.recorder.clone();
        tokio::spawn(async move {
            for (warning, reason, message) in events {
                publish_with(&recorder, &regarding, warning, &reason, &message).await;
            }
        });
    }

    /// Publishes a Kubernetes Event; a failure to publish is logged, not fatal.
    pub async fn publish(&self, regarding: &ObjectReference, warning: bool, reason: &str, message: &str) {
        publish_with(&self.recorder, regarding, warning, reason, message).await;
    }
}

async fn publish_with(recorder: &Recorder, regarding: &ObjectReference, warning: bool, reason: &str, message: &str) {
    let event = Event {
        type_: if warning { EventType::Warning } else { EventType::Normal },
        reason: reason.to_string(),
        note: Some(truncate(message, 1024)),
        action: reason.to_string(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, regarding).await {
        warn!(%error, reason, "could not publish event");
    }
}
