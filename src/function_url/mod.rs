//! Place in the data path: client --POST--> Lambda function URL (response
//! streaming) --Invoke--> **function URL function** -> relay -> model,
//! coalescer, turn driver -> SSE sink -> the streamed response -> client.
//! The same relay as the AppSync resolver's, over the second transport.
//!
//! One invocation is one HTTP request
//! (<https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html>):
//! the request is checked (`POST`, the caller's Cognito ID token, the JSON
//! input) before anything streams, and refused with an HTTP status and a
//! JSON body `{"errorType", "message"}` when it fails. An accepted request
//! gets `200` with `text/event-stream`: one Server-Sent Event per chunk
//! (`id:` the `seq`, `data:` the chunk's JSON, as `onChunk` delivers it),
//! the terminal chunk last, which ends the body. What goes wrong after the
//! first byte (the model, a write) ends the stream with a terminal chunk
//! carrying the error, as on AppSync; a turn that panics cuts the stream
//! short instead, so the client sees it fail rather than end.
//!
//! The response is built on `lambda_runtime`'s streaming response: its
//! HTTP integration prelude carries the status and headers, then the body
//! streams (`Lambda-Runtime-Function-Response-Mode: streaming`,
//! <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-custom.html#runtimes-custom-response-streaming>).
//! The URL is deployed with `InvokeMode: RESPONSE_STREAM` and
//! `AuthType: NONE` (the function checks tokens itself, [`crate::cognito`]); CORS is
//! the URL's own configuration, which Lambda applies to every response.
//!
//! A client that disconnects does not stop the turn: Lambda does not tell a
//! streaming function that its client left, and runs it to its end
//! (<https://docs.aws.amazon.com/lambda/latest/dg/configuration-response-streaming.html>),
//! so the answer is generated and stored in full, and billed. A client that
//! wants its answer to stop sends `POST /cancel` ([`cancel`]); a broken
//! response stream stops it too ([`stream`]). A turn is named by the
//! input's `turnId` when the client chose one (as `sendPrompt`'s are, so a
//! client can tell its turns apart before the first chunk, and a repeated
//! request finds the turn's claim), else by a new id; the conversation's
//! history and record are kept as for AppSync turns. Quotas are the AppSync pipeline's, on the same
//! quota item: a turn takes one of its caller's in-flight slots before it
//! starts (`429` with `TooManyTurns`, `QuotaExceeded` or
//! `TooManyConversations` when a limit is reached), and the relay gives it
//! back when the turn ends.
//!
//! # Layout
//! - `request`: the function URL event and the prompt in its body.
//! - `stream`: the response stream: writes, pings, the size limit, the
//!   client's departure.
//! - `invocation`: an invocation ends only once its turn has.
//! - `cancel`: `POST /cancel`, a client stopping its own turn.
//! - `answer`: refusals and short JSON answers, and every response's prelude.

mod answer;
pub(crate) mod cancel;
mod invocation;
mod request;
mod stream;

use std::sync::Arc;
use std::time::SystemTime;

use futures_util::FutureExt;
use http::StatusCode;
use lambda_runtime::streaming::{Body, Response};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::{Value, json};
use thiserror::Error;
use tokio::time::Instant;
use tracing::{Instrument, info, warn};

use crate::admission::{Admission, AdmissionConfig};
use crate::config::{Config, ConfigError};
use crate::event::TurnRequest;
use crate::handler::soft_deadline;
use crate::relay::relay_turn;
use crate::sink::sse::SseSink;
use crate::state::Core;
use crate::turn::TurnContext;
use crate::vocabulary::ErrorType;

pub use crate::cognito::{
    AuthError, CognitoSettings, CognitoVerifier, DEFAULT_MIN_REFRESH, JwksError, VerifiedUser,
};
pub use cancel::CANCEL_POLL;
pub use request::{FunctionUrlRequest, RequestError, UrlHttp, UrlRequestContext};
pub use stream::{MAX_RESPONSE_BYTES, PING_INTERVAL, TERMINAL_RESERVE, WRITE_TIMEOUT};

use answer::{Refusal, answer, prelude, refuse};
use invocation::{EndWithTurns, RunningTurns};
use stream::ResponseStream;

/// The function URL function's own settings, read at init.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlConfig {
    /// The user pool whose ID tokens are accepted.
    pub cognito: CognitoSettings,
    /// The allowed models and quota limits (`ALLOWED_MODEL_IDS`, `QUOTA_*`).
    pub admission: AdmissionConfig,
}

impl UrlConfig {
    /// Reads the settings through `lookup` (variable name -> value).
    ///
    /// # Errors
    /// [`ConfigError::Missing`] when the app client or the pool is not named.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            cognito: CognitoSettings::from_lookup(&lookup)?,
            admission: AdmissionConfig::from_lookup(lookup),
        })
    }
}

/// What every invocation of the function URL function shares.
#[derive(Debug)]
pub struct UrlState {
    core: Core,
    verifier: CognitoVerifier,
    admission: Admission,
    turns: Arc<RunningTurns>,
}

impl UrlState {
    /// The state from the relay's [`Core`], the verifier (its keys fetched
    /// already) and the settings.
    pub fn new(core: Core, verifier: CognitoVerifier, config: &UrlConfig) -> Self {
        let admission = Admission::new(&config.admission, &core.config.default_model_id);
        Self {
            core,
            verifier,
            admission,
            turns: Arc::new(RunningTurns::default()),
        }
    }
}

