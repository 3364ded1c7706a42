//! Why an object cannot proceed: bad input, a missing reference, a refused
//! account grant. One type for every controller, shown as a condition (and
//! an Event) with no AWS call made.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// CamelCase condition reason, e.g. `InvalidTemplate`.
    pub reason: &'static str,
    pub message: String,
    /// `true` when time alone can fix it (a dependency becoming Ready, an
    /// account being verified), so the object waits rather than stalls.
    pub transient: bool,
}

impl Problem {
    /// Needs a change by a person: `Stalled`.
    pub fn stalled(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            transient: false,
        }
    }

    /// Clears by itself: `Ready=False`, `Reconciling`.
    pub fn waiting(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            transient: true,
        }
    }
}
