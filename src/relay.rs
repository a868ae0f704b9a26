//! Place in the data path: a transport's entry point -> **relay** -> model,
//! coalescer, turn driver -> the transport's sink. One validated turn, the
//! same whichever transport carries it (AppSync, a function URL's stream, API
//! Gateway's `@connections`): the claim that makes it run once, the
//! conversation's history, the model's reader, the driver, the turn's record
//! in the conversations table, its quota slot given back, and its metrics line.

use std::future::Future;

use chrono::{DateTime, Utc};
use tracing::{Instrument, info, info_span, warn};

use crate::chunk::Failure;
use crate::event::{TurnIds, TurnRequest};
use crate::metrics::TurnMetrics;
use crate::model::{self, ModelRequest, spawn_model_reader};
use crate::repeat;
use crate::sink::{ChunkSink, Recorded};
use crate::state::Core;
use crate::store::{AnswerEnd, Claim, HistoryMessage, Store, TurnRecord, estimated_tokens};
use crate::turn::{TurnContext, TurnError, TurnOutcome, TurnReport, drive};
use crate::vocabulary::{ErrorType, StopReason};

/// Relays turn `request` to `ctx.sink`: a repeated delivery streams nothing
/// (or settles the turn its first delivery claimed elsewhere), a first one
/// streams the model's answer until it ends or `cancel` resolves.
/// `request_id` is Lambda's, for the metrics line.
///
/// # Errors
/// [`TurnError::Publish`] when not a single chunk could be delivered.
pub(crate) async fn relay_turn<S: ChunkSink>(
    core: &Core,
    ctx: &TurnContext<'_, S>,
    request: &TurnRequest,
    request_id: &str,
    cancel: impl Future<Output = ()>,
) -> Result<TurnOutcome, TurnError> {
    let span = info_span!(
        "turn",
        turnId = %request.ids.turn_id,
        conversationId = %request.ids.conversation_id
    );
    let started_at = Utc::now();
    let (history, store_errors) = match begin_turn(core, request, started_at)
        .instrument(span.clone())
        .await
    {
        Delivery::Repeated => {
            // This environment ran the turn to its end (it runs one
            // invocation at a time), so nothing else will free a slot that a
            // repeated sendPrompt took since.
            Box::pin(release_slot(core, &request.ids, 0))
                .instrument(span)
                .await;
            return Ok(TurnOutcome::duplicate(&request.ids));
        }
        Delivery::ClaimedElsewhere(store) => {
            // Boxed, as the SDK's futures nest deeply (see `begin_turn`).
            let lease = core.config.claim_lease;
            let settled = Box::pin(repeat::settle(
                store,
                ctx.sink,
                request,
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
        request,
        history,
        started_at,
        store_errors,
    };
    run_turn(core, ctx, turn, request_id, cancel)
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
    core: &'a Core,
    request: &TurnRequest,
    started_at: DateTime<Utc>,
) -> Delivery<'a> {
    let ids = &request.ids;
    if !core.start_turn(ids) {
        info!("repeated delivery of a turn already started here; not streaming it again");
        return Delivery::Repeated;
    }
    let Some(store) = &core.store else {
        return Delivery::First {
            history: Vec::new(),
            store_errors: 0,
        };
    };
    // Boxed: the SDK's futures nest deeply enough to exceed the compiler's
    // layout recursion limit in the binary's async main.
    let (claim, history) = tokio::join!(
        Box::pin(store.claim(ids, started_at, core.config.claim_lease)),
        Box::pin(store.history(ids, core.config.history))
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
async fn run_turn<S: ChunkSink>(
    core: &Core,
    ctx: &TurnContext<'_, S>,
    turn: Turn<'_>,
    request_id: &str,
    cancel: impl Future<Output = ()>,
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
    let record = core.store.as_ref().map(|store| {
        let lease = core.config.claim_lease;
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
        core.bedrock.clone(),
        model_request(request, turn.history),
        model::REOPEN_RETRY,
    );
    let mut report = drive(&recorded_ctx, &request.ids, events, cancel).await;
    report.stats.store_errors = turn.store_errors;
    // The slot first: one write, before the record's several, so that even a
    // turn at its deadline gives it back.
    let tokens = turn_tokens(&report, input_chars);
    Box::pin(release_slot(core, &request.ids, tokens)).await;
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
pub(crate) async fn release_slot(core: &Core, ids: &TurnIds, tokens: u64) {
    if let Some(store) = &core.store {
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
