//! What AWS said, as an [`AwsErrorKind`]: one pure [`classify`] from code,
//! message and HTTP status, and [`map_error`] for every SDK error.

use aws_sdk_cloudformation::config::http::HttpResponse;
use aws_sdk_cloudformation::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::aws::{AwsError, AwsErrorKind, AwsResult};

/// Classifies an AWS error from its code, message and HTTP status. Pure.
pub fn classify(code: Option<&str>, message: &str, http_status: Option<u16>) -> AwsErrorKind {
    use AwsErrorKind::*;
    if http_status == Some(429) {
        return Throttled;
    }
    // 501 Not Implemented (how LocalStack answers operations it lacks, with
    // code `InternalFailure`): retrying will not help.
    if http_status == Some(501) {
        return Unsupported;
    }
    match code.unwrap_or_default() {
        "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "RequestThrottled"
        | "RequestThrottledException" => Throttled,
        "AlreadyExistsException" | "AlreadyExists" => AlreadyExists,
        "InvalidClientTokenId"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "UnrecognizedClientException"
        | "SignatureDoesNotMatch"
        | "MissingAuthenticationToken"
        | "IncompleteSignature"
        | "InvalidAccessKeyId" => AccessDenied,
        code if code.starts_with("AccessDenied") => AccessDenied,
        "ChangeSetNotFound" | "ChangeSetNotFoundException" | "StackNotFoundException" => NotFound,
        "OperationInProgressException" => InProgress,
        "InsufficientCapabilitiesException"
        | "InvalidChangeSetStatus"
        | "InvalidChangeSetStatusException"
        | "TokenAlreadyExistsException"
        | "LimitExceededException"
        | "InvalidParameterValue"
        | "InvalidParameterCombination"
        | "MissingParameter" => Validation,
        "InternalFailure"
        | "InternalError"
        | "InternalServiceError"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "RequestTimeout"
        | "RequestTimeoutException" => Transient,
        "ValidationError" => classify_validation_message(message),
        _ => match http_status {
            Some(status) if status >= 500 => Transient,
            Some(403) => AccessDenied,
            _ => Other,
        },
    }
}

/// CloudFormation reports several distinct situations as `ValidationError`;
/// only the message tells them apart.
fn classify_validation_message(message: &str) -> AwsErrorKind {
    // "Stack with id X does not exist", "Stack [X] does not exist",
    // "ChangeSet [X] does not exist" (but not "Parameters: [X] do not exist").
    if (message.starts_with("Stack") || message.starts_with("ChangeSet")) && message.contains("does not exist") {
        return AwsErrorKind::NotFound;
    }
    // "Stack:arn... is in UPDATE_IN_PROGRESS state and can not be updated.",
    // "Stack [X] cannot be deleted while in status UPDATE_IN_PROGRESS".
    // REVIEW_IN_PROGRESS never ends by itself, so it is not "in progress".
    let busy = message.contains("_IN_PROGRESS state")
        || (message.contains("while in status") && message.contains("_IN_PROGRESS"));
    if busy && !message.contains("REVIEW_IN_PROGRESS") {
        return AwsErrorKind::InProgress;
    }
    // "Stack [X] already exists and cannot be created again with the changeSet [Y]."
    if message.contains("already exists") {
        return AwsErrorKind::AlreadyExists;
    }
    AwsErrorKind::Validation
}

/// Turns any SDK error into the domain error, for every operation alike
/// (CloudFormation here, STS in `identity.rs`).
pub(crate) fn map_error<E>(err: SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    match &err {
        SdkError::ServiceError(_) => {
            let message = err.message().unwrap_or_default().to_string();
            let code = err.code().map(str::to_string);
            let kind = classify(code.as_deref(), &message, status);
            let code = code.unwrap_or_else(|| match status {
                Some(status) => format!("Http{status}"),
                None => "Unknown".into(),
            });
            AwsError::new(kind, code, message)
        }
        SdkError::TimeoutError(_) => AwsError::new(
            AwsErrorKind::Transient,
            "Timeout",
            DisplayErrorContext(&err).to_string(),
        ),
        SdkError::DispatchFailure(_) => {
            // Credential resolution failures (e.g. AssumeRole refused) surface
            // as dispatch failures of the user-facing call; their text names
            // the STS error code.
            let text = DisplayErrorContext(&err).to_string();
            let denied = [
                "AccessDenied",
                "InvalidClientTokenId",
                "ExpiredToken",
                "UnrecognizedClientException",
                "SignatureDoesNotMatch",
            ]
            .iter()
            .any(|code| text.contains(code));
            let kind = if denied {
                AwsErrorKind::AccessDenied
            } else {
                AwsErrorKind::Transient
            };
            AwsError::new(kind, "DispatchFailure", text)
        }
        SdkError::ResponseError(_) => {
            // An answer that could not be parsed (e.g. an HTML 500 page).
            let kind = match status {
                Some(429) => AwsErrorKind::Throttled,
                Some(s) if s >= 500 => AwsErrorKind::Transient,
                _ => AwsErrorKind::Other,
            };
            AwsError::new(kind, "ResponseError", DisplayErrorContext(&err).to_string())
        }
        _ => AwsError::new(
            AwsErrorKind::Other,
            "ConstructionFailure",
            DisplayErrorContext(&err).to_string(),
        ),
    }
}

