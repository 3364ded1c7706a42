//! Per-object exponential backoff with jitter for failed reconciles (kube's
//! controller has none built in), keyed by kind and object so that a
//! StackDeployment `ns/name` never shares the count of the Stack `ns/name`.
//! A success resets the object's count.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<(&'static str, String), u32>>,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Records a failure of object `key` of `kind` and returns how long to wait.
    pub fn fail(&self, kind: &'static str, key: &str) -> Duration {
        let mut failures = self.failures.lock().expect("backoff lock");
        let count = failures.entry((kind, key.to_string())).or_insert(0);
        *count = count.saturating_add(1);
        let delay = delay(self.base, self.max, *count);
        jitter(delay, rand::random::<f64>())
    }

    pub fn succeed(&self, kind: &'static str, key: &str) {
        self.failures
            .lock()
            .expect("backoff lock")
            .remove(&(kind, key.to_string()));
    }
}

/// `base * 2^(failures-1)`, capped.
pub fn delay(base: Duration, max: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
    base.saturating_mul(factor).min(max)
}

/// Spreads `delay` over [0.8, 1.2) so objects that failed together do not
/// retry together. `unit` is a random number in [0, 1).
pub fn jitter(delay: Duration, unit: f64) -> Duration {
    delay.mul_f64(0.8 + 0.4 * unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_and_caps() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        let delays: Vec<u64> = (1..=8).map(|n| delay(base, max, n).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(delay(base, max, u32::MAX), max);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let d = Duration::from_secs(10);
        assert_eq!(jitter(d, 0.0), Duration::from_secs(8));
        assert!(jitter(d, 0.999) < Duration::from_secs(12));
    }

    #[test]
    fn success_resets_the_count() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        backoff.fail("Stack", "a");
        backoff.fail("Stack", "a");
        assert!(backoff.fail("Stack", "a") >= Duration::from_millis(3200));
        backoff.succeed("Stack", "a");
        assert!(backoff.fail("Stack", "a") < Duration::from_millis(1300));
    }

    #[test]
    fn kinds_do_not_share_counts() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..5 {
            backoff.fail("Stack", "ns/a");
        }
        assert!(backoff.fail("StackDeployment", "ns/a") < Duration::from_millis(1300));
    }
}
