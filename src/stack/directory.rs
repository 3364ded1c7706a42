//! The shared view of settled stacks: one paged bulk DescribeStacks per
//! account and region per poll interval serves every steady Stack, so the
//! AWS cost of watching N settled stacks is ceil(N/100) calls, not N. Stacks
//! with an operation in flight are read one by one by the caller; a stack
//! stackpilot just wrote to is read directly until a newer bulk read lands.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::aws::{AccountScope, AwsResult, AwsTarget, CloudFormation, StackDescription};

struct Snapshot {
    /// When the bulk read started: anything written after this is not in it.
    started: Instant,
    stacks: HashMap<String, StackDescription>,
}

#[derive(Default)]
struct Shelf {
    snapshot: Option<Arc<Snapshot>>,
    /// Stacks written to, and when: not served from a snapshot older than that.
    written: HashMap<String, Instant>,
}

pub struct Directory {
    max_age: Duration,
    shelves: Mutex<HashMap<AccountScope, Arc<tokio::sync::Mutex<Shelf>>>>,
}

/// Where an answer came from (for tests and metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Snapshot,
    Direct,
}

impl Directory {
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            shelves: Mutex::new(HashMap::new()),
        }
    }

    fn shelf(&self, target: &AwsTarget) -> Arc<tokio::sync::Mutex<Shelf>> {
        let mut shelves = self.shelves.lock().expect("directory lock");
        shelves.entry(AccountScope::from(target)).or_default().clone()
    }

    /// The stack named `name`, from a fresh enough bulk read (made now, once
    /// for everyone waiting, if the last is too old), or read directly when
    /// the bulk read cannot vouch for it.
    pub async fn settled_stack(
        &self,
        target: &AwsTarget,
        cfn: &dyn CloudFormation,
        name: &str,
    ) -> AwsResult<(Option<StackDescription>, Source)> {
        let shelf = self.shelf(target);
        let snapshot = {
            // Holding the shelf's lock across the bulk read makes concurrent
            // reconciles of the same account and region wait for one read.
            let mut shelf = shelf.lock().await;
            let fresh = shelf
                .snapshot
                .as_ref()
                .filter(|s| s.started.elapsed() < self.max_age)
                .cloned();
            match fresh {
                Some(snapshot) => snapshot,
                None => {
                    let started = Instant::now();
                    let listing = cfn.describe_all_stacks().await?;
                    let stacks = listing.stacks.into_iter().map(|s| (s.stack_name.clone(), s)).collect();
                    let snapshot = Arc::new(Snapshot { started, stacks });
                    shelf.written.retain(|_, at| *at >= started);
                    shelf.snapshot = Some(snapshot.clone());
                    snapshot
                }
            }
        };
        let written_since = shelf
            .lock()
            .await
            .written
            .get(name)
            .is_some_and(|at| *at >= snapshot.started);
        match snapshot.stacks.get(name) {
            Some(stack) if !written_since => Ok((Some(stack.clone()), Source::Snapshot)),
            // Not in the listing (new, or deleted) or changed by us since.
            _ => Ok((cfn.describe_stack(name).await?, Source::Direct)),
        }
    }

    /// Records a write to `name`: until a bulk read that started later, it is
    /// read directly.
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
        let directory = Directory::new(Duration::from_secs(60));
        for i in 0..250 {
            // A different object (session) each time: still one shared read.
            let (stack, source) = directory
                .settled_stack(&target(&format!("o{i}")), &fake, &format!("s{i}"))
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
        let directory = Directory::new(Duration::from_millis(50));
        let t = target("x");
        directory.settled_stack(&t, &fake, "a").await.unwrap();
        directory.wrote(&t, "a").await;
        let (_, source) = directory.settled_stack(&t, &fake, "a").await.unwrap();
        assert_eq!(source, Source::Direct);
        tokio::time::sleep(Duration::from_millis(60)).await;
        let (_, source) = directory.settled_stack(&t, &fake, "a").await.unwrap();
        assert_eq!(
            source,
            Source::Snapshot,
            "a bulk read after the write vouches for it again"
        );
        let (missing, source) = directory.settled_stack(&t, &fake, "nope").await.unwrap();
        assert!(missing.is_none());
        assert_eq!(source, Source::Direct);
    }
}
