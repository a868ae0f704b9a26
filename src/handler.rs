//! Place in the data path: AppSync --Invoke(Event)--> **handler** -> relay
//! -> turn driver. One Lambda invocation of the AppSync resolver: the AppSync
//! payload in, validated into a turn, relayed with the `onCancel` watch
//! ([`crate::relay`]); the outcome (or the error, as Lambda's `Diagnostic`)
//! out.
//!
//! Asynchronous (`Event`) invocation from AppSync:
//! <https://docs.aws.amazon.com/appsync/latest/devguide/resolver-reference-lambda-js.html>.
//! Errors become the invocation error in one place, [`TurnError`]'s
//! `Diagnostic` (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html#runtimes-api-invokeerror>).

use std::time::{Duration, SystemTime};

use lambda_runtime::LambdaEvent;
use tokio::time::Instant;
use tracing::warn;

use crate::chunk::{Ending, Failure, terminal_chunk};
use crate::event::{AppSyncEvent, Rejection};
use crate::relay;
use crate::sink::ChunkSink;
use crate::state::State;
use crate::turn::{TurnContext, TurnError, TurnOutcome};

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
    let ctx = TurnContext::new(&state.core.config, &state.publisher, deadline, started);
    let request = match event.into_turn_request(&state.core.config) {
        Ok(r) => r,
        Err(rejection) => {
            if let Some(ids) = &rejection.ids {
                Box::pin(relay::release_slot(&state.core, ids, 0)).await;
            }
            return Err(reject(&ctx, rejection).await);
        }
    };
    let mut watch = state.cancel.watch(&request.ids);
    let outcome =
        relay::relay_turn(&state.core, &ctx, &request, request_id, watch.cancelled()).await;
    watch.stop().await;
    outcome
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
