//! Reading a template as CloudFormation does: JSON or YAML (short forms
//! like `!Ref` turned into long ones), its resources, parameters and outputs.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::aws::{AwsError, AwsErrorKind, AwsResult};

/// One resource of a template, as far as the fake reads it.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Resource {
    pub(super) resource_type: String,
    pub(super) definition: Value,
}

/// The parts of a template the fake reads.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Template {
    pub(super) document: Value,
    pub(super) resources: BTreeMap<String, Resource>,
    /// Declared parameters and their defaults.
    pub(super) parameters: BTreeMap<String, Option<String>>,
    pub(super) outputs: Vec<(String, Option<String>, Option<String>)>,
}

fn format_error(detail: impl std::fmt::Display) -> AwsError {
    AwsError::new(
        AwsErrorKind::Validation,
        "ValidationError",
        format!("Template format error: {detail}"),
    )
}

/// YAML to JSON, with CloudFormation short forms (`!Ref X`, `!Sub ...`) turned
/// into their long forms (`{"Ref": X}`, `{"Fn::Sub": ...}`).
fn yaml_to_json(value: serde_yaml_ng::Value) -> Value {
    use serde_yaml_ng::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or_default())
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match yaml_to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let key = if name == "Ref" || name == "Condition" {
                name.to_string()
            } else {
                format!("Fn::{name}")
            };
            let mut object = serde_json::Map::new();
            object.insert(key, yaml_to_json(tagged.value));
            Value::Object(object)
        }
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) => Some(items.iter().filter_map(scalar_text).collect::<Vec<_>>().join(",")),
        _ => None,
    }
}

pub(super) fn parse_template(body: &str) -> AwsResult<Template> {
    let document: Value = if body.trim_start().starts_with('{') {
        serde_json::from_str(body).map_err(|e| format_error(format_args!("JSON not well-formed. ({e})")))?
    } else {
        let yaml: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(body).map_err(|e| format_error(format_args!("YAML not well-formed. ({e})")))?;
        yaml_to_json(yaml)
    };
    let Some(top) = document.as_object() else {
        return Err(format_error("unsupported structure."));
    };
    let resources_doc = top.get("Resources").and_then(Value::as_object);
    let Some(resources_doc) = resources_doc.filter(|r| !r.is_empty()) else {
        return Err(format_error("At least one Resources member must be defined."));
    };
    let mut resources = BTreeMap::new();
    for (id, definition) in resources_doc {
        let Some(resource_type) = definition.get("Type").and_then(Value::as_str) else {
            return Err(format_error(format_args!(
                "[/Resources/{id}] Every Resources object must contain a Type member."
            )));
        };
        resources.insert(
            id.clone(),
            Resource {
                resource_type: resource_type.to_string(),
                definition: definition.clone(),
            },
        );
    }
    let parameters = top
        .get("Parameters")
        .and_then(Value::as_object)
        .map(|params| {
            params
                .iter()
                .map(|(k, v)| (k.clone(), v.get("Default").and_then(scalar_text)))
                .collect()
        })
        .unwrap_or_default();
    let outputs = top
        .get("Outputs")
        .and_then(Value::as_object)
        .map(|outputs| {
            outputs
                .iter()
                .map(|(k, v)| {
                    let description = v.get("Description").and_then(Value::as_str);
                    let export = v.pointer("/Export/Name").and_then(Value::as_str);
                    (k.clone(), description.map(str::to_string), export.map(str::to_string))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Template {
        document,
        resources,
        parameters,
        outputs,
    })
}

/// Whether a resource definition mentions parameter `name` (`Ref` or `${name}`).
pub(super) fn references(definition: &Value, name: &str) -> bool {
    match definition {
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| (k == "Ref" && v.as_str() == Some(name)) || references(v, name)),
        Value::Array(items) => items.iter().any(|v| references(v, name)),
        Value::String(s) => s.contains(&format!("${{{name}}}")),
        _ => false,
    }
}
