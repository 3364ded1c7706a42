//! [`FakeCloudFormation`] behind the CloudFormation and S3 traits, and
//! [`FakeProvider`], one fake per region.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde_json::Value;

use crate::aws::{
    AwsResult, AwsTarget, ChangeSetDescription, ChangeSetRequest, ChangeSetStatus, ChangeSetType, CloudFormation,
    CloudFormationProvider, DriftDetection, ResourceDrift, StackDescription, StackEvent, StackListing, StackState,
    TemplateStore,
};

use super::calls::Action;
use super::change_sets::{complete_change_set, describe_change_set};
use super::errors::{FaultCounts, FaultRates, stack_not_found, validation};
use super::model::{Failures, FakeStack, State};
use super::{DESCRIBE_STACKS_PAGE, RESOURCE_DRIFTS_PAGE};

/// In-memory CloudFormation for one region. See the module docs for the model.
#[derive(Debug)]
pub struct FakeCloudFormation {
    state: Mutex<State>,
}

impl Default for FakeCloudFormation {
    fn default() -> Self {
        Self::new("us-east-1")
    }
}

impl FakeCloudFormation {
    pub fn new(region: impl Into<String>) -> Self {
        Self {
            state: Mutex::new(State {
                region: region.into(),
                stacks: HashMap::new(),
                ids: HashMap::new(),
                deleted: HashMap::new(),
                templates_by_url: HashMap::new(),
                change_set_delay: 1,
                operation_steps: 1,
                replacements: HashMap::new(),
                failures: Failures {
                    create: HashMap::new(),
                    update: HashMap::new(),
                    update_rollback: HashMap::new(),
                    delete: HashMap::new(),
                    resources: HashMap::new(),
                },
                injections: Vec::new(),
                faults: None,
                fault_counts: FaultCounts::default(),
                detections: HashMap::new(),
                drift_detection_delay: 1,
                drift_failures: HashMap::new(),
                record_calls: true,
                calls: Vec::new(),
                call_counts: HashMap::new(),
                counter: 0,
            }),
        }
    }

    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn region(&self) -> String {
        self.state().region.clone()
    }
}

#[async_trait]
impl CloudFormation for FakeCloudFormation {
    async fn describe_stack(&self, stack: &str) -> AwsResult<Option<StackDescription>> {
        let mut state = self.state();
        state.enter(Action::DescribeStacks, stack, None)?;
        match state.resolve(stack) {
            Some(name) => {
                state.tick(&name);
                // The tick may have completed a delete.
                Ok(state.find_any(stack).and_then(|s| {
                    (s.status != StackState::DeleteComplete || stack.starts_with("arn:")).then(|| s.describe())
                }))
            }
            None if stack.starts_with("arn:") => Ok(state.deleted.get(stack).map(FakeStack::describe)),
            None => Ok(None),
        }
    }

    async fn create_change_set(&self, request: &ChangeSetRequest) -> AwsResult<String> {
        let mut state = self.state();
        state.enter(
            Action::CreateChangeSet,
            &request.stack_name,
            Some(&request.change_set_name),
        )?;
        state.create_change_set(request)
    }

    async fn describe_change_set(&self, stack: &str, change_set_name: &str) -> AwsResult<Option<ChangeSetDescription>> {
        let mut state = self.state();
        state.enter(Action::DescribeChangeSet, stack, Some(change_set_name))?;
        let Some(fake) = state.stack_mut(stack) else {
            return Ok(None);
        };
        let Some(cs) = fake.change_set_mut(change_set_name) else {
            return Ok(None);
        };
        if cs.status == ChangeSetStatus::CreatePending {
            if cs.pending_describes == 0 {
                complete_change_set(cs);
            } else {
                cs.pending_describes -= 1;
            }
        }
        let cs = cs.clone();
        Ok(Some(describe_change_set(fake, &cs)))
    }

    async fn execute_change_set(&self, stack: &str, change_set_name: &str, client_token: &str) -> AwsResult<()> {
        let mut state = self.state();
        state.enter(Action::ExecuteChangeSet, stack, Some(change_set_name))?;
        state.execute(stack, change_set_name, client_token)
    }

