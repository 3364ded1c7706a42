use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

use super::*;

fn settings() -> LeaseSettings {
    LeaseSettings {
        namespace: "ops".into(),
        name: "stackpilot-leader".into(),
        identity: "me".into(),
        lease_duration: Duration::from_secs(15),
        renew_interval: Duration::from_secs(5),
    }
}

fn record(holder: Option<&str>, duration: Option<i32>) -> LeaseSpec {
    LeaseSpec {
        holder_identity: holder.map(str::to_string),
        lease_duration_seconds: duration,
        ..LeaseSpec::default()
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn the_holder_gives_up_one_renew_interval_before_a_standby_may_take_over() {
    let s = settings();
    assert_eq!(s.renew_deadline(), secs(10));
    assert!(s.renew_deadline() + s.renew_interval <= s.lease_duration);
}

#[test]
fn settings_need_room_for_a_retry_before_the_deadline() {
    let mut s = settings();
    assert!(s.validate().is_ok());
    s.renew_interval = secs(8);
    assert!(s.validate().is_err());
    s.renew_interval = secs(0);
    assert!(s.validate().is_err());
    s.renew_interval = secs(5);
    s.name.clear();
    assert!(s.validate().is_err());
}

#[test]
fn the_change_time_moves_only_when_the_record_changes() {
    let t0 = Instant::now();
    let first = Sighting::update(None, record(Some("a"), Some(15)), t0);
    assert_eq!(first.changed_at, t0);
    let same = Sighting::update(Some(&first), record(Some("a"), Some(15)), t0 + secs(3));
    assert_eq!(same.changed_at, t0);
    let mut renewed = record(Some("a"), Some(15));
    renewed.renew_time = Some(MicroTime(Timestamp::UNIX_EPOCH));
    let changed = Sighting::update(Some(&same), renewed, t0 + secs(4));
    assert_eq!(changed.changed_at, t0 + secs(4));
}

#[test]
fn a_lease_expires_its_duration_after_it_was_last_seen_to_change() {
    let t0 = Instant::now();
    let s = settings();
    let seen = Sighting::update(None, record(Some("other"), Some(15)), t0);
    assert_eq!(campaign(&seen, &s, t0), Campaign::WaitUntil(t0 + secs(15)));
    assert_eq!(campaign(&seen, &s, t0 + secs(14)), Campaign::WaitUntil(t0 + secs(15)));
    assert_eq!(campaign(&seen, &s, t0 + secs(15)), Campaign::Acquire);
    // The record's own duration counts, not ours...
    let short = Sighting::update(None, record(Some("other"), Some(3)), t0);
    assert_eq!(campaign(&short, &s, t0 + secs(3)), Campaign::Acquire);
    // ...unless it has none.
    for missing in [None, Some(0), Some(-1)] {
        let seen = Sighting::update(None, record(Some("other"), missing), t0);
        assert_eq!(seen.expires_at(s.lease_duration), t0 + secs(15));
    }
}

#[test]
fn a_free_or_own_lease_is_taken_at_once() {
    let t0 = Instant::now();
    let s = settings();
    for free in [
        record(None, Some(15)),
        record(Some(""), Some(15)),
        record(Some("me"), Some(15)),
    ] {
        let seen = Sighting::update(None, free, t0);
        assert_eq!(campaign(&seen, &s, t0), Campaign::Acquire);
    }
}

#[test]
fn the_holder_renews_every_interval_and_steps_down_at_the_deadline() {
    let t0 = Instant::now();
    let s = settings();
    assert_eq!(renewal(t0, &s, t0), Renewal::WaitUntil(t0 + secs(5)));
    assert_eq!(renewal(t0, &s, t0 + secs(4)), Renewal::WaitUntil(t0 + secs(5)));
    let renew = Renewal::Renew {
        deadline: t0 + secs(10),
    };
    assert_eq!(renewal(t0, &s, t0 + secs(5)), renew);
    assert_eq!(renewal(t0, &s, t0 + Duration::from_millis(9_999)), renew);
    assert_eq!(renewal(t0, &s, t0 + secs(10)), Renewal::StepDown);
    assert_eq!(renewal(t0, &s, t0 + secs(60)), Renewal::StepDown);
}

#[test]
fn a_standby_never_takes_over_before_the_holder_has_stepped_down() {
    // The standby sees the renewal no earlier than it was sent.
    let s = settings();
    let sent = Instant::now();
    for seen_after in [0, 1, 3] {
        let seen = Sighting::update(None, record(Some("other"), Some(15)), sent + secs(seen_after));
        let Campaign::WaitUntil(takeover) = campaign(&seen, &s, sent + secs(seen_after)) else {
            panic!("a live lease must not be taken");
        };
        assert_eq!(renewal(sent, &s, takeover - s.renew_interval), Renewal::StepDown);
    }
}

#[test]
fn acquiring_counts_a_transition_and_renewing_keeps_the_acquire_time() {
    let s = settings();
    let t1 = Timestamp::from_second(1_000).unwrap();
    let t2 = Timestamp::from_second(1_005).unwrap();
    let mut theirs = record(Some("other"), Some(15));
    theirs.lease_transitions = Some(4);
    let acquired = held(&theirs, &s, t1);
    assert_eq!(acquired.holder_identity.as_deref(), Some("me"));
    assert_eq!(acquired.lease_duration_seconds, Some(15));
    assert_eq!(acquired.lease_transitions, Some(5));
    assert_eq!(acquired.acquire_time, Some(MicroTime(t1)));
    let renewed = held(&acquired, &s, t2);
    assert_eq!(renewed.lease_transitions, Some(5));
    assert_eq!(renewed.acquire_time, Some(MicroTime(t1)));
    assert_eq!(renewed.renew_time, Some(MicroTime(t2)));
    let fresh = held(&LeaseSpec::default(), &s, t1);
    assert_eq!(fresh.lease_transitions, Some(1));
}

#[test]
fn a_released_lease_has_no_holder_and_keeps_its_transitions() {
    let s = settings();
    let now = Timestamp::from_second(2_000).unwrap();
    let ours = held(&record(Some("other"), Some(15)), &s, now);
    let free = released(&ours, now);
    assert_eq!(free.holder_identity, None);
    assert_eq!(free.lease_transitions, ours.lease_transitions);
    let seen = Sighting::update(None, free, Instant::now());
    assert_eq!(seen.holder(), None);
}

#[test]
fn the_flags_parse_off_by_default_and_on_with_a_value() {
    use clap::{CommandFactory, Parser};

    use crate::cli::{Cli, Command};
    Cli::command().debug_assert();
    let parse = |args: &[&str]| match Cli::try_parse_from(args).expect("parse").command {
        Command::Run(run) => run.leader_election,
        other => panic!("not run: {other:?}"),
    };
    let off = parse(&["stackpilot", "run"]);
    assert!(!off.enabled);
    assert_eq!(
        (off.lease_name.as_str(), off.lease_duration_seconds, off.renew_seconds),
        ("stackpilot-leader", 15, 5)
    );
    let on = parse(&[
        "stackpilot",
        "run",
        "--leader-election",
        "true",
        "--leader-election-namespace",
        "ops",
        "--namespace",
        "apps",
    ]);
    assert!(on.enabled);
    assert_eq!(on.namespace.as_deref(), Some("ops"));
    let settings = LeaseSettings::new(&on, "default").expect("valid");
    assert_eq!(settings.namespace, "ops");
    assert_eq!(settings.renew_deadline(), secs(10));
}

#[test]
fn the_identity_is_the_pod_name_or_host_pid_and_a_random_suffix() {
    assert_eq!(identity(Some("stackpilot-7d9f-x2".into())), "stackpilot-7d9f-x2");
    let a = identity(None);
    let b = identity(Some(" ".into()));
    assert!(a.contains(&format!("_{}_", std::process::id())), "{a}");
    assert_ne!(a, b);
}
