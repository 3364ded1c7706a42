//! Local checks of a template before any AWS call: it parses, it has
//! resources, it fits the size limits, and the parameters given match the
//! parameters it declares. Catching these here keeps bad input from turning
//! into a stream of failing AWS calls.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml_ng::Value;

/// CloudFormation's limit for a template passed inline (TemplateBody).
pub const MAX_INLINE_BYTES: usize = 51_200;
/// CloudFormation's limit for a template passed by URL (TemplateURL).
pub const MAX_URL_BYTES: usize = 1_000_000;

/// What stackpilot needs to know of a template.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TemplateFacts {
    /// Declared parameters; `true` when the parameter has a default.
    pub parameters: BTreeMap<String, bool>,
    pub outputs: BTreeSet<String>,
    /// Resource types in use, to tell which need IAM capabilities.
    pub resource_types: BTreeSet<String>,
}

/// Parses a JSON or YAML template (CloudFormation short-form tags such as
/// `!Ref` are accepted).
pub fn parse(body: &str) -> Result<TemplateFacts, String> {
    let value: Value = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(json) => serde_yaml_ng::to_value(json).map_err(|e| format!("template is not valid JSON: {e}"))?,
        Err(_) => {
            serde_yaml_ng::from_str(body).map_err(|e| format!("template is neither valid JSON nor valid YAML: {e}"))?
        }
    };
    let Value::Mapping(root) = value else {
        return Err("template must be a JSON or YAML object with a Resources section".into());
    };
    let section = |name: &str| root.get(name).and_then(Value::as_mapping);
    let resources = section("Resources").filter(|r| !r.is_empty()).ok_or_else(|| {
        "template has no Resources section (CloudFormation requires at least one resource)".to_string()
    })?;
    let mut facts = TemplateFacts::default();
    for (logical_id, resource) in resources {
        let id = logical_id.as_str().unwrap_or_default();
        let kind = resource
            .get("Type")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("resource {id} has no Type"))?;
        facts.resource_types.insert(kind.to_string());
    }
    if let Some(parameters) = section("Parameters") {
        for (name, declaration) in parameters {
            let name = name.as_str().ok_or("parameter names must be strings")?;
            facts
                .parameters
                .insert(name.to_string(), declaration.get("Default").is_some());
        }
    }
    if let Some(outputs) = section("Outputs") {
        facts
            .outputs
            .extend(outputs.keys().filter_map(Value::as_str).map(str::to_string));
    }
    Ok(facts)
}

/// Checks the given parameter names against the template's declarations.
pub fn check_parameters<'a>(facts: &TemplateFacts, given: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    let given: BTreeSet<&str> = given.into_iter().collect();
    let unknown: Vec<&str> = given
        .iter()
        .copied()
        .filter(|name| !facts.parameters.contains_key(*name))
        .collect();
    if !unknown.is_empty() {
        return Err(format!("parameters {unknown:?} are not declared in the template"));
    }
    let missing: Vec<&str> = facts
        .parameters
        .iter()
        .filter(|(name, has_default)| !**has_default && !given.contains(name.as_str()))
        .map(|(name, _)| name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "parameters {missing:?} have no default in the template and must be given a value"
        ));
    }
    Ok(())
}

/// Resource types that make CloudFormation demand an IAM capability.
pub fn needs_iam_capability(facts: &TemplateFacts) -> bool {
    facts.resource_types.iter().any(|t| t.starts_with("AWS::IAM::"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
Parameters:
  Env: {Type: String}
  Retention: {Type: Number, Default: 7}
Resources:
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: !Sub "${Env}-bucket"
Outputs:
  BucketName: {Value: !Ref Bucket}
"#;

    #[test]
    fn reads_yaml_with_short_form_tags() {
        let facts = parse(YAML).unwrap();
        assert_eq!(facts.parameters.get("Env"), Some(&false));
        assert_eq!(facts.parameters.get("Retention"), Some(&true));
        assert!(facts.outputs.contains("BucketName"));
        assert!(facts.resource_types.contains("AWS::S3::Bucket"));
    }

    #[test]
    fn reads_json() {
        let facts = parse(r#"{"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}"#).unwrap();
        assert!(facts.parameters.is_empty());
        assert!(facts.resource_types.contains("AWS::SQS::Queue"));
    }

    #[test]
    fn malformed_templates_are_explained() {
        assert!(
            parse("Resources: [unclosed")
                .unwrap_err()
                .contains("neither valid JSON nor valid YAML")
        );
        assert!(parse("- a\n- b").unwrap_err().contains("object"));
        assert!(parse("Parameters: {}").unwrap_err().contains("no Resources"));
        assert!(
            parse("Resources:\n  B: {Properties: {}}")
                .unwrap_err()
                .contains("has no Type")
        );
    }

    #[test]
    fn parameters_are_checked_both_ways() {
        let facts = parse(YAML).unwrap();
        assert!(check_parameters(&facts, ["Env"]).is_ok());
        assert!(check_parameters(&facts, ["Env", "Retention"]).is_ok());
        assert!(
            check_parameters(&facts, ["Env", "Nope"])
                .unwrap_err()
                .contains("\"Nope\"")
        );
        assert!(check_parameters(&facts, ["Retention"]).unwrap_err().contains("\"Env\""));
    }

    #[test]
    fn iam_resources_need_a_capability() {
        let facts = parse("Resources:\n  R: {Type: AWS::IAM::Role}").unwrap();
        assert!(needs_iam_capability(&facts));
        assert!(!needs_iam_capability(&parse(YAML).unwrap()));
    }
}
