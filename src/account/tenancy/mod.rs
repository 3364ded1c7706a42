//! Who may act through which AwsAccount: pure checks, no IO.
//!
//! A Stack in namespace `N` may use AwsAccount `A` in region `R` passing
//! service role `S` only if `A.spec.namespaceSelector` selects `N` (by its
//! labels; `kubernetes.io/metadata.name` is set by the API server and cannot
//! be forged), `R` is in `A.spec.allowedRegions` (empty = every region), `S`
//! matches `A.spec.allowedServiceRoles` and lives in `A.spec.accountId`, and
//! `A` is Ready for its current generation. Anything else is a [`Refusal`]
//! with a CamelCase reason, made before any AWS call. Since the selector is
//! the only way in, one namespace can never act through an account that does
//! not select it, whatever it names in `accountRef`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::ResourceExt;
use sha2::{Digest, Sha256};

use crate::api::{AwsAccount, AwsAccountSpec, TemplateBucket};
use crate::aws::AwsTarget;
use crate::runtime::conditions;
use crate::runtime::problem::Problem;

/// Session tag keys naming the Kubernetes object that acts, for the role's
/// trust and permission policies (`aws:PrincipalTag/stackpilot.dev/namespace`).
pub const SESSION_TAG_NAMESPACE: &str = "stackpilot.dev/namespace";
pub const SESSION_TAG_NAME: &str = "stackpilot.dev/name";

/// Refusal reasons (condition reasons, CamelCase).
pub const NAMESPACE_NOT_ALLOWED: &str = "NamespaceNotAllowed";
pub const REGION_NOT_ALLOWED: &str = "RegionNotAllowed";
pub const SERVICE_ROLE_NOT_ALLOWED: &str = "ServiceRoleNotAllowed";
pub const ACCOUNT_NOT_READY: &str = "AccountNotReady";
pub const ACCOUNT_NOT_FOUND: &str = "AccountNotFound";
pub const NO_ACCOUNT: &str = "NoAccount";

/// Why an object may not act in AWS the way it asked: a [`Problem`]
/// (waiting when the account may still become usable without a change to
/// the object, Stalled otherwise).
pub type Refusal = Problem;

/// `accountRef` names an AwsAccount that does not exist.
pub fn account_not_found(account: &str) -> Refusal {
    Problem::waiting(
        ACCOUNT_NOT_FOUND,
        format!("AwsAccount {account} (spec.accountRef) does not exist"),
    )
}

/// What an object may do in AWS: where, as whom, with which defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The AwsAccount used; `None` for the operator's own credentials.
    pub account: Option<String>,
    /// Its verified account id.
    pub account_id: Option<String>,
    /// The namespace acting (session name and tags).
    pub namespace: String,
    pub region: String,
    /// Role to assume; `None` uses the operator's own credentials.
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    /// The checked CloudFormation service role, if the object passes one.
    pub service_role_arn: Option<String>,
    /// Tags for every stack (the stack's own tags win, see [`Grant::tags`]).
    pub default_tags: BTreeMap<String, String>,
    pub template_bucket: Option<TemplateBucket>,
    /// The account lists the region by name (so it may be one newer than
    /// stackpilot's own list).
    pub region_listed: bool,
}

impl Grant {
    /// The AWS target for object `name` (of the granted namespace), its
    /// session named after it.
    pub fn target(&self, name: &str) -> AwsTarget {
        AwsTarget {
            region: self.region.clone(),
            role_arn: self.role_arn.clone(),
            external_id: self.external_id.clone(),
            session_name: Some(session_name(&self.namespace, name)),
            session_tags: session_tags(&self.namespace, name).into_iter().collect(),
        }
    }

    /// Session tags for object `name` when its role is assumed.
    pub fn session_tags(&self, name: &str) -> BTreeMap<String, String> {
        session_tags(&self.namespace, name)
    }

    /// The account's default tags overlaid with the stack's own.
    pub fn tags(&self, stack_tags: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        merge_tags(&self.default_tags, stack_tags)
    }
}

