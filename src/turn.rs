//! Place in the data path: runs the whole of
//! "model -> coalescer -> publisher -> AppSync -> subscriber" for one turn.
//!
//! One turn, from a validated prompt to its terminal chunk: a reader task feeds
//! model events into a channel; the driver pushes every delta into the turn's
//! coalescing strategy ([`crate::coalesce::Coalesce`]) and publishes whatever
//! piece it hands out as the next chunk. Chunks are numbered `seq` 0, 1, 2, ...
//! without gaps; the last has `done: true` and either a stop reason with usage,
//! or an error in words safe to show a user. Errors of every module are mapped
//! to what the user sees here and only here.
//!
//! The turn also owns its ends: the Lambda deadline (`stopReason: deadline`),
//! the owner's cancellation (`stopReason: cancelled`, within one delta, with
//! the model stream dropped so the model and its cost stop), and delivery
//! failures (a `DeliveryError` terminal chunk).
//!
//! Asynchronous (`Event`) invocation from AppSync:
//! <https://docs.aws.amazon.com/appsync/latest/devguide/resolver-reference-lambda-js.html>.
//! Lambda retries a failed asynchronous invocation and may deliver an event
//! twice (<https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html>),
//! so a turn whose failure has been delivered to the user returns success, a
//! turn that published any chunk never returns an error, and a repeated event
//! is not streamed again ([`crate::idempotency`]).

use std::future::Future;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;
use thiserror::Error;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender, error::TryRecvError};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::coalesce::{Coalesce, Piece, Strategy};
use crate::event::{AppSyncEvent, Rejection, TurnIds, TurnRequest, ValidationError};
use crate::metrics::{TurnMetrics, TurnStats};
use crate::model::{ErrorKind, ModelError, ModelEvent, ModelRequest, ModelStream};
use crate::publish::{
    ChunkErrorInput, ChunkInput, PublishError, PublishReport, Publisher, UsageInput,
};
use crate::retry::RetryPolicy;

/// `stopReason` of a turn that ended in an error.
pub const STOP_ERROR: &str = "error";
/// `stopReason` of a turn cut short by the Lambda deadline.
pub const STOP_DEADLINE: &str = "deadline";
/// `stopReason` of a turn its owner cancelled.
pub const STOP_CANCELLED: &str = "cancelled";
/// [`TurnOutcome::stop_reason`] of a repeated event that streamed nothing.
pub const STOP_DUPLICATE: &str = "duplicate";
/// `errorType` of a turn whose chunks could not all be delivered.
pub const DELIVERY_ERROR: &str = "DeliveryError";

/// Most time kept back before the Lambda deadline to publish the terminal chunk.
pub const DEADLINE_RESERVE: Duration = Duration::from_secs(3);

/// Where chunks go. [`Publisher`] is the real one; tests and the bench use fakes.
pub trait ChunkSink: Sync {
    /// Publishes one chunk, retries included, and reports how it went.
    fn publish(&self, chunk: &ChunkInput) -> impl Future<Output = PublishReport> + Send;
}

impl ChunkSink for Publisher {
    fn publish(&self, chunk: &ChunkInput) -> impl Future<Output = PublishReport> + Send {
        Publisher::publish_reporting(self, chunk)
    }
}

/// What the Lambda returns for a turn: `{"conversationId","turnId","chunks",
/// "stopReason","errorType"?,"duplicate"?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnOutcome {
    /// The conversation.
    pub conversation_id: String,
    /// The turn.
    pub turn_id: String,
    /// Sequence numbers used (the terminal chunk's `seq` + 1); 0 for a duplicate.
    pub chunks: i64,
    /// The terminal chunk's `stopReason`, or [`STOP_DUPLICATE`].
    pub stop_reason: String,
    /// The terminal chunk's `error.errorType`, if it carried one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// True when the event repeated a turn already started in this execution
    /// environment, so nothing was streamed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

impl TurnOutcome {
    /// The answer to a repeated event: nothing streamed.
    pub fn duplicate(ids: &TurnIds) -> Self {
        Self {
            conversation_id: ids.conversation_id.clone(),
            turn_id: ids.turn_id.clone(),
            chunks: 0,
            stop_reason: STOP_DUPLICATE.into(),
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
        /// The turn.
        turn_id: String,
        /// The first chunk that failed.
        seq: i64,
        /// Why.
        #[source]
        source: PublishError,
    },
}

impl TurnError {
    /// A stable type for the Lambda error: `InvalidEvent`, the
    /// [`ValidationError::error_type`], or `DeliveryError`.
    pub fn error_type(&self) -> &'static str {
        match self {
            TurnError::Event(_) => "InvalidEvent",
            TurnError::Validation(v) => v.error_type(),
            TurnError::Publish { .. } => DELIVERY_ERROR,
        }
    }
}

impl From<TurnError> for lambda_runtime::Diagnostic {
    fn from(error: TurnError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: error.error_type().to_owned(),
            error_message: error.to_string(),
        }
    }
}

/// Everything one turn needs besides its ids and model events.
#[derive(Debug, Clone, Copy)]
pub struct TurnContext<'a, S> {
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

/// Runs one invocation: parse, validate, skip a repeat, stream the model's
/// answer as chunks (cancellable by the turn's owner), print the turn's
/// metrics line. `request_id` is Lambda's request id, for the metrics.
///
/// # Errors
/// [`TurnError::Event`] for an unparseable payload, [`TurnError::Validation`]
/// (after publishing a terminal `ValidationException` chunk when the ids and
/// owner are valid), [`TurnError::Publish`] when not a single chunk could be
/// delivered.
pub async fn handle_event(
    state: &crate::State,
    payload: serde_json::Value,
    deadline: Option<Instant>,
    request_id: &str,
) -> Result<TurnOutcome, TurnError> {
    let started = Instant::now();
    let event = AppSyncEvent::from_value(payload)?;
    let ctx = TurnContext {
        sink: &state.publisher,
        strategy: state.config.strategy,
        max_chunk_bytes: state.config.max_chunk_bytes,
        max_hold: state.config.max_hold,
        deadline,
        started,
    };
    let request = match event.into_turn_request(&state.config) {
        Ok(r) => r,
        Err(rejection) => return Err(reject(&ctx, rejection).await),
    };
    let span = info_span!(
        "turn",
        turnId = %request.ids.turn_id,
        conversationId = %request.ids.conversation_id
    );
    if !state.start_turn(&request.ids) {
        let _entered = span.enter();
        info!("repeated delivery of a turn already started here; not streaming it again");
        return Ok(TurnOutcome::duplicate(&request.ids));
    }
    run_turn(state, &ctx, &request, request_id)
        .instrument(span)
        .await
}

