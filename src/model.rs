//! Place in the data path: **model** -> coalescer -> publisher -> AppSync -> subscriber.
//!
//! Bedrock ConverseStream
//! (<https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html>)
//! turned into a stream of [`ModelEvent`]s: text deltas, the stop reason, token
//! usage. Failures become a typed [`ModelError`] that says whether it happened
//! before the stream started (an HTTP error response) or in the middle of it (an
//! exception frame, or a cut-off stream).
//!
//! Retries: the SDK retries the request itself (throttling, 5xx, timeouts,
//! connection errors) per [`sdk_retry_config`]
//! (<https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html>).
//! The SDK never retries once the event stream has started, so
//! [`ModelStream::open_first`] re-opens a stream that fails retryably before its
//! first event, when no text can have been published. After the first event
//! nothing is retried: the turn ends with a typed error instead.

use std::error::Error as StdError;
use std::fmt;

use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamError;
use aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver;
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ContentBlockDelta, ConversationRole, ConverseStreamOutput,
    InferenceConfiguration, Message, SystemContentBlock,
};
use thiserror::Error;
use tracing::warn;

use crate::retry::RetryPolicy;

/// Attempts the SDK makes for one ConverseStream request (the first included)
/// before it reports an error: [`sdk_retry_config`].
pub const SDK_MAX_ATTEMPTS: u32 = 4;

/// How often a stream that fails before its first event is opened again (the
/// first opening included): see [`ModelStream::open_first`].
pub const REOPEN_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    base_delay: std::time::Duration::from_millis(200),
    max_delay: std::time::Duration::from_secs(2),
};

/// The Bedrock client's retry configuration, set explicitly rather than left
/// to the SDK's defaults: standard mode (exponential backoff with jitter,
/// retrying throttling, `ServiceUnavailable`, 5xx, timeouts and connection
/// errors) with [`SDK_MAX_ATTEMPTS`] attempts.
pub fn sdk_retry_config() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard().with_max_attempts(SDK_MAX_ATTEMPTS)
}

/// True when a stream that failed with `error` on opening attempt `attempt`
/// (1-based) before producing any event should be opened again: the error
/// happened after the response started (so the SDK did not retry it), is
/// retryable, and `policy` has attempts left. Errors before the stream were
/// already retried by the SDK and are not retried again.
pub fn should_reopen(error: &ModelError, attempt: u32, policy: &RetryPolicy) -> bool {
    error.is_mid_stream() && error.retryable() && policy.may_retry(attempt)
}

/// One event of a model's answer, in stream order: any number of `Delta`s, then
/// `Stop`, then (normally) `Usage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelEvent {
    /// Answer text (a `contentBlockDelta` with `delta.text`); usually 1 to 3 tokens.
    Delta(String),
    /// `messageStop`: why the model stopped (`end_turn`, `max_tokens`,
    /// `stop_sequence`, `guardrail_intervened`, `content_filtered`, ...).
    Stop {
        /// Bedrock's stop reason, as on the wire.
        stop_reason: String,
    },
    /// `metadata.usage`: token counts of the whole turn.
    Usage {
        /// Prompt tokens.
        input_tokens: i32,
        /// Answer tokens.
        output_tokens: i32,
        /// Both.
        total_tokens: i32,
    },
}

/// What to ask the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRequest {
    /// Bedrock model id or ARN (`modelId` in the path).
    pub model_id: String,
    /// System prompt (`system[0].text`), if any.
    pub system: Option<String>,
    /// The user's message (`messages[0]`, role `user`).
    pub prompt: String,
    /// `inferenceConfig.maxTokens`.
    pub max_tokens: i32,
    /// `inferenceConfig.temperature`, 0..=1.
    pub temperature: Option<f32>,
}

