//! Place in the data path: AppSync --Invoke(Event)--> **handler** -> turn
//! driver. One Lambda invocation: the AppSync payload in, validated into a
//! turn; a repeated event stopped; the model's reader, the cancel watch and the
//! driver started; the outcome (or the error, as Lambda's `Diagnostic`) and
//! the turn's metrics line out.
//!
//! Asynchronous (`Event`) invocation from AppSync:
//! <https://docs.aws.amazon.com/appsync/latest/devguide/resolver-reference-lambda-js.html>.
//! Errors become the invocation error in one place, [`TurnError`]'s
//! `Diagnostic` (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html#runtimes-api-invokeerror>).

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use lambda_runtime::LambdaEvent;
use tokio::time::Instant;
use tracing::{Instrument, info, info_span, warn};

use crate::chunk::{Ending, Failure, terminal_chunk};
use crate::event::{AppSyncEvent, Rejection, TurnIds, TurnRequest};
use crate::metrics::TurnMetrics;
use crate::model::{self, ModelRequest, spawn_model_reader};
use crate::repeat;
use crate::sink::appsync::Publisher;
use crate::sink::{ChunkSink, Recorded};
use crate::state::State;
use crate::store::{AnswerEnd, Claim, HistoryMessage, Store, TurnRecord, estimated_tokens};
use crate::turn::{TurnContext, TurnError, TurnOutcome, TurnReport, drive};
use crate::vocabulary::{ErrorType, StopReason};

/// Most time kept back before the Lambda deadline to publish the terminal chunk.
pub(crate) const DEADLINE_RESERVE: Duration = Duration::from_secs(3);

/// Handles one invocation of the function: the soft deadline from the
/// invocation's deadline, then [`handle_event`].
///
/// # Errors
/// [`TurnError`], returned to Lambda as the invocation error.
pub async fn handle(
    state: &State,
    event: LambdaEvent<serde_json::Value>,
) -> Result<TurnOutcome, TurnError> {
    let deadline = soft_deadline(event.context.deadline, SystemTime::now());
    handle_event(state, event.payload, deadline, &event.context.request_id).await
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
pub(crate) async fn handle_event(
    state: &State,
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
        Err(rejection) => {
            if let Some(ids) = &rejection.ids {
                Box::pin(release_slot(state, ids, 0)).await;
            }
            return Err(reject(&ctx, rejection).await);
        }
    };
    let span = info_span!(
        "turn",
        turnId = %request.ids.turn_id,
        conversationId = %request.ids.conversation_id
    );
    let started_at = Utc::now();
    let (history, store_errors) = match begin_turn(state, &request, started_at)
        .instrument(span.clone())
        .await
    {
        Delivery::Repeated => {
            // This environment ran the turn to its end (it runs one
            // invocation at a time), so nothing else will free a slot that a
            // repeated sendPrompt took since.
            Box::pin(release_slot(state, &request.ids, 0))
                .instrument(span)
                .await;
            return Ok(TurnOutcome::duplicate(&request.ids));
        }
        Delivery::ClaimedElsewhere(store) => {
            // Boxed, as the SDK's futures nest deeply (see `begin_turn`).
            let lease = state.config.claim_lease;
            let settled = Box::pin(repeat::settle(
                store,
                ctx.sink,
                &request,
                lease,
                ctx.deadline,
            ));
            let outcome = settled.instrument(span.clone()).await;
            Box::pin(release_if_ended(store, &request.ids))
                .instrument(span)
                .await;
            return outcome;
        }
        Delivery::First {
            history,
            store_errors,
        } => (history, store_errors),
    };
    let turn = Turn {
        request: &request,
        history,
        started_at,
        store_errors,
    };
    run_turn(state, &ctx, turn, request_id)
        .instrument(span)
        .await
}

/// Whether a delivery of a turn's event is its first.
enum Delivery<'a> {
    /// Stream the turn, with the conversation's earlier messages.
    First {
        /// What the model gets before the prompt (empty without a store).
        history: Vec<HistoryMessage>,
        /// Store calls that failed (the turn streams anyway, guarded by the
        /// in-process record only, without history).
        store_errors: u64,
    },
    /// The turn was started before in this execution environment: stream
    /// nothing.
    Repeated,
    /// The turn was claimed in the store by another delivery: settle it
    /// ([`repeat::settle`]).
    ClaimedElsewhere(&'a Store),
}

