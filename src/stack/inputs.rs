//! Resolves a Stack spec into the desired stack: reads the template and
//! parameter values from the cluster and checks them locally. Every problem
//! becomes an `Problem` with a message for the user; values read from
//! Secrets are never put into a message.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use std::sync::Arc;

use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::account::tenancy::Grant;
use crate::api::{KeyRef, ParameterSource, Stack, StackParameter};
use crate::aws::{RollbackTrigger, StackOptions, TemplateSource};
use crate::runtime::conditions::{self, READY};
use crate::runtime::context::Shared;
use crate::runtime::problem::Problem;

use super::desired::{DesiredStack, ResolvedParameter, TemplateUpload};
use super::names::Fingerprint;
use super::names::{TAG_NAME, TAG_NAMESPACE, TAG_UID, default_stack_name, validate_stack_name};
use super::plan::RECONCILE_REQUESTED_AT;
use super::template;

/// The CloudFormation stack name this object uses.
pub fn stack_name(stack: &Stack) -> String {
    stack
        .spec
        .stack_name
        .clone()
        .unwrap_or_else(|| default_stack_name(&stack.namespace().unwrap_or_default(), &stack.name_any()))
}

/// Reads everything the spec refers to; `default_tags` come from the
/// AwsAccount (the Stack's own tags win). Other Stacks (dependencies) are
/// read from the shared cache, Secrets and ConfigMaps from the API server
/// (their contents are never cached).
pub async fn resolve(
    shared: &Shared,
    stacks: &Store<Stack>,
    stack: &Stack,
    grant: &Grant,
) -> Result<DesiredStack, Problem> {
    let default_tags = &grant.default_tags;
    let listed: Vec<String> = if grant.region_listed {
        vec![grant.region.clone()]
    } else {
        Vec::new()
    };
    super::regions::check(&stack.spec.region, &listed).map_err(|m| Problem::stalled("UnknownRegion", m))?;
    let namespace = stack.namespace().unwrap_or_default();
    let name = stack_name(stack);
    validate_stack_name(&name).map_err(|m| Problem::stalled("InvalidStackName", m))?;
    let reader = Reader {
        client: &shared.client,
        stacks,
        namespace: &namespace,
    };
    reader.check_dependencies(stack)?;
    let (template, from_file, source_revision) = match &stack.spec.template.source_ref {
        Some(source) => {
            let fetched = shared.sources.fetch(&shared.client, source, &namespace).await?;
            let from_file = crate::source::merge_parameters(fetched.parameters, &stack.spec.parameters);
            (
                TemplateSource::Body(fetched.template),
                Some(from_file),
                Some(fetched.revision),
            )
        }
        None => (reader.template(stack).await?, None, None),
    };
    let wanted = from_file.as_deref().unwrap_or(stack.spec.parameters.as_slice());
    let mut parameters = Vec::with_capacity(wanted.len());
    for parameter in wanted {
        parameters.push(reader.parameter(parameter).await?);
    }
    let capabilities: Vec<String> = stack.spec.capabilities.iter().map(|c| c.as_str().to_string()).collect();
    let mut upload = None;
    if let TemplateSource::Body(body) = &template {
        let bucket = grant.template_bucket.as_ref();
        check_template(body, &parameters, &capabilities, bucket.is_some())?;
        if let Some(bucket) = bucket.filter(|_| body.len() > template::MAX_INLINE_BYTES) {
            upload = Some(TemplateUpload {
                bucket: bucket.name.clone(),
                key: format!(
                    "{}{namespace}/{}/{}.template",
                    bucket.prefix.as_deref().unwrap_or(""),
                    stack.name_any(),
                    Fingerprint::default().field("body", body).finish()
                ),
                region: bucket.region.clone().unwrap_or_else(|| stack.spec.region.clone()),
            });
        }
    }
    let mut tags = crate::account::tenancy::merge_tags(default_tags, &stack.spec.tags);
    tags.insert(TAG_NAMESPACE.into(), namespace.clone());
    tags.insert(TAG_NAME.into(), stack.name_any());
    tags.insert(TAG_UID.into(), stack.uid().unwrap_or_default());
    let triggers = stack.spec.rollback_triggers.as_ref();
    let desired = DesiredStack {
        stack_name: name,
        template,
        parameters,
        options: StackOptions {
            tags,
            capabilities,
            role_arn: stack.spec.service_role_arn.clone(),
            notification_arns: stack.spec.notification_arns.clone(),
            rollback_triggers: triggers
                .map(|t| {
                    t.alarms
                        .iter()
                        .map(|a| RollbackTrigger { alarm_arn: a.clone() })
                        .collect()
                })
                .unwrap_or_default(),
            rollback_monitoring_minutes: triggers.and_then(|t| t.monitoring_time_in_minutes),
        },
        termination_protection: stack.spec.termination_protection,
        stack_policy: stack.spec.stack_policy.clone(),
        upload,
        deployment_mode: None,
        source_revision,
        fingerprint: String::new(),
    };
    let mut nonce = stack
        .annotations()
        .get(RECONCILE_REQUESTED_AT)
        .cloned()
        .unwrap_or_default();
    // Each repair of an out-of-band change needs a change set of its own.
    let repairs = stack.status.as_ref().map(|s| s.repairs).unwrap_or(0);
    if repairs > 0 {
        nonce.push_str(&format!("/repair-{repairs}"));
    }
    let mut desired = desired;
    // A pending drift revert is a change set of its own, in revert mode.
    let drift = stack.status.as_ref().and_then(|s| s.drift.as_ref());
    if let Some(drift) = drift.filter(|d| d.revert_pending) {
        let at = drift.checked_at.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
        nonce.push_str(&format!("/revert-{at}"));
        desired.deployment_mode = Some(crate::aws::DeploymentMode::RevertDrift);
    }
    Ok(desired.seal(&nonce))
}

