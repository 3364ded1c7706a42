//! The shared view of the stacks of an account and region: one paged bulk
//! DescribeStacks serves every Stack that needs a look, so the AWS cost of
//! watching N settled stacks is ceil(N/100) calls per poll interval, not N.
//!
//! Stacks with an operation in flight are served from it too, from a read
//! at most one in-flight poll old that started after our last write to
//! them; when too few of them wait for a fresh read to pay for its pages,
//! each is read on its own. A stack missing from the listing (deleted, or
//! not listed by the endpoint) is read directly, except for a Stack that
//! never reached AWS: absent from a fresh listing, it is absent. After a
//! restart the first bulk read serves every in-flight stack at once instead
//! of one DescribeStacks each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::aws::{AccountScope, AwsResult, AwsTarget, CloudFormation, StackDescription};

struct Snapshot {
    /// When the bulk read started: anything written after this is not in it.
    started: Instant,
    stacks: HashMap<String, StackDescription>,
    /// DescribeStacks calls it took.
    pages: u32,
}

#[derive(Default)]
struct Shelf {
    snapshot: Option<Arc<Snapshot>>,
    /// Stacks written to, and when the write returned: not served from a
    /// snapshot that started before that.
    written: HashMap<String, Instant>,
    /// Stacks read one by one since the snapshot was taken.
    direct: u32,
}

impl Shelf {
    /// Stacks in flight that want a newer snapshot than the one there is:
    /// the ones written to since it started, and the ones read directly.
    fn demand(&self) -> u32 {
        let since = self.snapshot.as_ref().map(|s| s.started);
        let written = self
            .written
            .values()
            .filter(|at| since.is_none_or(|s| **at >= s))
            .count();
        written as u32 + self.direct
    }
}

pub struct Directory {
    /// How old a snapshot may be for a settled stack (the poll interval).
    settled_age: Duration,
    /// How old a snapshot may be for a stack in flight (the in-flight poll).
    in_flight_age: Duration,
    shelves: Mutex<HashMap<AccountScope, Arc<tokio::sync::Mutex<Shelf>>>>,
}

/// Where an answer came from (for tests and metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Snapshot,
    Direct,
}

/// What the caller is looking at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Look {
    /// A settled stack, on its poll interval.
    Settled,
    /// A stack with an operation of ours in flight (or after a restart).
    InFlight,
    /// A Stack that never reached AWS: about to be created.
    New,
}

impl Directory {
    pub fn new(settled_age: Duration, in_flight_age: Duration) -> Self {
        Self {
            settled_age,
            in_flight_age,
            shelves: Mutex::new(HashMap::new()),
        }
    }

    fn shelf(&self, target: &AwsTarget) -> Arc<tokio::sync::Mutex<Shelf>> {
        let mut shelves = self.shelves.lock().expect("directory lock");
        shelves.entry(AccountScope::from(target)).or_default().clone()
    }

    /// The stack named `name`, from a fresh enough bulk read (made now, once
    /// for everyone waiting, when the last one is too old and worth its
    /// pages), or read directly when no bulk read can vouch for it.
    pub async fn stack(
        &self,
        target: &AwsTarget,
        cfn: &dyn CloudFormation,
        name: &str,
        look: Look,
    ) -> AwsResult<(Option<StackDescription>, Source)> {
        let max_age = match look {
            Look::Settled => self.settled_age,
            Look::InFlight | Look::New => self.in_flight_age.min(self.settled_age),
        };
        let shelf = self.shelf(target);
        let snapshot = {
            // Holding the shelf's lock across the bulk read makes concurrent
            // reconciles of the same account and region wait for one read.
            let mut shelf = shelf.lock().await;
            let written = shelf.written.get(name).copied();
            let usable = |s: &Snapshot| s.started.elapsed() < max_age && written.is_none_or(|at| s.started >= at);
            let current = shelf.snapshot.clone();
            // A settled stack renews a snapshot past the poll interval; one in
            // flight also when as many stacks want a newer one as it has pages.
            let worth_reading = current.as_ref().is_none_or(|s| {
                s.started.elapsed() >= self.settled_age || (look != Look::Settled && shelf.demand() >= s.pages.max(1))
            });
            match current {
                Some(snapshot) if usable(&snapshot) => Some(snapshot),
                _ if worth_reading => {
                    let started = Instant::now();
                    let listing = cfn.describe_all_stacks().await?;
                    tracing::debug!(
                        region = %target.region,
                        pages = listing.pages,
                        stacks = listing.stacks.len(),
                        waiting = shelf.demand(),
                        ms = started.elapsed().as_millis(),
                        "bulk read"
                    );
                    let stacks = listing.stacks.into_iter().map(|s| (s.stack_name.clone(), s)).collect();
                    let snapshot = Arc::new(Snapshot {
                        started,
                        stacks,
                        pages: listing.pages,
                    });
                    shelf.written.retain(|_, at| *at >= started);
                    shelf.direct = 0;
                    shelf.snapshot = Some(snapshot.clone());
                    usable(&snapshot).then_some(snapshot)
                }
                _ => {
                    shelf.direct += 1;
                    None
                }
            }
        };
        match snapshot.as_ref().map(|s| s.stacks.get(name)) {
            Some(Some(stack)) => Ok((Some(stack.clone()), Source::Snapshot)),
            // A Stack that never reached AWS, not in a listing this fresh:
            // there is nothing of ours to read.
            Some(None) if look == Look::New => Ok((None, Source::Snapshot)),
            // Not in the listing (new, or deleted), or no fresh listing.
            _ => Ok((cfn.describe_stack(name).await?, Source::Direct)),
        }
    }

