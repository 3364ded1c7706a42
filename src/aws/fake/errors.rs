//! Errors as AWS words them, and the ways a test makes calls fail: rules
//! ([`ErrorInjection`]) and fixed rates drawn from a seeded sequence ([`FaultRates`]).

use crate::aws::{AwsError, AwsErrorKind};

use super::calls::{Action, Call};

/// A throttling error as the SDK mapping reports it.
pub fn throttling_error() -> AwsError {
    AwsError::new(AwsErrorKind::Throttled, "Throttling", "Rate exceeded")
}

/// A transient server error (HTTP 503) as the SDK mapping reports it.
pub fn server_error() -> AwsError {
    AwsError::new(
        AwsErrorKind::Transient,
        "ServiceUnavailable",
        "Service is unavailable (HTTP 503)",
    )
}

/// Next number in [0, 1) of a splitmix64 sequence.
pub(super) fn next_unit(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Fractions of ALL calls (every operation, every stack) that fail: one
/// number per call from a splitmix64 sequence started at `seed`, below
/// `throttled` -> [`throttling_error`], below `throttled + server_errors` ->
/// [`server_error`]. The same seed and call order, the same failures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultRates {
    pub throttled: f64,
    pub server_errors: f64,
    pub seed: u64,
}

/// Calls failed by [`FaultRates`] so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub throttled: usize,
    pub server_errors: usize,
}

/// Makes calls fail with a given error: once (default), `n` times, always, or
/// with a probability drawn from a seeded sequence (deterministic).
#[derive(Clone, Debug)]
pub struct ErrorInjection {
    operation: Option<Action>,
    stack: Option<String>,
    pub(super) error: AwsError,
    mode: InjectionMode,
}

#[derive(Clone, Debug)]
enum InjectionMode {
    Times(usize),
    Always,
    Probability { probability: f64, state: u64 },
}

impl ErrorInjection {
    /// Fails the next call of any operation on any stack, once.
    pub fn new(error: AwsError) -> Self {
        Self {
            operation: None,
            stack: None,
            error,
            mode: InjectionMode::Times(1),
        }
    }

    /// Only calls of this operation.
    pub fn on(mut self, operation: Action) -> Self {
        self.operation = Some(operation);
        self
    }

    /// Only calls naming this stack (by name, or by an id containing it).
    pub fn for_stack(mut self, stack: impl Into<String>) -> Self {
        self.stack = Some(stack.into());
        self
    }

    pub fn times(mut self, n: usize) -> Self {
        self.mode = InjectionMode::Times(n);
        self
    }

    pub fn always(mut self) -> Self {
        self.mode = InjectionMode::Always;
        self
    }

    /// Each matching call fails with `probability` (0..=1), drawn from a
    /// splitmix64 sequence started at `seed`: the same seed, the same calls.
    pub fn with_probability(mut self, probability: f64, seed: u64) -> Self {
        self.mode = InjectionMode::Probability {
            probability,
            state: seed,
        };
        self
    }

    pub(super) fn matches(&self, call: &Call) -> bool {
        self.operation.is_none_or(|op| op == call.operation)
            && self
                .stack
                .as_deref()
                .is_none_or(|name| call.stack == name || call.stack.contains(&format!("/{name}/")))
    }

    /// Whether this call fails; consumes one use.
    pub(super) fn fire(&mut self) -> bool {
        match &mut self.mode {
            InjectionMode::Times(0) => false,
            InjectionMode::Times(n) => {
                *n -= 1;
                true
            }
            InjectionMode::Always => true,
            InjectionMode::Probability { probability, state } => next_unit(state) < *probability,
        }
    }
}

pub(super) fn validation(message: impl Into<String>) -> AwsError {
    AwsError::new(AwsErrorKind::Validation, "ValidationError", message)
}