/// One validated, first-seen turn: model, cancel watch, driver, metrics.
async fn run_turn(
    state: &crate::State,
    ctx: &TurnContext<'_, Publisher>,
    request: &TurnRequest,
    request_id: &str,
) -> Result<TurnOutcome, TurnError> {
    info!(
        model_id = %request.model_id,
        max_tokens = request.max_tokens,
        prompt_chars = request.prompt.chars().count(),
        strategy = %ctx.strategy,
        "turn started"
    );
    let events = spawn_model_reader(
        state.bedrock.clone(),
        model_request(request),
        crate::model::REOPEN_RETRY,
    );
    let mut watch = state.cancel.watch(&request.ids);
    let report = drive(ctx, &request.ids, events, watch.cancelled()).await;
    watch.stop().await;

    let stop_reason = match &report.result {
        Ok(o) => o.stop_reason.as_str(),
        Err(_) => STOP_ERROR,
    };
    let strategy = ctx.strategy.to_string();
    TurnMetrics {
        strategy: &strategy,
        turn_id: &request.ids.turn_id,
        request_id,
        stop_reason,
        stats: &report.stats,
    }
    .emit();
    match &report.result {
        Ok(o) => info!(
            chunks = o.chunks,
            stop_reason = %o.stop_reason,
            error_type = o.error_type.as_deref(),
            deltas = report.stats.deltas,
            publish_retries = report.stats.publish_retries,
            "turn finished"
        ),
        Err(e) => warn!(error = %e, "turn failed"),
    }
    report.result
}

/// The Bedrock request of a validated turn.
pub fn model_request(request: &TurnRequest) -> ModelRequest {
    ModelRequest {
        model_id: request.model_id.clone(),
        system: request.system.clone(),
        prompt: request.prompt.clone(),
        max_tokens: request.max_tokens,
        temperature: request.temperature,
    }
}

/// Publishes a rejection as a terminal error chunk (seq 0, `retryable: false`)
/// when its ids are known, and returns it as the Lambda error.
pub async fn reject<S: ChunkSink>(ctx: &TurnContext<'_, S>, rejection: Rejection) -> TurnError {
    match &rejection.ids {
        Some(ids) => warn!(
            turn_id = %ids.turn_id,
            conversation_id = %ids.conversation_id,
            error = %rejection.error,
            "prompt rejected"
        ),
        None => warn!(error = %rejection.error, "prompt rejected"),
    }
    if let Some(ids) = &rejection.ids {
        let error = ChunkErrorInput {
            error_type: rejection.error.error_type().to_owned(),
            message: rejection.error.to_string(),
            retryable: false,
        };
        let chunk = terminal_chunk(ids, 0, String::new(), &Ending::Failed(error));
        if let Err(e) = ctx.sink.publish(&chunk).await.result {
            warn!(turn_id = %ids.turn_id, error = %e, "could not publish the rejection");
        }
    }
    TurnError::Validation(rejection.error)
}

/// The model reader task; dropping it aborts the task and with it the
/// ConverseStream (dropping the stream closes its connection, which stops the
/// model: <https://docs.aws.amazon.com/bedrock/latest/userguide/conversation-inference-call.html>).
#[derive(Debug)]
pub struct ReaderTask(JoinHandle<()>);

impl Drop for ReaderTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One item of [`ModelEvents`]: a model event, or the error that ends the stream.
pub type ModelItem = Result<ModelEvent, ModelError>;

/// A turn's model events in order (an `Err` is the last item), and the task
/// producing them: dropping this stops the model.
#[derive(Debug)]
pub struct ModelEvents {
    rx: UnboundedReceiver<ModelItem>,
    _reader: Option<ReaderTask>,
}

impl ModelEvents {
    /// Events fed by hand (tests, the bench): the stream ends when every
    /// sender is dropped.
    pub fn channel() -> (UnboundedSender<ModelItem>, Self) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, Self::from_receiver(rx))
    }

    /// Events from `rx`, with no reader task.
    pub fn from_receiver(rx: UnboundedReceiver<ModelItem>) -> Self {
        Self { rx, _reader: None }
    }

    async fn recv(&mut self) -> Option<ModelItem> {
        self.rx.recv().await
    }

    fn try_recv(&mut self) -> Result<ModelItem, TryRecvError> {
        self.rx.try_recv()
    }
}

