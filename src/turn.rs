//! Place in the data path: runs the whole of
//! "model -> coalescer -> publisher -> AppSync -> subscriber" for one turn.
//!
//! One turn, from a validated prompt to its terminal chunk: a reader task feeds
//! model events into a channel; the publisher loop, whenever it is idle, takes
//! everything pending from the [`Coalescer`] and publishes it as the next chunk.
//! Chunks are numbered `seq` 0, 1, 2, ... without gaps; the last has
//! `done: true` and either a stop reason with usage, or an error in words safe
//! to show a user. Errors of every module are mapped to what the user sees here
//! and only here.
//!
//! Asynchronous (`Event`) invocation from AppSync:
//! <https://docs.aws.amazon.com/appsync/latest/devguide/resolver-reference-lambda-js.html>.
//! Lambda retries a failed asynchronous invocation
//! (<https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html>),
//! so a turn whose failure has been delivered to the user returns success.

use std::future::Future;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use thiserror::Error;
use tokio::sync::mpsc::{self, UnboundedReceiver, error::TryRecvError};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::coalesce::Coalescer;
use crate::event::{AppSyncEvent, Rejection, TurnIds, TurnRequest, ValidationError};
use crate::model::{ErrorKind, ModelError, ModelEvent, ModelRequest, ModelStream};
use crate::publish::{ChunkErrorInput, ChunkInput, PublishError, Publisher, UsageInput};

/// `stopReason` of a turn that ended in an error.
pub const STOP_ERROR: &str = "error";
/// `stopReason` of a turn cut short by the Lambda deadline.
pub const STOP_DEADLINE: &str = "deadline";
/// `errorType` of a turn whose chunks could not all be delivered.
pub const DELIVERY_ERROR: &str = "DeliveryError";

/// Most time kept back before the Lambda deadline to publish the terminal chunk.
pub const DEADLINE_RESERVE: Duration = Duration::from_secs(3);

/// Where chunks go. [`Publisher`] is the real one; tests use fakes.
pub trait ChunkSink: Sync {
    /// Publishes one chunk (retries included).
    fn publish(&self, chunk: &ChunkInput) -> impl Future<Output = Result<(), PublishError>> + Send;
}

impl ChunkSink for Publisher {
    fn publish(&self, chunk: &ChunkInput) -> impl Future<Output = Result<(), PublishError>> + Send {
        Publisher::publish(self, chunk)
    }
}

/// What the Lambda returns for a turn: `{"conversationId","turnId","chunks",
/// "stopReason","errorType"?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnOutcome {
    /// The conversation.
    pub conversation_id: String,
    /// The turn.
    pub turn_id: String,
    /// Chunks published (the terminal one included).
    pub chunks: i64,
    /// The terminal chunk's `stopReason`.
    pub stop_reason: String,
    /// The terminal chunk's `error.errorType`, if it carried one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
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
    /// A chunk, and then the terminal error chunk, could not be published.
    #[error("could not publish chunk {seq} of turn {turn_id}: {source}")]
    Publish {
        /// The turn.
        turn_id: String,
        /// The chunk that failed.
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

/// Everything a turn needs that lives for the whole process.
#[derive(Debug, Clone, Copy)]
pub struct TurnContext<'a, S> {
    /// The chunk destination.
    pub sink: &'a S,
    /// Most UTF-8 bytes of text per chunk.
    pub max_chunk_bytes: usize,
    /// When to stop reading the model and end with `stopReason: deadline`.
    pub deadline: Option<Instant>,
}