/// May an object in `namespace` (with `namespace_labels`) use `account` in
/// `region`, passing `service_role`?
pub fn authorize(
    account: &AwsAccount,
    namespace_labels: &BTreeMap<String, String>,
    namespace: &str,
    region: &str,
    service_role: Option<&str>,
) -> Result<Grant, Refusal> {
    let name = account.name_any();
    let AwsAccountSpec {
        account_id,
        role_arn,
        external_id,
        allowed_regions,
        namespace_selector,
        allowed_service_roles,
        default_tags,
        template_bucket,
    } = &account.spec;

    // Namespace first: a namespace the account does not select learns
    // nothing else about it.
    match selects(namespace_selector.as_ref(), namespace_labels) {
        Ok(true) => {}
        Ok(false) if namespace_selector.is_none() => {
            return Err(Problem::stalled(
                NAMESPACE_NOT_ALLOWED,
                format!(
                    "AwsAccount {name} has no namespaceSelector, so no namespace may use it; namespace {namespace} is refused"
                ),
            ));
        }
        Ok(false) => {
            return Err(Problem::stalled(
                NAMESPACE_NOT_ALLOWED,
                format!(
                    "AwsAccount {name} does not allow namespace {namespace}: its namespaceSelector does not select it"
                ),
            ));
        }
        Err(problem) => {
            return Err(Problem::stalled(
                NAMESPACE_NOT_ALLOWED,
                format!("AwsAccount {name} has an invalid namespaceSelector ({problem}), so no namespace may use it"),
            ));
        }
    }

    if !allowed_regions.is_empty() && !allowed_regions.iter().any(|r| r == region) {
        return Err(Problem::stalled(
            REGION_NOT_ALLOWED,
            format!(
                "AwsAccount {name} does not allow region {region}; allowed: {}",
                allowed_regions.join(", ")
            ),
        ));
    }

    if let Some(role) = service_role {
        if !allowed_service_roles.iter().any(|p| role_matches(p, role)) {
            let allowed = if allowed_service_roles.is_empty() {
                "none".to_string()
            } else {
                allowed_service_roles.join(", ")
            };
            return Err(Problem::stalled(
                SERVICE_ROLE_NOT_ALLOWED,
                format!(
                    "AwsAccount {name} does not allow service role {role} (spec.serviceRoleArn); allowed: {allowed}"
                ),
            ));
        }
        if let Some(other) = arn_account(role).filter(|a| a != account_id) {
            return Err(Problem::stalled(
                SERVICE_ROLE_NOT_ALLOWED,
                format!("service role {role} is in account {other}, not in account {account_id} of AwsAccount {name}"),
            ));
        }
    }

    account_ready(account)?;

    Ok(Grant {
        account: Some(name),
        account_id: Some(account_id.clone()),
        namespace: namespace.to_string(),
        region: region.to_string(),
        role_arn: role_arn.clone(),
        external_id: external_id.clone(),
        service_role_arn: service_role.map(str::to_string),
        default_tags: default_tags.clone(),
        template_bucket: template_bucket.clone(),
        region_listed: !allowed_regions.is_empty(),
    })
}

/// An object without `accountRef`: the operator's own credentials, if the
/// operator is configured to allow that.
pub fn operator_grant(
    allow_operator_credentials: bool,
    namespace: &str,
    region: &str,
    service_role: Option<&str>,
) -> Result<Grant, Refusal> {
    if !allow_operator_credentials {
        return Err(Problem::stalled(
            NO_ACCOUNT,
            "spec.accountRef is not set and the operator is not allowed to use its own credentials; name an AwsAccount",
        ));
    }
    Ok(Grant {
        account: None,
        account_id: None,
        namespace: namespace.to_string(),
        region: region.to_string(),
        role_arn: None,
        external_id: None,
        service_role_arn: service_role.map(str::to_string),
        default_tags: BTreeMap::new(),
        template_bucket: None,
        region_listed: false,
    })
}

/// The account has been verified, for its current spec.
fn account_ready(account: &AwsAccount) -> Result<(), Refusal> {
    let name = account.name_any();
    let ready = account
        .status
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, conditions::READY));
    let Some(ready) = ready else {
        return Err(Problem::waiting(
            ACCOUNT_NOT_READY,
            format!("AwsAccount {name} has not been verified yet"),
        ));
    };
    let current = ready.observed_generation == account.metadata.generation;
    match (ready.status.as_str(), current) {
        ("True", true) => Ok(()),
        ("True", false) => Err(Problem::waiting(
            ACCOUNT_NOT_READY,
            format!("AwsAccount {name} changed and has not been verified again yet"),
        )),
        _ => Err(Problem::waiting(
            ACCOUNT_NOT_READY,
            format!("AwsAccount {name} is not Ready ({}): {}", ready.reason, ready.message),
        )),
    }
}