/// Local template checks: size, syntax, parameters, capabilities.
fn check_template(
    body: &str,
    parameters: &[ResolvedParameter],
    capabilities: &[String],
    has_bucket: bool,
) -> Result<(), Problem> {
    if body.len() > template::MAX_URL_BYTES {
        return Err(Problem::stalled(
            "TemplateTooLarge",
            format!(
                "template is {} bytes, over CloudFormation's limit of {} bytes",
                body.len(),
                template::MAX_URL_BYTES
            ),
        ));
    }
    if body.len() > template::MAX_INLINE_BYTES && !has_bucket {
        return Err(Problem::stalled(
            "TemplateTooLarge",
            format!(
                "template is {} bytes, over the {} bytes CloudFormation accepts inline; give the AwsAccount a templateBucket so it can be uploaded, or use template.url",
                body.len(),
                template::MAX_INLINE_BYTES
            ),
        ));
    }
    let facts = template::parse(body).map_err(|m| Problem::stalled("InvalidTemplate", m))?;
    template::check_parameters(&facts, parameters.iter().map(|p| p.name.as_str()))
        .map_err(|m| Problem::stalled("InvalidParameters", m))?;
    let acknowledged = capabilities
        .iter()
        .any(|c| c == "CAPABILITY_IAM" || c == "CAPABILITY_NAMED_IAM");
    if template::needs_iam_capability(&facts) && !acknowledged {
        return Err(Problem::stalled(
            "InsufficientCapabilities",
            "the template creates IAM resources; add CAPABILITY_IAM (or CAPABILITY_NAMED_IAM for named ones) to spec.capabilities",
        ));
    }
    Ok(())
}

struct Reader<'a> {
    client: &'a Client,
    stacks: &'a Store<Stack>,
    namespace: &'a str,
}

