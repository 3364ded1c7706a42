//! Kubernetes Events: the one event-note type every decision states them
//! in, and the publisher every controller shares.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tracing::warn;

use super::conditions::truncate;

/// A Kubernetes Event to publish about the object being reconciled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    /// CamelCase, e.g. the condition reason it reports.
    pub reason: String,
    pub message: String,
}

impl Note {
    pub fn normal(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            warning: false,
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn warning(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            warning: true,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Longest Event message, as Stackable cuts them.
const MAX_MESSAGE: usize = 1024;

/// Publishes Events as the `stackpilot` controller (the Pod's name as instance).
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    pub fn new(client: Client) -> Self {
        let reporter = Reporter {
            controller: "stackpilot".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// Publishes in the background, in order: a reconcile does not wait for
    /// the API server to take them (Events are best effort).
    pub fn publish_later(&self, regarding: ObjectReference, notes: Vec<Note>) {
        if notes.is_empty() {
            return;
        }
        let events = self.clone();
        tokio::spawn(async move {
            for note in &notes {
                events.publish(&regarding, note).await;
            }
        });
    }

    /// Publishes one Event; a failure to publish is logged, not fatal.
    pub async fn publish(&self, regarding: &ObjectReference, note: &Note) {
        let event = Event {
            type_: if note.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: note.reason.clone(),
            note: Some(truncate(&note.message, MAX_MESSAGE)),
            action: note.reason.clone(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, regarding).await {
            warn!(%error, reason = %note.reason, "could not publish event");
        }
    }
}
