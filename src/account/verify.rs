//! The pure half of an AwsAccount reconcile: which credentials to check, and
//! what the answer means for status, Events and the next check.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::account::tenancy;
use crate::api::{AwsAccountSpec, AwsAccountStatus};
use crate::aws::{AwsError, AwsErrorKind, AwsResult, AwsTarget};
use crate::runtime::conditions::{self, ConditionUpdate, READY, STALLED, Truth};
use crate::runtime::events::Note;

/// Credentials are checked again this often (before jitter).
pub const REVERIFY: Duration = Duration::from_secs(30 * 60);
/// A refused check (role not assumable, credentials rejected) is tried again
/// this often, so a fix made in IAM shows without an edit here.
pub const RETRY_REFUSED: Duration = Duration::from_secs(5 * 60);

/// Condition reasons.
pub const VERIFIED: &str = "Verified";
pub const WRONG_ACCOUNT: &str = "WrongAccount";
pub const ASSUME_ROLE_FAILED: &str = "AssumeRoleFailed";
pub const CREDENTIALS_REJECTED: &str = "CredentialsRejected";
pub const VERIFICATION_FAILED: &str = "VerificationFailed";
pub const INVALID_SPEC: &str = "InvalidSpec";
pub const VERIFYING: &str = "Verifying";

/// What checking the account gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The spec is wrong in a way the schema cannot catch; AWS was not asked.
    InvalidSpec(String),
    /// GetCallerIdentity through the account's credentials.
    Answer(AwsResult<String>),
}

/// The new status and what to do next.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub status: AwsAccountStatus,
    /// Published when Ready changed status or reason.
    pub event: Option<Note>,
    /// Next check (before jitter).
    pub requeue: Duration,
    /// A retryable failure: write the status, then fail the reconcile so it is
    /// retried with backoff.
    pub retry: Option<AwsError>,
}

/// Where GetCallerIdentity goes: the account's role, in its first allowed
/// region (empty: the operator's default region).
pub fn verify_target(name: &str, spec: &AwsAccountSpec) -> AwsTarget {
    AwsTarget {
        region: spec.allowed_regions.first().cloned().unwrap_or_default(),
        role_arn: spec.role_arn.clone(),
        external_id: spec.external_id.clone(),
        session_name: Some(tenancy::session_name("awsaccount", name)),
        session_tags: Vec::new(),
    }
}

/// Checks the spec, then says which target to ask AWS about.
pub fn plan(name: &str, spec: &AwsAccountSpec) -> Result<AwsTarget, Outcome> {
    tenancy::validate_account(spec).map_err(Outcome::InvalidSpec)?;
    Ok(verify_target(name, spec))
}

fn credentials(spec: &AwsAccountSpec) -> String {
    match &spec.role_arn {
        Some(role) => format!("role {role}"),
        None => "the operator's own credentials".to_string(),
    }
}

/// Turns an outcome into status, Event and requeue. Pure: `now` is given.
pub fn decide(
    spec: &AwsAccountSpec,
    generation: i64,
    previous: &AwsAccountStatus,
    outcome: Outcome,
    now: Timestamp,
) -> Verdict {
    let mut status = previous.clone();
    let mut requeue = REVERIFY;
    let mut retry = None;
    let expected = &spec.account_id;
    let who = credentials(spec);
    let refused = match outcome {
        Outcome::InvalidSpec(problem) => Some((INVALID_SPEC, format!("invalid spec: {problem}"))),
        Outcome::Answer(Ok(actual)) if &actual == expected => {
            status.last_verified = Some(Time(now));
            let message = format!("{who} resolve to account {actual}");
            set(&mut status, READY, Truth::True, VERIFIED, message, generation, now);
            conditions::remove(&mut status.conditions, STALLED);
            None
        }
        Outcome::Answer(Ok(actual)) => Some((
            WRONG_ACCOUNT,
            format!(
                "{who} resolve to account {actual}, not to spec.accountId {expected}; fix spec.accountId or spec.roleArn"
            ),
        )),
        Outcome::Answer(Err(error)) => match error.kind {
            AwsErrorKind::Transient | AwsErrorKind::Throttled | AwsErrorKind::InProgress => {
                // Keep a verdict on the current spec through a network blip;
                // say so only when there is none yet.
                let current = conditions::find(&status.conditions, READY)
                    .is_some_and(|c| c.observed_generation == Some(generation));
                if !current {
                    let message = format!("could not check {who} yet, retrying: {error}");
                    set(&mut status, READY, Truth::Unknown, VERIFYING, message, generation, now);
                }
                retry = Some(error);
                None
            }
            AwsErrorKind::AccessDenied if spec.role_arn.is_some() => Some((
                ASSUME_ROLE_FAILED,
                format!("could not assume {who}: {error}; check the role's trust policy (and externalId)"),
            )),
            AwsErrorKind::AccessDenied => Some((CREDENTIALS_REJECTED, format!("AWS rejected {who}: {error}"))),
            _ => Some((VERIFICATION_FAILED, format!("could not check {who}: {error}"))),
        },
    };
    if let Some((reason, message)) = refused {
        set(
            &mut status,
            READY,
            Truth::False,
            reason,
            message.clone(),
            generation,
            now,
        );
        set(&mut status, STALLED, Truth::True, reason, message, generation, now);
        if reason != INVALID_SPEC && reason != WRONG_ACCOUNT {
            requeue = RETRY_REFUSED;
        }
    }
    if retry.is_none() {
        status.observed_generation = Some(generation);
    }
    let event = transition(previous, &status);
    Verdict {
        status,
        event,
        requeue,
        retry,
    }
}