/// Claims turn `request` and loads its history, both at once: first in this
/// execution environment's record, then in the conversations table, whose
/// conditional write catches a repeat that lands in another environment. A
/// store that cannot answer never stops the turn: a warning and the
/// `StoreErrors` metric say so, and the turn streams without history.
async fn begin_turn<'a>(
    state: &'a State,
    request: &TurnRequest,
    started_at: DateTime<Utc>,
) -> Delivery<'a> {
    let ids = &request.ids;
    if !state.start_turn(ids) {
        info!("repeated delivery of a turn already started here; not streaming it again");
        return Delivery::Repeated;
    }
    let Some(store) = &state.store else {
        return Delivery::First {
            history: Vec::new(),
            store_errors: 0,
        };
    };
    // Boxed: the SDK's futures nest deeply enough to exceed the compiler's
    // layout recursion limit in the binary's async main.
    let (claim, history) = tokio::join!(
        Box::pin(store.claim(ids, started_at, state.config.claim_lease)),
        Box::pin(store.history(ids, state.config.history))
    );
    let mut store_errors = 0;
    match claim {
        Ok(Claim::First) => {}
        Ok(Claim::Repeated) => {
            info!(
                "repeated delivery of a turn claimed by another delivery; not streaming it again"
            );
            return Delivery::ClaimedElsewhere(store);
        }
        Err(error) => {
            warn!(%error, "conversation store unavailable; streaming without the turn's claim");
            store_errors += 1;
        }
    }
    let history = history.unwrap_or_else(|error| {
        warn!(%error, "conversation store unavailable; streaming without the conversation's history");
        store_errors += 1;
        Vec::new()
    });
    Delivery::First {
        history,
        store_errors,
    }
}

/// A validated, first-seen turn, ready to run.
struct Turn<'a> {
    request: &'a TurnRequest,
    history: Vec<HistoryMessage>,
    started_at: DateTime<Utc>,
    store_errors: u64,
}

/// One turn: model, cancel watch, driver (with the turn's record beside the
/// publisher when there is a store), the record's end, metrics.
async fn run_turn(
    state: &State,
    ctx: &TurnContext<'_, Publisher>,
    turn: Turn<'_>,
    request_id: &str,
) -> Result<TurnOutcome, TurnError> {
    let request = turn.request;
    info!(
        model_id = %request.model_id,
        max_tokens = request.max_tokens,
        prompt_chars = request.prompt.chars().count(),
        history_messages = turn.history.len(),
        strategy = %ctx.strategy,
        "turn started"
    );
    let record = state.store.as_ref().map(|store| {
        let lease = state.config.claim_lease;
        TurnRecord::begin(store, &request.ids, turn.started_at, &request.prompt, lease)
    });
    let sink = Recorded {
        inner: ctx.sink,
        record: record.as_ref(),
    };
    let recorded_ctx = TurnContext {
        sink: &sink,
        strategy: ctx.strategy,
        max_chunk_bytes: ctx.max_chunk_bytes,
        max_hold: ctx.max_hold,
        deadline: ctx.deadline,
        started: ctx.started,
    };
    let input_chars = input_chars(request, &turn.history);
    let events = spawn_model_reader(
        state.bedrock.clone(),
        model_request(request, turn.history),
        model::REOPEN_RETRY,
    );
    let mut watch = state.cancel.watch(&request.ids);
    let mut report = drive(&recorded_ctx, &request.ids, events, watch.cancelled()).await;
    watch.stop().await;
    report.stats.store_errors = turn.store_errors;
    // The slot first: one write, before the record's several, so that even a
    // turn at its deadline gives it back.
    let tokens = turn_tokens(&report, input_chars);
    Box::pin(release_slot(state, &request.ids, tokens)).await;
    if let Some(record) = record {
        let written =
            Box::pin(record.finish(&request.model_id, fallback_end(&report.result))).await;
        report.stats.store_errors += written.errors;
        report.stats.store_writes = Some(written.chunks.writes);
        report.stats.store_bytes = Some(written.chunks.bytes);
    }

    let stop_reason = match &report.result {
        Ok(o) => o.stop_reason.clone(),
        Err(_) => StopReason::Error,
    };
    let strategy = ctx.strategy.to_string();
    TurnMetrics {
        strategy: &strategy,
        turn_id: &request.ids.turn_id,
        request_id,
        stop_reason: &stop_reason,
        stats: &report.stats,
    }
    .emit();
    match &report.result {
        Ok(o) => info!(
            chunks = o.chunks,
            stop_reason = %o.stop_reason,
            error_type = o.error_type.map(ErrorType::as_str),
            deltas = report.stats.deltas,
            publish_retries = report.stats.publish_retries,
            "turn finished"
        ),
        Err(e) => warn!(error = %e, "turn failed"),
    }
    report.result
}

/// Characters the model reads for `request` after `history`: what a turn
/// without Bedrock's usage is charged by ([`estimated_tokens`]).
fn input_chars(request: &TurnRequest, history: &[HistoryMessage]) -> usize {
    let system = request.system.as_deref().map_or(0, |s| s.chars().count());
    let earlier: usize = history.iter().map(|m| m.text.chars().count()).sum();
    system + earlier + request.prompt.chars().count()
}

