//! APIs an endpoint said it does not offer (HTTP 501: LocalStack has no
//! drift detection), per account and region: found out by one call, told
//! once (one Warning Event), and not asked for again until a back-off has
//! passed, instead of one failed call and one Event per stack.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::aws::{AccountScope, Action, AwsTarget};

/// How long an API said to be missing is not asked for again.
pub const BACKOFF: Duration = Duration::from_secs(3600);

#[derive(Default)]
pub struct Unsupported {
    /// Until when each API is taken as missing.
    until: Mutex<HashMap<(AccountScope, Action), Instant>>,
}

impl Unsupported {
    /// Why `action` is not asked for at `target` now, if it was found missing
    /// less than the back-off ago.
    pub fn missing(&self, target: &AwsTarget, action: Action) -> Option<String> {
        let until = self.until.lock().expect("unsupported lock");
        let left = until
            .get(&(AccountScope::from(target), action))?
            .checked_duration_since(Instant::now())?;
        Some(message(target, action, left))
    }

    /// Records that `target` answered `action` with "not offered"; returns
    /// the message to tell when this is news (nobody found it out before
    /// within the back-off), `None` when it was told already.
    pub fn found(&self, target: &AwsTarget, action: Action) -> Option<String> {
        let mut until = self.until.lock().expect("unsupported lock");
        let key = (AccountScope::from(target), action);
        let now = Instant::now();
        if until.get(&key).is_some_and(|at| *at > now) {
            return None;
        }
        until.insert(key, now + BACKOFF);
        Some(message(target, action, BACKOFF))
    }
}

fn message(target: &AwsTarget, action: Action, left: Duration) -> String {
    let account = target.role_arn.as_deref().unwrap_or("the operator's own credentials");
    format!(
        "{} is not available at this AWS endpoint (region {}, {account}); stackpilot asks again in {} min",
        action.as_str(),
        target.region,
        left.as_secs().div_ceil(60)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(region: &str) -> AwsTarget {
        AwsTarget {
            region: region.into(),
            role_arn: None,
            external_id: None,
            session_name: None,
            session_tags: Vec::new(),
        }
    }

    #[test]
    fn told_once_per_account_and_region() {
        let unsupported = Unsupported::default();
        let here = target("us-east-1");
        assert!(unsupported.missing(&here, Action::DetectStackDrift).is_none());
        let told = unsupported.found(&here, Action::DetectStackDrift).expect("news");
        assert!(
            told.contains("DetectStackDrift") && told.contains("us-east-1"),
            "{told}"
        );
        assert!(
            unsupported.found(&here, Action::DetectStackDrift).is_none(),
            "told already"
        );
        assert!(unsupported.missing(&here, Action::DetectStackDrift).is_some());
        assert!(
            unsupported
                .missing(&target("eu-west-1"), Action::DetectStackDrift)
                .is_none()
        );
        assert!(unsupported.missing(&here, Action::SetStackPolicy).is_none());
    }
}
