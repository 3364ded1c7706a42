//! Wait actions: a bake time from the attempt's start.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::super::plan::{ActionCheck, Observed, Plan, WaitAction, later, parse_duration};

/// Passed once the bake time has gone by since `started`.
pub fn check(o: &Observed, wait: &WaitAction, started: Timestamp, plan: &mut Plan) -> ActionCheck {
    let duration = parse_duration(&wait.duration).unwrap_or(Duration::ZERO);
    let until = later(started, duration);
    if o.now >= until {
        ActionCheck::passed()
    } else {
        plan.requeue_at(o.now, until);
        ActionCheck::Running
    }
}
