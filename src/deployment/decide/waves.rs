//! Strategy -> waves: `AllAtOnce` is one wave; `Rolling` cuts the targets,
//! in order, into waves of `maxConcurrent`; `Canary` makes one wave per step
//! (named targets, or a cumulative percentage taken in order from the
//! targets no step names), each followed by its pause, and the targets no
//! step reached go last.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::deployment::plan::{Pause, StackDeploymentSpec, StrategyType};

/// One wave as the strategy lays it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WavePlan {
    pub targets: Vec<String>,
    pub pause: Option<Pause>,
}

/// A count, or a percentage of `total` (rounded up or down).
pub fn count_or_percent(value: &IntOrString, total: usize, round_up: bool) -> Result<usize, String> {
    match value {
        IntOrString::Int(n) => usize::try_from(*n).map_err(|_| format!("{n} is negative")),
        IntOrString::String(text) => {
            let percent: usize = text
                .strip_suffix('%')
                .and_then(|digits| digits.parse().ok())
                .filter(|p| *p <= 100)
                .ok_or_else(|| format!("{text:?} is not a count or a percentage from 0% to 100%"))?;
            let scaled = percent * total;
            Ok(if round_up { scaled.div_ceil(100) } else { scaled / 100 })
        }
    }
}

/// Targets updated at once under `Rolling`.
pub fn max_concurrent(spec: &StackDeploymentSpec) -> Result<usize, String> {
    let total = spec.targets.len();
    match &spec.strategy.rolling {
        Some(rolling) => {
            let n = count_or_percent(&rolling.max_concurrent, total, true)
                .map_err(|e| format!("strategy.rolling.maxConcurrent: {e}"))?;
            if n == 0 {
                return Err("strategy.rolling.maxConcurrent must be at least 1 (or 1%)".into());
            }
            Ok(n)
        }
        None => Err("strategy.type is Rolling but strategy.rolling is not set".into()),
    }
}

/// Failed targets tolerated before the rollout stops (0 unless `Rolling`
/// says otherwise).
pub fn failure_tolerance(spec: &StackDeploymentSpec) -> Result<usize, String> {
    if spec.strategy.strategy_type != StrategyType::Rolling {
        return Ok(0);
    }
    match spec
        .strategy
        .rolling
        .as_ref()
        .and_then(|r| r.failure_tolerance.as_ref())
    {
        Some(value) => count_or_percent(value, spec.targets.len(), false)
            .map_err(|e| format!("strategy.rolling.failureTolerance: {e}")),
        None => Ok(0),
    }
}

/// The waves of a rollout of `spec`. Errors name the field at fault (the
/// same checks `targets::validate` reports as Stalled).
pub fn plan_waves(spec: &StackDeploymentSpec) -> Result<Vec<WavePlan>, String> {
    let names: Vec<String> = spec.targets.iter().map(|t| t.name.clone()).collect();
    match spec.strategy.strategy_type {
        StrategyType::AllAtOnce => Ok(vec![WavePlan {
            targets: names,
            pause: None,
        }]),
        StrategyType::Rolling => {
            let size = max_concurrent(spec)?;
            Ok(names
                .chunks(size)
                .map(|chunk| WavePlan {
                    targets: chunk.to_vec(),
                    pause: None,
                })
                .collect())
        }
        StrategyType::Canary => canary_waves(spec, &names),
    }
}

fn canary_waves(spec: &StackDeploymentSpec, names: &[String]) -> Result<Vec<WavePlan>, String> {
    let canary = spec
        .strategy
        .canary
        .as_ref()
        .ok_or("strategy.type is Canary but strategy.canary is not set")?;
    let mut named: Vec<&str> = Vec::new();
    for (index, step) in canary.steps.iter().enumerate() {
        for target in &step.targets {
            if !names.contains(target) {
                return Err(format!(
                    "strategy.canary.steps[{index}] names target {target:?}, which is not in spec.targets"
                ));
            }
            if named.contains(&target.as_str()) {
                return Err(format!(
                    "strategy.canary.steps[{index}] repeats target {target:?}, which an earlier step names"
                ));
            }
            named.push(target);
        }
        if let Some(p) = step.percentage
            && !(1..=100).contains(&p)
        {
            return Err(format!(
                "strategy.canary.steps[{index}].percentage is {p}; it must be from 1 to 100"
            ));
        }
        if step.targets.is_empty() == step.percentage.is_none() {
            return Err(format!(
                "strategy.canary.steps[{index}] must name either targets or a percentage"
            ));
        }
    }
    let mut pool = names.iter().filter(|n| !named.contains(&n.as_str())).cloned();
    let mut placed = 0usize;
    let mut waves = Vec::new();
    for step in &canary.steps {
        let targets: Vec<String> = match step.percentage {
            Some(p) => {
                let wanted = (usize::try_from(p).unwrap_or(0) * names.len()).div_ceil(100);
                let take = wanted.saturating_sub(placed);
                pool.by_ref().take(take).collect()
            }
            None => step.targets.clone(),
        };
        placed += targets.len();
        if !targets.is_empty() {
            waves.push(WavePlan {
                targets,
                pause: step.pause.clone(),
            });
        }
    }
    let rest: Vec<String> = pool.collect();
    if !rest.is_empty() {
        waves.push(WavePlan {
            targets: rest,
            pause: None,
        });
    }
    Ok(waves)
}
