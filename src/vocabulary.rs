//! Place in the data path: turn driver -> chunk -> subscriber; the words of
//! the terminal chunk. Every way a turn can end, named once: each stop
//! reason with its wire string, and each error type with its wire string,
//! its message in words safe to show a user (no Bedrock message, no ids, no
//! internals) and whether sending the prompt again may help.
//!
//! Bedrock's stop reasons pass through as Bedrock spells them
//! (<https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_MessageStopEvent.html>);
//! its exception names become the `errorType` of a failed model call
//! (<https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html#API_runtime_ConverseStream_Errors>).

use std::fmt;

use serde::{Serialize, Serializer};

use crate::model::ErrorKind;

/// Why a turn ended: the terminal chunk's `stopReason`, and the Lambda
/// outcome's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The model stopped by itself, with Bedrock's stop reason as on the wire
    /// (`end_turn`, `max_tokens`, `stop_sequence`, `guardrail_intervened`,
    /// `content_filtered`, ...).
    Model(String),
    /// `error`: the turn failed; the chunk's `error` says why.
    Error,
    /// `deadline`: the Lambda function's timeout came first.
    Deadline,
    /// `cancelled`: the owner stopped the turn with `cancelTurn`.
    Cancelled,
    /// `duplicate`: a repeated event of a turn already started; nothing was
    /// streamed. Only in the Lambda outcome, never in a chunk.
    Duplicate,
}

impl StopReason {
    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            StopReason::Model(reason) => reason,
            StopReason::Error => "error",
            StopReason::Deadline => "deadline",
            StopReason::Cancelled => "cancelled",
            StopReason::Duplicate => "duplicate",
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for StopReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl PartialEq<&str> for StopReason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The `errorType` of a failed turn (in its terminal chunk's `error`, and as
/// the Lambda error type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// `ValidationException`: the prompt's input was refused.
    Validation,
    /// `UnauthorizedException`: the caller cannot send prompts.
    Unauthorized,
    /// `InvalidEvent`: the payload is not a `sendPrompt` invocation (Lambda
    /// error only; there are no ids to publish a chunk to).
    InvalidEvent,
    /// `DeliveryError`: a chunk could not be published to AppSync.
    Delivery,
    /// `InternalError`: the resolver itself went wrong (a state the driver
    /// should never reach).
    Internal,
    /// `Interrupted`: the execution environment streaming the turn died (out
    /// of memory, killed at its timeout); Lambda's retry of the event ended
    /// the turn.
    Interrupted,
    /// The model call failed; the wire string is Bedrock's exception name
    /// where there is one.
    Model(ErrorKind),
}

impl ErrorType {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Validation => "ValidationException",
            ErrorType::Unauthorized => "UnauthorizedException",
            ErrorType::InvalidEvent => "InvalidEvent",
            ErrorType::Delivery => "DeliveryError",
            ErrorType::Internal => "InternalError",
            ErrorType::Interrupted => "Interrupted",
            ErrorType::Model(kind) => kind.error_type(),
        }
    }

    /// True when sending the same prompt again may succeed.
    pub fn retryable(self) -> bool {
        match self {
            ErrorType::Validation | ErrorType::Unauthorized | ErrorType::InvalidEvent => false,
            ErrorType::Delivery | ErrorType::Internal | ErrorType::Interrupted => true,
            ErrorType::Model(kind) => kind.retryable(),
        }
    }

    /// What the user is told. A rejected prompt (`Validation`,
    /// `Unauthorized`) is told its own, more precise message instead, the
    /// [`crate::event::ValidationError`]'s; `InvalidEvent` has no chunk to
    /// carry one (its message is the Lambda error's). These are the general
    /// words for each, used where nothing more precise is known.
    pub fn user_message(self) -> &'static str {
        match self {
            ErrorType::Validation => "The request is not valid.",
            ErrorType::Unauthorized => "Please sign in to send a prompt.",
            ErrorType::InvalidEvent => "The request could not be read.",
            ErrorType::Delivery => "Part of the answer could not be delivered. Please try again.",
            ErrorType::Internal => "Something went wrong while generating the answer.",
            ErrorType::Interrupted => "The answer was interrupted. Please try again.",
            ErrorType::Model(kind) => kind.user_message(),
        }
    }
}

