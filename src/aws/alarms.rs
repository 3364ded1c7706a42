//! CloudWatch alarm reads, in the project's own types: one batched
//! DescribeAlarms per account and region per poll, for the health gates of
//! a StackDeployment.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{AwsResult, AwsTarget};

/// A CloudWatch alarm state (`StateValue`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlarmStateValue {
    Ok,
    Alarm,
    InsufficientData,
}

/// One alarm as DescribeAlarms reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlarmState {
    pub name: String,
    pub state: AlarmStateValue,
    /// `StateReason`.
    pub reason: String,
    /// `StateUpdatedTimestamp`.
    pub updated: DateTime<Utc>,
}

/// One state change of an alarm (a `StateUpdate` history item).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlarmChange {
    /// The item's `Timestamp`.
    pub at: DateTime<Utc>,
    /// From `HistoryData` (`None` when it cannot be read).
    pub from: Option<AlarmStateValue>,
    pub to: Option<AlarmStateValue>,
    /// `HistorySummary`, e.g. "Alarm updated from OK to ALARM".
    pub summary: String,
}

impl AlarmChange {
    /// The alarm was in ALARM at either end of this change.
    pub fn touches_alarm(&self) -> bool {
        self.from == Some(AlarmStateValue::Alarm) || self.to == Some(AlarmStateValue::Alarm)
    }
}

/// The alarms of one account and region.
#[async_trait]
pub trait Alarms: Send + Sync {
    /// DescribeAlarms for `names` (metric and composite alarms), every page,
    /// in one batch. Names that do not exist are left out of the answer.
    async fn describe_alarms(&self, names: &[String]) -> AwsResult<Vec<AlarmState>>;

    /// DescribeAlarmHistory of `name`: its state changes since `since`,
    /// every page. Read only for an alarm that changed since a wave began,
    /// to see an ALARM that came and went between two polls.
    async fn state_changes(&self, name: &str, since: DateTime<Utc>) -> AwsResult<Vec<AlarmChange>>;
}

/// Parses a CloudWatch state name (`OK`, `ALARM`, `INSUFFICIENT_DATA`).
pub fn parse_state(text: &str) -> Option<AlarmStateValue> {
    match text {
        "OK" => Some(AlarmStateValue::Ok),
        "ALARM" => Some(AlarmStateValue::Alarm),
        "INSUFFICIENT_DATA" => Some(AlarmStateValue::InsufficientData),
        _ => None,
    }
}

/// Gives the alarm reader of a target (account role + region).
pub trait AlarmsProvider: Send + Sync {
    fn alarms(&self, target: &AwsTarget) -> Arc<dyn Alarms>;
}

/// Counts every DescribeAlarms call in `stackpilot_aws_calls_total` and, when
/// a budget is given, spends a token of the target's account and region first.
pub struct CountedAlarms {
    pub inner: Arc<dyn AlarmsProvider>,
    pub metrics: Arc<crate::runtime::metrics::Metrics>,
    pub budget: Option<Arc<super::budget::BudgetProvider>>,
}

struct Counted {
    inner: Arc<dyn Alarms>,
    metrics: Arc<crate::runtime::metrics::Metrics>,
    budget: Option<(Arc<super::budget::BudgetProvider>, AwsTarget)>,
}

#[async_trait]
impl Alarms for Counted {
    async fn describe_alarms(&self, names: &[String]) -> AwsResult<Vec<AlarmState>> {
        if let Some((budget, target)) = &self.budget {
            budget.wait_for_token(target).await;
        }
        let result = self.inner.describe_alarms(names).await;
        super::instrumented::count_call(&self.metrics, super::Action::DescribeAlarms, &result);
        result
    }

    async fn state_changes(&self, name: &str, since: DateTime<Utc>) -> AwsResult<Vec<AlarmChange>> {
        if let Some((budget, target)) = &self.budget {
            budget.wait_for_token(target).await;
        }
        let result = self.inner.state_changes(name, since).await;
        super::instrumented::count_call(&self.metrics, super::Action::DescribeAlarmHistory, &result);
        result
    }
}

impl AlarmsProvider for CountedAlarms {
    fn alarms(&self, target: &AwsTarget) -> Arc<dyn Alarms> {
        Arc::new(Counted {
            inner: self.inner.alarms(target),
            metrics: self.metrics.clone(),
            budget: self.budget.clone().map(|b| (b, target.clone())),
        })
    }
}
