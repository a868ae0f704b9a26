//! Place in the data path: **model** -> coalescer -> turn driver: how a
//! ConverseStream fails, typed. Bedrock's exceptions (before the stream, as an
//! HTTP error; or in it, as an exception frame) and transport failures become
//! one [`ModelError`] with an [`ErrorKind`]; what the user is told about each
//! kind lives in [`crate::vocabulary`].

use std::error::Error as StdError;
use std::fmt;

use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamError;
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;
use thiserror::Error;

/// What went wrong, independent of when. [`fmt::Display`] gives
/// [`ErrorKind::error_type`]; its wire string, user message and retryability
/// are in [`crate::vocabulary`].
///
/// Error codes: <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html#API_runtime_ConverseStream_Errors>
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `ThrottlingException` (HTTP 429 or mid-stream).
    Throttling,
    /// `ValidationException` (HTTP 400 or mid-stream).
    Validation,
    /// `AccessDeniedException` (HTTP 403): no model access or IAM permission.
    AccessDenied,
    /// `ResourceNotFoundException` (HTTP 404): unknown model.
    ResourceNotFound,
    /// `ServiceUnavailableException` (HTTP 503 or mid-stream).
    ServiceUnavailable,
    /// `ModelNotReadyException` (HTTP 429).
    ModelNotReady,
    /// `ModelTimeoutException` (HTTP 408).
    ModelTimeout,
    /// `ModelErrorException` (HTTP 424): the model failed on this request.
    ModelError,
    /// `ModelStreamErrorException`: the model failed while streaming.
    ModelStreamError,
    /// `InternalServerException` (HTTP 500 or mid-stream).
    InternalServer,
    /// `ServiceQuotaExceededException`.
    ServiceQuotaExceeded,
    /// No HTTP response: connection failure or timeout.
    Network,
    /// The event stream ended in the middle of a frame (`SdkError::ResponseError`),
    /// or without a `messageStop`.
    Truncated,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// The kind for an error code (`ThrottlingException`, ...), as found in
    /// `x-amzn-ErrorType` or `:exception-type`.
    pub fn from_code(code: &str) -> ErrorKind {
        match code.split(':').next().unwrap_or(code) {
            "ThrottlingException" | "throttlingException" => ErrorKind::Throttling,
            "ValidationException" | "validationException" => ErrorKind::Validation,
            "AccessDeniedException" | "accessDeniedException" => ErrorKind::AccessDenied,
            "ResourceNotFoundException" | "resourceNotFoundException" => {
                ErrorKind::ResourceNotFound
            }
            "ServiceUnavailableException" | "serviceUnavailableException" => {
                ErrorKind::ServiceUnavailable
            }
            "ModelNotReadyException" | "modelNotReadyException" => ErrorKind::ModelNotReady,
            "ModelTimeoutException" | "modelTimeoutException" => ErrorKind::ModelTimeout,
            "ModelErrorException" | "modelErrorException" => ErrorKind::ModelError,
            "ModelStreamErrorException" | "modelStreamErrorException" => {
                ErrorKind::ModelStreamError
            }
            "InternalServerException" | "internalServerException" => ErrorKind::InternalServer,
            "ServiceQuotaExceededException" | "serviceQuotaExceededException" => {
                ErrorKind::ServiceQuotaExceeded
            }
            _ => ErrorKind::Other,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.error_type())
    }
}

/// A ConverseStream failure. `detail` is for logs (it may quote Bedrock's
/// message); it is never shown to users.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub(crate) enum ModelError {
    /// The request failed before any event arrived: an HTTP error response
    /// (after the SDK's own retries of throttling and 5xx) or no response at all.
    #[error("Bedrock ConverseStream failed before streaming: {kind}: {detail}")]
    BeforeStream {
        /// What went wrong: the error code or transport failure, typed.
        kind: ErrorKind,
        /// The error chain, for logs.
        detail: String,
    },
    /// The stream broke after it started: an exception frame
    /// (`ConverseStreamOutputError`), a cut-off frame or a missing `messageStop`.
    /// The SDK never retries these.
    #[error("Bedrock ConverseStream failed mid-stream: {kind}: {detail}")]
    MidStream {
        /// What went wrong: the exception frame, cut-off or missing stop, typed.
        kind: ErrorKind,
        /// The error chain, for logs.
        detail: String,
    },
}

impl ModelError {
    /// What went wrong, whether before or in the stream.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            ModelError::BeforeStream { kind, .. } | ModelError::MidStream { kind, .. } => *kind,
        }
    }

    /// True when sending the same prompt again may succeed.
    pub(crate) fn retryable(&self) -> bool {
        self.kind().retryable()
    }

    /// True for [`ModelError::MidStream`].
    pub(crate) fn is_mid_stream(&self) -> bool {
        matches!(self, ModelError::MidStream { .. })
    }
}

/// Maps an error of `ConverseStream`'s `send()` to [`ModelError::BeforeStream`].
pub(crate) fn before_stream_error<R: fmt::Debug>(
    err: SdkError<ConverseStreamError, R>,
) -> ModelError {
    let kind = match &err {
        SdkError::ServiceError(service) => match service.err() {
            ConverseStreamError::ThrottlingException(_) => ErrorKind::Throttling,
            ConverseStreamError::ValidationException(_) => ErrorKind::Validation,
            ConverseStreamError::AccessDeniedException(_) => ErrorKind::AccessDenied,
            ConverseStreamError::ResourceNotFoundException(_) => ErrorKind::ResourceNotFound,
            ConverseStreamError::ServiceUnavailableException(_) => ErrorKind::ServiceUnavailable,
            ConverseStreamError::ModelNotReadyException(_) => ErrorKind::ModelNotReady,
            ConverseStreamError::ModelTimeoutException(_) => ErrorKind::ModelTimeout,
            ConverseStreamError::ModelErrorException(_) => ErrorKind::ModelError,
            ConverseStreamError::ModelStreamErrorException(_) => ErrorKind::ModelStreamError,
            ConverseStreamError::InternalServerException(_) => ErrorKind::InternalServer,
            other => other.code().map_or(ErrorKind::Other, ErrorKind::from_code),
        },
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => ErrorKind::Network,
        SdkError::ResponseError(_) => ErrorKind::Network,
        _ => ErrorKind::Other,
    };
    ModelError::BeforeStream {
        kind,
        detail: error_chain(&err),
    }
}

/// Maps an error of the event stream's `recv()` to [`ModelError::MidStream`].
pub(crate) fn mid_stream_error<R: fmt::Debug>(
    err: SdkError<ConverseStreamOutputError, R>,
) -> ModelError {
    let kind = match &err {
        SdkError::ServiceError(service) => match service.err() {
            ConverseStreamOutputError::ThrottlingException(_) => ErrorKind::Throttling,
            ConverseStreamOutputError::ModelStreamErrorException(_) => ErrorKind::ModelStreamError,
            ConverseStreamOutputError::InternalServerException(_) => ErrorKind::InternalServer,
            ConverseStreamOutputError::ValidationException(_) => ErrorKind::Validation,
            ConverseStreamOutputError::ServiceUnavailableException(_) => {
                ErrorKind::ServiceUnavailable
            }
            other => other.code().map_or(ErrorKind::Other, ErrorKind::from_code),
        },
        SdkError::ResponseError(_) => ErrorKind::Truncated,
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => ErrorKind::Network,
        _ => ErrorKind::Other,
    };
    ModelError::MidStream {
        kind,
        detail: error_chain(&err),
    }
}

/// `err: source: source ...`, without the Debug dump of the raw response.
fn error_chain(err: &dyn StdError) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
