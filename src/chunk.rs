//! Place in the data path: turn driver -> **chunk** -> sinks. How the driver's
//! pieces of text and the turn's ending become chunks on the wire.
//!
//! The chunk's shape is the schema's `Chunk`, generated once in
//! [`appsync_client::Chunk`]. A turn's chunks carry `seq` 0, 1, 2, ... without
//! gaps; every one but the last has `done: false` and no ending fields; the
//! last (the terminal chunk) has `done: true` and says how the turn ended: a
//! stop reason with usage, or `stopReason: error` with an error in words safe
//! to show the user ([`crate::vocabulary`]).

use appsync_client::{Chunk, ChunkError, Usage};

use crate::event::TurnIds;
use crate::model::ModelError;
use crate::vocabulary::{ErrorType, StopReason};

/// How a turn ends: what its terminal chunk says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ending {
    /// The model finished: its stop reason and usage (zeroes if none came).
    Completed {
        /// Bedrock's stop reason, as on the wire (`end_turn`, `max_tokens`, ...).
        stop_reason: String,
        /// Token counts from Bedrock's `metadata` event (zeroes if none came).
        usage: Usage,
    },
    /// The deadline came first; usage as far as known.
    Deadline {
        /// Token counts (zeroes if none came).
        usage: Usage,
    },
    /// The owner cancelled the turn.
    Cancelled {
        /// Token counts, `None` (null) when Bedrock had not reported them.
        usage: Option<Usage>,
    },
    /// The turn failed.
    Failed(Failure),
}

impl Ending {
    /// The terminal chunk's `stopReason` for this ending.
    pub(crate) fn stop_reason(&self) -> StopReason {
        match self {
            Ending::Completed { stop_reason, .. } => StopReason::Model(stop_reason.clone()),
            Ending::Deadline { .. } => StopReason::Deadline,
            Ending::Cancelled { .. } => StopReason::Cancelled,
            Ending::Failed(_) => StopReason::Error,
        }
    }
}

/// A non-terminal chunk of the turn `ids`: `seq` and `text`, nothing else.
pub(crate) fn text_chunk(ids: &TurnIds, seq: i64, text: String) -> Chunk {
    Chunk {
        conversation_id: ids.conversation_id.clone(),
        turn_id: ids.turn_id.clone(),
        owner: ids.owner.clone(),
        seq,
        text,
        done: false,
        stop_reason: None,
        usage: None,
        error: None,
    }
}

/// The terminal chunk (`done: true`) for `ending`, carrying the last `text`.
pub(crate) fn terminal_chunk(ids: &TurnIds, seq: i64, text: String, ending: &Ending) -> Chunk {
    let mut chunk = text_chunk(ids, seq, text);
    chunk.done = true;
    chunk.stop_reason = Some(ending.stop_reason().as_str().to_owned());
    match ending {
        Ending::Completed { usage, .. } | Ending::Deadline { usage } => {
            chunk.usage = Some(usage.clone());
        }
        Ending::Cancelled { usage } => chunk.usage = usage.clone(),
        Ending::Failed(failure) => chunk.error = Some(failure.chunk_error()),
    }
    chunk
}

/// Token counts of zero: the usage of a turn Bedrock reported none for.
pub(crate) fn zero_usage() -> Usage {
    Usage {
        input_tokens: 0,
        output_tokens: 0,
        total_tokens: 0,
    }
}

/// Why a turn failed: its error type, and the message its user sees.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    /// The `errorType`, which also decides `retryable`.
    pub(crate) error_type: ErrorType,
    /// Words safe to show the user (no Bedrock message, no ids, no internals).
    pub(crate) message: String,
}

impl Failure {
    /// A failure of `error_type` with that type's own user message.
    pub(crate) fn of(error_type: ErrorType) -> Self {
        Self {
            error_type,
            message: error_type.user_message().to_owned(),
        }
    }

    /// A model failure, typed by its [`crate::model::ErrorKind`].
    pub(crate) fn model(error: &ModelError) -> Self {
        Self::of(ErrorType::Model(error.kind()))
    }

    /// The chunk's `error` field: `{errorType, message, retryable}`.
    pub(crate) fn chunk_error(&self) -> ChunkError {
        ChunkError {
            error_type: self.error_type.as_str().to_owned(),
            message: self.message.clone(),
            retryable: self.error_type.retryable(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ErrorKind;

    #[test]
    fn a_terminal_chunk_says_how_the_turn_ended() {
        let ids = TurnIds::fixture();
        let done = terminal_chunk(
            &ids,
            3,
            "x".into(),
            &Ending::Completed {
                stop_reason: "end_turn".into(),
                usage: zero_usage(),
            },
        );
        assert_eq!(
            (done.seq, done.done, done.stop_reason.as_deref()),
            (3, true, Some("end_turn"))
        );
        assert_eq!(done.usage, Some(zero_usage()));

        let cancelled = terminal_chunk(&ids, 0, String::new(), &Ending::Cancelled { usage: None });
        assert_eq!(cancelled.stop_reason.as_deref(), Some("cancelled"));
        assert_eq!(cancelled.usage, None);

        let failed = terminal_chunk(
            &ids,
            1,
            String::new(),
            &Ending::Failed(Failure::of(ErrorType::Model(ErrorKind::Throttling))),
        );
        assert_eq!(failed.stop_reason.as_deref(), Some("error"));
        let error = failed.error.expect("an error");
        assert_eq!(error.error_type, "ThrottlingException");
        assert!(error.retryable);
    }

    #[test]
    fn a_text_chunk_has_no_ending() {
        let chunk = text_chunk(&TurnIds::fixture(), 0, "hi".into());
        assert!(!chunk.done);
        assert!(chunk.stop_reason.is_none() && chunk.usage.is_none() && chunk.error.is_none());
        assert_eq!(chunk.owner, "o1");
    }
}
