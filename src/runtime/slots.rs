//! Reconcile slots with two priorities. kube-runtime's controller runs due
//! objects first come, first served, so a burst of new objects queues behind
//! the polls of every stack already in flight. The controller is allowed many
//! more reconciles at once than there are slots; each waits here, and a freed
//! slot goes to a waiting change (a new or edited object) before any poll.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// What a reconcile is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// The object changed since it was last handled: someone waits for it.
    Change,
    /// A scheduled look at an operation or a settled stack.
    Poll,
}

#[derive(Debug)]
pub struct Slots {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    free: usize,
    changes: VecDeque<oneshot::Sender<()>>,
    polls: VecDeque<oneshot::Sender<()>>,
}

/// A held slot; dropping it hands the slot on.
#[derive(Debug)]
pub struct Slot {
    state: Arc<Mutex<State>>,
}

impl Slots {
    pub fn new(size: usize) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                free: size.max(1),
                changes: VecDeque::new(),
                polls: VecDeque::new(),
            })),
        }
    }

    /// Waits for a slot: changes before polls, first come first served within each.
    pub async fn take(&self, priority: Priority) -> Slot {
        let waiting = {
            let mut state = lock(&self.state);
            if state.free > 0 {
                state.free -= 1;
                None
            } else {
                let (tx, rx) = oneshot::channel();
                match priority {
                    Priority::Change => state.changes.push_back(tx),
                    Priority::Poll => state.polls.push_back(tx),
                }
                Some(rx)
            }
        };
        let slot = Slot {
            state: self.state.clone(),
        };
        if let Some(rx) = waiting {
            // The sender is only dropped after sending (see `hand_on`), and
            // the state outlives every waiter: an error cannot happen, and
            // would mean the slot is ours anyway.
            let _ = rx.await;
        }
        slot
    }

    /// Reconciles waiting for a slot, for the metrics: (changes, polls).
    pub fn waiting(&self) -> (usize, usize) {
        let state = lock(&self.state);
        (state.changes.len(), state.polls.len())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        // A waiter that gave up (its reconcile was cancelled) is skipped.
        while let Some(next) = state.changes.pop_front().or_else(|| state.polls.pop_front()) {
            if next.send(()).is_ok() {
                return;
            }
        }
        state.free += 1;
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_freed_slot_goes_to_a_waiting_change_before_older_polls() {
        let slots = Arc::new(Slots::new(1));
        let held = slots.take(Priority::Poll).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, priority) in [
            ("poll-1", Priority::Poll),
            ("poll-2", Priority::Poll),
            ("change", Priority::Change),
        ] {
            let (slots, order) = (slots.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = slots.take(priority).await;
                order.lock().unwrap().push(name);
            }));
            // Queue them in this order.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(slots.waiting(), (1, 2));
        drop(held);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec!["change", "poll-1", "poll-2"]);
        assert_eq!(slots.waiting(), (0, 0));
        // All slots are back: two takes at once do not wait.
        let _a = slots.take(Priority::Poll).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(50), slots.take(Priority::Poll))
                .await
                .is_err(),
            "only one slot"
        );
    }

    #[tokio::test]
    async fn a_cancelled_waiter_does_not_lose_the_slot() {
        let slots = Arc::new(Slots::new(1));
        let held = slots.take(Priority::Change).await;
        let gave_up = tokio::time::timeout(Duration::from_millis(20), slots.take(Priority::Change)).await;
        assert!(gave_up.is_err());
        drop(held);
        tokio::time::timeout(Duration::from_millis(100), slots.take(Priority::Poll))
            .await
            .expect("the slot came back");
    }
}
