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

/// The alarms of one account and region.
#[async_trait]
pub trait Alarms: Send + Sync {
    /// DescribeAlarms for `names` (metric and composite alarms), every page,
    /// in one batch. Names that do not exist are left out of the answer.
    async fn describe_alarms(&self, names: &[String]) -> AwsResult<Vec<AlarmState>>;
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
