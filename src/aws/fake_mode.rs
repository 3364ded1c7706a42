//! `stackpilot run --fake-aws`: the in-memory fake ([`super::fake`]) behind
//! the AWS trait instead of the SDK, for benchmarks and tests only (nothing
//! reaches AWS; stacks live in the operator's memory and vanish with it).
//! Unlike [`super::fake::FakeProvider`], it keeps no call log and no list
//! of targets, so a long run does not grow; fault rates throttle and fail a
//! fraction of all calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::fake::{FakeCloudFormation, FaultRates};
use super::{AwsTarget, CloudFormation, CloudFormationProvider, TemplateStore};

/// One fake per region, shared by every account.
pub struct FakeAws {
    faults: Option<FaultRates>,
    regions: Mutex<HashMap<String, Arc<FakeCloudFormation>>>,
}

impl FakeAws {
    /// `faults` applies to every region (each with its own sequence, seeded
    /// from `seed` and the region's position).
    pub fn new(faults: Option<FaultRates>) -> Self {
        Self {
            faults,
            regions: Mutex::new(HashMap::new()),
        }
    }

    fn region(&self, region: &str) -> Arc<FakeCloudFormation> {
        let mut regions = self.regions.lock().unwrap_or_else(|e| e.into_inner());
        let count = regions.len() as u64;
        regions
            .entry(region.to_string())
            .or_insert_with(|| {
                let fake = FakeCloudFormation::new(region);
                fake.record_calls(false);
                fake.set_fault_rates(self.faults.map(|f| FaultRates {
                    seed: f.seed.wrapping_add(count),
                    ..f
                }));
                Arc::new(fake)
            })
            .clone()
    }
}

impl CloudFormationProvider for FakeAws {
    fn client(&self, target: &AwsTarget) -> Arc<dyn CloudFormation> {
        self.region(&target.region)
    }

    fn template_store(&self, target: &AwsTarget) -> Arc<dyn TemplateStore> {
        self.region(&target.region)
    }
}