    /// Modelled as a change set made and run at once (named after the
    /// token); with nothing to change it does nothing, as AWS answers "No
    /// updates are to be performed".
    async fn update_stack(&self, request: &ChangeSetRequest) -> AwsResult<()> {
        let mut state = self.state();
        state.enter(Action::UpdateStack, &request.stack_name, None)?;
        let name = format!("update-{}", request.client_token);
        let internal = ChangeSetRequest {
            change_set_name: name.clone(),
            change_set_type: ChangeSetType::Update,
            ..request.clone()
        };
        state.create_change_set(&internal)?;
        let Some(fake) = state.stack_mut(&request.stack_name) else {
            return Err(stack_not_found(&request.stack_name));
        };
        let Some(cs) = fake.change_set_mut(&name) else {
            return Ok(());
        };
        if cs.status == ChangeSetStatus::CreatePending {
            complete_change_set(cs);
        }
        if cs.status == ChangeSetStatus::Failed {
            fake.change_sets.retain(|cs| cs.name != name);
            return Ok(());
        }
        state.execute(&request.stack_name, &name, &request.client_token)
    }

    async fn delete_change_set(&self, stack: &str, change_set_name: &str) -> AwsResult<()> {
        let mut state = self.state();
        state.enter(Action::DeleteChangeSet, stack, Some(change_set_name))?;
        if let Some(fake) = state.stack_mut(stack) {
            fake.change_sets
                .retain(|cs| cs.name != change_set_name && cs.id != change_set_name);
        }
        Ok(())
    }

    async fn delete_stack(&self, stack: &str, client_token: &str, retain_resources: &[String]) -> AwsResult<()> {
        let mut state = self.state();
        state.enter(Action::DeleteStack, stack, None)?;
        state.delete_stack(stack, client_token, retain_resources)
    }

