//! A parameters file in a Flux artifact: a YAML (or JSON) map of name to
//! value, or a list of parameters as the CRDs take them.

use serde_yaml_ng::Value;

use crate::api::StackParameter;

pub fn parse(text: &str) -> Result<Vec<StackParameter>, String> {
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("not valid YAML or JSON: {e}"))?;
    match value {
        Value::Mapping(map) => map
            .into_iter()
            .map(|(name, value)| {
                let name = name.as_str().ok_or("parameter names must be strings")?.to_string();
                let value = match value {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(format!(
                            "parameter {name}: the value must be a string, number or boolean"
                        ));
                    }
                };
                Ok(StackParameter {
                    name,
                    value: Some(value),
                    value_from: None,
                })
            })
            .collect(),
        Value::Sequence(_) => {
            let list: Vec<StackParameter> = serde_yaml_ng::from_value(value)
                .map_err(|e| format!("not a list of parameters ({{name, value}}): {e}"))?;
            if let Some(bad) = list.iter().find(|p| p.value.is_some() == p.value_from.is_some()) {
                return Err(format!(
                    "parameter {} needs exactly one of value or valueFrom",
                    bad.name
                ));
            }
            Ok(list)
        }
        Value::Null => Ok(Vec::new()),
        _ => Err("must be a map of name to value or a list of parameters".into()),
    }
}

/// The file's parameters with the spec's on top (same name: the spec wins),
/// in the file's order, then the spec's new ones.
pub fn merge(file: Vec<StackParameter>, spec: &[StackParameter]) -> Vec<StackParameter> {
    let mut merged: Vec<StackParameter> = file
        .into_iter()
        .filter(|p| !spec.iter().any(|s| s.name == p.name))
        .collect();
    merged.extend(spec.iter().cloned());
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_or_a_list_of_parameters() {
        let map = parse("Env: prod\nReplicas: 3\nDebug: false\n").unwrap();
        let values: Vec<(&str, &str)> = map
            .iter()
            .map(|p| (p.name.as_str(), p.value.as_deref().unwrap()))
            .collect();
        assert_eq!(values, vec![("Env", "prod"), ("Replicas", "3"), ("Debug", "false")]);
        let list = parse(r#"[{"name": "Env", "value": "dev"}]"#).unwrap();
        assert_eq!(list[0].value.as_deref(), Some("dev"));
        assert!(parse("[{name: Env}]").unwrap_err().contains("exactly one"));
        assert!(parse("Env: [1, 2]").unwrap_err().contains("Env"));
        assert!(parse("just text").is_err());
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn the_spec_wins_over_the_file() {
        let file = parse("Env: dev\nSize: small\n").unwrap();
        let spec = parse("Env: prod\nExtra: x\n").unwrap();
        let merged = merge(file, &spec);
        let names: Vec<(&str, &str)> = merged
            .iter()
            .map(|p| (p.name.as_str(), p.value.as_deref().unwrap()))
            .collect();
        assert_eq!(names, vec![("Size", "small"), ("Env", "prod"), ("Extra", "x")]);
    }
}
