//! Place in the data path: client --POST /cancel--> function URL -> **cancel**
//! -> the turn's claim in the conversations table <- the streaming
//! environment, which stops the turn. The function URL's `cancelTurn`.
//!
//! Lambda does not tell a streaming function that its client left, so a
//! client that wants its answer to stop says so: `POST /cancel` with the
//! same token and `{"conversationId", "turnId"}` (the turn id is in every
//! chunk). That request lands in another execution environment (the one
//! streaming the turn takes one invocation at a time), so it marks the turn's
//! claim (`cancelRequested`), and the streaming turn reads its claim every
//! [`CANCEL_POLL`] and stops within one poll, ending with `stopReason:
//! cancelled` and dropping the model stream. The claim's key holds the
//! owner, so a caller can cancel only their own turns. Without a
//! conversations table there is no claim, and turns cannot be cancelled.
//! The WebSocket API's `cancelTurn` route stops turns the same way.

use std::time::Duration;

use serde::Deserialize;
use tracing::warn;

use crate::event::{TurnIds, is_valid_id};
use crate::store::Store;

/// How often a streaming turn reads whether it was cancelled: one strongly
/// consistent read of its claim (one read unit) per poll.
pub const CANCEL_POLL: Duration = Duration::from_millis(500);

/// The body of `POST /cancel`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CancelInput {
    conversation_id: String,
    turn_id: String,
}

impl CancelInput {
    /// The ids as a client sent them.
    pub(crate) fn new(conversation_id: String, turn_id: String) -> Self {
        Self {
            conversation_id,
            turn_id,
        }
    }

    /// The turn `owner` asks to cancel; `None` for malformed ids.
    pub(crate) fn turn_of(self, owner: String) -> Option<TurnIds> {
        (is_valid_id(&self.conversation_id) && is_valid_id(&self.turn_id)).then_some(TurnIds {
            conversation_id: self.conversation_id,
            turn_id: self.turn_id,
            owner,
        })
    }
}

/// Why a cancellation could not be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CancelRefused {
    /// The ids are malformed.
    Invalid,
    /// No conversations table: turns have no claim to mark.
    NotSupported,
    /// The table could not be written just now.
    Unavailable,
}

impl CancelRefused {
    /// The error type the caller is told.
    pub(crate) fn error_type(self) -> &'static str {
        match self {
            Self::Invalid => crate::vocabulary::ErrorType::Validation.as_str(),
            Self::NotSupported => "NotSupported",
            Self::Unavailable => "ServiceUnavailable",
        }
    }

    /// What the caller is told.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::Invalid => {
                "conversationId and turnId must be 1 to 128 characters of A-Z, a-z, 0-9, '-', '_', '.', ':'"
            }
            Self::NotSupported => "turns cannot be cancelled here",
            Self::Unavailable => "the answer could not be stopped just now; try again",
        }
    }
}

/// Asks turn `ids` to stop by marking its claim;
/// whether it was still running.
///
/// # Errors
/// [`CancelRefused`] saying why nothing was marked.
pub(crate) async fn request(store: Option<&Store>, ids: &TurnIds) -> Result<bool, CancelRefused> {
    let store = store.ok_or(CancelRefused::NotSupported)?;
    store.request_cancel(ids).await.map_err(|error| {
        warn!(%error, "could not record the cancellation");
        CancelRefused::Unavailable
    })
}

/// Resolves once turn `ids`'s owner has asked it to stop; never without a
/// store. A read that fails is logged once and tried again at the next poll.
pub(crate) async fn cancelled(store: Option<&Store>, ids: &TurnIds) {
    let Some(store) = store else {
        return std::future::pending().await;
    };
    let mut warned = false;
    loop {
        tokio::time::sleep(CANCEL_POLL).await;
        match store.cancel_requested(ids).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(error) if !warned => {
                warn!(%error, "cannot read whether the turn was cancelled; trying again");
                warned = true;
            }
            Err(_) => {}
        }
    }
}