    async fn stack_events(
        &self,
        stack: &str,
        after_event_id: Option<&str>,
        limit: usize,
    ) -> AwsResult<Vec<StackEvent>> {
        let mut state = self.state();
        state.enter(Action::DescribeStackEvents, stack, None)?;
        let fake = state.find_any(stack).ok_or_else(|| stack_not_found(stack))?;
        Ok(fake
            .events
            .iter()
            .rev()
            .take_while(|e| Some(e.event_id.as_str()) != after_event_id)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn describe_all_stacks(&self) -> AwsResult<StackListing> {
        let mut state = self.state();
        let mut names: Vec<String> = state.stacks.keys().cloned().collect();
        names.sort_unstable();
        let mut listing = StackListing::default();
        // At least one call, even for no stacks.
        for chunk in names
            .chunks(DESCRIBE_STACKS_PAGE)
            .chain(names.is_empty().then_some(&[][..]))
        {
            state.enter(Action::DescribeStacks, "", None)?;
            listing.pages += 1;
            let page = state.stacks_page(chunk);
            listing.stacks.extend(page);
        }
        Ok(listing)
    }

    async fn get_template(&self, stack: &str) -> AwsResult<String> {
        let mut state = self.state();
        state.enter(Action::GetTemplate, stack, None)?;
        let fake = state.find_any(stack).ok_or_else(|| stack_not_found(stack))?;
        match &fake.content {
            Some(content) => Ok(content.body.clone()),
            None => Err(validation(format!(
                "Stack [{}] has no template yet (status {})",
                fake.name, fake.status
            ))),
        }
    }

    async fn update_termination_protection(&self, stack: &str, enabled: bool) -> AwsResult<()> {
        let mut state = self.state();
        state.enter(Action::UpdateTerminationProtection, stack, None)?;
        state.live_mut(stack)?.termination_protection = enabled;
        Ok(())
    }

    async fn set_stack_policy(&self, stack: &str, policy_body: &str) -> AwsResult<()> {
        let mut state = self.state();
        state.enter(Action::SetStackPolicy, stack, None)?;
        let fake = state.live_mut(stack)?;
        if !serde_json::from_str::<Value>(policy_body).is_ok_and(|v| v.is_object()) {
            return Err(validation("Error validating stack policy: Invalid stack policy"));
        }
        fake.policy = Some(policy_body.to_string());
        Ok(())
    }

    async fn get_stack_policy(&self, stack: &str) -> AwsResult<Option<String>> {
        let mut state = self.state();
        state.enter(Action::GetStackPolicy, stack, None)?;
        Ok(state.live_mut(stack)?.policy.clone())
    }

    async fn continue_update_rollback(
        &self,
        stack: &str,
        resources_to_skip: &[String],
        client_token: &str,
    ) -> AwsResult<()> {
        let mut state = self.state();
        state.enter(Action::ContinueUpdateRollback, stack, None)?;
        state.continue_update_rollback(stack, resources_to_skip, client_token)
    }

    async fn detect_stack_drift(&self, stack: &str) -> AwsResult<String> {
        let mut state = self.state();
        state.enter(Action::DetectStackDrift, stack, None)?;
        state.detect_stack_drift(stack)
    }

    async fn drift_detection_status(&self, detection_id: &str) -> AwsResult<DriftDetection> {
        let mut state = self.state();
        let stack = state
            .detections
            .get(detection_id)
            .map(|d| d.stack.clone())
            .unwrap_or_default();
        state.enter(Action::DescribeStackDriftDetectionStatus, &stack, None)?;
        state.drift_detection_status(detection_id)
    }

    async fn resource_drifts(&self, stack: &str) -> AwsResult<Vec<ResourceDrift>> {
        let mut state = self.state();
        state.enter(Action::DescribeStackResourceDrifts, stack, None)?;
        let drifts = state.live_mut(stack)?.drift_results.clone();
        for _ in 1..drifts.len().div_ceil(RESOURCE_DRIFTS_PAGE) {
            state.enter(Action::DescribeStackResourceDrifts, stack, None)?;
        }
        Ok(drifts)
    }
}

#[async_trait]
impl TemplateStore for FakeCloudFormation {
    /// Stores `body` under its S3 URL, for `TemplateSource::Url`. Any bucket
    /// exists.
    async fn put_template(&self, bucket: &str, key: &str, body: &str) -> AwsResult<String> {
        let mut state = self.state();
        state.enter(Action::PutObject, "", None)?;
        let url = crate::aws::sdk::template_url(None, &state.region, bucket, key);
        state.templates_by_url.insert(url.clone(), body.to_string());
        Ok(url)
    }
}

/// Hands out one [`FakeCloudFormation`] per region and records every target
/// asked for.
#[derive(Debug, Default)]
pub struct FakeProvider {
    regions: Mutex<BTreeMap<String, Arc<FakeCloudFormation>>>,
    targets: Mutex<Vec<AwsTarget>>,
    faults: Mutex<Option<FaultRates>>,
}

/// A seed per region from one seed (FNV-1a of the region name mixed in).
fn region_seed(seed: u64, region: &str) -> u64 {
    region.bytes().fold(0xCBF2_9CE4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    }) ^ seed
}

impl FakeProvider {
    pub fn new() -> Self {
        Self::default()
    }

    /// The fake for `region` (created on first use), for setup and asserts.
    pub fn region(&self, region: &str) -> Arc<FakeCloudFormation> {
        let faults = *self.faults.lock().unwrap_or_else(|e| e.into_inner());
        let mut regions = self.regions.lock().unwrap_or_else(|e| e.into_inner());
        regions
            .entry(region.to_string())
            .or_insert_with(|| {
                let fake = FakeCloudFormation::new(region);
                fake.set_fault_rates(faults.map(|f| FaultRates {
                    seed: region_seed(f.seed, region),
                    ..f
                }));
                Arc::new(fake)
            })
            .clone()
    }

