//! The seam between the ConverseStream endpoint and the stand-in models: what
//! every model shares. The request a model is given (already validated by
//! [`super::request`]), the output it streams back to [`super::stream`], and
//! the bookkeeping that lets tests see a cancelled generation really stopped.
//!
//! Place in the data path: resolver --ConverseStream--> Bedrock endpoint ->
//! **model** --[`ModelOutput`]--> event-stream body -> resolver (coalescer ->
//! publisher) -> AppSync -> subscriber.
//!
//! A model is started with a [`GenerationRequest`] and answers with a
//! [`Generation`]: its input token count plus a channel of [`ModelOutput`]s.
//! Dropping the receiver is how a client cancels: every model checks the
//! channel between deltas and stops (and releases the CPU) when it is gone.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

use super::error::BedrockError;

/// How many events a model may run ahead of the HTTP body before it waits.
pub(crate) const EVENT_BUFFER: usize = 32;

/// The models this stand-in serves, addressed by the `{modelId}` path segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelId {
    /// `scripted`: deterministic text, no weights (see [`super::scripted`]).
    Scripted,
    /// `smollm2`: SmolLM2-135M-Instruct run with candle (see [`super::smollm2`]).
    SmolLm2,
}

impl ModelId {
    /// Every model id the endpoint accepts.
    pub const ALL: [ModelId; 2] = [ModelId::Scripted, ModelId::SmolLm2];

    /// Parses a (percent-decoded) model id; `None` for an unknown id.
    pub fn parse(id: &str) -> Option<Self> {
        match id {
            "scripted" => Some(Self::Scripted),
            "smollm2" => Some(Self::SmolLm2),
            _ => None,
        }
    }

    /// The model a (percent-decoded) `{modelId}` names: the one place an id
    /// from a request becomes a model, so every entry point refuses an
    /// unknown id the same way.
    ///
    /// # Errors
    ///
    /// [`BedrockError::ModelNotFound`] for an id this stand-in does not serve
    /// (the service's 404 `ResourceNotFoundException`).
    pub fn resolve(id: &str) -> Result<Self, BedrockError> {
        Self::parse(id).ok_or_else(|| BedrockError::ModelNotFound(id.to_owned()))
    }

    /// The id as it appears in the request path.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scripted => "scripted",
            Self::SmolLm2 => "smollm2",
        }
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who wrote a message of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The human side (`"user"`).
    User,
    /// The model side (`"assistant"`), e.g. earlier turns.
    Assistant,
}

impl Role {
    /// The role name used on the wire and in the ChatML template.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// One message of the conversation, reduced to its text blocks (joined by `\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Who wrote it: the user, or the assistant in an earlier turn.
    pub role: Role,
    /// The text of its `{"text": ...}` content blocks, joined by a newline.
    pub text: String,
}

/// A validated ConverseStream request, as the models see it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GenerationRequest {
    /// The `system` text blocks, in order.
    pub system: Vec<String>,
    /// The conversation, oldest first; never empty, starts with a user message.
    pub messages: Vec<ChatMessage>,
    /// `inferenceConfig.maxTokens`: the most output tokens to generate (>= 1).
    pub max_tokens: Option<u32>,
    /// `inferenceConfig.temperature` in `[0, 1]`; absent or 0 means greedy.
    pub temperature: Option<f32>,
    /// `inferenceConfig.topP` in `[0, 1]`, used only when sampling.
    pub top_p: Option<f32>,
    /// `inferenceConfig.stopSequences`: generation stops before the first match.
    pub stop_sequences: Vec<String>,
}

impl GenerationRequest {
    /// The text of the last user message (the prompt of this turn), or `""`.
    pub fn last_user_text(&self) -> &str {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.text.as_str())
            .unwrap_or("")
    }
}

/// Why the model stopped, as reported in the `messageStop` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model finished its answer (`end_turn`).
    EndTurn,
    /// `maxTokens` output tokens were generated (`max_tokens`).
    MaxTokens,
    /// One of `stopSequences` appeared in the output (`stop_sequence`).
    StopSequence,
}

impl StopReason {
    /// The wire value of `messageStop.stopReason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EndTurn => "end_turn",
            Self::MaxTokens => "max_tokens",
            Self::StopSequence => "stop_sequence",
        }
    }
}

/// What a running stand-in model sends to the endpoint, in order: deltas,
/// then exactly one of `Done` or `Failed`. (Not the resolver's own model
/// events: these are the stand-in's output, before event-stream framing.)
#[derive(Debug, Clone, PartialEq)]
pub enum ModelOutput {
    /// New output text (complete UTF-8) and how many output tokens produced it.
    Delta {
        /// The text to append to the answer.
        text: String,
        /// Output tokens this delta accounts for (0 is allowed).
        tokens: u32,
    },
    /// The model finished: the last event of a generation that succeeded.
    Done {
        /// Why it stopped (`end_turn`, `max_tokens` or `stop_sequence`).
        stop: StopReason,
        /// Total output tokens of the turn.
        output_tokens: u32,
    },
    /// The model failed mid-stream; the endpoint turns this into an exception frame.
    Failed {
        /// A human-readable description.
        message: String,
    },
}

/// A started generation: known input size plus the stream of its events.
///
/// Dropping `events` cancels the generation.
#[derive(Debug)]
pub struct Generation {
    /// Prompt size in the model's tokens (words for `scripted`).
    pub input_tokens: u32,
    /// Deltas then one terminal event.
    pub events: mpsc::Receiver<ModelOutput>,
}

/// Counts generations whose producer (task or thread) is still running.
#[derive(Debug, Clone, Default)]
pub(crate) struct ActiveCounter(Arc<AtomicUsize>);

impl ActiveCounter {
    /// Registers one running producer until the guard is dropped.
    pub(crate) fn enter(&self) -> ActiveGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        ActiveGuard(self.0.clone())
    }

    /// How many producers are running now.
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Held by a model's producer for as long as it runs.
#[derive(Debug)]
pub(crate) struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts whitespace-separated words: the `scripted` model's notion of a token.
pub(crate) fn word_count(text: &str) -> u32 {
    u32::try_from(text.split_whitespace().count()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_round_trip() {
        for id in ModelId::ALL {
            assert_eq!(ModelId::parse(id.as_str()), Some(id));
        }
        assert_eq!(
            ModelId::parse("anthropic.claude-3-haiku-20240307-v1:0"),
            None
        );
    }

    #[test]
    fn resolve_refuses_an_unknown_id_as_not_found() {
        assert_eq!(ModelId::resolve("scripted").ok(), Some(ModelId::Scripted));
        assert!(matches!(
            ModelId::resolve("nope"),
            Err(BedrockError::ModelNotFound(id)) if id == "nope"
        ));
    }

    #[test]
    fn last_user_text_skips_assistant_turns() {
        let req = GenerationRequest {
            messages: vec![
                ChatMessage {
                    role: Role::User,
                    text: "first".into(),
                },
                ChatMessage {
                    role: Role::Assistant,
                    text: "reply".into(),
                },
                ChatMessage {
                    role: Role::User,
                    text: "second".into(),
                },
                ChatMessage {
                    role: Role::Assistant,
                    text: "prefill".into(),
                },
            ],
            ..Default::default()
        };
        assert_eq!(req.last_user_text(), "second");
    }

    #[test]
    fn active_counter_tracks_guards() {
        let counter = ActiveCounter::default();
        let a = counter.enter();
        let b = counter.enter();
        assert_eq!(counter.get(), 2);
        drop(a);
        assert_eq!(counter.get(), 1);
        drop(b);
        assert_eq!(counter.get(), 0);
    }
}