fn set(
    status: &mut AwsAccountStatus,
    type_: &'static str,
    truth: Truth,
    reason: &str,
    message: String,
    generation: i64,
    now: Timestamp,
) {
    let update = ConditionUpdate::new(type_, truth, reason, message);
    conditions::set(&mut status.conditions, update, generation, now);
}

/// An Event when Ready changed status or reason (not for Unknown: the failed
/// reconcile reports itself).
fn transition(before: &AwsAccountStatus, after: &AwsAccountStatus) -> Option<Note> {
    let old = conditions::find(&before.conditions, READY);
    let new = conditions::find(&after.conditions, READY)?;
    if old.is_some_and(|o| o.status == new.status && o.reason == new.reason) {
        return None;
    }
    let reason = match new.reason.as_str() {
        VERIFIED => VERIFIED,
        WRONG_ACCOUNT => WRONG_ACCOUNT,
        ASSUME_ROLE_FAILED => ASSUME_ROLE_FAILED,
        CREDENTIALS_REJECTED => CREDENTIALS_REJECTED,
        VERIFICATION_FAILED => VERIFICATION_FAILED,
        INVALID_SPEC => INVALID_SPEC,
        _ => return None,
    };
    Some(Note {
        warning: new.status != "True",
        reason: reason.to_string(),
        message: new.message.clone(),
    })
}