pub(super) fn stack_not_found(stack: &str) -> AwsError {
    AwsError::new(
        AwsErrorKind::NotFound,
        "ValidationError",
        format!("Stack [{stack}] does not exist"),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::fixtures::TEMPLATE;
    use super::super::{Action, ErrorInjection, FakeCloudFormation, FakeProvider, FaultRates, throttling_error};
    use crate::aws::{AwsErrorKind, AwsTarget, CloudFormation, CloudFormationProvider, StackState, TemplateStore};

    #[tokio::test]
    async fn events_read_from_a_cursor_and_errors_are_injected() {
        let fake = FakeCloudFormation::default();
        fake.put_stack("s1", TEMPLATE, &[], BTreeMap::new()).unwrap();
        let all = fake.stack_events("s1", None, 100).await.unwrap();
        let cursor = all[0].event_id.clone();
        assert_eq!(fake.stack_events("s1", Some(&cursor), 100).await.unwrap(), []);
        assert_eq!(fake.stack_events("s1", None, 2).await.unwrap().len(), 2);

        fake.set_status("s1", StackState::UpdateRollbackFailed, Some("out of band"));
        let newer = fake.stack_events("s1", Some(&cursor), 100).await.unwrap();
        assert_eq!(newer.len(), 1);
        assert_eq!(newer[0].status, "UPDATE_ROLLBACK_FAILED");

        fake.inject(
            ErrorInjection::new(throttling_error())
                .on(Action::DescribeStacks)
                .times(2),
        );
        for _ in 0..2 {
            let err = fake.describe_stack("s1").await.unwrap_err();
            assert_eq!(err.kind, AwsErrorKind::Throttled);
        }
        assert!(fake.describe_stack("s1").await.is_ok());

        // Probabilistic injection repeats exactly with the same seed.
        let pattern = |seed| {
            let fake = FakeCloudFormation::default();
            fake.inject(ErrorInjection::new(throttling_error()).with_probability(0.3, seed));
            futures::executor::block_on(async {
                let mut out = Vec::new();
                for _ in 0..50 {
                    out.push(fake.describe_stack("x").await.is_err());
                }
                out
            })
        };
        let a = pattern(7);
        assert_eq!(a, pattern(7));
        let failures = a.iter().filter(|f| **f).count();
        assert!((5..=25).contains(&failures), "{failures} of 50");
        assert_eq!(fake.call_count(Action::DescribeStacks), 3);
        assert_eq!(fake.calls()[0].operation, Action::DescribeStackEvents);
    }

    #[tokio::test]
    async fn fault_rates_throttle_and_fail_fractions_of_every_call() {
        let rates = FaultRates {
            throttled: 0.5,
            server_errors: 0.05,
            seed: 42,
        };
        let run = |rates: FaultRates| {
            let fake = FakeCloudFormation::default();
            fake.put_stack("s1", TEMPLATE, &[], BTreeMap::new()).unwrap();
            fake.set_fault_rates(Some(rates));
            futures::executor::block_on(async {
                let mut outcomes = Vec::new();
                for i in 0..2000 {
                    let result = match i % 4 {
                        0 => fake.describe_stack("s1").await.map(|_| ()),
                        1 => fake.get_template("s1").await.map(|_| ()),
                        2 => fake.stack_events("s1", None, 1).await.map(|_| ()),
                        _ => fake.put_template("b", "k", "x").await.map(|_| ()),
                    };
                    outcomes.push(result.err().map(|e| e.kind));
                }
                (outcomes, fake.fault_counts(), fake.total_calls())
            })
        };
        let (outcomes, counts, calls) = run(rates);
        assert_eq!(outcomes, run(rates).0, "deterministic");
        assert_ne!(outcomes, run(FaultRates { seed: 43, ..rates }).0);
        assert_eq!(calls, 2000);
        let throttled = outcomes.iter().filter(|o| **o == Some(AwsErrorKind::Throttled)).count();
        let transient = outcomes.iter().filter(|o| **o == Some(AwsErrorKind::Transient)).count();
        assert_eq!((counts.throttled, counts.server_errors), (throttled, transient));
        assert!((900..=1100).contains(&throttled), "{throttled}");
        assert!((60..=140).contains(&transient), "{transient}");
        // Every operation is hit.
        for op in 0..4 {
            assert!(
                outcomes.iter().skip(op).step_by(4).any(Option::is_some),
                "operation {op}"
            );
        }

        let provider = FakeProvider::new();
        provider.set_fault_rates(Some(FaultRates {
            throttled: 1.0,
            server_errors: 0.0,
            seed: 1,
        }));
        let target = AwsTarget {
            region: "eu-west-1".into(),
            role_arn: None,
            external_id: None,
            session_name: None,
            session_tags: Vec::new(),
        };
        let err = provider.client(&target).describe_stack("x").await.unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::Throttled);
        provider.set_fault_rates(None);
        assert!(provider.client(&target).describe_stack("x").await.is_ok());
        assert_eq!(provider.fault_counts().throttled, 1);
    }
}