/// What went wrong, independent of when. [`fmt::Display`] gives
/// [`ErrorKind::error_type`].
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
pub enum ModelError {
    /// The request failed before any event arrived: an HTTP error response
    /// (after the SDK's own retries of throttling and 5xx) or no response at all.
    #[error("Bedrock ConverseStream failed before streaming: {kind}: {detail}")]
    BeforeStream {
        /// What went wrong.
        kind: ErrorKind,
        /// The error chain, for logs.
        detail: String,
    },
    /// The stream broke after it started: an exception frame
    /// (`ConverseStreamOutputError`), a cut-off frame or a missing `messageStop`.
    /// The SDK never retries these.
    #[error("Bedrock ConverseStream failed mid-stream: {kind}: {detail}")]
    MidStream {
        /// What went wrong.
        kind: ErrorKind,
        /// The error chain, for logs.
        detail: String,
    },
}

impl ModelError {
    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ModelError::BeforeStream { kind, .. } | ModelError::MidStream { kind, .. } => *kind,
        }
    }

    /// A stable string such as `ThrottlingException`; see [`ErrorKind::error_type`].
    pub fn error_type(&self) -> &'static str {
        self.kind().error_type()
    }

    /// True when sending the same prompt again may succeed.
    pub fn retryable(&self) -> bool {
        self.kind().retryable()
    }

    /// True for [`ModelError::MidStream`].
    pub fn is_mid_stream(&self) -> bool {
        matches!(self, ModelError::MidStream { .. })
    }
}