/// Starts the ConverseStream in a task that forwards every model event (or
/// the error that ends the stream) into [`ModelEvents`]. A stream that fails
/// retryably before its first event is opened again per `retry`
/// ([`ModelStream::open_first`]); nothing is retried after it. The task logs
/// in the caller's span and stops when the stream ends or the
/// [`ModelEvents`] are dropped.
pub fn spawn_model_reader(
    client: aws_sdk_bedrockruntime::Client,
    request: ModelRequest,
    retry: RetryPolicy,
) -> ModelEvents {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(
        async move {
            let (mut stream, first) = match ModelStream::open_first(&client, &request, &retry).await
            {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            match first {
                Some(event) => {
                    if tx.send(Ok(event)).is_err() {
                        return;
                    }
                }
                None => return,
            }
            loop {
                match stream.next().await {
                    Ok(Some(event)) => {
                        if tx.send(Ok(event)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        }
        .instrument(tracing::Span::current()),
    );
    ModelEvents {
        rx,
        _reader: Some(ReaderTask(task)),
    }
}

/// How a turn ends: what its terminal chunk says.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// The model finished: its stop reason and usage (zeroes if none came).
    Completed {
        /// Bedrock's stop reason.
        stop_reason: String,
        /// Token counts.
        usage: UsageInput,
    },
    /// The deadline came first; usage as far as known.
    Deadline {
        /// Token counts (zeroes if none came).
        usage: UsageInput,
    },
    /// The owner cancelled the turn.
    Cancelled {
        /// Token counts, `None` (null) when Bedrock had not reported them.
        usage: Option<UsageInput>,
    },
    /// The turn failed.
    Failed(ChunkErrorInput),
}

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
    usage: Option<UsageInput>,
    error: Option<ModelError>,
}

impl Progress {
    fn ending(self, cause: StopCause) -> Ending {
        let zero = || UsageInput {
            input_tokens: 0,
            output_tokens: 0,
            total_tokens: 0,
        };
        if let Some(error) = self.error {
            warn!(%error, "model failed");
            return Ending::Failed(model_chunk_error(&error));
        }
        match cause {
            StopCause::Deadline => Ending::Deadline {
                usage: self.usage.unwrap_or_else(zero),
            },
            StopCause::Cancelled => Ending::Cancelled { usage: self.usage },
            StopCause::Delivery => Ending::Failed(delivery_error()),
            StopCause::Stream => match self.stop_reason {
                Some(stop_reason) => Ending::Completed {
                    stop_reason,
                    usage: self.usage.unwrap_or_else(zero),
                },
                None => {
                    warn!("model stream ended without messageStop");
                    Ending::Failed(model_chunk_error(&ModelError::MidStream {
                        kind: ErrorKind::Truncated,
                        detail: "stream ended without messageStop".into(),
                    }))
                }
            },
        }
    }
}

fn delivery_error() -> ChunkErrorInput {
    ChunkErrorInput {
        error_type: DELIVERY_ERROR.into(),
        message: "Part of the answer could not be delivered. Please try again.".into(),
        retryable: true,
    }
}

/// What [`drive`] returns: the turn's result and what it measured.
#[derive(Debug)]
pub struct TurnReport {
    /// The outcome, or the error for Lambda.
    pub result: Result<TurnOutcome, TurnError>,
    /// Counters and latencies for the metrics line.
    pub stats: TurnStats,
}

/// The state of one [`drive`].
struct Driver<'c, 'a, S> {
    ctx: &'c TurnContext<'a, S>,
    ids: &'c TurnIds,
    coalescer: Box<dyn Coalesce>,
    progress: Progress,
    /// `Some` while reading the model.
    events: Option<ModelEvents>,
    /// Set when reading stops.
    ending: Option<Ending>,
    /// Chunks that failed for good, with their errors.
    failed: Vec<(ChunkInput, PublishError)>,
    next_seq: i64,
    stats: TurnStats,
}

impl<S: ChunkSink> Driver<'_, '_, S> {
    fn elapsed(&self) -> Duration {
        Instant::now().saturating_duration_since(self.ctx.started)
    }

    /// The chunk for a piece, numbered with the next `seq`.
    fn chunk_for(&mut self, piece: Piece) -> ChunkInput {
        let seq = self.next_seq;
        self.next_seq += 1;
        match (&self.ending, piece.last) {
            (Some(ending), true) => terminal_chunk(self.ids, seq, piece.text, ending),
            (None, true) => {
                // Unreachable: the last piece only comes after `finish`, which
                // only `stop_reading` calls, after setting the ending.
                terminal_chunk(self.ids, seq, piece.text, &Ending::Failed(internal_error()))
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
        self.stats.output_tokens = progress
            .usage
            .as_ref()
            .and_then(|u| u64::try_from(u.output_tokens).ok());
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
                self.progress.usage = Some(UsageInput {
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
    fn published(&mut self, chunk: ChunkInput, report: PublishReport) {
        self.coalescer.ack(Instant::now());
        self.count(&report);
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
        let ending = Ending::Failed(delivery_error());
        let terminal = terminal_chunk(self.ids, seq, text, &ending);
        let report = self.ctx.sink.publish(&terminal).await;
        self.count(&report);
        let result = match (report.result, first_error) {
            (Ok(()), _) | (Err(_), None) => Ok(outcome(self.ids, seq + 1, &ending)),
            (Err(e), Some(_)) if self.stats.chunks_published > 0 => {
                // Text reached the user: a Lambda error would only make Lambda
                // run the turn again and repeat it.
                warn!(seq, error = %e, "could not publish the terminal error chunk");
                Ok(outcome(self.ids, seq + 1, &ending))
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

fn internal_error() -> ChunkErrorInput {
    ChunkErrorInput {
        error_type: ErrorKind::Other.error_type().into(),
        message: "Something went wrong while generating the answer.".into(),
        retryable: true,
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
pub async fn drive<S, C>(
    ctx: &TurnContext<'_, S>,
    ids: &TurnIds,
    events: ModelEvents,
    cancel: C,
) -> TurnReport
where
    S: ChunkSink,
    C: Future<Output = ()>,
{
    let mut d = Driver {
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
    };
    let mut cancel = std::pin::pin!(cancel);
    let mut in_flight = FuturesUnordered::new();
    loop {
        if d.failed.is_empty() {
            let now = Instant::now();
            while let Some(piece) = d.coalescer.take_ready(now) {
                let chunk = d.chunk_for(piece);
                let sink = ctx.sink;
                in_flight.push(async move {
                    let report = sink.publish(&chunk).await;
                    (chunk, report)
                });
            }
        }
        if in_flight.is_empty() && (d.coalescer.is_done() || !d.failed.is_empty()) {
            break;
        }
        let reading = d.events.is_some();
        let wakeup = d.coalescer.next_wakeup();
        tokio::select! {
            biased;
            () = &mut cancel, if reading => d.stop_reading(StopCause::Cancelled),
            Some((chunk, report)) = in_flight.next(), if !in_flight.is_empty() => {
                d.published(chunk, report);
            }
            item = next_event(&mut d.events), if reading => d.received(item, cancel.as_mut()),
            () = sleep_until(ctx.deadline), if reading && ctx.deadline.is_some() => {
                d.stop_reading(StopCause::Deadline);
            }
            () = sleep_until(wakeup), if wakeup.is_some() => {}
        }
    }
    if !d.failed.is_empty() {
        return d.deliver_failure().await;
    }
    let ending = d
        .ending
        .clone()
        .unwrap_or_else(|| Ending::Failed(internal_error()));
    TurnReport {
        result: Ok(outcome(ids, d.next_seq, &ending)),
        stats: d.stats,
    }
}

fn outcome(ids: &TurnIds, chunks: i64, ending: &Ending) -> TurnOutcome {
    let (stop_reason, error_type) = match ending {
        Ending::Completed { stop_reason, .. } => (stop_reason.clone(), None),
        Ending::Deadline { .. } => (STOP_DEADLINE.to_owned(), None),
        Ending::Cancelled { .. } => (STOP_CANCELLED.to_owned(), None),
        Ending::Failed(e) => (STOP_ERROR.to_owned(), Some(e.error_type.clone())),
    };
    TurnOutcome {
        conversation_id: ids.conversation_id.clone(),
        turn_id: ids.turn_id.clone(),
        chunks,
        stop_reason,
        error_type,
        duplicate: false,
    }
}

/// A non-terminal chunk.
pub fn text_chunk(ids: &TurnIds, seq: i64, text: String) -> ChunkInput {
    ChunkInput {
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

/// The terminal chunk (`done: true`) for `ending`.
pub fn terminal_chunk(ids: &TurnIds, seq: i64, text: String, ending: &Ending) -> ChunkInput {
    let mut chunk = text_chunk(ids, seq, text);
    chunk.done = true;
    match ending {
        Ending::Completed { stop_reason, usage } => {
            chunk.stop_reason = Some(stop_reason.clone());
            chunk.usage = Some(usage.clone());
        }
        Ending::Deadline { usage } => {
            chunk.stop_reason = Some(STOP_DEADLINE.into());
            chunk.usage = Some(usage.clone());
        }
        Ending::Cancelled { usage } => {
            chunk.stop_reason = Some(STOP_CANCELLED.into());
            chunk.usage = usage.clone();
        }
        Ending::Failed(error) => {
            chunk.stop_reason = Some(STOP_ERROR.into());
            chunk.error = Some(error.clone());
        }
    }
    chunk
}

/// A model failure in words safe to show a user (no Bedrock message, no ids).
pub fn model_chunk_error(error: &ModelError) -> ChunkErrorInput {
    let message = match error.kind() {
        ErrorKind::Throttling => {
            "The model is receiving too many requests. Please try again in a moment."
        }
        ErrorKind::Validation => {
            "The model could not accept this request. Try a shorter prompt or different settings."
        }
        ErrorKind::AccessDenied => "This model is not available to this service.",
        ErrorKind::ResourceNotFound => "The requested model was not found.",
        ErrorKind::ServiceUnavailable | ErrorKind::ModelNotReady => {
            "The model is temporarily unavailable. Please try again shortly."
        }
        ErrorKind::ModelTimeout => "The model took too long to answer. Please try again.",
        ErrorKind::ModelError => "The model could not process this request.",
        ErrorKind::ModelStreamError | ErrorKind::Truncated => {
            "The model's answer was interrupted. Please try again."
        }
        ErrorKind::InternalServer => "The model service had an internal error. Please try again.",
        ErrorKind::ServiceQuotaExceeded => {
            "The model's usage quota is used up. Please try again later."
        }
        ErrorKind::Network => "The model service could not be reached. Please try again.",
        ErrorKind::Other => "Something went wrong while generating the answer.",
    };
    ChunkErrorInput {
        error_type: error.error_type().to_owned(),
        message: message.to_owned(),
        retryable: error.retryable(),
    }
}

/// The instant to stop reading the model, from the Lambda deadline
/// (`Lambda-Runtime-Deadline-Ms`, milliseconds since the Unix epoch): a
/// reserve of a fifth of the remaining time, at most [`DEADLINE_RESERVE`], is
/// kept for the terminal chunk. `None` when the runtime gave no deadline (0).
pub fn soft_deadline(deadline_ms: u64, now: SystemTime) -> Option<Instant> {
    if deadline_ms == 0 {
        return None;
    }
    let deadline = SystemTime::UNIX_EPOCH + Duration::from_millis(deadline_ms);
    let remaining = deadline.duration_since(now).unwrap_or(Duration::ZERO);
    let reserve = (remaining / 5).min(DEADLINE_RESERVE);
    Some(Instant::now() + remaining.saturating_sub(reserve))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::sync::Semaphore;

    fn ids() -> TurnIds {
        TurnIds::fixture()
    }

    /// Records delivered chunks; fails every publish of `fail_seqs`, and one
    /// publish of a seq per entry in `fail_once`. Reports `attempts` per publish.
    #[derive(Default)]
    struct Recorder {
        chunks: Mutex<Vec<ChunkInput>>,
        fail_seqs: Vec<i64>,
        fail_once: Mutex<Vec<i64>>,
        attempts: u32,
    }

    impl Recorder {
        fn chunks(&self) -> Vec<ChunkInput> {
            self.chunks.lock().unwrap().clone()
        }
    }

    impl ChunkSink for Recorder {
        fn publish(&self, chunk: &ChunkInput) -> impl Future<Output = PublishReport> + Send {
            let once = {
                let mut once = self.fail_once.lock().unwrap();
                match once.iter().position(|s| *s == chunk.seq) {
                    Some(i) => {
                        once.remove(i);
                        true
                    }
                    None => false,
                }
            };
            let result = if once || self.fail_seqs.contains(&chunk.seq) {
                Err(PublishError::Http {
                    status: 500,
                    errors: vec![],
                })
            } else {
                self.chunks.lock().unwrap().push(chunk.clone());
                Ok(())
            };
            let attempts = self.attempts.max(1);
            async move { PublishReport { attempts, result } }
        }
    }

    /// Hands each chunk to the test and waits for a permit before returning.
    struct Gated {
        seen: mpsc::UnboundedSender<ChunkInput>,
        permits: Arc<Semaphore>,
    }

    impl ChunkSink for Gated {
        fn publish(&self, chunk: &ChunkInput) -> impl Future<Output = PublishReport> + Send {
            let _ = self.seen.send(chunk.clone());
            let permits = Arc::clone(&self.permits);
            async move {
                if let Ok(p) = permits.acquire().await {
                    p.forget();
                }
                PublishReport {
                    attempts: 1,
                    result: Ok(()),
                }
            }
        }
    }

    fn ctx<S>(sink: &S, max_chunk_bytes: usize) -> TurnContext<'_, S> {
        TurnContext {
            sink,
            strategy: Strategy::Adaptive,
            max_chunk_bytes,
            max_hold: Duration::from_secs(1),
            deadline: None,
            started: Instant::now(),
        }
    }

    /// [`drive`] without cancellation, as a plain result.
    async fn drive_plain<S: ChunkSink>(
        ctx: &TurnContext<'_, S>,
        ids: &TurnIds,
        events: ModelEvents,
    ) -> Result<TurnOutcome, TurnError> {
        drive(ctx, ids, events, std::future::pending()).await.result
    }

    fn delta(s: &str) -> Result<ModelEvent, ModelError> {
        Ok(ModelEvent::Delta(s.into()))
    }

    fn stop(s: &str) -> Result<ModelEvent, ModelError> {
        Ok(ModelEvent::Stop {
            stop_reason: s.into(),
        })
    }

    fn usage(i: i32, o: i32) -> Result<ModelEvent, ModelError> {
        Ok(ModelEvent::Usage {
            input_tokens: i,
            output_tokens: o,
            total_tokens: i + o,
        })
    }

    fn channel(items: Vec<Result<ModelEvent, ModelError>>) -> ModelEvents {
        let (tx, events) = ModelEvents::channel();
        for item in items {
            tx.send(item).unwrap();
        }
        events
    }

    fn assert_contiguous(chunks: &[ChunkInput]) {
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(c.seq, i as i64);
            assert_eq!(c.done, i + 1 == chunks.len(), "only the last chunk is done");
            assert_eq!(
                (
                    c.conversation_id.as_str(),
                    c.turn_id.as_str(),
                    c.owner.as_str()
                ),
                ("c1", "t1", "o1")
            );
        }
    }

    #[tokio::test]
    async fn first_delta_is_immediate_and_deltas_merge_while_a_publish_is_in_flight() {
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let permits = Arc::new(Semaphore::new(0));
        let sink = Arc::new(Gated {
            seen: seen_tx,
            permits: Arc::clone(&permits),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let driver = {
            let sink = Arc::clone(&sink);
            tokio::spawn(async move {
                drive_plain(&ctx(&*sink, 1024), &ids(), ModelEvents::from_receiver(rx)).await
            })
        };

        tx.send(delta("Hel")).unwrap();
        let c0 = seen.recv().await.unwrap();
        assert_eq!((c0.seq, c0.text.as_str(), c0.done), (0, "Hel", false));

        tx.send(delta("lo")).unwrap();
        tx.send(delta(", wor")).unwrap();
        permits.add_permits(1);
        let c1 = seen.recv().await.unwrap();
        assert_eq!((c1.seq, c1.text.as_str(), c1.done), (1, "lo, wor", false));

        tx.send(delta("ld")).unwrap();
        tx.send(stop("end_turn")).unwrap();
        tx.send(usage(4, 3)).unwrap();
        drop(tx);
        permits.add_permits(1);
        let c2 = seen.recv().await.unwrap();
        assert_eq!((c2.seq, c2.text.as_str(), c2.done), (2, "ld", true));
        assert_eq!(c2.stop_reason.as_deref(), Some("end_turn"));
        assert_eq!(
            c2.usage,
            Some(UsageInput {
                input_tokens: 4,
                output_tokens: 3,
                total_tokens: 7
            })
        );
        assert!(c2.error.is_none());
        permits.add_permits(1);
        let outcome = driver.await.unwrap().unwrap();
        assert_eq!(outcome.chunks, 3);
        assert_eq!(outcome.stop_reason, "end_turn");
        assert_eq!(outcome.error_type, None);
    }

    #[tokio::test]
    async fn error_before_any_text_publishes_one_terminal_error_chunk() {
        let sink = Recorder::default();
        let err = ModelError::BeforeStream {
            kind: ErrorKind::Throttling,
            detail: "arn:aws:bedrock:secret-internal".into(),
        };
        let outcome = drive_plain(&ctx(&sink, 1024), &ids(), channel(vec![Err(err)]))
            .await
            .unwrap();
        let chunks = sink.chunks();
        assert_eq!(chunks.len(), 1);
        assert_contiguous(&chunks);
        let c = &chunks[0];
        assert_eq!(c.text, "");
        assert_eq!(c.stop_reason.as_deref(), Some("error"));
        let e = c.error.as_ref().unwrap();
        assert_eq!(e.error_type, "ThrottlingException");
        assert!(e.retryable);
        assert!(!e.message.contains("arn:"), "no internals in user messages");
        assert!(c.usage.is_none());
        assert_eq!(outcome.stop_reason, "error");
        assert_eq!(outcome.error_type.as_deref(), Some("ThrottlingException"));
    }

    #[tokio::test]
    async fn mid_stream_error_keeps_the_text_and_ends_with_the_error() {
        let sink = Recorder::default();
        let err = ModelError::MidStream {
            kind: ErrorKind::ModelStreamError,
            detail: "boom".into(),
        };
        drive_plain(
            &ctx(&sink, 1024),
            &ids(),
            channel(vec![delta("par"), delta("tial"), Err(err)]),
        )
        .await
        .unwrap();
        let chunks = sink.chunks();
        assert_contiguous(&chunks);
        let text: String = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(text, "partial");
        let last = chunks.last().unwrap();
        assert_eq!(last.error.as_ref().unwrap().error_type, "ModelStreamError");
        assert_eq!(last.stop_reason.as_deref(), Some("error"));
    }

    #[tokio::test]
    async fn missing_usage_is_reported_as_zeroes() {
        let sink = Recorder::default();
        drive_plain(
            &ctx(&sink, 1024),
            &ids(),
            channel(vec![delta("x"), stop("max_tokens")]),
        )
        .await
        .unwrap();
        let last = sink.chunks().pop().unwrap();
        assert_eq!(last.stop_reason.as_deref(), Some("max_tokens"));
        assert_eq!(
            last.usage,
            Some(UsageInput {
                input_tokens: 0,
                output_tokens: 0,
                total_tokens: 0
            })
        );
    }

    #[tokio::test]
    async fn a_stream_without_message_stop_is_truncated() {
        let sink = Recorder::default();
        let outcome = drive_plain(&ctx(&sink, 1024), &ids(), channel(vec![delta("x")]))
            .await
            .unwrap();
        assert_eq!(outcome.error_type.as_deref(), Some("StreamTruncated"));
        assert!(sink.chunks().pop().unwrap().error.unwrap().retryable);
    }

    #[tokio::test]
    async fn chunks_respect_the_byte_bound_and_stay_contiguous() {
        let sink = Recorder::default();
        let text = "ab€😀".repeat(20);
        drive_plain(
            &ctx(&sink, 8),
            &ids(),
            channel(vec![
                delta(&text),
                delta("tail"),
                stop("end_turn"),
                usage(1, 2),
            ]),
        )
        .await
        .unwrap();
        let chunks = sink.chunks();
        assert!(chunks.len() > 10);
        assert_contiguous(&chunks);
        assert!(chunks.iter().all(|c| c.text.len() <= 8));
        let joined: String = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(joined, format!("{text}tail"));
    }

    #[tokio::test]
    async fn a_passed_deadline_ends_the_turn_with_stop_reason_deadline() {
        let sink = Recorder::default();
        let (_tx, rx) = mpsc::unbounded_channel();
        let ctx = TurnContext {
            deadline: Some(Instant::now() + Duration::from_millis(20)),
            ..ctx(&sink, 1024)
        };
        let outcome = drive_plain(&ctx, &ids(), ModelEvents::from_receiver(rx))
            .await
            .unwrap();
        assert_eq!(outcome.stop_reason, "deadline");
        let chunks = sink.chunks();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].stop_reason.as_deref(), Some("deadline"));
        assert!(chunks[0].error.is_none());
    }

    /// Drives a turn in a task over a channel the test feeds.
    fn spawn_turn<S: ChunkSink + Send + 'static>(
        sink: Arc<S>,
        strategy: Strategy,
        max_hold: Duration,
        cancel: tokio::sync::oneshot::Receiver<()>,
    ) -> (
        UnboundedSender<ModelItem>,
        tokio::task::JoinHandle<TurnReport>,
    ) {
        let (tx, events) = ModelEvents::channel();
        let driver = tokio::spawn(async move {
            let ctx = TurnContext {
                strategy,
                max_hold,
                ..ctx(&*sink, 1024)
            };
            let cancel = async move {
                // A dropped sender means "never".
                if cancel.await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            drive(&ctx, &ids(), events, cancel).await
        });
        (tx, driver)
    }

    /// Waits until `sink` has recorded `n` chunks.
    async fn recorded(sink: &Recorder, n: usize) {
        let wait = async {
            while sink.chunks().len() < n {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .expect("chunks in time");
    }

    #[tokio::test]
    async fn a_text_chunk_that_fails_gets_one_more_try_then_a_delivery_error_after_it() {
        let sink = Arc::new(Recorder {
            fail_once: Mutex::new(vec![0]),
            ..Default::default()
        });
        let (_cancel_tx, cancel) = tokio::sync::oneshot::channel();
        let (tx, driver) = spawn_turn(
            Arc::clone(&sink),
            Strategy::Adaptive,
            Duration::from_secs(1),
            cancel,
        );
        tx.send(delta("x")).unwrap();
        let report = driver.await.unwrap();
        assert!(tx.is_closed(), "the model stream was dropped");
        let outcome = report.result.unwrap();
        // seq 0 failed, went through on the last try; the terminal error is seq 1.
        let chunks = sink.chunks();
        assert_contiguous(&chunks);
        assert_eq!(chunks[0].text, "x");
        assert_eq!(chunks[1].error.as_ref().unwrap().error_type, DELIVERY_ERROR);
        assert!(chunks[1].error.as_ref().unwrap().retryable);
        assert_eq!(outcome.error_type.as_deref(), Some(DELIVERY_ERROR));
        assert_eq!(outcome.chunks, 2);
    }

    #[tokio::test]
    async fn a_text_chunk_that_keeps_failing_is_replaced_by_the_delivery_error() {
        let sink = Arc::new(Recorder {
            fail_once: Mutex::new(vec![0, 0]),
            ..Default::default()
        });
        let (_cancel_tx, cancel) = tokio::sync::oneshot::channel();
        let (tx, driver) = spawn_turn(
            Arc::clone(&sink),
            Strategy::Adaptive,
            Duration::from_secs(1),
            cancel,
        );
        tx.send(delta("x")).unwrap();
        let outcome = driver.await.unwrap().result.unwrap();
        let chunks = sink.chunks();
        assert_eq!(chunks.len(), 1);
        assert_contiguous(&chunks);
        assert_eq!(chunks[0].text, "x", "the error chunk carries the lost text");
        assert_eq!(chunks[0].error.as_ref().unwrap().error_type, DELIVERY_ERROR);
        assert_eq!(outcome.chunks, 1);
    }

    #[tokio::test]
    async fn a_terminal_chunk_that_fails_is_replaced_by_the_delivery_error() {
        let sink = Recorder {
            fail_once: Mutex::new(vec![1]),
            ..Default::default()
        };
        // "x" goes out alone as seq 0; "y" ends the turn as seq 1, which fails.
        let outcome = drive_plain(
            &ctx(&sink, 1024),
            &ids(),
            channel(vec![delta("x"), delta("y"), stop("end_turn")]),
        )
        .await
        .unwrap();
        assert_eq!(outcome.error_type.as_deref(), Some(DELIVERY_ERROR));
        let chunks = sink.chunks();
        assert_eq!(chunks.len(), 2);
        assert_contiguous(&chunks);
        assert_eq!(
            chunks[1].text, "y",
            "the error chunk carries the terminal chunk's text"
        );
        assert_eq!(chunks[1].stop_reason.as_deref(), Some("error"));
        assert!(chunks[1].error.as_ref().unwrap().retryable);
    }

    #[tokio::test]
    async fn a_turn_that_delivers_nothing_returns_a_lambda_error() {
        let sink = Recorder {
            fail_seqs: vec![0],
            ..Default::default()
        };
        let err = drive_plain(&ctx(&sink, 1024), &ids(), channel(vec![delta("x")]))
            .await
            .unwrap_err();
        assert!(
            matches!(err, TurnError::Publish { seq: 0, .. }),
            "nothing was delivered"
        );
        assert_eq!(err.error_type(), "DeliveryError");
        assert!(sink.chunks().is_empty());
    }

    #[tokio::test]
    async fn once_text_was_delivered_the_turn_never_returns_a_lambda_error() {
        let sink = Arc::new(Recorder {
            fail_seqs: vec![1],
            ..Default::default()
        });
        let (_cancel_tx, cancel) = tokio::sync::oneshot::channel();
        let (tx, driver) = spawn_turn(
            Arc::clone(&sink),
            Strategy::Adaptive,
            Duration::from_secs(1),
            cancel,
        );
        tx.send(delta("a")).unwrap();
        recorded(&sink, 1).await;
        tx.send(delta("b")).unwrap();
        tx.send(stop("end_turn")).unwrap();
        drop(tx);
        let outcome = driver
            .await
            .unwrap()
            .result
            .expect("no Lambda error after text");
        assert_eq!(outcome.error_type.as_deref(), Some(DELIVERY_ERROR));
        assert_eq!(sink.chunks().len(), 1, "only seq 0 got through");
    }

    #[tokio::test]
    async fn a_cancellation_stops_the_turn_within_one_delta() {
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let permits = Arc::new(Semaphore::new(0));
        let sink = Arc::new(Gated {
            seen: seen_tx,
            permits: Arc::clone(&permits),
        });
        let (cancel_tx, cancel) = tokio::sync::oneshot::channel();
        let (tx, driver) = spawn_turn(sink, Strategy::Adaptive, Duration::from_secs(60), cancel);

        tx.send(delta("one")).unwrap();
        let c0 = seen.recv().await.unwrap();
        assert_eq!((c0.seq, c0.text.as_str()), (0, "one"));
        // Held behind the publish in flight.
        tx.send(delta(" two")).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        cancel_tx.send(()).unwrap();
        // Everything after the cancellation is never read.
        let _ = tx.send(delta(" three"));
        let _ = tx.send(delta(" four"));
        tokio::time::timeout(Duration::from_secs(5), async {
            while !tx.is_closed() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .expect("the model stream is dropped at once, before the publish returns");
        permits.add_permits(10);
        let c1 = seen.recv().await.unwrap();
        let outcome = driver.await.unwrap().result.unwrap();
        assert_eq!((c1.seq, c1.text.as_str(), c1.done), (1, " two", true));
        assert_eq!(c1.stop_reason.as_deref(), Some("cancelled"));
        assert_eq!(c1.usage, None, "Bedrock reported no usage");
        assert!(c1.error.is_none());
        assert_eq!(outcome.stop_reason, "cancelled");
        assert_eq!(outcome.chunks, 2);
        assert!(seen.try_recv().is_err(), "nothing after the terminal chunk");
    }

    #[tokio::test]
    async fn a_cancellation_between_queued_deltas_takes_effect_before_the_next() {
        let sink = Recorder::default();
        let (tx, events) = ModelEvents::channel();
        for d in ["a", "b", "c", "d"] {
            tx.send(delta(d)).unwrap();
        }
        // The driver polls the cancel signal: (1) before reading "a", which it
        // publishes alone; (2) while that publish completes; (3) before
        // reading "b"; (4) before reading "c", queued behind "b". It fires there.
        let mut polls = 0;
        let cancel = std::future::poll_fn(move |_| {
            polls += 1;
            if polls >= 4 {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        });
        let report = drive(&ctx(&sink, 1024), &ids(), events, cancel).await;
        assert_eq!(report.result.unwrap().stop_reason, "cancelled");
        let chunks = sink.chunks();
        assert_contiguous(&chunks);
        let text: String = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(text, "ab", "c and d were never read");
        assert_eq!(report.stats.deltas, 2);
        assert!(tx.is_closed());
    }

    #[tokio::test]
    async fn a_cancellation_before_any_text_ends_with_one_empty_cancelled_chunk() {
        let sink = Recorder::default();
        let (_tx, events) = ModelEvents::channel();
        let report = drive(&ctx(&sink, 1024), &ids(), events, std::future::ready(())).await;
        assert_eq!(report.result.unwrap().stop_reason, "cancelled");
        let chunks = sink.chunks();
        assert_eq!(chunks.len(), 1);
        assert_eq!((chunks[0].text.as_str(), chunks[0].done), ("", true));
        assert_eq!(chunks[0].stop_reason.as_deref(), Some("cancelled"));
    }

    #[tokio::test]
    async fn a_stuck_publish_lets_held_text_go_out_after_the_hold_time() {
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let permits = Arc::new(Semaphore::new(0));
        let sink = Arc::new(Gated {
            seen: seen_tx,
            permits: Arc::clone(&permits),
        });
        let (_cancel_tx, cancel) = tokio::sync::oneshot::channel();
        let hold = Duration::from_millis(60);
        let (tx, driver) = spawn_turn(sink, Strategy::Adaptive, hold, cancel);
        tx.send(delta("A")).unwrap();
        assert_eq!(seen.recv().await.unwrap().text, "A");
        let held_at = Instant::now();
        tx.send(delta("B")).unwrap();
        let c1 = seen.recv().await.unwrap();
        assert_eq!(
            (c1.seq, c1.text.as_str()),
            (1, "B"),
            "a second publish while the first is stuck"
        );
        assert!(
            held_at.elapsed() >= hold - Duration::from_millis(5),
            "{:?}",
            held_at.elapsed()
        );
        tx.send(stop("end_turn")).unwrap();
        drop(tx);
        permits.add_permits(10);
        let last = seen.recv().await.unwrap();
        assert_eq!((last.seq, last.done), (2, true));
        let outcome = driver.await.unwrap().result.unwrap();
        assert_eq!(outcome.chunks, 3);
    }

    #[tokio::test]
    async fn other_strategies_run_through_the_same_driver() {
        async fn texts(strategy: &str) -> Vec<String> {
            let mut items: Vec<_> = ["a", "b", "c", "d", "e"].into_iter().map(delta).collect();
            items.push(stop("end_turn"));
            let sink = Recorder::default();
            let ctx = TurnContext {
                strategy: strategy.parse().unwrap(),
                ..ctx(&sink, 1024)
            };
            drive_plain(&ctx, &ids(), channel(items)).await.unwrap();
            let chunks = sink.chunks();
            assert_contiguous(&chunks);
            chunks.into_iter().map(|c| c.text).collect()
        }
        assert_eq!(texts("fixed-deltas:2").await, ["ab", "cd", "e"]);
        assert_eq!(texts("per-delta").await, ["a", "b", "c", "d", "e"]);
        assert_eq!(texts("chars:3").await, ["abc", "de"]);
        // The first delta goes out alone at once; the rest, queued behind it,
        // are merged.
        assert_eq!(texts("adaptive").await, ["a", "bcde"]);
        assert_eq!(texts("timer:60000").await, ["abcde"], "the end flushes");
    }

    #[tokio::test]
    async fn the_driver_measures_the_turn() {
        let sink = Recorder {
            attempts: 3,
            ..Default::default()
        };
        let report = drive(
            &ctx(&sink, 1024),
            &ids(),
            channel(vec![delta("a"), delta("b"), stop("end_turn"), usage(5, 7)]),
            std::future::pending(),
        )
        .await;
        report.result.unwrap();
        let s = report.stats;
        assert_eq!(s.deltas, 2);
        assert_eq!(
            s.chunks_published, 2,
            "\"a\" alone, then \"b\" with the end"
        );
        assert_eq!(s.publish_retries, 4);
        assert_eq!(s.output_tokens, Some(7));
        assert!(s.time_to_first_token.is_some() && s.time_to_first_publish.is_some());
        assert!(s.time_to_first_token <= s.time_to_first_publish);
    }

    #[tokio::test]
    async fn a_rejection_with_ids_is_published_as_a_validation_error_chunk() {
        let sink = Recorder::default();
        let err = reject(
            &ctx(&sink, 1024),
            Rejection {
                ids: Some(ids()),
                error: ValidationError::MaxTokensOutOfRange(0),
            },
        )
        .await;
        assert_eq!(err.error_type(), "ValidationException");
        let chunks = sink.chunks();
        assert_eq!(chunks.len(), 1);
        assert_contiguous(&chunks);
        let e = chunks[0].error.as_ref().unwrap();
        assert_eq!(e.error_type, "ValidationException");
        assert!(!e.retryable);
        assert!(e.message.contains("maxTokens"));

        let sink = Recorder::default();
        reject(
            &ctx(&sink, 1024),
            Rejection {
                ids: None,
                error: ValidationError::MissingIdentity,
            },
        )
        .await;
        assert!(sink.chunks().is_empty(), "no ids, no chunk");
    }

    #[test]
    fn outcome_serialises_to_the_documented_shape() {
        let o = outcome(
            &ids(),
            3,
            &Ending::Completed {
                stop_reason: "end_turn".into(),
                usage: UsageInput {
                    input_tokens: 0,
                    output_tokens: 0,
                    total_tokens: 0,
                },
            },
        );
        assert_eq!(
            serde_json::to_value(&o).unwrap(),
            serde_json::json!({"conversationId": "c1", "turnId": "t1", "chunks": 3, "stopReason": "end_turn"})
        );
        assert_eq!(
            serde_json::to_value(TurnOutcome::duplicate(&ids())).unwrap(),
            serde_json::json!({"conversationId": "c1", "turnId": "t1", "chunks": 0,
                               "stopReason": "duplicate", "duplicate": true})
        );
    }

    #[test]
    fn soft_deadline_keeps_a_reserve() {
        assert_eq!(soft_deadline(0, SystemTime::now()), None);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let before = Instant::now();
        let d = soft_deadline(1_060_000, now).unwrap();
        let left = d - before;
        assert!(
            left <= Duration::from_secs(57) + Duration::from_millis(50),
            "{left:?}"
        );
        assert!(left >= Duration::from_secs(56), "{left:?}");
        // Already past: stop now.
        assert!(soft_deadline(1, now).unwrap() <= Instant::now());
    }
}