/// Runs one invocation: parse, validate, stream the model's answer as chunks.
///
/// # Errors
/// [`TurnError::Event`] for an unparseable payload, [`TurnError::Validation`]
/// (after publishing a terminal `ValidationException` chunk when the ids and
/// owner are valid), [`TurnError::Publish`] when not even the terminal chunk
/// could be delivered.
pub async fn handle_event(
    state: &crate::State,
    payload: serde_json::Value,
    deadline: Option<Instant>,
) -> Result<TurnOutcome, TurnError> {
    let event = AppSyncEvent::from_value(payload)?;
    let ctx = TurnContext {
        sink: &state.publisher,
        max_chunk_bytes: state.config.max_chunk_bytes,
        deadline,
    };
    let request = match event.into_turn_request(&state.config) {
        Ok(r) => r,
        Err(rejection) => return Err(reject(&ctx, rejection).await),
    };
    info!(
        conversation_id = %request.ids.conversation_id,
        turn_id = %request.ids.turn_id,
        model_id = %request.model_id,
        max_tokens = request.max_tokens,
        prompt_chars = request.prompt.chars().count(),
        "turn started"
    );
    let (reader, events) = spawn_model_reader(state.bedrock.clone(), model_request(&request));
    let outcome = drive(&ctx, &request.ids, events).await;
    drop(reader);
    match &outcome {
        Ok(o) => info!(
            conversation_id = %o.conversation_id,
            turn_id = %o.turn_id,
            chunks = o.chunks,
            stop_reason = %o.stop_reason,
            error_type = o.error_type.as_deref(),
            "turn finished"
        ),
        Err(e) => warn!(turn_id = %request.ids.turn_id, error = %e, "turn failed"),
    }
    outcome
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
    warn!(error = %rejection.error, "prompt rejected");
    if let Some(ids) = &rejection.ids {
        let error = ChunkErrorInput {
            error_type: rejection.error.error_type().to_owned(),
            message: rejection.error.to_string(),
            retryable: false,
        };
        let chunk = terminal_chunk(ids, 0, String::new(), &Ending::Failed(error));
        if let Err(e) = ctx.sink.publish(&chunk).await {
            warn!(turn_id = %ids.turn_id, error = %e, "could not publish the rejection");
        }
    }
    TurnError::Validation(rejection.error)
}

/// The model reader task; dropping it aborts the task (and with it the
/// ConverseStream).
#[derive(Debug)]
pub struct ReaderTask(JoinHandle<()>);

impl Drop for ReaderTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Model events in order; an `Err` is the last item.
pub type ModelEvents = UnboundedReceiver<Result<ModelEvent, ModelError>>;

/// Starts the ConverseStream in a task that forwards every model event (or
/// the error that ends the stream) into a channel. The task stops when the
/// stream ends, the receiver is dropped, or the [`ReaderTask`] is dropped.
pub fn spawn_model_reader(
    client: aws_sdk_bedrockruntime::Client,
    request: ModelRequest,
) -> (ReaderTask, ModelEvents) {
    let (tx, events) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut stream = match ModelStream::open(&client, &request).await {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
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
    });
    (ReaderTask(task), events)
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
    /// The turn failed.
    Failed(ChunkErrorInput),
}

/// What the model stream has told us so far.
#[derive(Debug, Default)]
struct Progress {
    stop_reason: Option<String>,
    usage: Option<UsageInput>,
    error: Option<ModelError>,
    ended: bool,
}

impl Progress {
    fn apply(&mut self, coalescer: &mut Coalescer, item: Result<ModelEvent, ModelError>) {
        match item {
            Ok(ModelEvent::Delta(text)) => coalescer.push(&text),
            Ok(ModelEvent::Stop { stop_reason }) => self.stop_reason = Some(stop_reason),
            Ok(ModelEvent::Usage {
                input_tokens,
                output_tokens,
                total_tokens,
            }) => {
                self.usage = Some(UsageInput {
                    input_tokens: input_tokens.into(),
                    output_tokens: output_tokens.into(),
                    total_tokens: total_tokens.into(),
                });
            }
            Err(e) => {
                self.error = Some(e);
                self.ended = true;
            }
        }
    }

    fn ending(self, deadline_hit: bool) -> Ending {
        let usage = self.usage.unwrap_or(UsageInput {
            input_tokens: 0,
            output_tokens: 0,
            total_tokens: 0,
        });
        if let Some(error) = self.error {
            warn!(%error, "model failed");
            return Ending::Failed(model_chunk_error(&error));
        }
        if deadline_hit {
            return Ending::Deadline { usage };
        }
        match self.stop_reason {
            Some(stop_reason) => Ending::Completed { stop_reason, usage },
            None => {
                warn!("model stream ended without messageStop");
                Ending::Failed(model_chunk_error(&ModelError::MidStream {
                    kind: ErrorKind::Truncated,
                    detail: "stream ended without messageStop".into(),
                }))
            }
        }
    }
}

