//! Prometheus metrics. Labels are static categories, never object names or
//! error text, so cardinality stays bounded.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::conditions;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub kind: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
    pub category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    pub kind: &'static str,
    pub condition: &'static str,
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AwsCallLabels {
    pub operation: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AwsOperationLabels {
    pub operation: &'static str,
}

const CONDITIONS: &[&str] = &[
    conditions::READY,
    conditions::RECONCILING,
    conditions::STALLED,
    conditions::APPROVAL_REQUIRED,
    conditions::DRIFTED,
];
const STATUSES: &[&str] = &["True", "False", "Unknown"];

/// Every metric family, without the `stackpilot_` prefix. A family with
/// labels shows in `/metrics` only once it has a sample, so readers (the
/// tests, the bench) check a name against this list instead.
pub const FAMILIES: &[&str] = &[
    RECONCILES,
    RECONCILE_ERRORS,
    RECONCILE_DURATION_SECONDS,
    AWS_CALLS,
    AWS_CALL_DURATION_SECONDS,
    STATUS_WRITES,
    AWS_BUDGET_WAIT_SECONDS,
    AWS_SLOWDOWNS,
    LEADER,
    OBJECTS,
];
const RECONCILES: &str = "reconciles";
const RECONCILE_ERRORS: &str = "reconcile_errors";
const RECONCILE_DURATION_SECONDS: &str = "reconcile_duration_seconds";
const AWS_CALLS: &str = "aws_calls";
const AWS_CALL_DURATION_SECONDS: &str = "aws_call_duration_seconds";
const STATUS_WRITES: &str = "status_writes";
const AWS_BUDGET_WAIT_SECONDS: &str = "aws_budget_wait_seconds";
const AWS_SLOWDOWNS: &str = "aws_slowdowns";
const LEADER: &str = "leader";
const OBJECTS: &str = "objects";

/// Whether `sample` (e.g. `stackpilot_aws_calls_total`) belongs to one of
/// [`FAMILIES`].
pub fn is_known_sample(sample: &str) -> bool {
    let Some(rest) = sample.strip_prefix("stackpilot_") else {
        return false;
    };
    FAMILIES.iter().any(|family| {
        rest.strip_prefix(family)
            .is_some_and(|suffix| ["", "_total", "_bucket", "_sum", "_count", "_created"].contains(&suffix))
    })
}

pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Family<OutcomeLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Family<KindLabels, Histogram>,
    pub aws_calls: Family<AwsCallLabels, Counter>,
    /// How long AWS took to answer each call, by operation.
    pub aws_call_duration: Family<AwsOperationLabels, Histogram>,
    pub status_writes: Family<OutcomeLabels, Counter>,
    /// Seconds calls waited for the AWS call budget (all accounts and regions).
    pub aws_budget_wait_seconds: Counter<f64, AtomicU64>,
    /// Times an account and region was slowed down because AWS throttled.
    pub aws_slowdowns: Counter,
    /// 1 while this replica runs the controllers: it holds the leader Lease,
    /// or leader election is off.
    pub leader: Gauge,
    /// Objects by kind and condition status, counted from the controller's cache.
    pub objects: Family<ConditionLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("stackpilot");
        let reconciles = Family::<OutcomeLabels, Counter>::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        let aws_calls = Family::<AwsCallLabels, Counter>::default();
        let aws_call_duration = Family::<AwsOperationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        let status_writes = Family::<OutcomeLabels, Counter>::default();
        registry.register(RECONCILES, "Reconciles by kind and outcome", reconciles.clone());
        registry.register(
            RECONCILE_ERRORS,
            "Failed reconciles by kind and error category",
            reconcile_errors.clone(),
        );
        registry.register(
            RECONCILE_DURATION_SECONDS,
            "Reconcile duration",
            reconcile_duration.clone(),
        );
        registry.register(AWS_CALLS, "AWS API calls by operation and outcome", aws_calls.clone());
        registry.register(
            AWS_CALL_DURATION_SECONDS,
            "How long AWS took to answer, by operation (the call budget's wait not included)",
            aws_call_duration.clone(),
        );
        registry.register(
            STATUS_WRITES,
            "Status writes by kind; outcome=skipped when nothing changed",
            status_writes.clone(),
        );
        let aws_budget_wait_seconds = Counter::<f64, AtomicU64>::default();
        registry.register(
            AWS_BUDGET_WAIT_SECONDS,
            "Seconds AWS calls waited for the per-account-and-region call budget",
            aws_budget_wait_seconds.clone(),
        );
        let aws_slowdowns = Counter::default();
        registry.register(
            AWS_SLOWDOWNS,
            "Times an account and region's call rate was halved because AWS throttled",
            aws_slowdowns.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            LEADER,
            "1 while this replica runs the controllers (holds the leader Lease, or leader election is off)",
            leader.clone(),
        );
        let objects = Family::<ConditionLabels, Gauge>::default();
        registry.register(
            OBJECTS,
            "Objects by kind and the status (True, False, Unknown) of each condition",
            objects.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            aws_calls,
            aws_call_duration,
            status_writes,
            aws_budget_wait_seconds,
            aws_slowdowns,
            leader,
            objects,
        }
    }
}

impl Metrics {
    /// Sets the `objects` gauge of `kind` from the conditions of every object.
    /// Condition types and statuses outside the known set are not counted
    /// (labels stay static); a count that dropped to none reads 0.
    pub fn count_conditions<'a>(&self, kind: &'static str, objects: impl Iterator<Item = &'a [Condition]>) {
        let mut counts: HashMap<ConditionLabels, i64> = HashMap::new();
        for conditions in objects {
            for c in conditions {
                let known = |list: &[&'static str], v: &str| list.iter().copied().find(|k| *k == v);
                let (Some(condition), Some(status)) = (known(CONDITIONS, &c.type_), known(STATUSES, &c.status)) else {
                    continue;
                };
                *counts
                    .entry(ConditionLabels {
                        kind,
                        condition,
                        status,
                    })
                    .or_default() += 1;
            }
        }
        for condition in CONDITIONS {
            for status in STATUSES {
                let labels = ConditionLabels {
                    kind,
                    condition,
                    status,
                };
                let n = counts.get(&labels).copied().unwrap_or(0);
                self.objects.get_or_create(&labels).set(n);
            }
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(type_: &str, status: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "Test".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
        }
    }

    #[test]
    fn objects_are_counted_by_condition_and_a_vanished_count_reads_zero() {
        let metrics = Metrics::default();
        let a = vec![condition("Ready", "True"), condition("Drifted", "False")];
        let b = vec![condition("Ready", "False"), condition("Stalled", "True")];
        let c = vec![condition("Ready", "True"), condition("SomethingElse", "True")];
        metrics.count_conditions("Stack", [a.as_slice(), b.as_slice(), c.as_slice()].into_iter());
        let text = metrics.encode();
        assert!(
            text.contains(r#"stackpilot_objects{kind="Stack",condition="Ready",status="True"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"stackpilot_objects{kind="Stack",condition="Stalled",status="True"} 1"#));
        assert!(!text.contains("SomethingElse"));
        metrics.count_conditions("Stack", [a.as_slice()].into_iter());
        let text = metrics.encode();
        assert!(
            text.contains(r#"stackpilot_objects{kind="Stack",condition="Stalled",status="True"} 0"#),
            "{text}"
        );
    }
}
