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
    let valid =
        |s: &str| (2..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
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