/// True when a write would change more than condition timestamps.
pub fn status_changed(before: &AwsAccountStatus, after: &AwsAccountStatus) -> bool {
    crate::runtime::status::changed(before, after)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "000000000000";
    const ROLE: &str = "arn:aws:iam::000000000000:role/stackpilot";

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    fn spec(role: Option<&str>) -> AwsAccountSpec {
        AwsAccountSpec {
            account_id: ID.into(),
            role_arn: role.map(str::to_string),
            allowed_regions: vec!["eu-west-1".into(), "us-east-1".into()],
            ..Default::default()
        }
    }

    fn error(kind: AwsErrorKind) -> AwsError {
        AwsError::new(kind, "Code", "what AWS said")
    }

    fn ready(status: &AwsAccountStatus) -> (String, String) {
        let c = conditions::find(&status.conditions, READY).expect("Ready");
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn outcomes_table() {
        type Case = (
            &'static str,
            Option<&'static str>,
            Outcome,
            &'static str,
            &'static str,
            bool,
            Duration,
            bool,
        );
        let cases: Vec<Case> = vec![
            (
                "right account",
                Some(ROLE),
                Outcome::Answer(Ok(ID.into())),
                "True",
                VERIFIED,
                false,
                REVERIFY,
                false,
            ),
            (
                "wrong account",
                Some(ROLE),
                Outcome::Answer(Ok("111111111111".into())),
                "False",
                WRONG_ACCOUNT,
                true,
                REVERIFY,
                false,
            ),
            (
                "role refused",
                Some(ROLE),
                Outcome::Answer(Err(error(AwsErrorKind::AccessDenied))),
                "False",
                ASSUME_ROLE_FAILED,
                true,
                RETRY_REFUSED,
                false,
            ),
            (
                "own credentials refused",
                None,
                Outcome::Answer(Err(error(AwsErrorKind::AccessDenied))),
                "False",
                CREDENTIALS_REJECTED,
                true,
                RETRY_REFUSED,
                false,
            ),
            (
                "other error",
                Some(ROLE),
                Outcome::Answer(Err(error(AwsErrorKind::Validation))),
                "False",
                VERIFICATION_FAILED,
                true,
                RETRY_REFUSED,
                false,
            ),
            (
                "invalid spec",
                Some(ROLE),
                Outcome::InvalidSpec("bad selector".into()),
                "False",
                INVALID_SPEC,
                true,
                REVERIFY,
                false,
            ),
            (
                "network blip, first check",
                Some(ROLE),
                Outcome::Answer(Err(error(AwsErrorKind::Transient))),
                "Unknown",
                VERIFYING,
                false,
                REVERIFY,
                true,
            ),
            (
                "throttled, first check",
                Some(ROLE),
                Outcome::Answer(Err(error(AwsErrorKind::Throttled))),
                "Unknown",
                VERIFYING,
                false,
                REVERIFY,
                true,
            ),
        ];
        for (what, role, outcome, truth, reason, stalled, requeue, retry) in cases {
            let verdict = decide(&spec(role), 3, &AwsAccountStatus::default(), outcome, at(100));
            assert_eq!(
                ready(&verdict.status),
                (truth.to_string(), reason.to_string()),
                "{what}"
            );
            assert_eq!(
                conditions::is_true(&verdict.status.conditions, STALLED),
                stalled,
                "{what}"
            );
            assert_eq!(verdict.requeue, requeue, "{what}");
            assert_eq!(verdict.retry.is_some(), retry, "{what}");
            assert_eq!(verdict.status.observed_generation, (!retry).then_some(3), "{what}");
            assert_eq!(verdict.status.last_verified.is_some(), reason == VERIFIED, "{what}");
            let event = verdict.event.as_ref();
            assert_eq!(
                event.is_some(),
                truth != "Unknown",
                "{what}: an Event on the first verdict"
            );
            if let Some(note) = event {
                assert_eq!(
                    (note.reason.as_str(), note.warning),
                    (reason, truth == "False"),
                    "{what}"
                );
            }
        }
    }

    #[test]
    fn wrong_account_names_both_ids() {
        let verdict = decide(
            &spec(Some(ROLE)),
            1,
            &AwsAccountStatus::default(),
            Outcome::Answer(Ok("111111111111".into())),
            at(1),
        );
        let message = &verdict.event.unwrap().message;
        assert!(
            message.contains("111111111111") && message.contains(ID) && message.contains(ROLE),
            "{message}"
        );
    }

    #[test]
    fn events_only_on_transitions() {
        let spec = spec(None);
        let first = decide(
            &spec,
            1,
            &AwsAccountStatus::default(),
            Outcome::Answer(Ok(ID.into())),
            at(1),
        );
        assert_eq!(first.event.as_ref().map(|n| n.reason.as_str()), Some(VERIFIED));
        let again = decide(&spec, 1, &first.status, Outcome::Answer(Ok(ID.into())), at(2000));
        assert_eq!(again.event, None);
        // Only lastVerified moved, and the transition time stayed.
        assert!(status_changed(&first.status, &again.status));
        assert_eq!(again.status.conditions, first.status.conditions);
        let wrong = decide(
            &spec,
            1,
            &again.status,
            Outcome::Answer(Ok("111111111111".into())),
            at(3000),
        );
        assert_eq!(
            wrong.event.as_ref().map(|n| (n.reason.as_str(), n.warning)),
            Some((WRONG_ACCOUNT, true))
        );
        assert_eq!(wrong.status.last_verified, again.status.last_verified);
        let still_wrong = decide(
            &spec,
            1,
            &wrong.status,
            Outcome::Answer(Ok("111111111111".into())),
            at(4000),
        );
        assert_eq!(still_wrong.event, None);
        assert!(!status_changed(&wrong.status, &still_wrong.status), "nothing to write");
        let fixed = decide(&spec, 1, &still_wrong.status, Outcome::Answer(Ok(ID.into())), at(5000));
        assert_eq!(
            fixed.event.as_ref().map(|n| (n.reason.as_str(), n.warning)),
            Some((VERIFIED, false))
        );
        assert!(!conditions::is_true(&fixed.status.conditions, STALLED));
        assert!(conditions::find(&fixed.status.conditions, STALLED).is_none());
    }

    #[test]
    fn a_blip_keeps_a_current_verdict() {
        let spec = spec(Some(ROLE));
        let ok = decide(
            &spec,
            2,
            &AwsAccountStatus::default(),
            Outcome::Answer(Ok(ID.into())),
            at(1),
        );
        let blip = decide(
            &spec,
            2,
            &ok.status,
            Outcome::Answer(Err(error(AwsErrorKind::Transient))),
            at(2),
        );
        assert_eq!(blip.status, ok.status);
        assert!(blip.retry.is_some() && blip.event.is_none());
        // After a spec change the old verdict no longer counts.
        let changed = decide(
            &spec,
            3,
            &ok.status,
            Outcome::Answer(Err(error(AwsErrorKind::Transient))),
            at(3),
        );
        assert_eq!(ready(&changed.status), ("Unknown".to_string(), VERIFYING.to_string()));
        assert_eq!(changed.status.observed_generation, Some(2));
    }

    #[test]
    fn the_target_is_the_accounts_role_in_its_first_region() {
        let mut spec = spec(Some(ROLE));
        spec.external_id = Some("ext".into());
        let target = plan("prod", &spec).unwrap();
        assert_eq!(target.region, "eu-west-1");
        assert_eq!(target.role_arn.as_deref(), Some(ROLE));
        assert_eq!(target.external_id.as_deref(), Some("ext"));
        assert_eq!(target.session_name.as_deref(), Some("stackpilot-awsaccount-prod"));
        spec.allowed_regions.clear();
        assert_eq!(plan("prod", &spec).unwrap().region, "");
        spec.allowed_service_roles = vec!["arn:*:x".into()];
        assert!(matches!(plan("prod", &spec), Err(Outcome::InvalidSpec(_))));
    }
}
