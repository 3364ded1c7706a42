//! What the spec must satisfy before anything runs (beyond what the CRD's
//! schema and CEL rules already reject): durations that parse, one kind per
//! action, unique names, and variables that name earlier deploy actions.

use super::super::plan::{PipelineSpec, parse_duration};
use super::variables;

/// Every problem, or none.
pub fn problems(spec: &PipelineSpec) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, stage) in spec.stages.iter().enumerate() {
        if spec.stages[..i].iter().any(|s| s.name == stage.name) {
            problems.push(format!("stage name {} is used twice", stage.name));
        }
        if stage.actions.is_empty() {
            problems.push(format!("stage {} has no actions", stage.name));
        }
        for (j, action) in stage.actions.iter().enumerate() {
            let at = format!("stage {} action {}", stage.name, action.name);
            if stage.actions[..j].iter().any(|a| a.name == action.name) {
                problems.push(format!("{at}: the name is used twice in the stage"));
            }
            let kinds = [
                action.deploy.is_some(),
                action.approval.is_some(),
                action.wait.is_some(),
                action.test.is_some(),
            ];
            if kinds.iter().filter(|k| **k).count() != 1 {
                problems.push(format!("{at}: needs exactly one of deploy, approval, wait or test"));
            }
            if let Some(deploy) = &action.deploy
                && deploy.stack.is_some() == deploy.deployment.is_some()
            {
                problems.push(format!("{at}: deploy needs exactly one of stack or deployment"));
            }
            if let Some(wait) = &action.wait
                && let Err(problem) = parse_duration(&wait.duration)
            {
                problems.push(format!("{at}: wait.duration: {problem}"));
            }
            if let Some(timeout) = action.approval.as_ref().and_then(|a| a.timeout.as_deref())
                && let Err(problem) = parse_duration(timeout)
            {
                problems.push(format!("{at}: approval.timeout: {problem}"));
            }
        }
    }
    problems.extend(variables::check(spec));
    problems
}
