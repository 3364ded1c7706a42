//! One AWS call budget per account and region: every CloudFormation call
//! (retries included) first takes a token from the bucket of its account
//! (role) and region, so the operator never sends more than
//! `calls_per_second` (after a `burst`) to one account and region, however
//! many objects reconcile at once.
//!
//! This is the one place that retries CloudFormation calls: the SDK's
//! CloudFormation clients make one attempt per call, so every request on
//! the wire takes a token.
//!
//! Throttling slows the whole account and region down instead of failing
//! objects: a throttled call halves the bucket's rate (at most once per
//! [`SLOWDOWN_COOLDOWN`], since calls in flight together are throttled
//! together; never below [`FLOOR_FRACTION`] of the configured rate) and is
//! retried through the bucket, up to [`MAX_ATTEMPTS`] attempts. Successful
//! calls let the rate climb back linearly, from the floor to the full rate
//! in [`RECOVERY`] (additive increase, multiplicative decrease, as TCP does):
//! while AWS keeps throttling, the rate settles well below the budget.
//! A passing fault (5xx, a dropped connection, a timed-out attempt) is
//! retried through the bucket too, up to [`TRANSIENT_ATTEMPTS`] attempts, as
//! the SDK's standard mode would; writes are safe to repeat (client request
//! tokens, deterministic change set names). Other errors pass through.
//!
//! A retry storm cannot happen by construction: retries wait for tokens like
//! any call, so the call rate per account and region stays under the budget
//! whatever fails. Wrap this around [`super::instrumented::InstrumentedProvider`]
//! so that every attempt is counted. S3 uploads (`TemplateStore`) have their
//! own, much higher limits and pass through unbudgeted.
//!
//! The bucket ([`Bucket`]) is pure: it is given the time, and says how long
//! to wait; the decorator does the sleeping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{
    AccountScope, AwsErrorKind, AwsResult, AwsTarget, ChangeSetDescription, ChangeSetRequest, CloudFormation,
    CloudFormationProvider, DriftDetection, ResourceDrift, StackDescription, StackEvent, StackListing, TemplateStore,
};
use crate::runtime::metrics::Metrics;

/// Attempts of one call while AWS throttles it, the first included.
pub const MAX_ATTEMPTS: u32 = 6;
/// Attempts of one call while it meets passing faults, the first included.
pub const TRANSIENT_ATTEMPTS: u32 = 3;
/// Calls in flight at the same moment are throttled together: one slowdown
/// per this long.
pub const SLOWDOWN_COOLDOWN: Duration = Duration::from_secs(1);
/// The slowest the budget goes, as a fraction of the configured rate.
pub const FLOOR_FRACTION: f64 = 0.1;
/// How long successful calls take to bring the rate from the floor back to
/// the full budget.
pub const RECOVERY: Duration = Duration::from_secs(10);

/// The configured budget of one account and region.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BudgetSettings {
    /// Sustained calls per second.
    pub calls_per_second: f64,
    /// Calls that may go at once after a quiet period.
    pub burst: f64,
}

impl Default for BudgetSettings {
    /// 10 calls per second, bursts of 20.
    fn default() -> Self {
        Self {
            calls_per_second: 10.0,
            burst: 20.0,
        }
    }
}

/// The token bucket of one account and region, with its adaptive rate.
/// Reservations may take the bucket below zero: callers queue in the order
/// they asked, each told how long to wait.
#[derive(Clone, Debug)]
pub struct Bucket {
    max_rate: f64,
    burst: f64,
    rate: f64,
    tokens: f64,
    updated: Instant,
    last_slowdown: Option<Instant>,
    /// Since when the rate may recover (the last slowdown or success).
    recovering_since: Instant,
}

impl Bucket {
    pub fn new(settings: BudgetSettings, now: Instant) -> Self {
        let max_rate = settings.calls_per_second.max(0.01);
        let burst = settings.burst.max(1.0);
        Self {
            max_rate,
            burst,
            rate: max_rate,
            tokens: burst,
            updated: now,
            last_slowdown: None,
            recovering_since: now,
        }
    }

