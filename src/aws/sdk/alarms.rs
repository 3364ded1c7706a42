//! [`SdkAlarms`]: CloudWatch DescribeAlarms over the SDK, with the same
//! credentials (the target's role assumed on top of the operator's own),
//! endpoint and retry bounds as CloudFormation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_config::Region;
use aws_sdk_cloudwatch::types::{AlarmType, HistoryItemType, ScanBy, StateValue};
use chrono::{DateTime, Utc};

use crate::aws::alarms::{AlarmChange, AlarmState, AlarmStateValue, Alarms, AlarmsProvider, parse_state};
use crate::aws::{AwsResult, AwsTarget};

use super::{SdkProvider, cache_key, map_error};

/// DescribeAlarms takes at most 100 names per call.
const NAMES_PER_CALL: usize = 100;

/// One cached CloudWatch client per account and region.
pub struct SdkAlarms {
    provider: Arc<SdkProvider>,
    clients: Mutex<HashMap<AwsTarget, Arc<SdkAlarmClient>>>,
}

impl SdkAlarms {
    pub fn new(provider: Arc<SdkProvider>) -> Self {
        Self {
            provider,
            clients: Mutex::new(HashMap::new()),
        }
    }
}

impl AlarmsProvider for SdkAlarms {
    fn alarms(&self, target: &AwsTarget) -> Arc<dyn Alarms> {
        let target = &cache_key(target);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(target) {
            return client.clone();
        }
        let region = Region::new(target.region.clone());
        let mut config = aws_sdk_cloudwatch::config::Builder::from(self.provider.base_config()).region(region.clone());
        if let Some(url) = &self.provider.endpoint_url {
            config = config.endpoint_url(url);
        }
        if let Some(credentials) = self.provider.role_credentials(target, region) {
            config = config.credentials_provider(credentials);
        }
        let client = Arc::new(SdkAlarmClient {
            client: aws_sdk_cloudwatch::Client::from_conf(config.build()),
        });
        clients.insert(target.clone(), client.clone());
        client
    }
}

pub struct SdkAlarmClient {
    client: aws_sdk_cloudwatch::Client,
}

#[async_trait]
impl Alarms for SdkAlarmClient {
    async fn describe_alarms(&self, names: &[String]) -> AwsResult<Vec<AlarmState>> {
        let mut found = Vec::new();
        for batch in names.chunks(NAMES_PER_CALL) {
            let mut token = None;
            loop {
                let answer = self
                    .client
                    .describe_alarms()
                    .set_alarm_names(Some(batch.to_vec()))
                    .alarm_types(AlarmType::MetricAlarm)
                    .alarm_types(AlarmType::CompositeAlarm)
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(map_error)?;
                for alarm in answer.metric_alarms() {
                    found.push(state(
                        alarm.alarm_name(),
                        alarm.state_value(),
                        alarm.state_reason(),
                        alarm.state_updated_timestamp(),
                    ));
                }
                for alarm in answer.composite_alarms() {
                    found.push(state(
                        alarm.alarm_name(),
                        alarm.state_value(),
                        alarm.state_reason(),
                        alarm.state_updated_timestamp(),
                    ));
                }
                token = answer.next_token().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
        }
        Ok(found)
    }

    async fn state_changes(&self, name: &str, since: DateTime<Utc>) -> AwsResult<Vec<AlarmChange>> {
        // Newest first, until older than `since`. No StartDate: LocalStack
        // answers 500 to it (it compares naive and aware datetimes).
        let mut changes = Vec::new();
        let mut token = None;
        loop {
            let answer = self
                .client
                .describe_alarm_history()
                .alarm_name(name)
                .history_item_type(HistoryItemType::StateUpdate)
                .scan_by(ScanBy::TimestampDescending)
                .set_next_token(token)
                .send()
                .await
                .map_err(map_error)?;
            let mut older = false;
            for item in answer.alarm_history_items() {
                let at = item.timestamp().map(utc).unwrap_or_default();
                if at < since {
                    older = true;
                    continue;
                }
                changes.push(change(
                    at,
                    item.history_data(),
                    item.history_summary().unwrap_or_default(),
                ));
            }
            token = answer.next_token().map(str::to_string);
            if token.is_none() || older {
                break;
            }
        }
        Ok(changes)
    }
}

/// A `StateUpdate` item: the states from its `HistoryData` JSON
/// (`oldState.stateValue`, `newState.stateValue`).
fn change(at: DateTime<Utc>, data: Option<&str>, summary: &str) -> AlarmChange {
    let data: serde_json::Value = data.and_then(|d| serde_json::from_str(d).ok()).unwrap_or_default();
    let state = |end: &str| data[end]["stateValue"].as_str().and_then(parse_state);
    AlarmChange {
        at,
        from: state("oldState"),
        to: state("newState"),
        summary: summary.to_string(),
    }
}

fn utc(t: &aws_sdk_cloudwatch::primitives::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos()).unwrap_or_default()
}

fn state(
    name: Option<&str>,
    value: Option<&StateValue>,
    reason: Option<&str>,
    updated: Option<&aws_sdk_cloudwatch::primitives::DateTime>,
) -> AlarmState {
    AlarmState {
        name: name.unwrap_or_default().to_string(),
        state: match value {
            Some(StateValue::Ok) => AlarmStateValue::Ok,
            Some(StateValue::Alarm) => AlarmStateValue::Alarm,
            _ => AlarmStateValue::InsufficientData,
        },
        reason: reason.unwrap_or_default().to_string(),
        updated: updated.map(utc).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_update_item_gives_both_states() {
        let data = r#"{"version":"1.0","oldState":{"stateValue":"ALARM","stateReason":"x"},"newState":{"stateValue":"OK","stateReason":"y"}}"#;
        let change = change(DateTime::default(), Some(data), "Alarm updated from ALARM to OK");
        assert_eq!(change.from, Some(AlarmStateValue::Alarm));
        assert_eq!(change.to, Some(AlarmStateValue::Ok));
        assert!(change.touches_alarm());
        let unreadable = super::change(DateTime::default(), Some("not json"), "?");
        assert_eq!((unreadable.from, unreadable.to), (None, None));
        assert!(!unreadable.touches_alarm());
    }
}
