//! Place in the data path: **model** -> coalescer -> turn driver -> sink.
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

mod error;
mod reader;

use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver;
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ContentBlockDelta, ConversationRole, ConverseStreamOutput,
    InferenceConfiguration, Message, SystemContentBlock,
};
use tracing::warn;

use crate::retry::RetryPolicy;
use crate::store::{HistoryMessage, Role};

pub use error::ErrorKind;
pub(crate) use error::{ModelError, before_stream_error, mid_stream_error};
pub(crate) use reader::{ModelEvents, ModelItem, spawn_model_reader};

/// Attempts the SDK makes for one ConverseStream request (the first included)
/// before it reports an error: [`sdk_retry_config`].
pub(crate) const SDK_MAX_ATTEMPTS: u32 = 4;

/// How often a stream that fails before its first event is opened again (the
/// first opening included): see [`ModelStream::open_first`].
pub(crate) const REOPEN_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    base_delay: std::time::Duration::from_millis(200),
    max_delay: std::time::Duration::from_secs(2),
};

/// The Bedrock client's retry configuration, set explicitly rather than left
/// to the SDK's defaults: standard mode (exponential backoff with jitter,
/// retrying throttling, `ServiceUnavailable`, 5xx, timeouts and connection
/// errors) with [`SDK_MAX_ATTEMPTS`] attempts.
pub(crate) fn sdk_retry_config() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard().with_max_attempts(SDK_MAX_ATTEMPTS)
}

/// True when a stream that failed with `error` on opening attempt `attempt`
/// (1-based) before producing any event should be opened again: the error
/// happened after the response started (so the SDK did not retry it), is
/// retryable, and `policy` has attempts left. Errors before the stream were
/// already retried by the SDK and are not retried again.
pub(crate) fn should_reopen(error: &ModelError, attempt: u32, policy: &RetryPolicy) -> bool {
    error.is_mid_stream() && error.retryable() && policy.may_retry(attempt)
}

/// One event of a model's answer, in stream order: any number of `Delta`s, then
/// `Stop`, then (normally) `Usage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ModelEvent {
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
        /// `input_tokens + output_tokens`, as Bedrock reports it.
        total_tokens: i32,
    },
}

/// What to ask the model.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModelRequest {
    /// Bedrock model id or ARN (`modelId` in the path).
    pub model_id: String,
    /// System prompt (`system[0].text`), if any.
    pub system: Option<String>,
    /// The conversation's earlier messages, oldest first, starting with a
    /// `user` message and alternating ([`crate::store::HistoryMessage`]).
    pub history: Vec<HistoryMessage>,
    /// The user's message (the last of `messages`, role `user`).
    pub prompt: String,
    /// `inferenceConfig.maxTokens`.
    pub max_tokens: i32,
    /// `inferenceConfig.temperature`, 0..=1.
    pub temperature: Option<f32>,
}

/// The model events of one event-stream message, `None` for those we ignore
/// (`messageStart`, `contentBlockStart`/`Stop`, non-text deltas such as tool use
/// or reasoning, metadata without usage, unknown events).
pub(crate) fn translate(event: ConverseStreamOutput) -> Option<ModelEvent> {
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

/// Converse `messages` for `request`: its history, then its prompt.
fn converse_messages(request: &ModelRequest) -> Result<Vec<Message>, ModelError> {
    let history = request.history.iter().map(|m| {
        let role = match m.role {
            Role::User => ConversationRole::User,
            Role::Assistant => ConversationRole::Assistant,
        };
        (role, m.text.clone())
    });
    history
        .chain([(ConversationRole::User, request.prompt.clone())])
        .map(|(role, text)| {
            Message::builder()
                .role(role)
                .content(ContentBlock::Text(text))
                .build()
                .map_err(|e| ModelError::BeforeStream {
                    kind: ErrorKind::Other,
                    detail: e.to_string(),
                })
        })
        .collect()
}

/// An open ConverseStream.
#[derive(Debug)]
pub(crate) struct ModelStream {
    receiver: EventReceiver<ConverseStreamOutput, ConverseStreamOutputError>,
}

impl ModelStream {
    /// Starts a ConverseStream: `messages` = the history, then
    /// `{role: user, content: [{text: prompt}]}`; `system` = `[{text}]` when
    /// given, `inferenceConfig` = `{maxTokens, temperature?}`.
    ///
    /// # Errors
    /// [`ModelError::BeforeStream`] when Bedrock answers with an error or cannot be reached.
    pub(crate) async fn open(client: &Client, request: &ModelRequest) -> Result<Self, ModelError> {
        let messages = converse_messages(request)?;
        let mut inference = InferenceConfiguration::builder().max_tokens(request.max_tokens);
        if let Some(t) = request.temperature {
            inference = inference.temperature(t);
        }
        let mut call = client
            .converse_stream()
            .model_id(&request.model_id)
            .set_messages(Some(messages))
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
    pub(crate) async fn open_first(
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
    pub(crate) async fn next(&mut self) -> Result<Option<ModelEvent>, ModelError> {
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
mod tests;