/// The tokens a turn counts against its owner's day: Bedrock's
/// `usage.totalTokens` when the stream got that far; else an estimate of what
/// the model read and wrote, unless the turn failed before the model wrote
/// anything (refused, throttled: nothing was billed). A turn cancelled or cut
/// off at its deadline before any text is charged its input.
fn turn_tokens(report: &TurnReport, input_chars: usize) -> u64 {
    let stats = &report.stats;
    if let Some(total) = stats.total_tokens {
        return total;
    }
    let failed = match &report.result {
        Ok(outcome) => outcome.error_type.is_some(),
        Err(_) => true,
    };
    if failed && stats.answer_chars == 0 {
        return 0;
    }
    let answer = usize::try_from(stats.answer_chars).unwrap_or(usize::MAX);
    estimated_tokens(input_chars.saturating_add(answer))
}

/// Gives turn `ids`'s in-flight slot back with its `tokens`
/// ([`Store::release_slot`]); a failure is logged, and the slot then frees
/// itself when it expires.
async fn release_slot(state: &State, ids: &TurnIds, tokens: u64) {
    if let Some(store) = &state.store {
        release(store, ids, tokens).await;
    }
}

/// [`Store::release_slot`], a failure logged.
async fn release(store: &Store, ids: &TurnIds, tokens: u64) {
    if let Err(error) = Box::pin(store.release_slot(ids, tokens)).await {
        warn!(%error, "could not give back the turn's quota slot; it frees itself when it expires");
    }
}

/// After a repeated delivery settled: gives the slot back when the turn has
/// ended (its record finished, or taken over as interrupted), for a slot a
/// repeated sendPrompt took after the first delivery gave its own back. A
/// turn still streaming elsewhere gives it back itself.
async fn release_if_ended(store: &Store, ids: &TurnIds) {
    match store.read_claim(ids).await {
        Ok(Some(claim)) if claim.finished => release(store, ids, 0).await,
        Ok(_) => {}
        Err(error) => {
            warn!(%error, "could not read the turn's claim; its quota slot frees itself when it expires")
        }
    }
}

/// How a turn ended, for its stored answer, when its terminal chunk could not
/// be published (and so was not recorded).
fn fallback_end(result: &Result<TurnOutcome, TurnError>) -> AnswerEnd {
    let (stop_reason, error_type) = match result {
        Ok(o) => (o.stop_reason.as_str().to_owned(), o.error_type),
        Err(e) => (StopReason::Error.as_str().to_owned(), Some(e.error_type())),
    };
    AnswerEnd {
        stop_reason,
        usage: None,
        error: error_type.map(|t| Failure::of(t).chunk_error()),
    }
}

/// The Bedrock request of a validated turn, after its `history`.
pub(crate) fn model_request(request: &TurnRequest, history: Vec<HistoryMessage>) -> ModelRequest {
    ModelRequest {
        model_id: request.model_id.clone(),
        system: request.system.clone(),
        history,
        prompt: request.prompt.clone(),
        max_tokens: request.max_tokens,
        temperature: request.temperature,
    }
}

/// Publishes a rejection as a terminal error chunk (seq 0, `retryable: false`,
/// the [`ValidationError`]'s own message)
/// when its ids are known, and returns it as the Lambda error.
pub(crate) async fn reject<S: ChunkSink>(
    ctx: &TurnContext<'_, S>,
    rejection: Rejection,
) -> TurnError {
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
        let failure = Failure {
            error_type: rejection.error.error_type(),
            message: rejection.error.to_string(),
        };
        let chunk = terminal_chunk(ids, 0, String::new(), &Ending::Failed(failure));
        if let Err(e) = ctx.sink.publish(&chunk).await.result {
            warn!(turn_id = %ids.turn_id, error = %e, "could not publish the rejection");
        }
    }
    TurnError::Validation(rejection.error)
}

/// The instant to stop reading the model, from the Lambda deadline
/// (`Lambda-Runtime-Deadline-Ms`, milliseconds since the Unix epoch): a
/// reserve of a fifth of the remaining time, at most [`DEADLINE_RESERVE`], is
/// kept for the terminal chunk. `None` when the runtime gave no deadline (0).
pub(crate) fn soft_deadline(deadline_ms: u64, now: SystemTime) -> Option<Instant> {
    if deadline_ms == 0 {
        return None;
    }
    let deadline = SystemTime::UNIX_EPOCH + Duration::from_millis(deadline_ms);
    let remaining = deadline.duration_since(now).unwrap_or(Duration::ZERO);
    let reserve = (remaining / 5).min(DEADLINE_RESERVE);
    Some(Instant::now() + remaining.saturating_sub(reserve))
}

impl From<TurnError> for lambda_runtime::Diagnostic {
    fn from(error: TurnError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: error.error_type().as_str().to_owned(),
            error_message: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests;
