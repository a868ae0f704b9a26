//! Place in the data path: Bedrock ConverseStream -> coalescer -> **turn
//! driver** -> sinks. One turn, from a validated prompt's model events to its
//! terminal chunk.
//!
//! The model's reader task ([`crate::model::spawn_model_reader`]) feeds model
//! events into a channel; the driver pushes every delta into the turn's
//! coalescing strategy ([`crate::coalesce::Coalesce`]) and hands whatever piece
//! it gives out to the [`ChunkSink`] as the next chunk ([`crate::chunk`]).
//! Chunks are numbered `seq` 0, 1, 2, ... without gaps; the last has
//! `done: true` and either a stop reason with usage, or an error in words safe
//! to show a user. Errors of the model and the sink are mapped to what the
//! user sees here and only here.
//!
//! The turn also owns its ends: the Lambda deadline (`stopReason: deadline`),
//! the owner's cancellation (`stopReason: cancelled`, within one delta, with
//! the model stream dropped so the model and its cost stop), and delivery
//! failures (a `DeliveryError` terminal chunk).
//!
//! Lambda retries a failed asynchronous invocation and may deliver an event
//! twice (<https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html>),
//! so a turn whose failure has been delivered to the user returns success, and
//! a turn that published any chunk never returns an error.

mod driver;
mod outcome;

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::coalesce::Strategy;
use crate::event::TurnIds;
use crate::metrics::TurnStats;
use crate::model::ModelEvents;
use crate::sink::ChunkSink;

pub use outcome::{TurnError, TurnOutcome};

/// Everything one turn needs besides its ids and model events.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TurnContext<'a, S> {
    /// The chunk destination.
    pub sink: &'a S,
    /// How deltas become chunks.
    pub strategy: Strategy,
    /// Most UTF-8 bytes of text per chunk (all strategies but `per-delta`).
    pub max_chunk_bytes: usize,
    /// The adaptive strategy's hold time.
    pub max_hold: Duration,
    /// When to stop reading the model and end with `stopReason: deadline`.
    pub deadline: Option<Instant>,
    /// When the turn began: the origin of `TimeToFirstToken` and `TimeToFirstPublish`.
    pub started: Instant,
}

impl<'a, S> TurnContext<'a, S> {
    /// The context of a turn into `sink` as `config` sets it.
    pub(crate) fn new(
        config: &crate::config::Config,
        sink: &'a S,
        deadline: Option<Instant>,
        started: Instant,
    ) -> Self {
        Self {
            sink,
            strategy: config.strategy,
            max_chunk_bytes: config.max_chunk_bytes,
            max_hold: config.max_hold,
            deadline,
            started,
        }
    }
}

/// What [`drive`] returns: the turn's result and what it measured.
#[derive(Debug)]
pub(crate) struct TurnReport {
    /// The outcome, or the error for Lambda.
    pub result: Result<TurnOutcome, TurnError>,
    /// Counters and latencies for the metrics line.
    pub stats: TurnStats,
}

/// Streams a turn's model events as chunks; see the module docs.
///
/// Reads `events` until the stream ends, fails, `ctx.deadline` passes, or
/// `cancel` resolves (checked before every delta); then drops `events` (which
/// stops the model), publishes the remaining text and the terminal chunk.
/// Publishes run as the strategy allows (one at a time, or two with the
/// adaptive hold rule); `seq` is assigned when a piece is taken, so it stays
/// contiguous.
///
/// The result is `Ok` whenever the terminal chunk, or a terminal
/// `DeliveryError` chunk after a failed publish, got through, and whenever
/// any chunk did. [`TurnError::Publish`] only when nothing could be delivered.
pub(crate) async fn drive<S, C>(
    ctx: &TurnContext<'_, S>,
    ids: &TurnIds,
    events: ModelEvents,
    cancel: C,
) -> TurnReport
where
    S: ChunkSink,
    C: Future<Output = ()>,
{
    driver::Driver::new(ctx, ids, events).run(cancel).await
}

#[cfg(test)]
mod tests;
