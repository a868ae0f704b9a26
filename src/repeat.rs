//! Place in the data path: AppSync --Invoke(Event)--> handler -> **repeat**.
//! A delivery of a turn whose claim another delivery holds: Lambda's
//! at-least-once repeat while the first still streams, or Lambda's retry
//! after the environment streaming it died
//! (<https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html>).
//!
//! The repeat reads the claim ([`crate::store::ClaimState`]): a finished
//! turn needs nothing; a leased one is alive, so the repeat waits for it to
//! finish or for its lease to run out (never past its own deadline); a turn
//! whose lease has gone unrenewed for a whole further lease is taken over and
//! ended with one terminal chunk after the last stored `seq`:
//! `errorType: Interrupted`, `retryable: true`, stored like any chunk. Every
//! turn then ends on its subscriber's screen.
//!
//! Limits, said plainly: chunks are stored beside publishing, normally up to
//! the chunk writer's linger (100 ms) behind, more when DynamoDB is slow; a
//! chunk published in that window before the environment died is not in the
//! store, and the `Interrupted` chunk then repeats its `seq` (the clients'
//! assemblers finish on a terminal chunk even when its `seq` is a repeat). And a turn that
//! is alive but cannot renew its lease for two leases (a DynamoDB outage)
//! can be taken over by a repeat that arrives then.

use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::chunk::{Ending, Failure, terminal_chunk};
use crate::event::TurnRequest;
use crate::sink::ChunkSink;
use crate::store::{AnswerEnd, ClaimState, Store, chunk_item};
use crate::turn::{TurnError, TurnOutcome};
use crate::vocabulary::{ErrorType, StopReason};

/// How long past a lease's end a repeat waits before reading the claim again.
const GRACE: Duration = Duration::from_millis(200);

/// Sleeps until `wake`; `false` (at once) when that is past `deadline`.
async fn wait_until(wake: Instant, deadline: Option<Instant>) -> bool {
    if deadline.is_some_and(|d| wake > d) {
        return false;
    }
    tokio::time::sleep_until(wake).await;
    true
}

/// Settles a repeated delivery of `request` whose claim is leased for
/// `lease` at a time; see the module docs. Publishes at most one chunk,
/// through `sink`.
///
/// # Errors
/// [`TurnError::Publish`] when the `Interrupted` chunk could not be published.
pub(crate) async fn settle<S: ChunkSink>(
    store: &Store,
    sink: &S,
    request: &TurnRequest,
    lease: Duration,
    deadline: Option<Instant>,
) -> Result<TurnOutcome, TurnError> {
    let ids = &request.ids;
    let Some(claim) = wait_for_dead_claim(store, request, lease, deadline).await else {
        return Ok(TurnOutcome::duplicate(ids));
    };
    warn!(
        "the environment streaming this turn stopped renewing its lease; ending the turn as interrupted"
    );
    let stored = match store.stored_chunks(ids).await {
        Ok(stored) => stored,
        Err(error) => {
            // Without the stored chunks the next `seq` is unknown: publishing
            // could collide with a delivered chunk.
            warn!(%error, "could not read the turn's stored chunks; not ending it");
            return Ok(TurnOutcome::duplicate(ids));
        }
    };
    if stored.iter().any(|c| c.done) {
        info!("the turn's terminal chunk was delivered before its environment stopped");
        return Ok(TurnOutcome::duplicate(ids));
    }
    let seq = stored.last().map_or(0, |c| c.seq + 1);
    let failure = Failure::of(ErrorType::Interrupted);
    let ending = Ending::Failed(failure.clone());
    let chunk = terminal_chunk(ids, seq, String::new(), &ending);
    let published = sink.publish(&chunk).await;
    if let Err(error) = store
        .write_items(vec![chunk_item(&chunk, Utc::now())])
        .await
    {
        warn!(%error, "could not store the interrupted turn's terminal chunk");
    }
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
    lease: Duration,
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
        // Dead only after a whole further lease without renewal: a renewal
        // may be late, not lost.
        let dead_at = claim
            .lease_until
            .saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2));
        let left = dead_at - Utc::now().timestamp_millis();
        if left > 0 {
            let wake = Instant::now() + Duration::from_millis(left.unsigned_abs()) + GRACE;
            if !wait_until(wake, deadline).await {
                info!("the turn is still streaming in another execution environment");
                return None;
            }
            continue;
        }
        match store.take_over(ids, claim.lease_until).await {
            Ok(true) => return Some(claim),
            Ok(false) => {
                // Renewed, finished or taken meanwhile: look again, later.
                if !wait_until(Instant::now() + GRACE, deadline).await {
                    return None;
                }
            }
            Err(error) => {
                warn!(%error, "could not take the turn over");
                return None;
            }
        }
    }
}
