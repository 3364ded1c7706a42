//! Prometheus metrics. Labels are static categories, never object names or
//! error text, so cardinality stays bounded.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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
pub struct AwsCallLabels {
    pub operation: &'static str,
    pub outcome: &'static str,
}

pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Family<OutcomeLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Family<KindLabels, Histogram>,
    pub aws_calls: Family<AwsCallLabels, Counter>,
    pub status_writes: Family<OutcomeLabels, Counter>,
    /// Seconds calls waited for the AWS call budget (all accounts and regions).
    pub aws_budget_wait_seconds: Counter<f64, AtomicU64>,
    /// Times an account and region was slowed down because AWS throttled.
    pub aws_slowdowns: Counter,
    /// 1 while this replica runs the controllers: it holds the leader Lease,
    /// or leader election is off.
    pub leader: Gauge,
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
        let status_writes = Family::<OutcomeLabels, Counter>::default();
        registry.register("reconciles", "Reconciles by kind and outcome", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Failed reconciles by kind and error category",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            reconcile_duration.clone(),
        );
        registry.register("aws_calls", "AWS API calls by operation and outcome", aws_calls.clone());
        registry.register(
            "status_writes",
            "Status writes by kind; outcome=skipped when nothing changed",
            status_writes.clone(),
        );
        let aws_budget_wait_seconds = Counter::<f64, AtomicU64>::default();
        registry.register(
            "aws_budget_wait_seconds",
            "Seconds AWS calls waited for the per-account-and-region call budget",
            aws_budget_wait_seconds.clone(),
        );
        let aws_slowdowns = Counter::default();
        registry.register(
            "aws_slowdowns",
            "Times an account and region's call rate was halved because AWS throttled",
            aws_slowdowns.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica runs the controllers (holds the leader Lease, or leader election is off)",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            aws_calls,
            status_writes,
            aws_budget_wait_seconds,
            aws_slowdowns,
            leader,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
