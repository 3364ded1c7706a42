//! The fake's own controls, outside the CloudFormation API: behaviour
//! knobs, failures, drift, the call log and direct state access (no call logged).

use std::collections::BTreeMap;

use crate::aws::{
    AwsError, AwsErrorKind, AwsResult, Parameter, ResourceDrift, StackDescription, StackEvent, StackState,
};

use super::calls::{Action, Call};
use super::errors::{ErrorInjection, FaultCounts, FaultRates};
use super::model::{Content, FakeStack, State};
use super::provider::FakeCloudFormation;
use super::template::parse_template;

impl FakeCloudFormation {
    // ---- behaviour knobs

    /// `describe_change_set` calls that still see CREATE_PENDING (default 1).
    pub fn set_change_set_delay(&self, describes: u32) {
        self.state().change_set_delay = describes;
    }

    /// `describe_stack` calls that see each in-progress phase (default 1; 0
    /// completes operations inside execute/delete, like moto).
    pub fn set_operation_steps(&self, describes: u32) {
        self.state().operation_steps = describes;
    }

    /// The `Replacement` reported when `logical_id` is modified (`True`,
    /// `False`, `Conditional`).
    pub fn set_replacement(&self, logical_id: &str, replacement: &str) {
        self.state()
            .replacements
            .insert(logical_id.to_string(), replacement.to_string());
    }

    /// Content for `TemplateSource::Url(url)`.
    pub fn put_template_url(&self, url: &str, body: &str) {
        self.state().templates_by_url.insert(url.to_string(), body.to_string());
    }

    /// Keep the full call log (default) or only the per-operation counts
    /// (for benchmarks with many calls).
    pub fn record_calls(&self, enabled: bool) {
        self.state().record_calls = enabled;
    }

    // ---- failure injection

    /// Creating `stack` fails: its first resource ends CREATE_FAILED with
    /// `reason`, then ROLLBACK_IN_PROGRESS -> ROLLBACK_COMPLETE.
    pub fn fail_create(&self, stack: &str, reason: &str) {
        self.state().failures.create.insert(stack.into(), reason.into());
    }

    /// Updating `stack` fails: the first changed resource ends UPDATE_FAILED,
    /// then UPDATE_ROLLBACK_IN_PROGRESS -> UPDATE_ROLLBACK_COMPLETE (previous
    /// template, parameters and tags restored).
    pub fn fail_update(&self, stack: &str, reason: &str) {
        self.state().failures.update.insert(stack.into(), reason.into());
    }

    /// A failed update of `stack` ends UPDATE_ROLLBACK_FAILED with `reason`.
    pub fn fail_update_rollback(&self, stack: &str, reason: &str) {
        self.state()
            .failures
            .update_rollback
            .insert(stack.into(), reason.into());
    }

    /// Deleting `stack` ends DELETE_FAILED: its last logical id (the first
    /// deleted) fails with `reason`, unless that resource is retained.
    pub fn fail_delete(&self, stack: &str, reason: &str) {
        self.state().failures.delete.insert(stack.into(), reason.into());
    }

    /// Creating or updating resource `logical_id` fails in any stack.
    pub fn fail_resource(&self, logical_id: &str, reason: &str) {
        self.state().failures.resources.insert(logical_id.into(), reason.into());
    }

    pub fn clear_failures(&self) {
        let mut state = self.state();
        state.drift_failures.clear();
        state.failures.create.clear();
        state.failures.update.clear();
        state.failures.update_rollback.clear();
        state.failures.delete.clear();
        state.failures.resources.clear();
    }

    /// Adds an error injection; rules are tried in the order added.
    pub fn inject(&self, injection: ErrorInjection) {
        self.state().injections.push(injection);
    }

    /// The next call of `operation` fails with `error`.
    pub fn fail_next(&self, operation: Action, error: AwsError) {
        self.inject(ErrorInjection::new(error).on(operation));
    }

    pub fn clear_injections(&self) {
        self.state().injections.clear();
    }

    /// Throttles and fails (HTTP 5xx) fixed fractions of every call from now
    /// on; `None` stops it. Applied before [`ErrorInjection`] rules.
    pub fn set_fault_rates(&self, rates: Option<FaultRates>) {
        self.state().faults = rates.map(|rates| (rates, rates.seed));
    }

    /// Calls failed by fault rates so far.
    pub fn fault_counts(&self) -> FaultCounts {
        self.state().fault_counts
    }

    // ---- drift

    /// Changes resource `drift.logical_id` of `stack` outside CloudFormation
    /// (`Modified` with differences, or `Deleted`); `InSync` undoes it. Seen
    /// by the next `detect_stack_drift` and by `RevertDrift` change sets. An
    /// empty `resource_type` / `None` physical id are filled in from the stack.
    pub fn set_resource_drift(&self, stack: &str, drift: ResourceDrift) {
        if let Some(s) = self.state().stack_mut(stack) {
            s.drift.insert(drift.logical_id.clone(), drift);
        }
    }

    /// Removes all drift of `stack` (not the latest detection's results).
    pub fn clear_resource_drift(&self, stack: &str) {
        if let Some(s) = self.state().stack_mut(stack) {
            s.drift.clear();
        }
    }

    /// `drift_detection_status` reads that still see DETECTION_IN_PROGRESS
    /// (default 1; 0 = complete at once).
    pub fn set_drift_detection_delay(&self, reads: u32) {
        self.state().drift_detection_delay = reads;
    }

    /// Drift detection runs of `stack` end DETECTION_FAILED with `reason`
    /// (the drifted resources found are still reported).
    pub fn fail_drift_detection(&self, stack: &str, reason: &str) {
        self.state().drift_failures.insert(stack.into(), reason.into());
    }