pub(super) fn not_found_as_none<T>(result: AwsResult<T>) -> AwsResult<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(err) if err.kind == AwsErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AwsErrorKind::*;

    #[test]
    fn errors_are_classified_from_code_message_and_status() {
        let cases: &[(Option<&str>, &str, Option<u16>, AwsErrorKind)] = &[
            (
                Some("ValidationError"),
                "Stack with id foo does not exist",
                Some(400),
                NotFound,
            ),
            (
                Some("ValidationError"),
                "Stack [foo] does not exist",
                Some(400),
                NotFound,
            ),
            (
                Some("ChangeSetNotFound"),
                "ChangeSet [cs] does not exist",
                Some(404),
                NotFound,
            ),
            (Some("ChangeSetNotFoundException"), "", Some(404), NotFound),
            (Some("Throttling"), "Rate exceeded", Some(400), Throttled),
            (Some("ThrottlingException"), "Rate exceeded", Some(400), Throttled),
            (Some("RequestLimitExceeded"), "", Some(400), Throttled),
            (None, "", Some(429), Throttled),
            (Some("SomethingNew"), "slow down", Some(429), Throttled),
            (
                Some("AlreadyExistsException"),
                "ChangeSet cs already exists",
                Some(400),
                AlreadyExists,
            ),
            (Some("AlreadyExists"), "", Some(400), AlreadyExists),
            (
                Some("ValidationError"),
                "Stack [s] already exists and cannot be created again with the changeSet [cs].",
                Some(400),
                AlreadyExists,
            ),
            (Some("AccessDenied"), "not authorized", Some(403), AccessDenied),
            (Some("AccessDeniedException"), "", Some(400), AccessDenied),
            (Some("InvalidClientTokenId"), "", Some(403), AccessDenied),
            (Some("ExpiredToken"), "", Some(400), AccessDenied),
            (Some("UnrecognizedClientException"), "", Some(400), AccessDenied),
            (
                Some("InsufficientCapabilitiesException"),
                "Requires capabilities : [CAPABILITY_IAM]",
                Some(400),
                Validation,
            ),
            (
                Some("ValidationError"),
                "Parameters: [Foo] do not exist in the template",
                Some(400),
                Validation,
            ),
            (
                Some("ValidationError"),
                "Template format error: YAML not well-formed.",
                Some(400),
                Validation,
            ),
            (
                Some("ValidationError"),
                "No updates are to be performed.",
                Some(400),
                Validation,
            ),
            (
                Some("ValidationError"),
                "Stack:arn:aws:cloudformation:us-east-1:1:stack/s/x is in ROLLBACK_COMPLETE state and can not be updated.",
                Some(400),
                Validation,
            ),
            (
                Some("ValidationError"),
                "Stack:arn:aws:cloudformation:us-east-1:1:stack/s/x is in UPDATE_IN_PROGRESS state and can not be updated.",
                Some(400),
                InProgress,
            ),
            (
                Some("ValidationError"),
                "Stack [s] cannot be deleted while in status UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
                Some(400),
                InProgress,
            ),
            (
                Some("ValidationError"),
                "Stack:arn:x is in REVIEW_IN_PROGRESS state and can not be updated.",
                Some(400),
                Validation,
            ),
            (Some("OperationInProgressException"), "", Some(400), InProgress),
            (
                Some("InvalidChangeSetStatus"),
                "cannot be executed in its current status",
                Some(400),
                Validation,
            ),
            (Some("InternalFailure"), "", Some(500), Transient),
            (
                Some("InternalFailure"),
                "The API for service cloudformation is either not included in your current license plan or has not yet been emulated by LocalStack.",
                Some(501),
                Unsupported,
            ),
            (Some("ServiceUnavailable"), "", Some(503), Transient),
            (None, "", Some(502), Transient),
            (Some("Weird"), "", Some(500), Transient),
            (Some("Weird"), "", Some(400), Other),
            (None, "", None, Other),
        ];
        for (code, message, status, want) in cases {
            assert_eq!(
                classify(*code, message, *status),
                *want,
                "{code:?} {message:?} {status:?}"
            );
        }
    }
}