/// Kubernetes label selector semantics: `None` selects nothing, `{}` selects
/// everything; `matchLabels` and every `matchExpressions` term must hold.
/// An invalid selector is an error (callers select nothing).
pub fn selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> Result<bool, String> {
    let Some(selector) = selector else {
        return Ok(false);
    };
    let expressions = selector.match_expressions.as_deref().unwrap_or_default();
    for requirement in expressions {
        validate_requirement(requirement)?;
    }
    let labels_hold = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    Ok(labels_hold && expressions.iter().all(|r| requirement_holds(r, labels)))
}

fn validate_requirement(requirement: &LabelSelectorRequirement) -> Result<(), String> {
    let LabelSelectorRequirement { key, operator, values } = requirement;
    let count = values.as_ref().map_or(0, Vec::len);
    match operator.as_str() {
        "In" | "NotIn" if count == 0 => Err(format!(
            "matchExpressions key {key}: operator {operator} needs at least one value"
        )),
        "Exists" | "DoesNotExist" if count > 0 => Err(format!(
            "matchExpressions key {key}: operator {operator} takes no values"
        )),
        "In" | "NotIn" | "Exists" | "DoesNotExist" => Ok(()),
        other => Err(format!(
            "matchExpressions key {key}: unknown operator {other:?} (In, NotIn, Exists, DoesNotExist)"
        )),
    }
}

fn requirement_holds(requirement: &LabelSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&requirement.key);
    let listed = |v: &String| requirement.values.iter().flatten().any(|x| x == v);
    match requirement.operator.as_str() {
        "In" => value.is_some_and(listed),
        "NotIn" => !value.is_some_and(listed),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

/// An allowed-service-role entry: exact, or a prefix with a trailing `*`.
/// A `*` anywhere else is literal (see [`validate_account`]).
pub fn role_matches(pattern: &str, role: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => role.starts_with(prefix),
        None => pattern == role,
    }
}

/// The account id of an ARN (`arn:<partition>:<service>:<region>:<account>:...`).
fn arn_account(arn: &str) -> Option<String> {
    let mut parts = arn.splitn(6, ':');
    (parts.next()? == "arn").then_some(())?;
    let account = parts.nth(3)?;
    (!account.is_empty()).then(|| account.to_string())
}

/// Spec problems the API schema cannot catch, shown on the AwsAccount.
pub fn validate_account(spec: &AwsAccountSpec) -> Result<(), String> {
    if let Some(selector) = &spec.namespace_selector {
        for requirement in selector.match_expressions.iter().flatten() {
            validate_requirement(requirement).map_err(|e| format!("namespaceSelector: {e}"))?;
        }
    }
    for pattern in &spec.allowed_service_roles {
        if pattern.strip_suffix('*').unwrap_or(pattern).contains('*') {
            return Err(format!(
                "allowedServiceRoles: {pattern:?} has a `*` before its end; only a trailing `*` (prefix match) is supported"
            ));
        }
    }
    Ok(())
}

/// Default tags overlaid with the stack's own (the stack wins).
pub fn merge_tags(defaults: &BTreeMap<String, String>, stack: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut tags = defaults.clone();
    tags.extend(stack.iter().map(|(k, v)| (k.clone(), v.clone())));
    tags
}

/// Longest role session name STS accepts.
const MAX_SESSION_NAME: usize = 64;

/// `stackpilot-<namespace>-<name>`, as STS accepts it (`[\w+=,.@-]{2,64}`):
/// other characters become `-`; a longer name keeps its start and ends with a
/// hash of the whole, so distinct objects keep distinct session names.
pub fn session_name(namespace: &str, name: &str) -> String {
    let full: String = format!("stackpilot-{namespace}-{name}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if full.len() <= MAX_SESSION_NAME {
        return full;
    }
    let digest = hex::encode(Sha256::digest(full.as_bytes()));
    let hash = &digest[..8];
    format!("{}-{hash}", &full[..MAX_SESSION_NAME - hash.len() - 1])
}

/// Session tags naming the acting object.
pub fn session_tags(namespace: &str, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (SESSION_TAG_NAMESPACE.to_string(), namespace.to_string()),
        (SESSION_TAG_NAME.to_string(), name.to_string()),
    ])
}

#[cfg(test)]
mod tests;
