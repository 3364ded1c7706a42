//! The desired stack: the Stack spec with every reference resolved. Built by
//! `inputs.rs` (IO), consumed by `decide.rs` (pure).

use std::fmt;

use crate::aws::{DeploymentMode, Parameter, StackOptions, TemplateSource};

use super::names::Fingerprint;

/// A resolved parameter. Values from Secrets are marked so they are never
/// printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ResolvedParameter {
    pub name: String,
    pub value: String,
    pub secret: bool,
}

impl fmt::Debug for ResolvedParameter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = if self.secret { "<redacted>" } else { self.value.as_str() };
        f.debug_struct("ResolvedParameter")
            .field("name", &self.name)
            .field("value", &value)
            .finish()
    }
}

/// Everything CloudFormation is asked to make the stack look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredStack {
    pub stack_name: String,
    pub template: TemplateSource,
    pub parameters: Vec<ResolvedParameter>,
    /// Tags (the user's plus ownership tags), capabilities, service role,
    /// notification topics and rollback triggers.
    pub options: StackOptions,
    /// Termination protection wanted on the stack (kept in sync directly,
    /// not through change sets).
    pub termination_protection: bool,
    /// Stack policy to set after each change (CloudFormation takes it
    /// through its own call).
    pub stack_policy: Option<String>,
    /// Where to upload a template too large to pass inline.
    pub upload: Option<TemplateUpload>,
    /// `RevertDrift` while a drift revert is pending.
    pub deployment_mode: Option<DeploymentMode>,
    /// The Flux artifact revision the template came from (`sourceRef`):
    /// recorded as the applied revision unless an owner sets one.
    pub source_revision: Option<String>,
    /// Changes when any input above changes, or when a reconcile is requested
    /// after a failure (see `inputs.rs`).
    pub fingerprint: String,
}

impl DesiredStack {
    /// Computes the fingerprint over every field CloudFormation sees, plus a
    /// retry nonce.
    pub fn seal(mut self, retry_nonce: &str) -> Self {
        let mut print = Fingerprint::default();
        print.field("name", &self.stack_name).template(&self.template);
        for p in &self.parameters {
            print.field("param", &p.name).field("value", &p.value);
        }
        let options = &self.options;
        for (k, v) in &options.tags {
            print.field("tag", k).field("tagvalue", v);
        }
        for c in &options.capabilities {
            print.field("capability", c);
        }
        print.field("role", options.role_arn.as_deref().unwrap_or(""));
        for n in &options.notification_arns {
            print.field("notify", n);
        }
        for t in &options.rollback_triggers {
            print.field("trigger", &t.alarm_arn);
        }
        print.field(
            "monitor",
            &options.rollback_monitoring_minutes.unwrap_or(-1).to_string(),
        );
        print.field("policy", self.stack_policy.as_deref().unwrap_or(""));
        print.field("nonce", retry_nonce);
        self.fingerprint = print.finish();
        self
    }

    pub fn aws_parameters(&self) -> Vec<Parameter> {
        self.parameters
            .iter()
            .map(|p| Parameter {
                key: p.name.clone(),
                value: p.value.clone(),
            })
            .collect()
    }
}

/// An S3 location for a large template (bucket of the AwsAccount).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateUpload {
    pub bucket: String,
    pub key: String,
    pub region: String,
}
