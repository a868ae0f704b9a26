//! Place in the data path: AppSync --Invoke(Event)--> handler -> **repeat**.
//! A delivery of a turn whose claim another delivery holds: Lambda's
//! at-least-once repeat while the first still streams, or Lambda's retry
//! after the environment streaming it died
//! (<https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html>).
//!
//! The repeat reads the claim ([`crate::store::ClaimState`]): a finished
//! turn needs nothing; a leased one is alive, so the repeat waits for it to
//! finish or for its lease to run out (never past its own deadline); a turn
//! whose lease ran out unrenewed is taken over and ended with one terminal
//! chunk after the last stored `seq`: `errorType: Interrupted`,
//! `retryable: true`. Every turn then ends on its subscriber's screen.
//!
//! Chunks are stored beside publishing, up to the chunk writer's linger
//! (100 ms) behind; a chunk published in that window before the environment died is
//! not in the store, and the `Interrupted` chunk then repeats its `seq`.

use chrono::Utc;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::chunk::{Ending, Failure, terminal_chunk};
use crate::event::TurnRequest;
use crate::sink::ChunkSink;
use crate::store::{AnswerEnd, ClaimState, Store};
use crate::turn::{TurnError, TurnOutcome};
use crate::vocabulary::{ErrorType, StopReason};

/// How long past a lease's end a repeat waits before reading the claim again.
const GRACE: std::time::Duration = std::time::Duration::from_millis(200);

/// Settles a repeated delivery of `request`; see the module docs. Publishes
/// at most one chunk, through `sink`.
///
/// # Errors
/// [`TurnError::Publish`] when the `Interrupted` chunk could not be published.
pub(crate) async fn settle<S: ChunkSink>(
    store: &Store,
    sink: &S,
    request: &TurnRequest,
    deadline: Option<Instant>,
) -> Result<TurnOutcome, TurnError> {
    let ids = &request.ids;
    let Some(claim) = wait_for_dead_claim(store, request, deadline).await else {
        return Ok(TurnOutcome::duplicate(ids));
    };
    warn!(
        "the environment streaming this turn stopped renewing its lease; ending the turn as interrupted"
    );
    let stored = store.stored_chunks(ids).await.unwrap_or_else(|error| {
        warn!(%error, "could not read the turn's stored chunks");
        Vec::new()
    });
    if stored.iter().any(|c| c.done) {
        info!("the turn's terminal chunk was delivered before its environment stopped");
        return Ok(TurnOutcome::duplicate(ids));
    }
    let seq = stored.last().map_or(0, |c| c.seq + 1);
    let failure = Failure::of(ErrorType::Interrupted);
    let ending = Ending::Failed(failure.clone());
    let chunk = terminal_chunk(ids, seq, String::new(), &ending);
    let published = sink.publish(&chunk).await;
    let text: String = stored.into_iter().map(|c| c.text).collect();
    let end = AnswerEnd {
        stop_reason: StopReason::Error.as_str().to_owned(),
        usage: None,
        error: Some(failure.chunk_error()),
    };
    if let Some(started) = claim.started_at
        && let Err(error) = store
            .record_answer(ids, started, &request.model_id, &text, &end)
            .await
    {
        warn!(%error, "could not store the interrupted answer");
    }
    match published.result {
        Ok(()) => Ok(TurnOutcome::ended(ids, seq + 1, &ending)),
        Err(source) => Err(TurnError::Publish {
            turn_id: ids.turn_id.clone(),
            seq,
            source,
        }),
    }
}

/// Reads turn `request`'s claim until it is finished (`None`), or its lease
/// ran out and this delivery took the turn over (the claim as it was). Gives
/// up (`None`) when the lease outlasts `deadline` or the store cannot answer.
async fn wait_for_dead_claim(
    store: &Store,
    request: &TurnRequest,
    deadline: Option<Instant>,
) -> Option<ClaimState> {
    let ids = &request.ids;
    loop {
        let claim = match store.read_claim(ids).await {
            Ok(Some(claim)) if !claim.finished => claim,
            Ok(_) => return None,
            Err(error) => {
                warn!(%error, "could not read the turn's claim; leaving the turn to its first delivery");
                return None;
            }
        };
        let left = claim.lease_until - Utc::now().timestamp_millis();
        if left > 0 {
            let wake =
                Instant::now() + std::time::Duration::from_millis(left.unsigned_abs()) + GRACE;
            if deadline.is_some_and(|d| wake > d) {
                info!("the turn is still streaming in another execution environment");
                return None;
            }
            tokio::time::sleep_until(wake).await;
            continue;
        }
        match store.take_over(ids, claim.lease_until).await {
            Ok(true) => return Some(claim),
            Ok(false) => {}
            Err(error) => {
                warn!(%error, "could not take the turn over");
                return None;
            }
        }
    }
}
