//! Reconcile errors, each with a static category for metrics and Events.

use crate::aws::{AwsError, AwsErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("AWS: {0}")]
    Aws(#[from] AwsError),
    #[error("object has no {0}")]
    MissingField(&'static str),
}

impl Error {
    /// A fixed label: never error text, never object names.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "conflict",
            Error::Kube(_) => "kubernetes",
            Error::Aws(e) => match e.kind {
                AwsErrorKind::Throttled => "aws_throttled",
                AwsErrorKind::Transient => "aws_transient",
                AwsErrorKind::AccessDenied => "aws_access_denied",
                AwsErrorKind::InProgress => "aws_in_progress",
                _ => "aws_other",
            },
            Error::MissingField(_) => "invalid_object",
        }
    }

    /// The Event reason for the category: static, CamelCase.
    pub fn reason(&self) -> &'static str {
        match self.category() {
            "conflict" => "Conflict",
            "kubernetes" => "KubernetesError",
            "aws_throttled" => "AwsThrottled",
            "aws_transient" => "AwsUnavailable",
            "aws_access_denied" => "AwsAccessDenied",
            "aws_in_progress" => "AwsOperationInProgress",
            "invalid_object" => "InvalidObject",
            _ => "AwsError",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