    /// The rate allowed now, in calls per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    fn floor(&self) -> f64 {
        self.max_rate * FLOOR_FRACTION
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.updated = self.updated.max(now);
    }

    /// Takes a token for one call; returns how long to wait before making it.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }

    /// Charges `calls` already made without waiting for them (the pages
    /// after the first of a listing): whoever comes next waits instead.
    pub fn charge(&mut self, calls: f64, now: Instant) {
        self.refill(now);
        self.tokens -= calls;
    }

    /// AWS throttled a call: halve the rate (once per cooldown) and drop the
    /// saved-up burst. Returns whether this slowed the bucket down.
    pub fn throttled(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens = self.tokens.min(0.0);
        let cooled = self
            .last_slowdown
            .is_none_or(|at| now.saturating_duration_since(at) >= SLOWDOWN_COOLDOWN);
        if !cooled {
            return false;
        }
        self.last_slowdown = Some(now);
        self.recovering_since = now;
        let slower = (self.rate / 2.0).max(self.floor());
        let slowed = slower < self.rate;
        self.rate = slower;
        slowed
    }

    /// A call went through: the rate climbs back for the time since the last
    /// slowdown or success.
    pub fn succeeded(&mut self, now: Instant) {
        self.refill(now);
        let elapsed = now.saturating_duration_since(self.recovering_since).as_secs_f64();
        let per_second = (self.max_rate - self.floor()) / RECOVERY.as_secs_f64();
        self.rate = (self.rate + per_second * elapsed).min(self.max_rate);
        self.recovering_since = self.recovering_since.max(now);
    }
}

/// Hands out clients that spend the budget of their account and region.
pub struct BudgetProvider {
    inner: Arc<dyn CloudFormationProvider>,
    settings: BudgetSettings,
    metrics: Arc<Metrics>,
    buckets: Mutex<HashMap<AccountScope, Arc<Mutex<Bucket>>>>,
}

impl BudgetProvider {
    pub fn new(inner: Arc<dyn CloudFormationProvider>, settings: BudgetSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            settings,
            metrics,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Spends a token of `target`'s account and region for a call made
    /// outside the CloudFormation trait (CloudWatch), waiting when needed.
    pub async fn wait_for_token(&self, target: &AwsTarget) {
        let wait = self
            .bucket(target)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reserve(Instant::now());
        if !wait.is_zero() {
            self.metrics.aws_budget_wait_seconds.inc_by(wait.as_secs_f64());
            tokio::time::sleep(wait).await;
        }
    }

    fn bucket(&self, target: &AwsTarget) -> Arc<Mutex<Bucket>> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets
            .entry(AccountScope::from(target))
            .or_insert_with(|| Arc::new(Mutex::new(Bucket::new(self.settings, Instant::now()))))
            .clone()
    }
}

impl CloudFormationProvider for BudgetProvider {
    fn client(&self, target: &AwsTarget) -> Arc<dyn CloudFormation> {
        Arc::new(Budgeted {
            inner: self.inner.client(target),
            bucket: self.bucket(target),
            metrics: self.metrics.clone(),
        })
    }

    fn template_store(&self, target: &AwsTarget) -> Arc<dyn TemplateStore> {
        self.inner.template_store(target)
    }
}

/// One client behind its account and region's bucket.
pub struct Budgeted {
    inner: Arc<dyn CloudFormation>,
    bucket: Arc<Mutex<Bucket>>,
    metrics: Arc<Metrics>,
}

