//! Place in the data path: coalescer -> **turn driver** -> sinks: the state
//! of one turn while it streams, and the loop that moves it on. The driver
//! reads model events, feeds deltas to the coalescer, numbers the pieces it
//! hands out as chunks and sends them to the sink, and settles the ending
//! when reading stops (stream end, error, deadline, cancellation, or a
//! publish that failed for good).

use std::future::Future;
use std::time::Duration;

use appsync_client::{Chunk, Usage};
use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{TurnContext, TurnError, TurnOutcome, TurnReport};
use crate::chunk::{Ending, Failure, terminal_chunk, text_chunk, zero_usage};
use crate::coalesce::{Coalesce, Piece};
use crate::event::TurnIds;
use crate::metrics::TurnStats;
use crate::model::{ErrorKind, ModelError, ModelEvent, ModelEvents, ModelItem};
use crate::sink::{ChunkSink, PublishReport, SinkError};
use crate::vocabulary::ErrorType;

/// Why the driver stopped reading the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopCause {
    /// The stream ended or failed.
    Stream,
    /// The soft deadline passed.
    Deadline,
    /// The owner cancelled.
    Cancelled,
    /// A chunk could not be published.
    Delivery,
}

/// What the model stream has told us so far.
#[derive(Debug, Default)]
struct Progress {
    stop_reason: Option<String>,
    usage: Option<Usage>,
    error: Option<ModelError>,
}

impl Progress {
    fn ending(self, cause: StopCause) -> Ending {
        if let Some(error) = self.error {
            warn!(%error, "model failed");
            return Ending::Failed(Failure::model(&error));
        }
        match cause {
            StopCause::Deadline => Ending::Deadline {
                usage: self.usage.unwrap_or_else(zero_usage),
            },
            StopCause::Cancelled => Ending::Cancelled { usage: self.usage },
            StopCause::Delivery => Ending::Failed(Failure::of(ErrorType::Delivery)),
            StopCause::Stream => match self.stop_reason {
                Some(stop_reason) => Ending::Completed {
                    stop_reason,
                    usage: self.usage.unwrap_or_else(zero_usage),
                },
                None => {
                    warn!("model stream ended without messageStop");
                    Ending::Failed(Failure::model(&ModelError::MidStream {
                        kind: ErrorKind::Truncated,
                        detail: "stream ended without messageStop".into(),
                    }))
                }
            },
        }
    }
}

/// The state of one [`drive`](super::drive).
pub(super) struct Driver<'c, 'a, S> {
    ctx: &'c TurnContext<'a, S>,
    ids: &'c TurnIds,
    coalescer: Box<dyn Coalesce>,
    progress: Progress,
    /// `Some` while reading the model.
    events: Option<ModelEvents>,
    /// Set when reading stops.
    ending: Option<Ending>,
    /// Chunks that failed for good, with their errors.
    failed: Vec<(Chunk, SinkError)>,
    next_seq: i64,
    stats: TurnStats,
}

impl<S: ChunkSink> Driver<'_, '_, S> {
    fn elapsed(&self) -> Duration {
        Instant::now().saturating_duration_since(self.ctx.started)
    }

    /// The chunk for a piece, numbered with the next `seq`.
    fn chunk_for(&mut self, piece: Piece) -> Chunk {
        let seq = self.next_seq;
        self.next_seq += 1;
        match (&self.ending, piece.last) {
            (Some(ending), true) => terminal_chunk(self.ids, seq, piece.text, ending),
            (None, true) => {
                // Unreachable: the last piece only comes after `finish`, which
                // only `stop_reading` calls, after setting the ending.
                terminal_chunk(
                    self.ids,
                    seq,
                    piece.text,
                    &Ending::Failed(Failure::of(ErrorType::Internal)),
                )
            }
            (_, false) => text_chunk(self.ids, seq, piece.text),
        }
    }

    /// Stops reading the model (dropping the stream) and settles the ending.
    fn stop_reading(&mut self, cause: StopCause) {
        let Some(events) = self.events.take() else {
            return;
        };
        drop(events);
        if cause != StopCause::Stream {
            debug!(?cause, "stopped reading the model");
        }
        let progress = std::mem::take(&mut self.progress);
        let usage = progress.usage.as_ref();
        self.stats.output_tokens = usage.and_then(|u| u64::try_from(u.output_tokens).ok());
        self.stats.total_tokens = usage.and_then(|u| u64::try_from(u.total_tokens).ok());
        self.ending = Some(progress.ending(cause));
        self.coalescer.finish();
    }