/// Maps an error of `ConverseStream`'s `send()` to [`ModelError::BeforeStream`].
pub fn before_stream_error<R: fmt::Debug>(err: SdkError<ConverseStreamError, R>) -> ModelError {
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
pub fn mid_stream_error<R: fmt::Debug>(err: SdkError<ConverseStreamOutputError, R>) -> ModelError {
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

/// The model events of one event-stream message, `None` for those we ignore
/// (`messageStart`, `contentBlockStart`/`Stop`, non-text deltas such as tool use
/// or reasoning, metadata without usage, unknown events).
pub fn translate(event: ConverseStreamOutput) -> Option<ModelEvent> {
    match event {
        ConverseStreamOutput::ContentBlockDelta(delta) => match delta.delta {
            Some(ContentBlockDelta::Text(text)) if !text.is_empty() => {
                Some(ModelEvent::Delta(text))
            }
            _ => None,
        },
        ConverseStreamOutput::MessageStop(stop) => Some(ModelEvent::Stop {
            stop_reason: stop.stop_reason.as_str().to_owned(),
        }),
        ConverseStreamOutput::Metadata(meta) => meta.usage.map(|u| ModelEvent::Usage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            total_tokens: u.total_tokens,
        }),
        _ => None,
    }
}

/// An open ConverseStream.
#[derive(Debug)]
pub struct ModelStream {
    receiver: EventReceiver<ConverseStreamOutput, ConverseStreamOutputError>,
}

impl ModelStream {
    /// Starts a ConverseStream: `messages` = `[{role: user, content: [{text: prompt}]}]`,
    /// `system` = `[{text}]` when given, `inferenceConfig` = `{maxTokens, temperature?}`.
    ///
    /// # Errors
    /// [`ModelError::BeforeStream`] when Bedrock answers with an error or cannot be reached.
    pub async fn open(client: &Client, request: &ModelRequest) -> Result<Self, ModelError> {
        let message = Message::builder()
            .role(ConversationRole::User)
            .content(ContentBlock::Text(request.prompt.clone()))
            .build()
            .map_err(|e| ModelError::BeforeStream {
                kind: ErrorKind::Other,
                detail: e.to_string(),
            })?;
        let mut inference = InferenceConfiguration::builder().max_tokens(request.max_tokens);
        if let Some(t) = request.temperature {
            inference = inference.temperature(t);
        }
        let mut call = client
            .converse_stream()
            .model_id(&request.model_id)
            .messages(message)
            .inference_config(inference.build());
        if let Some(system) = &request.system {
            call = call.system(SystemContentBlock::Text(system.clone()));
        }
        let output = call.send().await.map_err(before_stream_error)?;
        Ok(Self {
            receiver: output.stream,
        })
    }

    /// Opens a ConverseStream and reads up to its first model event, opening
    /// it again (after a jittered backoff per `retry`) while it fails
    /// retryably before that event; see [`should_reopen`]. Returns the stream
    /// and its first event (`None` if it ended without any).
    ///
    /// # Errors
    /// [`ModelError::BeforeStream`] when the request fails (after the SDK's
    /// retries), [`ModelError::MidStream`] when the stream fails before its
    /// first event on the last attempt or with a non-retryable error.
    pub async fn open_first(
        client: &Client,
        request: &ModelRequest,
        retry: &RetryPolicy,
    ) -> Result<(Self, Option<ModelEvent>), ModelError> {
        let mut attempt = 1;
        loop {
            let mut stream = Self::open(client, request).await?;
            match stream.next().await {
                Ok(first) => return Ok((stream, first)),
                Err(error) if should_reopen(&error, attempt, retry) => {
                    let delay = retry.delay(attempt, crate::retry::random_u64());
                    warn!(
                        attempt,
                        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        %error,
                        "ConverseStream failed before its first event; opening it again"
                    );
                    drop(stream);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The next model event; `Ok(None)` once the stream has ended.
    ///
    /// # Errors
    /// [`ModelError::MidStream`] for an exception frame or a cut-off stream;
    /// the stream is over after an error.
    pub async fn next(&mut self) -> Result<Option<ModelEvent>, ModelError> {
        loop {
            match self.receiver.recv().await {
                Ok(None) => return Ok(None),
                Ok(Some(event)) => {
                    if let Some(event) = translate(event) {
                        return Ok(Some(event));
                    }
                }
                Err(err) => return Err(mid_stream_error(err)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_bedrockruntime::types::error::{
        AccessDeniedException, ModelStreamErrorException, ThrottlingException, ValidationException,
    };
    use aws_sdk_bedrockruntime::types::{
        ContentBlockDeltaEvent, ConverseStreamMetadataEvent, MessageStartEvent, MessageStopEvent,
        StopReason, TokenUsage, ToolUseBlockDelta,
    };

    #[test]
    fn text_deltas_stop_and_usage_are_translated() {
        let delta = ConverseStreamOutput::ContentBlockDelta(
            ContentBlockDeltaEvent::builder()
                .content_block_index(0)
                .delta(ContentBlockDelta::Text("Hi".into()))
                .build()
                .unwrap(),
        );
        assert_eq!(translate(delta), Some(ModelEvent::Delta("Hi".into())));

        let stop = ConverseStreamOutput::MessageStop(
            MessageStopEvent::builder()
                .stop_reason(StopReason::MaxTokens)
                .build()
                .unwrap(),
        );
        assert_eq!(
            translate(stop),
            Some(ModelEvent::Stop {
                stop_reason: "max_tokens".into()
            })
        );

        let usage = ConverseStreamOutput::Metadata(
            ConverseStreamMetadataEvent::builder()
                .usage(
                    TokenUsage::builder()
                        .input_tokens(3)
                        .output_tokens(5)
                        .total_tokens(8)
                        .build()
                        .unwrap(),
                )
                .build(),
        );
        assert_eq!(
            translate(usage),
            Some(ModelEvent::Usage {
                input_tokens: 3,
                output_tokens: 5,
                total_tokens: 8
            })
        );
    }

    #[test]
    fn other_events_are_ignored() {
        let start = ConverseStreamOutput::MessageStart(
            MessageStartEvent::builder()
                .role(ConversationRole::Assistant)
                .build()
                .unwrap(),
        );
        assert_eq!(translate(start), None);
        let tool = ConverseStreamOutput::ContentBlockDelta(
            ContentBlockDeltaEvent::builder()
                .content_block_index(1)
                .delta(ContentBlockDelta::ToolUse(
                    ToolUseBlockDelta::builder().input("{").build().unwrap(),
                ))
                .build()
                .unwrap(),
        );
        assert_eq!(translate(tool), None);
        let no_usage =
            ConverseStreamOutput::Metadata(ConverseStreamMetadataEvent::builder().build());
        assert_eq!(translate(no_usage), None);
    }

    #[test]
    fn mid_stream_exceptions_map_to_their_variant() {
        let throttled: SdkError<ConverseStreamOutputError, ()> = SdkError::service_error(
            ConverseStreamOutputError::ThrottlingException(
                ThrottlingException::builder().message("slow down").build(),
            ),
            (),
        );
        let e = mid_stream_error(throttled);
        assert!(e.is_mid_stream());
        assert_eq!(e.error_type(), "ThrottlingException");
        assert!(e.retryable());
        assert!(e.to_string().contains("slow down"));

        let model: SdkError<ConverseStreamOutputError, ()> = SdkError::service_error(
            ConverseStreamOutputError::ModelStreamErrorException(
                ModelStreamErrorException::builder()
                    .message("boom")
                    .original_status_code(500)
                    .build(),
            ),
            (),
        );
        let e = mid_stream_error(model);
        assert_eq!(e.error_type(), "ModelStreamError");
        assert!(e.retryable());

        let invalid: SdkError<ConverseStreamOutputError, ()> = SdkError::service_error(
            ConverseStreamOutputError::ValidationException(
                ValidationException::builder().message("bad").build(),
            ),
            (),
        );
        let e = mid_stream_error(invalid);
        assert_eq!(e.error_type(), "ValidationException");
        assert!(!e.retryable());

        let cut: SdkError<ConverseStreamOutputError, ()> =
            SdkError::response_error("unexpected end of stream", ());
        let e = mid_stream_error(cut);
        assert_eq!(e.kind(), ErrorKind::Truncated);
        assert_eq!(e.error_type(), "StreamTruncated");
        assert!(e.retryable());
    }

    #[test]
    fn before_stream_errors_map_to_their_variant() {
        let denied: SdkError<ConverseStreamError, ()> = SdkError::service_error(
            ConverseStreamError::AccessDeniedException(
                AccessDeniedException::builder().message("no").build(),
            ),
            (),
        );
        let e = before_stream_error(denied);
        assert!(!e.is_mid_stream());
        assert_eq!(e.error_type(), "AccessDeniedException");
        assert!(!e.retryable());

        let throttled: SdkError<ConverseStreamError, ()> = SdkError::service_error(
            ConverseStreamError::ThrottlingException(ThrottlingException::builder().build()),
            (),
        );
        assert_eq!(before_stream_error(throttled).kind(), ErrorKind::Throttling);

        let unknown: SdkError<ConverseStreamError, ()> =
            SdkError::service_error(ConverseStreamError::unhandled("weird"), ());
        assert_eq!(before_stream_error(unknown).error_type(), "InternalError");

        let built: SdkError<ConverseStreamError, ()> = SdkError::construction_failure("no region");
        let e = before_stream_error(built);
        assert_eq!(e.kind(), ErrorKind::Other);
        assert!(!e.retryable());
    }

    #[test]
    fn only_retryable_errors_before_the_first_event_reopen_the_stream() {
        let mid = |kind| ModelError::MidStream {
            kind,
            detail: String::new(),
        };
        let p = REOPEN_RETRY;
        assert!(should_reopen(&mid(ErrorKind::Throttling), 1, &p));
        assert!(should_reopen(&mid(ErrorKind::ServiceUnavailable), 2, &p));
        assert!(
            !should_reopen(&mid(ErrorKind::Throttling), 3, &p),
            "attempts used up"
        );
        assert!(
            !should_reopen(&mid(ErrorKind::Validation), 1, &p),
            "not retryable"
        );
        let before = ModelError::BeforeStream {
            kind: ErrorKind::Throttling,
            detail: String::new(),
        };
        assert!(!should_reopen(&before, 1, &p), "the SDK already retried it");
    }

    #[test]
    fn the_sdk_retry_is_standard_with_four_attempts() {
        let c = sdk_retry_config();
        assert_eq!(c.max_attempts(), 4);
        assert_eq!(c.mode(), aws_config::retry::RetryMode::Standard);
    }

    #[test]
    fn codes_map_to_kinds() {
        assert_eq!(
            ErrorKind::from_code("ThrottlingException:http://internal"),
            ErrorKind::Throttling
        );
        assert_eq!(
            ErrorKind::from_code("serviceUnavailableException"),
            ErrorKind::ServiceUnavailable
        );
        assert_eq!(ErrorKind::from_code("Nope"), ErrorKind::Other);
    }
}
