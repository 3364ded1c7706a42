//! Kubernetes Events: the one event-note type every decision states them
//! in, and the publisher every controller shares.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

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
        let event = event(note);
        match self.recorder.publish(&event, regarding).await {
            Ok(()) => {}
            // Nothing can be published in a namespace being deleted, and
            // every object in it would say so.
            Err(error) if namespace_terminating(&error) => {
                debug!(%error, reason = %note.reason, "could not publish event");
            }
            Err(error) => warn!(%error, reason = %note.reason, "could not publish event"),
        }
    }
}

/// The Event of a note. kube's recorder counts an Event with the same type,
/// reason and action as a repeat of the last one (`x2`) and keeps the old
/// text, so the action carries a digest of the message: a different message
/// is always an Event of its own.
fn event(note: &Note) -> Event {
    let message = truncate(&note.message, MAX_MESSAGE);
    let digest = hex::encode(&Sha256::digest(message.as_bytes())[..4]);
    Event {
        type_: if note.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: note.reason.clone(),
        note: Some(message),
        action: format!("{}-{digest}", truncate(&note.reason, 100)),
        secondary: None,
    }
}

fn namespace_terminating(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(response) if response.message.contains("being terminated"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn different_messages_are_never_the_same_event() {
        let first = event(&Note::warning("NotReady", "DependencyNotReady: net is not Ready"));
        let second = event(&Note::warning(
            "NotReady",
            "InsufficientCapabilities: needs CAPABILITY_IAM",
        ));
        assert_eq!(first.reason, second.reason);
        assert_ne!(
            first.action, second.action,
            "the recorder would count the second as the first"
        );
        let again = event(&Note::warning("NotReady", "DependencyNotReady: net is not Ready"));
        assert_eq!(first.action, again.action, "a repeat is counted, not duplicated");
        assert!(first.action.len() <= 128, "{}", first.action);
    }
}