impl Reader<'_> {
    async fn template(&self, stack: &Stack) -> Result<TemplateSource, Problem> {
        let spec = &stack.spec.template;
        if let Some(body) = &spec.body {
            return Ok(TemplateSource::Body(body.clone()));
        }
        if let Some(url) = &spec.url {
            return Ok(TemplateSource::Url(url.clone()));
        }
        if let Some(key_ref) = &spec.config_map_ref {
            return self.config_map_key(key_ref, "template").await.map(TemplateSource::Body);
        }
        Err(Problem::stalled("InvalidTemplate", "spec.template has no source"))
    }

    async fn parameter(&self, parameter: &StackParameter) -> Result<ResolvedParameter, Problem> {
        let resolved = |value: String, secret: bool| ResolvedParameter {
            name: parameter.name.clone(),
            value,
            secret,
        };
        if let Some(value) = &parameter.value {
            return Ok(resolved(value.clone(), false));
        }
        let what = format!("parameter {}", parameter.name);
        match &parameter.value_from {
            Some(ParameterSource {
                secret_key_ref: Some(key_ref),
                ..
            }) => self.secret_key(key_ref, &what).await.map(|v| resolved(v, true)),
            Some(ParameterSource {
                config_map_key_ref: Some(key_ref),
                ..
            }) => self.config_map_key(key_ref, &what).await.map(|v| resolved(v, false)),
            Some(ParameterSource {
                stack_output: Some(output),
                ..
            }) => self
                .stack_output(&output.stack, &output.output, &what)
                .map(|v| resolved(v, false)),
            _ => Err(Problem::stalled(
                "InvalidParameters",
                format!("{what} has neither value nor valueFrom"),
            )),
        }
    }

    async fn secret_key(&self, key_ref: &KeyRef, what: &str) -> Result<String, Problem> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), self.namespace);
        let secret = api.get_opt(&key_ref.name).await.map_err(|e| read_error(what, &e))?;
        let secret = secret
            .ok_or_else(|| Problem::waiting("SecretNotFound", format!("{what}: Secret {} not found", key_ref.name)))?;
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&key_ref.key))
            .map(|b| b.0.clone());
        let bytes = bytes.or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(&key_ref.key))
                .map(|s| s.clone().into_bytes())
        });
        let bytes = bytes.ok_or_else(|| {
            Problem::waiting(
                "SecretKeyNotFound",
                format!("{what}: Secret {} has no key {}", key_ref.name, key_ref.key),
            )
        })?;
        String::from_utf8(bytes).map_err(|_| {
            Problem::stalled(
                "InvalidParameters",
                format!("{what}: Secret {} key {} is not UTF-8 text", key_ref.name, key_ref.key),
            )
        })
    }

    async fn config_map_key(&self, key_ref: &KeyRef, what: &str) -> Result<String, Problem> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), self.namespace);
        let config_map = api.get_opt(&key_ref.name).await.map_err(|e| read_error(what, &e))?;
        let config_map = config_map.ok_or_else(|| {
            Problem::waiting(
                "ConfigMapNotFound",
                format!("{what}: ConfigMap {} not found", key_ref.name),
            )
        })?;
        config_map.data.and_then(|mut d| d.remove(&key_ref.key)).ok_or_else(|| {
            Problem::waiting(
                "ConfigMapKeyNotFound",
                format!("{what}: ConfigMap {} has no key {}", key_ref.name, key_ref.key),
            )
        })
    }

    fn cached(&self, name: &str) -> Option<Arc<Stack>> {
        self.stacks.get(&ObjectRef::new(name).within(self.namespace))
    }

    fn ready_stack(&self, name: &str, what: &str) -> Result<Arc<Stack>, Problem> {
        let other = self
            .cached(name)
            .ok_or_else(|| Problem::waiting("DependencyNotReady", format!("{what}: Stack {name} not found")))?;
        let status = other.status.clone().unwrap_or_default();
        let current = status.observed_generation == other.metadata.generation;
        if !current || !conditions::is_true(&status.conditions, READY) {
            return Err(Problem::waiting(
                "DependencyNotReady",
                format!("{what}: Stack {name} is not Ready yet"),
            ));
        }
        Ok(other)
    }

    fn stack_output(&self, stack: &str, output: &str, what: &str) -> Result<String, Problem> {
        let other = self.ready_stack(stack, what)?;
        let outputs: BTreeMap<String, String> = other.status.clone().map(|s| s.outputs).unwrap_or_default();
        outputs.get(output).cloned().ok_or_else(|| {
            Problem::waiting(
                "DependencyNotReady",
                format!("{what}: Stack {stack} has no output {output}"),
            )
        })
    }

    fn check_dependencies(&self, stack: &Stack) -> Result<(), Problem> {
        self.check_cycle(stack)?;
        for dependency in &stack.spec.depends_on {
            self.ready_stack(&dependency.name, "dependsOn")?;
        }
        Ok(())
    }

    /// Walks the dependency graph (dependsOn and stackOutput references)
    /// from this Stack; reaching it again is a cycle, reported by name.
    fn check_cycle(&self, stack: &Stack) -> Result<(), Problem> {
        let me = stack.name_any();
        let mut stack_path = vec![(me.clone(), dependencies(stack))];
        let mut seen = std::collections::BTreeSet::from([me.clone()]);
        // Depth-first, bounded: a namespace with more Stacks than this in one
        // chain is not checked further.
        while let Some((_, pending)) = stack_path.last_mut() {
            let Some(next) = pending.pop() else {
                stack_path.pop();
                continue;
            };
            if next == me {
                let mut names: Vec<&str> = stack_path.iter().map(|(n, _)| n.as_str()).collect();
                names.push(&me);
                return Err(Problem::stalled(
                    "DependencyCycle",
                    format!("dependency cycle: {}", names.join(" -> ")),
                ));
            }
            if !seen.insert(next.clone()) || seen.len() > 200 {
                continue;
            }
            if let Some(other) = self.cached(&next) {
                stack_path.push((next, dependencies(&other)));
            }
        }
        Ok(())
    }
}

/// Names of the Stacks this one waits for.
pub fn dependencies(stack: &Stack) -> Vec<String> {
    let mut names: Vec<String> = stack.spec.depends_on.iter().map(|d| d.name.clone()).collect();
    names.extend(
        stack
            .spec
            .parameters
            .iter()
            .filter_map(|p| p.value_from.as_ref()?.stack_output.as_ref())
            .map(|o| o.stack.clone()),
    );
    names.sort();
    names.dedup();
    names
}

fn read_error(what: &str, error: &kube::Error) -> Problem {
    let reason = match error {
        kube::Error::Api(status) if status.code == 403 => "Forbidden",
        _ => "ReadFailed",
    };
    Problem::waiting(
        reason,
        format!("{what}: could not read from the Kubernetes API: {error}"),
    )
}