/// Streams a turn's model events as chunks; see the module docs.
///
/// Reads `events` until the stream ends, fails, or `ctx.deadline` passes, then
/// publishes the remaining text and the terminal chunk.
///
/// # Errors
/// [`TurnError::Publish`] when a chunk and then the terminal error chunk after
/// it could not be published. If the terminal error chunk did get through, the
/// result is `Ok` with `errorType: DeliveryError`.
pub async fn drive<S: ChunkSink>(
    ctx: &TurnContext<'_, S>,
    ids: &TurnIds,
    mut events: ModelEvents,
) -> Result<TurnOutcome, TurnError> {
    let mut coalescer = Coalescer::new(ctx.max_chunk_bytes);
    let mut progress = Progress::default();
    let mut seq: i64 = 0;
    let mut deadline_hit = false;

    // Streaming: whenever the publisher is idle, publish everything pending.
    while !progress.ended {
        loop {
            match events.try_recv() {
                Ok(item) => progress.apply(&mut coalescer, item),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    progress.ended = true;
                    break;
                }
            }
            if progress.ended {
                break;
            }
        }
        if progress.ended {
            break;
        }
        if ctx.deadline.is_some_and(|d| Instant::now() >= d) {
            deadline_hit = true;
            break;
        }
        if let Some(piece) = coalescer.take_ready() {
            let chunk = text_chunk(ids, seq, piece.text);
            if let Err(e) = ctx.sink.publish(&chunk).await {
                return deliver_failure(ctx, ids, seq, e).await;
            }
            coalescer.ack();
            seq += 1;
            continue;
        }
        // Idle with nothing pending: wait for the model (or the deadline).
        let next = match ctx.deadline {
            Some(d) => match tokio::time::timeout_at(d, events.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    deadline_hit = true;
                    break;
                }
            },
            None => events.recv().await,
        };
        match next {
            Some(item) => progress.apply(&mut coalescer, item),
            None => progress.ended = true,
        }
    }
    drop(events);

    // Draining: the rest of the text, then the terminal chunk.
    let ending = progress.ending(deadline_hit);
    coalescer.finish();
    while let Some(piece) = coalescer.take_ready() {
        let chunk = if piece.last {
            terminal_chunk(ids, seq, piece.text, &ending)
        } else {
            text_chunk(ids, seq, piece.text)
        };
        if let Err(e) = ctx.sink.publish(&chunk).await {
            return deliver_failure(ctx, ids, seq, e).await;
        }
        coalescer.ack();
        seq += 1;
    }
    Ok(outcome(ids, seq, &ending))
}

/// After chunk `seq` failed for good: stop, and try to tell the user with a
/// terminal error chunk at `seq + 1` (chunk `seq` may or may not have reached
/// subscribers, so its number is not reused).
async fn deliver_failure<S: ChunkSink>(
    ctx: &TurnContext<'_, S>,
    ids: &TurnIds,
    seq: i64,
    error: PublishError,
) -> Result<TurnOutcome, TurnError> {
    warn!(turn_id = %ids.turn_id, seq, %error, "could not publish chunk; ending the turn");
    let ending = Ending::Failed(ChunkErrorInput {
        error_type: DELIVERY_ERROR.into(),
        message: "Part of the answer could not be delivered. Please try again.".into(),
        retryable: true,
    });
    let terminal = terminal_chunk(ids, seq + 1, String::new(), &ending);
    match ctx.sink.publish(&terminal).await {
        Ok(()) => Ok(outcome(ids, seq + 2, &ending)),
        Err(e) => {
            warn!(turn_id = %ids.turn_id, seq = seq + 1, error = %e, "could not publish the terminal error chunk");
            Err(TurnError::Publish {
                turn_id: ids.turn_id.clone(),
                seq,
                source: error,
            })
        }
    }
}