/// Why an invocation fails as a Lambda error rather than an HTTP answer.
#[derive(Debug, Error)]
pub enum UrlError {
    /// The payload is not a function URL request.
    #[error(transparent)]
    Request(#[from] RequestError),
}

impl From<UrlError> for Diagnostic {
    fn from(error: UrlError) -> Self {
        Diagnostic {
            error_type: ErrorType::InvalidEvent.as_str().to_owned(),
            error_message: error.to_string(),
        }
    }
}

/// Handles one invocation: a refusal as a short JSON answer, or the turn
/// streamed as Server-Sent Events (see the module docs).
///
/// # Errors
/// [`UrlError`] when the payload is not a function URL request.
pub async fn handle(
    state: Arc<UrlState>,
    event: LambdaEvent<Value>,
) -> Result<Response<Body>, UrlError> {
    let started = Instant::now();
    let request = FunctionUrlRequest::from_value(event.payload)?;
    if request.raw_path.as_deref() == Some(CANCEL_PATH) {
        return Ok(match cancel_turn(&state, &request).await {
            Ok(cancelled) => answer(StatusCode::OK, &json!({"cancelled": cancelled})),
            Err(refusal) => refuse(refusal),
        });
    }
    let turn = match admit(&state, &request).await {
        Ok(turn) => turn,
        Err(refusal) => return Ok(refuse(refusal)),
    };
    let deadline = soft_deadline(event.context.deadline, SystemTime::now());
    let (sender, body) = lambda_runtime::streaming::channel();
    let stream = ResponseStream::new(sender);
    let request_id = event.context.request_id;
    let running = state.turns.start();
    let turn_task = async move {
        let streamed = std::panic::AssertUnwindSafe(stream_turn(
            &state,
            &turn,
            stream.clone(),
            deadline,
            started,
            &request_id,
        ));
        if streamed.catch_unwind().await.is_err() {
            warn!("the turn failed unexpectedly; its stream is cut short");
            stream.abort().await;
        }
        drop(running);
    };
    tokio::spawn(turn_task.instrument(tracing::Span::current()));
    Ok(Response {
        metadata_prelude: prelude(StatusCode::OK, "text/event-stream"),
        stream: body,
    })
}

/// The path of a cancellation.
const CANCEL_PATH: &str = "/cancel";

/// `POST /cancel`: asks the caller's own turn to stop; whether it was still
/// running.
async fn cancel_turn(state: &UrlState, request: &FunctionUrlRequest) -> Result<bool, Refusal> {
    let input: cancel::CancelInput = request.json_body()?;
    let user = state
        .verifier
        .verify(request.header("authorization"))
        .await?;
    let cancelled = match input.turn_of(user.sub) {
        Some(ids) => cancel::request(state.core.store.as_ref(), &ids).await,
        None => Err(cancel::CancelRefused::Invalid),
    };
    cancelled.map_err(|refused| {
        let status = match refused {
            cancel::CancelRefused::Invalid => StatusCode::BAD_REQUEST,
            cancel::CancelRefused::NotSupported => StatusCode::NOT_IMPLEMENTED,
            cancel::CancelRefused::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        Refusal::new(status, refused.error_type(), refused.message())
    })
}

/// Checks the request: its token, its input, its model, its quota.
async fn admit(state: &UrlState, request: &FunctionUrlRequest) -> Result<TurnRequest, Refusal> {
    let user = state
        .verifier
        .verify(request.header("authorization"))
        .await?;
    let input = request.prompt_input()?;
    let turn_id = input
        .turn_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let issuer = state.verifier.issuer();
    let turn = state
        .admission
        .admit(&state.core, user, issuer, input, turn_id)
        .await?;
    Ok(turn)
}

/// Relays `turn` to `stream` as Server-Sent Events, cancelled when the client
/// leaves, then ends the response.
async fn stream_turn(
    state: &UrlState,
    turn: &TurnRequest,
    stream: ResponseStream,
    deadline: Option<Instant>,
    started: Instant,
    request_id: &str,
) {
    let pings = tokio::spawn({
        let stream = stream.clone();
        async move { stream.keep_alive().await }
    });
    let sink = SseSink::new(stream.clone());
    let ctx = TurnContext::new(&state.core.config, &sink, deadline, started);
    let stopped = async {
        tokio::select! {
            () = stream.gone() => {}
            () = cancel::cancelled(state.core.store.as_ref(), &turn.ids) => {}
        }
    };
    let outcome = relay_turn(&state.core, &ctx, turn, request_id, stopped).await;
    pings.abort();
    match outcome {
        Ok(o) => info!(stop_reason = %o.stop_reason, chunks = o.chunks, "stream ended"),
        Err(error) => warn!(%error, "stream ended without delivering the turn"),
    }
    stream.finish().await;
}

/// The function URL function: tracing, configuration, AWS clients, the
/// pool's keys, then the Lambda runtime loop.
///
/// # Errors
/// An init error (bad environment, no region, keys that cannot be fetched)
/// or the runtime's own error.
pub async fn run() -> Result<(), lambda_runtime::Error> {
    crate::init_tracing();
    let config = Config::from_env()?;
    let url_config = UrlConfig::from_lookup(|name| std::env::var(name).ok())?;
    let sdk = crate::state::sdk_config().await?;
    let verifier = CognitoVerifier::at_init(&url_config.cognito).await?;
    let state = Arc::new(UrlState::new(
        Core::new(config, &sdk),
        verifier,
        &url_config,
    ));
    let turns = EndWithTurns(Arc::clone(&state.turns));
    let handler = lambda_runtime::service_fn(move |event: LambdaEvent<Value>| {
        handle(Arc::clone(&state), event)
    });
    lambda_runtime::Runtime::new(handler)
        .layer(turns)
        .layer(lambda_runtime::layers::TracingLayer::new())
        .run()
        .await
}
