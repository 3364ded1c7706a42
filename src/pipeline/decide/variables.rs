//! Variables: `#{<stage>.<action>.<Output>}` in a deploy action's literal
//! parameter values, naming an output of a deploy action that runs earlier
//! in the same execution. Checked against the spec up front; resolved from
//! the outputs the execution recorded.

use std::collections::BTreeMap;

use super::super::plan::{ActionPhase, Execution, PipelineSpec, StackParameter};

/// One `#{stage.action.Output}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub stage: String,
    pub action: String,
    pub output: String,
}

impl Reference {
    /// `stage.action.Output`, the key variables are kept under.
    pub fn key(&self) -> String {
        format!("{}.{}.{}", self.stage, self.action, self.output)
    }
}

/// Splits a value into literal text and references.
enum Piece<'a> {
    Text(&'a str),
    Variable(Reference),
}

fn pieces(value: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("#{") {
        out.push(Piece::Text(&rest[..start]));
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("{value:?} has a #{{ without its closing }}"))?;
        let inner = &after[..end];
        let parts: Vec<&str> = inner.split('.').collect();
        match parts.as_slice() {
            [stage, action, output] if !stage.is_empty() && !action.is_empty() && !output.is_empty() => {
                out.push(Piece::Variable(Reference {
                    stage: stage.to_string(),
                    action: action.to_string(),
                    output: output.to_string(),
                }));
            }
            _ => {
                return Err(format!(
                    "#{{{inner}}} is not of the form #{{<stage>.<action>.<Output>}}"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// The references in a value.
pub fn references(value: &str) -> Result<Vec<Reference>, String> {
    Ok(pieces(value)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Variable(r) => Some(r),
            Piece::Text(_) => None,
        })
        .collect())
}

/// Every problem with the variables of the spec: malformed, naming an
/// unknown stage or action, an action that is not a deploy, or one that
/// does not run before the action using it.
pub fn check(spec: &PipelineSpec) -> Vec<String> {
    let mut problems = Vec::new();
    for (stage_index, stage) in spec.stages.iter().enumerate() {
        for action in &stage.actions {
            for parameter in deploy_parameters(action.deploy.as_ref()) {
                let Some(value) = &parameter.value else { continue };
                let at = format!(
                    "stage {} action {} parameter {}",
                    stage.name, action.name, parameter.name
                );
                let references = match references(value) {
                    Ok(references) => references,
                    Err(problem) => {
                        problems.push(format!("{at}: {problem}"));
                        continue;
                    }
                };
                for reference in references {
                    let named = spec
                        .stages
                        .iter()
                        .enumerate()
                        .find(|(_, s)| s.name == reference.stage)
                        .and_then(|(i, s)| s.actions.iter().find(|a| a.name == reference.action).map(|a| (i, a)));
                    let variable = format!("#{{{}}}", reference.key());
                    match named {
                        None => problems.push(format!(
                            "{at}: {variable} names no action: there is no action {} in a stage {}",
                            reference.action, reference.stage
                        )),
                        Some((_, producer)) if producer.deploy.is_none() => problems.push(format!(
                            "{at}: {variable} names action {}, which is not a deploy action and has no outputs",
                            reference.action
                        )),
                        Some((i, producer))
                            if i > stage_index || (i == stage_index && producer.run_order >= action.run_order) =>
                        {
                            problems.push(format!(
                                "{at}: {variable} names action {}, which does not run before this one",
                                reference.action
                            ))
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }
    problems
}

/// The parameter overrides of a deploy action.
pub fn deploy_parameters(deploy: Option<&super::super::plan::DeployAction>) -> &[StackParameter] {
    match deploy {
        Some(d) => match (&d.stack, &d.deployment) {
            (Some(stack), _) => &stack.parameters,
            (None, Some(deployment)) => &deployment.parameters,
            (None, None) => &[],
        },
        None => &[],
    }
}

/// Every output recorded by the execution's passed deploy actions, by
/// `stage.action.Output`.
pub fn execution_outputs(execution: &Execution) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in execution.actions.iter().filter(|a| a.phase == ActionPhase::Succeeded) {
        for (output, value) in &entry.outputs {
            out.insert(format!("{}.{}.{}", entry.stage, entry.action, output), value.clone());
        }
    }
    out
}

/// The parameters with every variable replaced by its value, and the
/// values used. An output that is missing is an error naming it.
pub fn resolve(
    parameters: &[StackParameter],
    values: &BTreeMap<String, String>,
) -> Result<(Vec<StackParameter>, BTreeMap<String, String>), String> {
    let mut used = BTreeMap::new();
    let mut resolved = Vec::with_capacity(parameters.len());
    for parameter in parameters {
        let mut parameter = parameter.clone();
        if let Some(value) = &parameter.value {
            let mut text = String::new();
            for piece in pieces(value)? {
                match piece {
                    Piece::Text(t) => text.push_str(t),
                    Piece::Variable(reference) => {
                        let key = reference.key();
                        let found = values.get(&key).ok_or_else(|| {
                            format!(
                                "parameter {}: #{{{key}}}: action {}.{} has no output {} (it has: {})",
                                parameter.name,
                                reference.stage,
                                reference.action,
                                reference.output,
                                known_outputs(values, &reference)
                            )
                        })?;
                        text.push_str(found);
                        used.insert(key, found.clone());
                    }
                }
            }
            parameter.value = Some(text);
        }
        resolved.push(parameter);
    }
    Ok((resolved, used))
}

fn known_outputs(values: &BTreeMap<String, String>, reference: &Reference) -> String {
    let prefix = format!("{}.{}.", reference.stage, reference.action);
    let names: Vec<&str> = values.keys().filter_map(|k| k.strip_prefix(&prefix)).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
