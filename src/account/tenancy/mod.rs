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
mod tests {
    use super::*;
    use crate::api::AwsAccountStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use k8s_openapi::jiff::Timestamp;

    const ACCOUNT_ID: &str = "111122223333";

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn requirement(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn selector(match_labels: &[(&str, &str)], expressions: Vec<LabelSelectorRequirement>) -> LabelSelector {
        LabelSelector {
            match_labels: (!match_labels.is_empty()).then(|| labels(match_labels)),
            match_expressions: (!expressions.is_empty()).then_some(expressions),
        }
    }

    fn ready(generation: i64, status: &str, reason: &str) -> AwsAccountStatus {
        AwsAccountStatus {
            observed_generation: Some(generation),
            conditions: vec![Condition {
                type_: conditions::READY.into(),
                status: status.into(),
                reason: reason.into(),
                message: "because".into(),
                observed_generation: Some(generation),
                last_transition_time: Time(Timestamp::UNIX_EPOCH),
            }],
            last_verified: None,
        }
    }

    /// Account `team-a`: namespaces labelled `team=a`, two regions, service
    /// roles under `stackpilot/`, Ready at generation 1.
    fn account() -> AwsAccount {
        let mut account = AwsAccount::new(
            "team-a",
            AwsAccountSpec {
                account_id: ACCOUNT_ID.into(),
                role_arn: Some(format!("arn:aws:iam::{ACCOUNT_ID}:role/stackpilot")),
                external_id: Some("ext".into()),
                allowed_regions: vec!["eu-west-1".into(), "us-east-1".into()],
                namespace_selector: Some(selector(&[("team", "a")], vec![])),
                allowed_service_roles: vec![
                    format!("arn:aws:iam::{ACCOUNT_ID}:role/stackpilot/*"),
                    format!("arn:aws:iam::{ACCOUNT_ID}:role/cfn-exact"),
                ],
                default_tags: labels(&[("cost-center", "42"), ("owner", "platform")]),
                template_bucket: None,
            },
        );
        account.metadata.generation = Some(1);
        account.status = Some(ready(1, "True", "Verified"));
        account
    }

    #[test]
    fn label_selector_semantics() {
        let ns = labels(&[("team", "a"), ("env", "dev")]);
        let cases: Vec<(&str, Option<LabelSelector>, Result<bool, ()>)> = vec![
            ("unset selects nothing", None, Ok(false)),
            ("{} selects everything", Some(LabelSelector::default()), Ok(true)),
            ("matchLabels hit", Some(selector(&[("team", "a")], vec![])), Ok(true)),
            (
                "matchLabels all must hold",
                Some(selector(&[("team", "a"), ("env", "prod")], vec![])),
                Ok(false),
            ),
            (
                "matchLabels missing key",
                Some(selector(&[("tier", "x")], vec![])),
                Ok(false),
            ),
            (
                "In hit",
                Some(selector(&[], vec![requirement("env", "In", &["dev", "test"])])),
                Ok(true),
            ),
            (
                "In miss",
                Some(selector(&[], vec![requirement("env", "In", &["prod"])])),
                Ok(false),
            ),
            (
                "In absent key",
                Some(selector(&[], vec![requirement("tier", "In", &["x"])])),
                Ok(false),
            ),
            (
                "NotIn hit",
                Some(selector(&[], vec![requirement("env", "NotIn", &["prod"])])),
                Ok(true),
            ),
            (
                "NotIn miss",
                Some(selector(&[], vec![requirement("env", "NotIn", &["dev"])])),
                Ok(false),
            ),
            (
                "NotIn absent key holds",
                Some(selector(&[], vec![requirement("tier", "NotIn", &["x"])])),
                Ok(true),
            ),
            (
                "Exists",
                Some(selector(&[], vec![requirement("team", "Exists", &[])])),
                Ok(true),
            ),
            (
                "Exists absent",
                Some(selector(&[], vec![requirement("tier", "Exists", &[])])),
                Ok(false),
            ),
            (
                "DoesNotExist",
                Some(selector(&[], vec![requirement("tier", "DoesNotExist", &[])])),
                Ok(true),
            ),
            (
                "DoesNotExist present",
                Some(selector(&[], vec![requirement("team", "DoesNotExist", &[])])),
                Ok(false),
            ),
            (
                "labels and expressions together",
                Some(selector(&[("team", "a")], vec![requirement("env", "In", &["prod"])])),
                Ok(false),
            ),
            (
                "In without values is invalid",
                Some(selector(&[], vec![requirement("env", "In", &[])])),
                Err(()),
            ),
            (
                "NotIn without values is invalid",
                Some(selector(&[], vec![requirement("env", "NotIn", &[])])),
                Err(()),
            ),
            (
                "Exists with values is invalid",
                Some(selector(&[], vec![requirement("env", "Exists", &["x"])])),
                Err(()),
            ),
            (
                "unknown operator is invalid",
                Some(selector(&[], vec![requirement("env", "Gt", &["1"])])),
                Err(()),
            ),
        ];
        for (what, selector, want) in cases {
            let got = selects(selector.as_ref(), &ns).map_err(|_| ());
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn service_role_patterns() {
        let cases = [
            ("arn:aws:iam::1:role/cfn", "arn:aws:iam::1:role/cfn", true),
            ("arn:aws:iam::1:role/cfn", "arn:aws:iam::1:role/cfn-admin", false),
            ("arn:aws:iam::1:role/cfn-*", "arn:aws:iam::1:role/cfn-admin", true),
            ("arn:aws:iam::1:role/cfn-*", "arn:aws:iam::1:role/cfn-", true),
            ("arn:aws:iam::1:role/cfn-*", "arn:aws:iam::1:role/other", false),
            ("arn:aws:iam::*:role/cfn", "arn:aws:iam::1:role/cfn", false),
            ("*", "arn:aws:iam::1:role/anything", true),
        ];
        for (pattern, role, want) in cases {
            assert_eq!(role_matches(pattern, role), want, "{pattern} vs {role}");
        }
    }

    #[test]
    fn authorize_table() {
        let team_a = labels(&[("team", "a"), ("kubernetes.io/metadata.name", "apps-a")]);
        let team_b = labels(&[("team", "b"), ("kubernetes.io/metadata.name", "apps-b")]);
        let ok_role = format!("arn:aws:iam::{ACCOUNT_ID}:role/stackpilot/deployer");
        let exact_role = format!("arn:aws:iam::{ACCOUNT_ID}:role/cfn-exact");
        let foreign_role = "arn:aws:iam::999999999999:role/stackpilot/deployer".to_string();

        let mut no_selector = account();
        no_selector.spec.namespace_selector = None;
        let mut everyone = account();
        everyone.spec.namespace_selector = Some(LabelSelector::default());
        let mut any_region = account();
        any_region.spec.allowed_regions.clear();
        let mut no_roles = account();
        no_roles.spec.allowed_service_roles.clear();
        let mut loose_roles = account();
        loose_roles.spec.allowed_service_roles = vec!["arn:aws:iam::*".into()];
        let mut bad_selector = account();
        bad_selector.spec.namespace_selector = Some(selector(&[], vec![requirement("team", "In", &[])]));
        let mut unverified = account();
        unverified.status = None;
        let mut wrong = account();
        wrong.status = Some(ready(1, "False", "WrongAccount"));
        let mut stale = account();
        stale.metadata.generation = Some(2);

        type Case<'a> = (
            &'a str,
            &'a AwsAccount,
            &'a BTreeMap<String, String>,
            &'a str,
            Option<&'a str>,
            Result<(), (&'static str, bool)>,
        );
        let base = account();
        let cases: Vec<Case> = vec![
            ("allowed, no service role", &base, &team_a, "eu-west-1", None, Ok(())),
            (
                "allowed, prefixed service role",
                &base,
                &team_a,
                "us-east-1",
                Some(&ok_role),
                Ok(()),
            ),
            (
                "allowed, exact service role",
                &base,
                &team_a,
                "us-east-1",
                Some(&exact_role),
                Ok(()),
            ),
            (
                "cross-namespace: team b names team a's account",
                &base,
                &team_b,
                "eu-west-1",
                None,
                Err((NAMESPACE_NOT_ALLOWED, false)),
            ),
            (
                "unset selector refuses every namespace",
                &no_selector,
                &team_a,
                "eu-west-1",
                None,
                Err((NAMESPACE_NOT_ALLOWED, false)),
            ),
            (
                "{} selector allows any namespace",
                &everyone,
                &team_b,
                "eu-west-1",
                None,
                Ok(()),
            ),
            (
                "invalid selector refuses",
                &bad_selector,
                &team_a,
                "eu-west-1",
                None,
                Err((NAMESPACE_NOT_ALLOWED, false)),
            ),
            (
                "region not allowed",
                &base,
                &team_a,
                "ap-south-1",
                None,
                Err((REGION_NOT_ALLOWED, false)),
            ),
            (
                "empty region list allows all",
                &any_region,
                &team_a,
                "ap-south-1",
                None,
                Ok(()),
            ),
            (
                "service role not listed",
                &base,
                &team_a,
                "eu-west-1",
                Some("arn:aws:iam::111122223333:role/admin"),
                Err((SERVICE_ROLE_NOT_ALLOWED, false)),
            ),
            (
                "no service roles listed allows none",
                &no_roles,
                &team_a,
                "eu-west-1",
                Some(&ok_role),
                Err((SERVICE_ROLE_NOT_ALLOWED, false)),
            ),
            (
                "no service roles listed, none passed",
                &no_roles,
                &team_a,
                "eu-west-1",
                None,
                Ok(()),
            ),
            (
                "service role from another account",
                &loose_roles,
                &team_a,
                "eu-west-1",
                Some(&foreign_role),
                Err((SERVICE_ROLE_NOT_ALLOWED, false)),
            ),
            (
                "not verified yet",
                &unverified,
                &team_a,
                "eu-west-1",
                None,
                Err((ACCOUNT_NOT_READY, true)),
            ),
            (
                "verification failed",
                &wrong,
                &team_a,
                "eu-west-1",
                None,
                Err((ACCOUNT_NOT_READY, true)),
            ),
            (
                "changed since verified",
                &stale,
                &team_a,
                "eu-west-1",
                None,
                Err((ACCOUNT_NOT_READY, true)),
            ),
            (
                "namespace is checked before readiness",
                &unverified,
                &team_b,
                "eu-west-1",
                None,
                Err((NAMESPACE_NOT_ALLOWED, false)),
            ),
        ];
        for (what, account, ns_labels, region, role, want) in cases {
            let namespace = &ns_labels["kubernetes.io/metadata.name"];
            let got = authorize(account, ns_labels, namespace, region, role);
            match (got, want) {
                (Ok(grant), Ok(())) => {
                    assert_eq!(grant.region, region, "{what}");
                    assert_eq!(grant.namespace, *namespace, "{what}");
                    assert_eq!(grant.service_role_arn.as_deref(), role, "{what}");
                }
                (Err(refusal), Err((reason, transient))) => {
                    assert_eq!(
                        (refusal.reason, refusal.transient),
                        (reason, transient),
                        "{what}: {}",
                        refusal.message
                    );
                    assert!(
                        refusal.message.contains("team-a"),
                        "{what}: names the account: {}",
                        refusal.message
                    );
                }
                (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn refusal_messages_say_what_is_wrong() {
        let team_a = labels(&[("team", "a")]);
        let region = authorize(&account(), &team_a, "apps-a", "ap-south-1", None).unwrap_err();
        assert_eq!(
            region.message,
            "AwsAccount team-a does not allow region ap-south-1; allowed: eu-west-1, us-east-1"
        );
        let foreign = authorize(&account(), &labels(&[("team", "b")]), "apps-b", "eu-west-1", None).unwrap_err();
        assert_eq!(
            foreign.message,
            "AwsAccount team-a does not allow namespace apps-b: its namespaceSelector does not select it"
        );
        // Refused namespaces learn nothing about the account beyond its name.
        assert!(!foreign.message.contains(ACCOUNT_ID));
        let mut wrong = account();
        wrong.status = Some(ready(1, "False", "WrongAccount"));
        let not_ready = authorize(&wrong, &team_a, "apps-a", "eu-west-1", None).unwrap_err();
        assert_eq!(
            not_ready.message,
            "AwsAccount team-a is not Ready (WrongAccount): because"
        );
    }

    #[test]
    fn a_grant_carries_the_role_target_and_tags() {
        let grant = authorize(&account(), &labels(&[("team", "a")]), "apps-a", "eu-west-1", None).unwrap();
        let target = grant.target("web");
        assert_eq!(target.region, "eu-west-1");
        assert_eq!(
            target.role_arn.as_deref(),
            Some("arn:aws:iam::111122223333:role/stackpilot")
        );
        assert_eq!(target.external_id.as_deref(), Some("ext"));
        assert_eq!(target.session_name.as_deref(), Some("stackpilot-apps-a-web"));
        assert_eq!(
            grant.session_tags("web"),
            labels(&[(SESSION_TAG_NAMESPACE, "apps-a"), (SESSION_TAG_NAME, "web")])
        );
        assert_eq!(grant.account_id.as_deref(), Some(ACCOUNT_ID));
        let tags = grant.tags(&labels(&[("owner", "team-a"), ("app", "web")]));
        assert_eq!(
            tags,
            labels(&[("app", "web"), ("cost-center", "42"), ("owner", "team-a")])
        );
    }

    #[test]
    fn operator_credentials_only_when_allowed() {
        let refused = operator_grant(false, "apps", "eu-west-1", None).unwrap_err();
        assert_eq!((refused.reason, refused.transient), (NO_ACCOUNT, false));
        let grant = operator_grant(true, "apps", "eu-west-1", Some("arn:aws:iam::1:role/x")).unwrap();
        assert_eq!(grant.role_arn, None);
        assert_eq!(grant.target("web").session_name.as_deref(), Some("stackpilot-apps-web"));
        assert_eq!(grant.tags(&labels(&[("a", "1")])), labels(&[("a", "1")]));
    }

    #[test]
    fn session_names_fit_sts() {
        let valid = |s: &str| {
            (2..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
        };
        assert_eq!(session_name("apps", "web.v1"), "stackpilot-apps-web.v1");
        assert_eq!(session_name("apps", "a b/c"), "stackpilot-apps-a-b-c");
        let long_a = session_name(&"n".repeat(63), &"x".repeat(253));
        let long_b = session_name(&"n".repeat(63), &format!("{}y", "x".repeat(252)));
        for name in [&long_a, &long_b] {
            assert!(valid(name), "{name}");
            assert_eq!(name.len(), 64);
            assert!(name.starts_with("stackpilot-nnn"));
        }
        assert_ne!(long_a, long_b);
    }

    #[test]
    fn account_specs_are_checked() {
        let mut spec = account().spec;
        assert_eq!(validate_account(&spec), Ok(()));
        spec.allowed_service_roles = vec!["arn:aws:iam::*:role/x".into()];
        assert!(validate_account(&spec).unwrap_err().contains("trailing"));
        spec.allowed_service_roles = vec!["arn:aws:iam::1:role/x**".into()];
        assert!(validate_account(&spec).is_err());
        spec.allowed_service_roles = vec!["arn:aws:iam::1:role/x*".into()];
        assert_eq!(validate_account(&spec), Ok(()));
        spec.namespace_selector = Some(selector(&[], vec![requirement("team", "Exists", &["a"])]));
        assert!(validate_account(&spec).unwrap_err().starts_with("namespaceSelector"));
    }

    #[test]
    fn arn_accounts() {
        assert_eq!(
            arn_account("arn:aws:iam::123456789012:role/a/b"),
            Some("123456789012".into())
        );
        assert_eq!(
            arn_account("arn:aws-cn:iam::123456789012:role/x"),
            Some("123456789012".into())
        );
        assert_eq!(arn_account("not-an-arn"), None);
        assert_eq!(arn_account("arn:aws:s3:::bucket"), None);
    }
}

#[cfg(test)]
mod target_tests {
    use super::*;

    #[test]
    fn an_assumed_role_session_is_named_and_tagged_after_the_object() {
        let grant = operator_grant(true, "team-a", "eu-west-1", None).unwrap();
        let target = Grant {
            role_arn: Some("arn:aws:iam::111122223333:role/deployer".into()),
            ..grant
        }
        .target("web");
        assert_eq!(target.session_name.as_deref(), Some("stackpilot-team-a-web"));
        let tags: BTreeMap<String, String> = target.session_tags.into_iter().collect();
        assert_eq!(tags, session_tags("team-a", "web"));
        assert!(tags.values().any(|v| v == "team-a") && tags.values().any(|v| v == "web"));
    }
}
