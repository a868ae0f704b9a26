//! Place in the data path: the end of a turn, turn driver -> **outcome** ->
//! Lambda. What the invocation returns: the outcome of a turn that reached its
//! user (whatever it said), or the error of one that could not.

use serde::Serialize;
use thiserror::Error;

use crate::chunk::Ending;
use crate::event::{TurnIds, ValidationError};
use crate::sink::SinkError;
use crate::vocabulary::{ErrorType, StopReason};

/// What the Lambda returns for a turn: `{"conversationId","turnId","chunks",
/// "stopReason","errorType"?,"duplicate"?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnOutcome {
    /// The `conversationId` every chunk of the turn carried.
    pub conversation_id: String,
    /// The `turnId` every chunk of the turn carried.
    pub turn_id: String,
    /// Sequence numbers used (the terminal chunk's `seq` + 1); 0 for a duplicate.
    pub chunks: i64,
    /// The terminal chunk's `stopReason`, or [`StopReason::Duplicate`].
    pub stop_reason: StopReason,
    /// The terminal chunk's `error.errorType`, if it carried one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<ErrorType>,
    /// True when the event repeated a turn already started in this execution
    /// environment, so nothing was streamed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

impl TurnOutcome {
    /// The outcome of a turn that streamed `chunks` chunks and ended with
    /// `ending`.
    pub(crate) fn ended(ids: &TurnIds, chunks: i64, ending: &Ending) -> Self {
        let error_type = match ending {
            Ending::Failed(failure) => Some(failure.error_type),
            _ => None,
        };
        Self {
            conversation_id: ids.conversation_id.clone(),
            turn_id: ids.turn_id.clone(),
            chunks,
            stop_reason: ending.stop_reason(),
            error_type,
            duplicate: false,
        }
    }

    /// The answer to a repeated event: nothing streamed.
    pub fn duplicate(ids: &TurnIds) -> Self {
        Self {
            conversation_id: ids.conversation_id.clone(),
            turn_id: ids.turn_id.clone(),
            chunks: 0,
            stop_reason: StopReason::Duplicate,
            error_type: None,
            duplicate: true,
        }
    }
}

/// Why the invocation failed: the Lambda error. Failures that were delivered
/// to the user as a terminal chunk are not errors (see [`TurnOutcome`]), except
/// validation failures, which are both.
#[derive(Debug, Error)]
pub enum TurnError {
    /// The payload is not a `sendPrompt` invocation.
    #[error("invalid invocation payload: {0}")]
    Event(#[from] serde_json::Error),
    /// The prompt or caller was rejected (message safe for users).
    #[error("{0}")]
    Validation(ValidationError),
    /// No chunk of the turn could be published, not even the terminal error
    /// chunk. Never returned once any chunk has reached AppSync.
    #[error("could not publish chunk {seq} of turn {turn_id}: {source}")]
    Publish {
        /// The `turnId` of the turn that could not be delivered.
        turn_id: String,
        /// The first chunk that failed.
        seq: i64,
        /// The sink's error for that chunk (AppSync's answer, or why there was none).
        #[source]
        source: SinkError,
    },
}

impl TurnError {
    /// A stable type for the Lambda error: `InvalidEvent`, the
    /// [`ValidationError::error_type`], or `DeliveryError`.
    pub fn error_type(&self) -> ErrorType {
        match self {
            TurnError::Event(_) => ErrorType::InvalidEvent,
            TurnError::Validation(v) => v.error_type(),
            TurnError::Publish { .. } => ErrorType::Delivery,
        }
    }
}