    /// One item from the model channel (`None`: the channel closed).
    fn apply(&mut self, item: Option<ModelItem>) {
        match item {
            Some(Ok(ModelEvent::Delta(text))) => {
                self.stats.deltas += 1;
                if self.stats.time_to_first_token.is_none() {
                    self.stats.time_to_first_token = Some(self.elapsed());
                }
                self.coalescer.push(&text, Instant::now());
            }
            Some(Ok(ModelEvent::Stop { stop_reason })) => {
                self.progress.stop_reason = Some(stop_reason);
            }
            Some(Ok(ModelEvent::Usage {
                input_tokens,
                output_tokens,
                total_tokens,
            })) => {
                self.progress.usage = Some(Usage {
                    input_tokens: input_tokens.into(),
                    output_tokens: output_tokens.into(),
                    total_tokens: total_tokens.into(),
                });
            }
            Some(Err(e)) => {
                self.progress.error = Some(e);
                self.stop_reading(StopCause::Stream);
            }
            None => self.stop_reading(StopCause::Stream),
        }
    }

    /// An item arrived: apply it and everything else already queued, checking
    /// for a cancellation before each, so a cancellation takes effect within
    /// one delta. Then check the deadline. The turn's first delta is handed
    /// to the strategy alone, so the first text is published the moment it
    /// exists even when more deltas are already queued behind it.
    fn received<C: Future<Output = ()>>(
        &mut self,
        item: Option<ModelItem>,
        mut cancel: std::pin::Pin<&mut C>,
    ) {
        let first_delta = self.stats.deltas == 0;
        self.apply(item);
        if first_delta && self.stats.deltas == 1 {
            return;
        }
        while self.events.is_some() {
            if cancel.as_mut().now_or_never().is_some() {
                self.stop_reading(StopCause::Cancelled);
                return;
            }
            let next = match self.events.as_mut().map(ModelEvents::try_recv) {
                Some(Ok(item)) => Some(item),
                Some(Err(TryRecvError::Empty)) | None => break,
                Some(Err(TryRecvError::Disconnected)) => None,
            };
            self.apply(next);
        }
        if self.events.is_some() && self.ctx.deadline.is_some_and(|d| Instant::now() >= d) {
            self.stop_reading(StopCause::Deadline);
        }
    }

    /// A publish finished.
    fn published(&mut self, chunk: Chunk, report: PublishReport) {
        self.coalescer.ack(Instant::now());
        self.count(&report);
        if report.result.is_ok() {
            let chars = u64::try_from(chunk.text.chars().count()).unwrap_or(u64::MAX);
            self.stats.answer_chars = self.stats.answer_chars.saturating_add(chars);
        }
        if let Err(error) = report.result {
            warn!(seq = chunk.seq, %error, "could not publish chunk; ending the turn");
            self.failed.push((chunk, error));
            self.stop_reading(StopCause::Delivery);
        }
    }

    fn count(&mut self, report: &PublishReport) {
        self.stats.publish_retries += u64::from(report.attempts.saturating_sub(1));
        if report.result.is_ok() {
            self.stats.chunks_published += 1;
            if self.stats.time_to_first_publish.is_none() {
                self.stats.time_to_first_publish = Some(self.elapsed());
            }
        }
    }

