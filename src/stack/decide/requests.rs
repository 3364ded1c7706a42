//! The AWS requests a decision sends: a change set's inputs (shared with the
//! UpdateStack that stands in for an empty one), and the upload of a large
//! template that comes before it.

use crate::aws::{ChangeSetRequest, ChangeSetType, TemplateSource};

use super::super::plan::{DesiredStack, Observed, Plan, Step};

/// The inputs of a change set (and of an UpdateStack standing in for one).
pub(super) fn request(
    o: &Observed,
    desired: &DesiredStack,
    kind: ChangeSetType,
    name: &str,
    token: &str,
) -> ChangeSetRequest {
    ChangeSetRequest {
        stack_name: desired.stack_name.clone(),
        change_set_name: name.to_string(),
        change_set_type: kind,
        template: desired.template.clone(),
        parameters: desired.aws_parameters(),
        options: desired.options.clone(),
        client_token: token.to_string(),
        description: Some(format!(
            "stackpilot {}/{} generation {}",
            o.namespace, o.name, o.generation
        )),
        deployment_mode: desired.deployment_mode,
    }
}

/// A large template goes to S3 first; the step after it passes the URL.
pub(super) fn push_with_upload(desired: &DesiredStack, step: Step, plan: &mut Plan) {
    if let (Some(upload), TemplateSource::Body(body)) = (&desired.upload, &desired.template) {
        plan.steps.push(Step::UploadTemplate {
            bucket: upload.bucket.clone(),
            key: upload.key.clone(),
            region: upload.region.clone(),
            body: body.clone(),
        });
    }
    plan.steps.push(step);
}