    /// Records a write to `name` that has returned: until a bulk read that
    /// started later, it is not served from one.
    pub async fn wrote(&self, target: &AwsTarget, name: &str) {
        let shelf = self.shelf(target);
        shelf.lock().await.written.insert(name.to_string(), Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::fake::FakeCloudFormation;

    fn target(session: &str) -> AwsTarget {
        AwsTarget {
            region: "us-east-1".into(),
            role_arn: None,
            external_id: None,
            session_name: Some(session.into()),
            session_tags: Vec::new(),
        }
    }

    #[tokio::test]
    async fn one_bulk_read_serves_every_settled_stack_of_an_account_and_region() {
        let fake = FakeCloudFormation::new("us-east-1");
        for i in 0..250 {
            fake.put_stack(
                &format!("s{i}"),
                "Resources: {Q: {Type: AWS::SQS::Queue}}",
                &[],
                Default::default(),
            )
            .unwrap();
        }
        fake.reset_calls();
        let directory = Directory::new(Duration::from_secs(60), Duration::from_secs(5));
        for i in 0..250 {
            // A different object (session) each time: still one shared read.
            let (stack, source) = directory
                .stack(&target(&format!("o{i}")), &fake, &format!("s{i}"), Look::Settled)
                .await
                .unwrap();
            assert_eq!(stack.unwrap().stack_name, format!("s{i}"));
            assert_eq!(source, Source::Snapshot);
        }
        assert_eq!(fake.total_calls(), 3, "250 stacks in pages of 100: {:?}", fake.calls());
    }

    #[tokio::test]
    async fn a_stack_written_to_is_read_directly_until_a_newer_bulk_read() {
        let fake = FakeCloudFormation::new("us-east-1");
        fake.put_stack("a", "Resources: {Q: {Type: AWS::SQS::Queue}}", &[], Default::default())
            .unwrap();
        let directory = Directory::new(Duration::from_millis(50), Duration::from_millis(50));
        let t = target("x");
        directory.stack(&t, &fake, "a", Look::Settled).await.unwrap();
        directory.wrote(&t, "a").await;
        let (_, source) = directory.stack(&t, &fake, "a", Look::Settled).await.unwrap();
        assert_eq!(source, Source::Direct);
        tokio::time::sleep(Duration::from_millis(60)).await;
        let (_, source) = directory.stack(&t, &fake, "a", Look::Settled).await.unwrap();
        assert_eq!(
            source,
            Source::Snapshot,
            "a bulk read after the write vouches for it again"
        );
        let (missing, source) = directory.stack(&t, &fake, "nope", Look::Settled).await.unwrap();
        assert!(missing.is_none());
        assert_eq!(source, Source::Direct);
    }

    fn stacks(fake: &FakeCloudFormation, n: usize) {
        for i in 0..n {
            fake.put_stack(
                &format!("s{i}"),
                "Resources: {Q: {Type: AWS::SQS::Queue}}",
                &[],
                Default::default(),
            )
            .unwrap();
        }
        fake.reset_calls();
    }

    #[tokio::test]
    async fn after_a_start_one_bulk_read_serves_every_stack_in_flight() {
        let fake = FakeCloudFormation::new("us-east-1");
        stacks(&fake, 50);
        let directory = Directory::new(Duration::from_secs(300), Duration::from_secs(5));
        for i in 0..50 {
            let (stack, source) = directory
                .stack(&target(&format!("o{i}")), &fake, &format!("s{i}"), Look::InFlight)
                .await
                .unwrap();
            assert!(stack.is_some());
            assert_eq!(source, Source::Snapshot, "s{i}");
        }
        assert_eq!(fake.total_calls(), 1, "one page for 50 stacks: {:?}", fake.calls());
    }

    #[tokio::test]
    async fn stacks_in_flight_share_a_new_bulk_read_when_enough_wait_for_one() {
        let fake = FakeCloudFormation::new("us-east-1");
        stacks(&fake, 250);
        let directory = Directory::new(Duration::from_secs(300), Duration::from_secs(5));
        let t = target("x");
        directory.stack(&t, &fake, "s0", Look::Settled).await.unwrap();
        assert_eq!(fake.total_calls(), 3, "three pages");
        fake.reset_calls();
        // One stack written to: a new bulk read would cost three calls, one
        // DescribeStacks of it costs one.
        directory.wrote(&t, "s1").await;
        let (_, source) = directory.stack(&t, &fake, "s1", Look::InFlight).await.unwrap();
        assert_eq!((source, fake.total_calls()), (Source::Direct, 1));
        fake.reset_calls();
        // Two more written to (three want a newer listing): one bulk read
        // for the three.
        directory.wrote(&t, "s2").await;
        directory.wrote(&t, "s3").await;
        for name in ["s2", "s3", "s1"] {
            let (_, source) = directory.stack(&t, &fake, name, Look::InFlight).await.unwrap();
            assert_eq!(source, Source::Snapshot, "{name}");
        }
        assert_eq!(fake.total_calls(), 3, "{:?}", fake.calls());
    }

    #[tokio::test]
    async fn a_new_stack_missing_from_a_fresh_listing_is_not_read_again() {
        let fake = FakeCloudFormation::new("us-east-1");
        stacks(&fake, 1);
        let directory = Directory::new(Duration::from_secs(300), Duration::from_secs(5));
        let t = target("x");
        for i in 0..20 {
            let (found, _) = directory.stack(&t, &fake, &format!("new{i}"), Look::New).await.unwrap();
            assert!(found.is_none());
        }
        assert_eq!(fake.total_calls(), 1, "{:?}", fake.calls());
        // A stack in flight missing from the listing is read directly.
        let (found, source) = directory.stack(&t, &fake, "gone", Look::InFlight).await.unwrap();
        assert_eq!((found.is_none(), source), (true, Source::Direct));
    }
}