impl Serialize for ErrorType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ErrorKind {
    /// A stable machine-readable type for `ChunkError.errorType`: Bedrock's
    /// exception name where there is one (`ThrottlingException`, ...),
    /// `ModelStreamError`, `NetworkError`, `StreamTruncated` or `InternalError`.
    pub fn error_type(self) -> &'static str {
        match self {
            ErrorKind::Throttling => "ThrottlingException",
            ErrorKind::Validation => "ValidationException",
            ErrorKind::AccessDenied => "AccessDeniedException",
            ErrorKind::ResourceNotFound => "ResourceNotFoundException",
            ErrorKind::ServiceUnavailable => "ServiceUnavailableException",
            ErrorKind::ModelNotReady => "ModelNotReadyException",
            ErrorKind::ModelTimeout => "ModelTimeoutException",
            ErrorKind::ModelError => "ModelErrorException",
            ErrorKind::ModelStreamError => "ModelStreamError",
            ErrorKind::InternalServer => "InternalServerException",
            ErrorKind::ServiceQuotaExceeded => "ServiceQuotaExceededException",
            ErrorKind::Network => "NetworkError",
            ErrorKind::Truncated => "StreamTruncated",
            ErrorKind::Other => "InternalError",
        }
    }

    /// True when sending the same prompt again may succeed.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Throttling
                | ErrorKind::ServiceUnavailable
                | ErrorKind::ModelNotReady
                | ErrorKind::ModelTimeout
                | ErrorKind::ModelStreamError
                | ErrorKind::InternalServer
                | ErrorKind::Network
                | ErrorKind::Truncated
        )
    }

    /// The failure in words safe to show a user.
    pub fn user_message(self) -> &'static str {
        match self {
            ErrorKind::Throttling => {
                "The model is receiving too many requests. Please try again in a moment."
            }
            ErrorKind::Validation => {
                "The model could not accept this request. Try a shorter prompt or different settings."
            }
            ErrorKind::AccessDenied => "This model is not available to this service.",
            ErrorKind::ResourceNotFound => "The requested model was not found.",
            ErrorKind::ServiceUnavailable | ErrorKind::ModelNotReady => {
                "The model is temporarily unavailable. Please try again shortly."
            }
            ErrorKind::ModelTimeout => "The model took too long to answer. Please try again.",
            ErrorKind::ModelError => "The model could not process this request.",
            ErrorKind::ModelStreamError | ErrorKind::Truncated => {
                "The model's answer was interrupted. Please try again."
            }
            ErrorKind::InternalServer => {
                "The model service had an internal error. Please try again."
            }
            ErrorKind::ServiceQuotaExceeded => {
                "The model's usage quota is used up. Please try again later."
            }
            ErrorKind::Network => "The model service could not be reached. Please try again.",
            ErrorKind::Other => "Something went wrong while generating the answer.",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reasons_have_their_wire_strings() {
        assert_eq!(StopReason::Model("end_turn".into()), "end_turn");
        assert_eq!(StopReason::Cancelled.to_string(), "cancelled");
        assert_eq!(
            serde_json::to_value(StopReason::Deadline).expect("json"),
            "deadline"
        );
    }

    #[test]
    fn error_types_have_wire_strings_messages_and_retryability() {
        assert_eq!(ErrorType::Delivery.as_str(), "DeliveryError");
        assert!(ErrorType::Delivery.retryable());
        assert!(!ErrorType::Validation.retryable());
        let throttled = ErrorType::Model(ErrorKind::Throttling);
        assert_eq!(throttled.as_str(), "ThrottlingException");
        assert!(throttled.retryable());
        assert!(throttled.user_message().contains("too many requests"));
        assert_eq!(ErrorType::Model(ErrorKind::Other).as_str(), "InternalError");
    }
}