    /// The stack policy, without logging a call.
    pub fn stack_policy(&self, stack: &str) -> Option<String> {
        self.state().find_any(stack)?.policy.clone()
    }

    // ---- call log

    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Calls of `operation` since the last reset (counted even when the log
    /// is off, and including calls that failed by injection).
    pub fn call_count(&self, operation: Action) -> usize {
        self.state().call_counts.get(&operation).copied().unwrap_or(0)
    }

    pub fn total_calls(&self) -> usize {
        self.state().call_counts.values().sum()
    }

    pub fn reset_calls(&self) {
        let mut state = self.state();
        state.calls.clear();
        state.call_counts.clear();
    }

    // ---- direct state access (no call logged, no time passes)

    /// Creates a stack directly in CREATE_COMPLETE, as if created earlier.
    pub fn put_stack(
        &self,
        name: &str,
        template_body: &str,
        parameters: &[Parameter],
        tags: BTreeMap<String, String>,
    ) -> AwsResult<String> {
        let mut state = self.state();
        if state.stacks.contains_key(name) {
            return Err(AwsError::new(
                AwsErrorKind::AlreadyExists,
                "AlreadyExistsException",
                format!("Stack [{name}] already exists"),
            ));
        }
        let template = parse_template(template_body)?;
        let id = state.new_stack(name);
        // Given values, else the template's defaults.
        let parameters = template
            .parameters
            .iter()
            .filter_map(|(key, default)| {
                let given = parameters.iter().rev().find(|p| &p.key == key);
                let value = given.map(|p| p.value.clone()).or_else(|| default.clone())?;
                Some(Parameter {
                    key: key.clone(),
                    value,
                })
            })
            .collect();
        let content = Content {
            template: template.clone(),
            body: template_body.to_string(),
            parameters,
            tags,
            capabilities: Vec::new(),
            role_arn: None,
        };
        state.stack_status(name, StackState::CreateInProgress, Some("User Initiated"));
        if let Some(stack) = state.stacks.get_mut(name) {
            stack.content = Some(content);
        }
        for id in template.resources.keys() {
            state.resource_event(name, id, "CREATE_IN_PROGRESS", None);
            state.resource_event(name, id, "CREATE_COMPLETE", None);
        }
        if let Some(stack) = state.stacks.get_mut(name) {
            stack.outputs = State::outputs_for(name, &template);
        }
        state.stack_status(name, StackState::CreateComplete, None);
        Ok(id)
    }

    /// What `describe_stack` would return, without logging a call or letting
    /// time pass.
    pub fn stack(&self, stack: &str) -> Option<StackDescription> {
        self.state().find_any(stack).map(FakeStack::describe)
    }

    /// The template body the stack runs (after execute), if any.
    pub fn template_body(&self, stack: &str) -> Option<String> {
        let state = self.state();
        state.find_any(stack)?.content.as_ref().map(|c| c.body.clone())
    }

    /// All stack events, newest first, without logging a call.
    pub fn events(&self, stack: &str) -> Vec<StackEvent> {
        let state = self.state();
        state
            .find_any(stack)
            .map(|s| s.events.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// Live stack names, sorted.
    pub fn stack_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.state().stacks.keys().cloned().collect();
        names.sort();
        names
    }

    /// Out-of-band status change (ends any operation in flight).
    pub fn set_status(&self, stack: &str, status: StackState, reason: Option<&str>) {
        let mut state = self.state();
        let Some(name) = state.resolve(stack) else {
            return;
        };
        if let Some(s) = state.stacks.get_mut(&name) {
            s.in_flight = None;
        }
        state.stack_status(&name, status, reason);
    }

    /// Out-of-band tag change.
    pub fn set_tags(&self, stack: &str, tags: BTreeMap<String, String>) {
        if let Some(content) = self.state().stack_mut(stack).and_then(|s| s.content.as_mut()) {
            content.tags = tags;
        }
    }

    /// Out-of-band parameter change.
    pub fn set_parameters(&self, stack: &str, parameters: Vec<Parameter>) {
        if let Some(content) = self.state().stack_mut(stack).and_then(|s| s.content.as_mut()) {
            content.parameters = parameters;
        }
    }

    pub fn set_termination_protection(&self, stack: &str, enabled: bool) {
        if let Some(s) = self.state().stack_mut(stack) {
            s.termination_protection = enabled;
        }
    }

    /// Someone deleted the stack outside stackpilot.
    pub fn delete_out_of_band(&self, stack: &str) {
        let mut state = self.state();
        if let Some(name) = state.resolve(stack) {
            state.stack_status(&name, StackState::DeleteComplete, None);
            state.remove(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::FakeCloudFormation;
    use super::super::fixtures::TEMPLATE;
    use crate::aws::{CloudFormation, Parameter};

    #[tokio::test]
    async fn out_of_band_changes_show_up() {
        let fake = FakeCloudFormation::default();
        fake.put_stack("s1", TEMPLATE, &[], BTreeMap::new()).unwrap();
        fake.set_tags("s1", BTreeMap::from([("x".into(), "y".into())]));
        fake.set_parameters(
            "s1",
            vec![Parameter {
                key: "Env".into(),
                value: "hacked".into(),
            }],
        );
        let stack = fake.describe_stack("s1").await.unwrap().unwrap();
        assert_eq!(stack.tags.len(), 1);
        assert_eq!(stack.parameters[0].value, "hacked");
        fake.delete_out_of_band("s1");
        assert_eq!(fake.describe_stack("s1").await.unwrap(), None);
        assert_eq!(fake.stack_names(), Vec::<String>::new());
    }
}