fn outcome(ids: &TurnIds, chunks: i64, ending: &Ending) -> TurnOutcome {
    let (stop_reason, error_type) = match ending {
        Ending::Completed { stop_reason, .. } => (stop_reason.clone(), None),
        Ending::Deadline { .. } => (STOP_DEADLINE.to_owned(), None),
        Ending::Failed(e) => (STOP_ERROR.to_owned(), Some(e.error_type.clone())),
    };
    TurnOutcome {
        conversation_id: ids.conversation_id.clone(),
        turn_id: ids.turn_id.clone(),
        chunks,
        stop_reason,
        error_type,
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
        TurnIds {
            conversation_id: "c1".into(),
            turn_id: "t1".into(),
            owner: "o1".into(),
        }
    }

    /// Records chunks; fails every publish of `fail_seqs`.
    #[derive(Default)]
    struct Recorder {
        chunks: Mutex<Vec<ChunkInput>>,
        fail_seqs: Vec<i64>,
    }

    impl Recorder {
        fn chunks(&self) -> Vec<ChunkInput> {
            self.chunks.lock().unwrap().clone()
        }
    }

    impl ChunkSink for Recorder {
        fn publish(
            &self,
            chunk: &ChunkInput,
        ) -> impl Future<Output = Result<(), PublishError>> + Send {
            let result = if self.fail_seqs.contains(&chunk.seq) {
                Err(PublishError::Http {
                    status: 500,
                    errors: vec![],
                })
            } else {
                self.chunks.lock().unwrap().push(chunk.clone());
                Ok(())
            };
            async move { result }
        }
    }

    /// Hands each chunk to the test and waits for a permit before returning.
    struct Gated {
        seen: mpsc::UnboundedSender<ChunkInput>,
        permits: Arc<Semaphore>,
    }

    impl ChunkSink for Gated {
        fn publish(
            &self,
            chunk: &ChunkInput,
        ) -> impl Future<Output = Result<(), PublishError>> + Send {
            let _ = self.seen.send(chunk.clone());
            let permits = Arc::clone(&self.permits);
            async move {
                if let Ok(p) = permits.acquire().await {
                    p.forget();
                }
                Ok(())
            }
        }
    }

    fn ctx<S>(sink: &S, max_chunk_bytes: usize) -> TurnContext<'_, S> {
        TurnContext {
            sink,
            max_chunk_bytes,
            deadline: None,
        }
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
        let (tx, rx) = mpsc::unbounded_channel();
        for item in items {
            tx.send(item).unwrap();
        }
        rx
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
            tokio::spawn(async move { drive(&ctx(&*sink, 1024), &ids(), rx).await })
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
        let outcome = drive(&ctx(&sink, 1024), &ids(), channel(vec![Err(err)]))
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
        drive(
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
        drive(
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
        let outcome = drive(&ctx(&sink, 1024), &ids(), channel(vec![delta("x")]))
            .await
            .unwrap();
        assert_eq!(outcome.error_type.as_deref(), Some("StreamTruncated"));
        assert!(sink.chunks().pop().unwrap().error.unwrap().retryable);
    }

    #[tokio::test]
    async fn chunks_respect_the_byte_bound_and_stay_contiguous() {
        let sink = Recorder::default();
        let text = "ab€😀".repeat(20);
        drive(
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
            sink: &sink,
            max_chunk_bytes: 1024,
            deadline: Some(Instant::now() + Duration::from_millis(20)),
        };
        let outcome = drive(&ctx, &ids(), rx).await.unwrap();
        assert_eq!(outcome.stop_reason, "deadline");
        let chunks = sink.chunks();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].stop_reason.as_deref(), Some("deadline"));
        assert!(chunks[0].error.is_none());
    }

    #[tokio::test]
    async fn a_chunk_that_cannot_be_published_ends_the_turn_after_it() {
        let sink = Recorder {
            fail_seqs: vec![0],
            ..Default::default()
        };
        let outcome = drive(&ctx(&sink, 1024), &ids(), channel(vec![delta("x")]))
            .await
            .unwrap();
        // seq 0 failed; the terminal error chunk is seq 1.
        let chunks = sink.chunks();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].seq, 1);
        assert!(chunks[0].done);
        assert_eq!(chunks[0].error.as_ref().unwrap().error_type, DELIVERY_ERROR);
        assert_eq!(outcome.error_type.as_deref(), Some(DELIVERY_ERROR));

        let sink = Recorder {
            fail_seqs: vec![0, 1],
            ..Default::default()
        };
        let err = drive(&ctx(&sink, 1024), &ids(), channel(vec![delta("x")]))
            .await
            .unwrap_err();
        assert!(matches!(err, TurnError::Publish { seq: 0, .. }));
        assert_eq!(err.error_type(), "DeliveryError");
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