    /// After a chunk failed for good (and nothing is in flight), ends the
    /// turn with a terminal `DeliveryError` chunk, keeping the subscriber's
    /// view contiguous whichever attempts reached AppSync:
    /// - a failed terminal chunk is replaced: the error chunk takes its `seq`
    ///   and carries its text;
    /// - a failed text chunk gets one last try (same `seq`, same text; a
    ///   subscriber drops a repeat); if that fails too, the error chunk takes
    ///   its `seq` and text, else the next `seq`.
    async fn deliver_failure(mut self) -> TurnReport {
        let mut failed = std::mem::take(&mut self.failed);
        failed.sort_by_key(|(c, _)| c.seq);
        let mut first_error = None;
        let mut replaced = None;
        for (chunk, error) in failed {
            first_error.get_or_insert((chunk.seq, error));
            if !chunk.done {
                let report = self.ctx.sink.publish(&chunk).await;
                self.count(&report);
                if report.result.is_ok() {
                    continue;
                }
            }
            replaced = Some(chunk);
            break;
        }
        let (seq, text) = match replaced {
            Some(c) => (c.seq, c.text),
            None => (self.next_seq, String::new()),
        };
        let ending = Ending::Failed(Failure::of(ErrorType::Delivery));
        let terminal = terminal_chunk(self.ids, seq, text, &ending);
        let report = self.ctx.sink.publish(&terminal).await;
        self.count(&report);
        let result = match (report.result, first_error) {
            (Ok(()), _) | (Err(_), None) => Ok(TurnOutcome::ended(self.ids, seq + 1, &ending)),
            (Err(e), Some(_)) if self.stats.chunks_published > 0 => {
                // Text reached the user: a Lambda error would only make Lambda
                // run the turn again and repeat it.
                warn!(seq, error = %e, "could not publish the terminal error chunk");
                Ok(TurnOutcome::ended(self.ids, seq + 1, &ending))
            }
            (Err(e), Some((first_seq, source))) => {
                warn!(seq, error = %e, "could not publish the terminal error chunk");
                Err(TurnError::Publish {
                    turn_id: self.ids.turn_id.clone(),
                    seq: first_seq,
                    source,
                })
            }
        };
        TurnReport {
            result,
            stats: self.stats,
        }
    }
}

impl<'c, 'a, S: ChunkSink> Driver<'c, 'a, S> {
    /// A driver at the start of a turn: nothing read, nothing published.
    pub(super) fn new(ctx: &'c TurnContext<'a, S>, ids: &'c TurnIds, events: ModelEvents) -> Self {
        Driver {
            ctx,
            ids,
            coalescer: ctx
                .strategy
                .build(ctx.max_chunk_bytes, ctx.max_hold, Instant::now()),
            progress: Progress::default(),
            events: Some(events),
            ending: None,
            failed: Vec::new(),
            next_seq: 0,
            stats: TurnStats::default(),
        }
    }

    /// Runs the turn to its terminal chunk; see [`drive`](super::drive).
    pub(super) async fn run<C: Future<Output = ()>>(mut self, cancel: C) -> TurnReport {
        let ctx = self.ctx;
        let mut cancel = std::pin::pin!(cancel);
        let mut in_flight = FuturesUnordered::new();
        loop {
            if self.failed.is_empty() {
                let now = Instant::now();
                while let Some(piece) = self.coalescer.take_ready(now) {
                    let chunk = self.chunk_for(piece);
                    let sink = ctx.sink;
                    in_flight.push(async move {
                        let report = sink.publish(&chunk).await;
                        (chunk, report)
                    });
                }
            }
            if in_flight.is_empty() && (self.coalescer.is_done() || !self.failed.is_empty()) {
                break;
            }
            let reading = self.events.is_some();
            let wakeup = self.coalescer.next_wakeup();
            // `biased`: the arms are polled in this order, and the order is
            // the promise the driver makes. A cancellation is seen before
            // anything else, so it takes effect within one delta even when
            // publishes and deltas are ready too. A finished publish comes
            // before the next delta, so the coalescer learns the round trip
            // (and frees its slot) before it decides what to send next. Model
            // events come before the deadline, so text that already arrived is
            // not thrown away by a deadline that passed while reading it.
            tokio::select! {
                biased;
                () = &mut cancel, if reading => self.stop_reading(StopCause::Cancelled),
                Some((chunk, report)) = in_flight.next(), if !in_flight.is_empty() => {
                    self.published(chunk, report);
                }
                item = next_event(&mut self.events), if reading => {
                    self.received(item, cancel.as_mut());
                }
                () = sleep_until(ctx.deadline), if reading && ctx.deadline.is_some() => {
                    self.stop_reading(StopCause::Deadline);
                }
                () = sleep_until(wakeup), if wakeup.is_some() => {}
            }
        }
        if !self.failed.is_empty() {
            return self.deliver_failure().await;
        }
        let ending = self
            .ending
            .clone()
            .unwrap_or_else(|| Ending::Failed(Failure::of(ErrorType::Internal)));
        TurnReport {
            result: Ok(TurnOutcome::ended(self.ids, self.next_seq, &ending)),
            stats: self.stats,
        }
    }
}

/// The next model item, or never when not reading.
async fn next_event(events: &mut Option<ModelEvents>) -> Option<ModelItem> {
    match events {
        Some(e) => e.recv().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`, or forever for `None`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
