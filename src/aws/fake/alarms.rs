//! In-memory CloudWatch alarms: tests set states per account (role) and
//! region, and count the DescribeAlarms calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::aws::alarms::{AlarmChange, AlarmState, AlarmStateValue, Alarms, AlarmsProvider};
use crate::aws::{AwsError, AwsErrorKind, AwsResult, AwsTarget};

/// (role ARN or `""` for the operator's own account, region, alarm name).
type Key = (String, String, String);

#[derive(Default)]
struct State {
    alarms: HashMap<Key, AlarmState>,
    /// State changes made by `set_alarm`, oldest first.
    history: HashMap<Key, Vec<AlarmChange>>,
    /// (role, region) whose reads fail.
    failing: HashMap<(String, String), String>,
    /// Alarms found in every account and region not given its own state.
    everywhere: HashMap<String, AlarmState>,
    calls: u64,
}

/// Alarms held in memory; cheap to clone (shared state).
#[derive(Clone, Default)]
pub struct FakeAlarms {
    state: Arc<Mutex<State>>,
}

fn account_of(target: &AwsTarget) -> String {
    target.role_arn.clone().unwrap_or_default()
}

impl FakeAlarms {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Creates or changes alarm `name` in the account of `role` (`None`: the
    /// operator's own) and `region`.
    pub fn set_alarm(&self, role: Option<&str>, region: &str, name: &str, state: AlarmStateValue, reason: &str) {
        let key = (
            role.unwrap_or_default().to_string(),
            region.to_string(),
            name.to_string(),
        );
        let alarm = AlarmState {
            name: name.to_string(),
            state,
            reason: reason.to_string(),
            updated: Utc::now(),
        };
        self.with(|s| {
            let from = s.alarms.get(&key).map(|a| a.state);
            if from != Some(state) {
                s.history.entry(key.clone()).or_default().push(AlarmChange {
                    at: alarm.updated,
                    from,
                    to: Some(state),
                    summary: format!("Alarm updated from {from:?} to {state:?}"),
                });
            }
            s.alarms.insert(key, alarm)
        });
    }

    /// Alarms `names` in state OK in every account and region (benchmarks
    /// with health gates: `--fake-aws-alarms`).
    pub fn everywhere(names: &[String]) -> Self {
        let fake = FakeAlarms::default();
        fake.with(|s| {
            for name in names {
                let alarm = AlarmState {
                    name: name.clone(),
                    state: AlarmStateValue::Ok,
                    reason: "fake: always OK".to_string(),
                    updated: Utc::now(),
                };
                s.everywhere.insert(name.clone(), alarm);
            }
        });
        fake
    }

    /// Makes every read of that account and region fail with `message`.
    pub fn fail_reads(&self, role: Option<&str>, region: &str, message: &str) {
        let key = (role.unwrap_or_default().to_string(), region.to_string());
        self.with(|s| s.failing.insert(key, message.to_string()));
    }

    /// DescribeAlarms and DescribeAlarmHistory calls so far.
    pub fn calls(&self) -> u64 {
        self.with(|s| s.calls)
    }
}

struct Reader {
    alarms: FakeAlarms,
    account: String,
    region: String,
}

#[async_trait]
impl Alarms for Reader {
    async fn describe_alarms(&self, names: &[String]) -> AwsResult<Vec<AlarmState>> {
        self.alarms.with(|s| {
            s.calls += 1;
            if let Some(message) = s.failing.get(&(self.account.clone(), self.region.clone())) {
                return Err(AwsError::new(
                    AwsErrorKind::AccessDenied,
                    "AccessDenied",
                    message.clone(),
                ));
            }
            Ok(names
                .iter()
                .filter_map(|n| {
                    s.alarms
                        .get(&(self.account.clone(), self.region.clone(), n.clone()))
                        .or_else(|| s.everywhere.get(n))
                        .cloned()
                })
                .collect())
        })
    }

    async fn state_changes(&self, name: &str, since: DateTime<Utc>) -> AwsResult<Vec<AlarmChange>> {
        self.alarms.with(|s| {
            s.calls += 1;
            let key = (self.account.clone(), self.region.clone(), name.to_string());
            Ok(s.history
                .get(&key)
                .into_iter()
                .flatten()
                .filter(|c| c.at >= since)
                .cloned()
                .collect())
        })
    }
}

impl AlarmsProvider for FakeAlarms {
    fn alarms(&self, target: &AwsTarget) -> Arc<dyn Alarms> {
        Arc::new(Reader {
            alarms: self.clone(),
            account: account_of(target),
            region: target.region.clone(),
        })
    }
}