    /// [`FakeCloudFormation::set_fault_rates`] for every region, present and
    /// future (each region's sequence seeded from `seed` and its name).
    pub fn set_fault_rates(&self, rates: Option<FaultRates>) {
        *self.faults.lock().unwrap_or_else(|e| e.into_inner()) = rates;
        let regions = self.regions.lock().unwrap_or_else(|e| e.into_inner());
        for (region, fake) in regions.iter() {
            fake.set_fault_rates(rates.map(|f| FaultRates {
                seed: region_seed(f.seed, region),
                ..f
            }));
        }
    }

    /// Calls failed by fault rates, summed over regions.
    pub fn fault_counts(&self) -> FaultCounts {
        let regions = self.regions.lock().unwrap_or_else(|e| e.into_inner());
        regions.values().fold(FaultCounts::default(), |sum, fake| {
            let counts = fake.fault_counts();
            FaultCounts {
                throttled: sum.throttled + counts.throttled,
                server_errors: sum.server_errors + counts.server_errors,
            }
        })
    }

    /// Every target a client was asked for, in order.
    pub fn targets(&self) -> Vec<AwsTarget> {
        self.targets.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl CloudFormationProvider for FakeProvider {
    fn client(&self, target: &AwsTarget) -> Arc<dyn CloudFormation> {
        self.targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(target.clone());
        self.region(&target.region)
    }

    fn template_store(&self, target: &AwsTarget) -> Arc<dyn TemplateStore> {
        self.region(&target.region)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::fixtures::{TEMPLATE, request};
    use super::super::{Action, ErrorInjection, FakeCloudFormation, FakeProvider, throttling_error};
    use crate::aws::{
        AwsErrorKind, AwsTarget, ChangeSetType, CloudFormation, CloudFormationProvider, Parameter, StackState,
        TemplateSource,
    };

    #[tokio::test]
    async fn provider_hands_out_one_fake_per_region_and_records_targets() {
        let provider = FakeProvider::new();
        let target = |region: &str, role: Option<&str>| AwsTarget {
            region: region.into(),
            role_arn: role.map(str::to_string),
            external_id: None,
            session_name: None,
            session_tags: Vec::new(),
        };
        provider
            .region("eu-west-1")
            .put_stack("s1", TEMPLATE, &[], BTreeMap::new())
            .unwrap();
        let client = provider.client(&target("eu-west-1", Some("arn:aws:iam::1:role/a")));
        assert!(client.describe_stack("s1").await.unwrap().is_some());
        let other = provider.client(&target("us-east-1", None));
        assert!(other.describe_stack("s1").await.unwrap().is_none());
        assert_eq!(provider.targets().len(), 2);
        assert_eq!(provider.targets()[0].role_arn.as_deref(), Some("arn:aws:iam::1:role/a"));
    }

    #[tokio::test]
    async fn termination_protection_policy_and_template_round_trip() {
        let fake = FakeCloudFormation::default();
        fake.put_stack("s1", TEMPLATE, &[], BTreeMap::new()).unwrap();
        assert_eq!(fake.get_template("s1").await.unwrap(), TEMPLATE);
        assert_eq!(fake.get_stack_policy("s1").await.unwrap(), None);

        fake.update_termination_protection("s1", true).await.unwrap();
        assert!(fake.describe_stack("s1").await.unwrap().unwrap().termination_protection);
        let err = fake.delete_stack("s1", "d1", &[]).await.unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::Validation);
        assert!(err.message.contains("TerminationProtection"), "{err}");
        fake.update_termination_protection("s1", false).await.unwrap();

        let err = fake.set_stack_policy("s1", "not json").await.unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::Validation);
        let policy = r#"{"Statement":[{"Effect":"Deny","Action":"Update:Replace","Principal":"*","Resource":"*"}]}"#;
        fake.set_stack_policy("s1", policy).await.unwrap();
        assert_eq!(fake.get_stack_policy("s1").await.unwrap().as_deref(), Some(policy));
        assert_eq!(fake.stack_policy("s1").as_deref(), Some(policy));

        for err in [
            fake.get_template("nope").await.unwrap_err(),
            fake.update_termination_protection("nope", true).await.unwrap_err(),
            fake.set_stack_policy("nope", policy).await.unwrap_err(),
            fake.get_stack_policy("nope").await.unwrap_err(),
            fake.detect_stack_drift("nope").await.unwrap_err(),
            fake.resource_drifts("nope").await.unwrap_err(),
            fake.continue_update_rollback("nope", &[], "t").await.unwrap_err(),
        ] {
            assert_eq!(err.kind, AwsErrorKind::NotFound, "{err}");
        }

        // A deleted stack's template is still there by id.
        let id = fake.stack("s1").unwrap().stack_id;
        fake.set_operation_steps(0);
        fake.delete_stack("s1", "d2", &[]).await.unwrap();
        assert_eq!(fake.get_template(&id).await.unwrap(), TEMPLATE);
        assert_eq!(fake.call_count(Action::GetTemplate), 3);
    }

    #[tokio::test]
    async fn bulk_describe_pages_by_100_and_counts_each_page() {
        let fake = FakeCloudFormation::default();
        let empty = fake.describe_all_stacks().await.unwrap();
        assert_eq!((empty.stacks.len(), empty.pages), (0, 1));
        for i in 0..250 {
            let tags = BTreeMap::from([("n".to_string(), i.to_string())]);
            fake.put_stack(&format!("s{i:03}"), TEMPLATE, &[], tags).unwrap();
        }
        fake.delete_out_of_band("s249");
        fake.reset_calls();
        let all = fake.describe_all_stacks().await.unwrap();
        assert_eq!(all.pages, 3);
        assert_eq!(all.stacks.len(), 249, "deleted stacks are not listed");
        assert_eq!(fake.call_count(Action::DescribeStacks), 3);
        assert_eq!(all.stacks[7], fake.stack("s007").unwrap(), "full descriptions");
        assert_eq!(all.stacks[7].outputs[0].value, "s007-QueueUrl");
        assert_eq!(all.stacks[7].tags["n"], "7");

        // Time passes for stacks in flight, as with describe_stack.
        fake.set_change_set_delay(0);
        let mut update = request("s000", "u1", ChangeSetType::Update, TEMPLATE);
        update.parameters = vec![Parameter {
            key: "Env".into(),
            value: "prod".into(),
        }];
        fake.create_change_set(&update).await.unwrap();
        fake.execute_change_set("s000", "u1", "u1").await.unwrap();
        let statuses: Vec<StackState> = futures::future::join_all((0..2).map(|_| fake.describe_all_stacks()))
            .await
            .into_iter()
            .map(|listing| listing.unwrap().stacks[0].status.clone())
            .collect();
        assert_eq!(statuses, [StackState::UpdateInProgress, StackState::UpdateComplete]);

        // A failed page fails the read.
        fake.inject(
            ErrorInjection::new(throttling_error())
                .on(Action::DescribeStacks)
                .times(1),
        );
        assert_eq!(
            fake.describe_all_stacks().await.unwrap_err().kind,
            AwsErrorKind::Throttled
        );
    }

    #[tokio::test]
    async fn uploaded_templates_are_read_by_url() {
        let provider = FakeProvider::new();
        let target = AwsTarget {
            region: "eu-west-1".into(),
            role_arn: None,
            external_id: None,
            session_name: None,
            session_tags: Vec::new(),
        };
        let big = format!("{TEMPLATE}# {}\n", "x".repeat(crate::aws::MAX_TEMPLATE_BODY_BYTES));
        let url = provider
            .template_store(&target)
            .put_template("bucket", "stacks/s1 big.yaml", &big)
            .await
            .unwrap();
        assert_eq!(url, "https://bucket.s3.eu-west-1.amazonaws.com/stacks/s1%20big.yaml");
        let fake = provider.region("eu-west-1");
        let mut create = request("s1", "c1", ChangeSetType::Create, TEMPLATE);
        create.template = TemplateSource::Url(url);
        fake.create_change_set(&create).await.unwrap();
        assert_eq!(fake.call_count(Action::PutObject), 1);
        create.template = TemplateSource::Url("https://bucket.s3.eu-west-1.amazonaws.com/other".into());
        create.change_set_name = "c2".into();
        let err = fake.create_change_set(&create).await.unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::Validation);
    }
}