impl Budgeted {
    fn with_bucket<T>(&self, f: impl FnOnce(&mut Bucket) -> T) -> T {
        f(&mut self.bucket.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Makes `call` within the budget, retrying it while AWS throttles or a
    /// passing fault hits it.
    async fn spend<T, F, Fut>(&self, call: F) -> AwsResult<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = AwsResult<T>>,
    {
        let mut attempt = 1;
        loop {
            let wait = self.with_bucket(|b| b.reserve(Instant::now()));
            if !wait.is_zero() {
                self.metrics.aws_budget_wait_seconds.inc_by(wait.as_secs_f64());
                tokio::time::sleep(wait).await;
            }
            let result = call().await;
            match &result {
                Err(error) if error.kind == AwsErrorKind::Throttled => {
                    if self.with_bucket(|b| b.throttled(Instant::now())) {
                        self.metrics.aws_slowdowns.inc();
                    }
                    if attempt < MAX_ATTEMPTS {
                        attempt += 1;
                        continue;
                    }
                }
                Err(error) if error.kind == AwsErrorKind::Transient && attempt < TRANSIENT_ATTEMPTS => {
                    attempt += 1;
                    continue;
                }
                Ok(_) => self.with_bucket(|b| b.succeeded(Instant::now())),
                Err(_) => {}
            }
            return result;
        }
    }
}

#[async_trait]
impl CloudFormation for Budgeted {
    async fn describe_stack(&self, stack: &str) -> AwsResult<Option<StackDescription>> {
        self.spend(|| self.inner.describe_stack(stack)).await
    }

    async fn create_change_set(&self, request: &ChangeSetRequest) -> AwsResult<String> {
        self.spend(|| self.inner.create_change_set(request)).await
    }

    async fn describe_change_set(&self, stack: &str, name: &str) -> AwsResult<Option<ChangeSetDescription>> {
        self.spend(|| self.inner.describe_change_set(stack, name)).await
    }

    async fn execute_change_set(&self, stack: &str, name: &str, token: &str) -> AwsResult<()> {
        self.spend(|| self.inner.execute_change_set(stack, name, token)).await
    }

    async fn update_stack(&self, request: &ChangeSetRequest) -> AwsResult<()> {
        self.spend(|| self.inner.update_stack(request)).await
    }

    async fn delete_change_set(&self, stack: &str, name: &str) -> AwsResult<()> {
        self.spend(|| self.inner.delete_change_set(stack, name)).await
    }

    async fn delete_stack(&self, stack: &str, token: &str, retain: &[String]) -> AwsResult<()> {
        self.spend(|| self.inner.delete_stack(stack, token, retain)).await
    }

    async fn stack_events(&self, stack: &str, after: Option<&str>, limit: usize) -> AwsResult<Vec<StackEvent>> {
        self.spend(|| self.inner.stack_events(stack, after, limit)).await
    }

    /// Each page is one call to AWS: the first waits for its token, the
    /// others are charged once the listing is read (later calls wait).
    async fn describe_all_stacks(&self) -> AwsResult<StackListing> {
        let listing = self.spend(|| self.inner.describe_all_stacks()).await?;
        let more = listing.pages.saturating_sub(1);
        self.with_bucket(|b| b.charge(f64::from(more), Instant::now()));
        Ok(listing)
    }

    async fn get_template(&self, stack: &str) -> AwsResult<String> {
        self.spend(|| self.inner.get_template(stack)).await
    }

    async fn update_termination_protection(&self, stack: &str, enabled: bool) -> AwsResult<()> {
        self.spend(|| self.inner.update_termination_protection(stack, enabled))
            .await
    }

    async fn set_stack_policy(&self, stack: &str, policy_body: &str) -> AwsResult<()> {
        self.spend(|| self.inner.set_stack_policy(stack, policy_body)).await
    }

    async fn get_stack_policy(&self, stack: &str) -> AwsResult<Option<String>> {
        self.spend(|| self.inner.get_stack_policy(stack)).await
    }

    async fn continue_update_rollback(&self, stack: &str, skip: &[String], token: &str) -> AwsResult<()> {
        self.spend(|| self.inner.continue_update_rollback(stack, skip, token))
            .await
    }

    async fn detect_stack_drift(&self, stack: &str) -> AwsResult<String> {
        self.spend(|| self.inner.detect_stack_drift(stack)).await
    }

    async fn drift_detection_status(&self, detection_id: &str) -> AwsResult<DriftDetection> {
        self.spend(|| self.inner.drift_detection_status(detection_id)).await
    }

    async fn resource_drifts(&self, stack: &str) -> AwsResult<Vec<ResourceDrift>> {
        self.spend(|| self.inner.resource_drifts(stack)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::fake::{Action, ErrorInjection, FakeProvider, server_error, throttling_error};
    use crate::aws::instrumented::InstrumentedProvider;
    use crate::runtime::metrics::AwsCallLabels;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn bucket(calls_per_second: f64, burst: f64) -> (Bucket, Instant) {
        let t0 = Instant::now();
        (
            Bucket::new(
                BudgetSettings {
                    calls_per_second,
                    burst,
                },
                t0,
            ),
            t0,
        )
    }

    #[test]
    fn calls_beyond_the_burst_queue_at_the_rate() {
        let (mut b, t0) = bucket(10.0, 2.0);
        assert_eq!(b.reserve(t0), Duration::ZERO);
        assert_eq!(b.reserve(t0), Duration::ZERO);
        assert_eq!(b.reserve(t0), ms(100));
        assert_eq!(b.reserve(t0), ms(200), "each caller queues behind the last");
        // A quiet second refills the burst, no more.
        let later = t0 + Duration::from_secs(2);
        assert_eq!(b.reserve(later), Duration::ZERO);
        assert_eq!(b.reserve(later), Duration::ZERO);
        assert_eq!(b.reserve(later), ms(100));
    }

    #[test]
    fn throttling_halves_the_rate_once_per_cooldown_down_to_the_floor() {
        let (mut b, t0) = bucket(10.0, 20.0);
        assert!(b.throttled(t0));
        assert_eq!(b.rate(), 5.0);
        // Calls in flight together are throttled together: one slowdown.
        assert!(!b.throttled(t0 + ms(300)));
        assert!(!b.throttled(t0 + ms(999)));
        assert_eq!(b.rate(), 5.0);
        assert!(b.throttled(t0 + ms(1000)));
        assert_eq!(b.rate(), 2.5);
        for s in 2..10 {
            b.throttled(t0 + Duration::from_secs(s));
        }
        assert_eq!(b.rate(), 1.0, "never below a tenth of the budget");
        assert!(!b.throttled(t0 + Duration::from_secs(11)), "at the floor already");
    }

    #[test]
    fn throttling_drops_the_saved_burst() {
        let (mut b, t0) = bucket(10.0, 20.0);
        b.throttled(t0);
        // Rate 5/s, no tokens left: the next call waits a fifth of a second.
        assert_eq!(b.reserve(t0), ms(200));
    }

    #[test]
    fn successes_bring_the_rate_back_gradually() {
        let (mut b, t0) = bucket(10.0, 20.0);
        for s in 0..5 {
            b.throttled(t0 + Duration::from_secs(s));
        }
        assert_eq!(b.rate(), 1.0);
        let t = t0 + Duration::from_secs(4);
        // From the floor (1/s) to the budget (10/s) in ten seconds: 0.9/s per second.
        b.succeeded(t + Duration::from_secs(1));
        assert!((b.rate() - 1.9).abs() < 1e-9, "{}", b.rate());
        b.succeeded(t + Duration::from_secs(1));
        assert!((b.rate() - 1.9).abs() < 1e-9, "no time, no recovery");
        b.succeeded(t + Duration::from_secs(6));
        assert!((b.rate() - 6.4).abs() < 1e-9, "{}", b.rate());
        b.succeeded(t + Duration::from_secs(60));
        assert_eq!(b.rate(), 10.0, "never above the budget");
    }

    #[test]
    fn under_steady_throttling_the_rate_stays_well_below_the_budget() {
        // Half the calls throttled, one call every 1/rate: the rate halves
        // once a second and climbs 0.9/s per second, settling near 2/s.
        let (mut b, t0) = bucket(10.0, 20.0);
        let mut t = t0;
        let mut rates = Vec::new();
        for call in 0..400 {
            t += Duration::from_secs_f64(1.0 / b.rate());
            if call % 2 == 0 {
                b.throttled(t);
            } else {
                b.succeeded(t);
            }
            rates.push(b.rate());
        }
        let late = &rates[200..];
        let mean = late.iter().sum::<f64>() / late.len() as f64;
        assert!((1.0..3.5).contains(&mean), "mean rate {mean}");
    }

    #[test]
    fn listing_pages_after_the_first_are_charged_to_later_calls() {
        let (mut b, t0) = bucket(10.0, 5.0);
        assert_eq!(b.reserve(t0), Duration::ZERO);
        b.charge(9.0, t0);
        // 5 - 1 - 9 = -5 tokens: the next caller waits for 6 at 10/s.
        assert_eq!(b.reserve(t0), ms(600));
    }

    fn target() -> AwsTarget {
        AwsTarget {
            region: "us-east-1".into(),
            role_arn: None,
            external_id: None,
            session_name: Some("a".into()),
            session_tags: Vec::new(),
        }
    }

    fn calls(metrics: &Metrics, operation: &'static str, outcome: &'static str) -> u64 {
        metrics
            .aws_calls
            .get_or_create(&AwsCallLabels { operation, outcome })
            .get()
    }

    fn budget(fakes: &Arc<FakeProvider>, metrics: &Arc<Metrics>) -> BudgetProvider {
        let instrumented = InstrumentedProvider {
            inner: fakes.clone(),
            metrics: metrics.clone(),
        };
        let settings = BudgetSettings {
            calls_per_second: 1000.0,
            burst: 10.0,
        };
        BudgetProvider::new(Arc::new(instrumented), settings, metrics.clone())
    }

    #[tokio::test]
    async fn throttled_calls_are_retried_within_the_budget_and_counted_each_time() {
        let fakes = Arc::new(FakeProvider::new());
        let metrics = Arc::new(Metrics::default());
        let provider = budget(&fakes, &metrics);
        let fake = fakes.region("us-east-1");
        fake.inject(
            ErrorInjection::new(throttling_error())
                .on(Action::DescribeStacks)
                .times(3),
        );
        let cf = provider.client(&target());
        assert_eq!(cf.describe_stack("nope").await.unwrap(), None);
        assert_eq!(calls(&metrics, "DescribeStacks", "throttled"), 3);
        assert_eq!(calls(&metrics, "DescribeStacks", "ok"), 1);
        assert_eq!(metrics.aws_slowdowns.get(), 1, "one slowdown per cooldown");

        // Another object of the same account and region shares the slowdown.
        let other = provider.client(&AwsTarget {
            session_name: Some("b".into()),
            session_tags: Vec::new(),
            ..target()
        });
        let shared = provider.bucket(&target()).lock().unwrap().rate();
        assert!(shared < 1000.0, "{shared}");
        assert!(Arc::ptr_eq(
            &provider.bucket(&target()),
            &provider.bucket(&AwsTarget {
                session_name: None,
                session_tags: Vec::new(),
                ..target()
            })
        ));

        // Throttled on every attempt: gives up after MAX_ATTEMPTS.
        fake.inject(ErrorInjection::new(throttling_error()).on(Action::GetTemplate).always());
        let error = other.get_template("x").await.unwrap_err();
        assert_eq!(error.kind, AwsErrorKind::Throttled);
        assert_eq!(calls(&metrics, "GetTemplate", "throttled"), u64::from(MAX_ATTEMPTS));

        // A passing server error is retried through the bucket: one 5xx,
        // then the call goes through.
        fake.inject(ErrorInjection::new(server_error()).on(Action::DescribeChangeSet));
        assert!(other.describe_change_set("s", "c").await.is_ok());
        assert_eq!(calls(&metrics, "DescribeChangeSet", "transient"), 1);
        assert_eq!(calls(&metrics, "DescribeChangeSet", "ok"), 1);

        // A fault that persists: given up after TRANSIENT_ATTEMPTS, for the
        // object's own backoff.
        fake.inject(
            ErrorInjection::new(server_error())
                .on(Action::DescribeStackEvents)
                .always(),
        );
        let error = other.stack_events("s", None, 10).await.unwrap_err();
        assert_eq!(error.kind, AwsErrorKind::Transient);
        assert_eq!(
            calls(&metrics, "DescribeStackEvents", "transient"),
            u64::from(TRANSIENT_ATTEMPTS)
        );
    }

    #[tokio::test]
    async fn accounts_and_regions_have_budgets_of_their_own() {
        let fakes = Arc::new(FakeProvider::new());
        let metrics = Arc::new(Metrics::default());
        let provider = budget(&fakes, &metrics);
        let east = provider.bucket(&target());
        let west = provider.bucket(&AwsTarget {
            region: "us-west-2".into(),
            ..target()
        });
        let role = provider.bucket(&AwsTarget {
            role_arn: Some("arn:aws:iam::1:role/x".into()),
            ..target()
        });
        assert!(!Arc::ptr_eq(&east, &west));
        assert!(!Arc::ptr_eq(&east, &role));
    }
}
