//! The resolver Lambda of bedrock-appsync-stream: it streams one Amazon Bedrock
//! ConverseStream answer per invocation to AppSync subscribers.
//!
//! AppSync invokes this function asynchronously for `sendPrompt`; each
//! invocation streams the model's answer back to AppSync as `publishChunk`
//! mutations, which AppSync fans out to the turn owner's `onChunk`
//! subscribers. Configuration and clients are built once per process (Lambda
//! init): <https://docs.aws.amazon.com/lambda/latest/dg/rust-handler.html>.
//!
//! # Layout
//!
//! The modules follow a chunk along the data path:
//!
//! ```text
//! AppSync --Invoke(Event)--> handler --> model (ConverseStream, reader task)
//!                                          |  deltas
//!                                          v
//!                            coalesce --pieces--> turn (driver) --chunks--> sink --> AppSync
//!                                                   ^
//! AppSync --onCancel--> cancel ----------------------+
//! ```
//!
//! - `state`: what init builds once: the [`Core`] every transport shares
//!   (config, Bedrock and DynamoDB clients) and the AppSync resolver's
//!   [`State`] (the publisher, the cancel listener).
//! - `handler`: one invocation of the AppSync resolver; payload in, outcome
//!   or Lambda `Diagnostic` out; the soft deadline.
//! - `relay`: one validated turn, whichever transport carries it: the claim,
//!   the history, the model's reader, the driver, the record, the quota slot
//!   given back, the metrics line.
//! - [`function_url`]: the second transport, a Lambda function URL whose
//!   function streams the turn as Server-Sent Events (the `function-url`
//!   binary): its own token check, request, response stream and `/cancel`.
//! - `event`: the AppSync payload and caller identity, validated into a turn.
//! - `idempotency`: a repeated event in this execution environment streams
//!   nothing.
//! - `model`: Bedrock ConverseStream as model events, typed model errors, and
//!   the reader task that owns the stream.
//! - `coalesce`: the strategies that merge deltas into pieces.
//! - `turn`: the driver, model events -> coalescer -> sink, and how a turn ends
//!   (stream end, error, deadline, cancellation, failed delivery).
//! - `chunk`: a chunk's builders and endings; `vocabulary`: every stop reason
//!   and error type with its wire string, user message and retryability.
//! - `sink`: [`ChunkSink`], the one interface between the driver and where
//!   chunks go; `sink::appsync` signs and sends `publishChunk`, `sink::sse`
//!   writes Server-Sent Events, and `sink::recorded` queues each delivered
//!   chunk for the store.
//! - `store`: the conversations table in DynamoDB: the claim that makes a
//!   turn run once whichever execution environment its event reaches, the
//!   history sent to the model, the turn's chunks (for recovery) and its
//!   messages; `items` gives every key.
//! - `repeat`: a repeated delivery of a claimed turn: wait for it, or end it
//!   as `Interrupted` when its execution environment died.
//! - `cancel`: the `onCancel` listener that stops a turn.
//! - `tls`: the compiled-in roots every HTTPS connection trusts (no files
//!   read at init).
//! - `config`, `limits`, `metrics` (one EMF line per turn), `retry`.
//!
//! The chunk type, the GraphQL documents, SigV4 signing and the real-time
//! client are the `appsync_client` crate's, shared with every client.
//!
//! Deployment note: configure the function's asynchronous invocation with
//! `MaximumRetryAttempts: 0`. A repeated event is recognised and not streamed
//! again (in this execution environment by an in-process record, in any other
//! through the turn's claim in `CONVERSATIONS_TABLE`); a retry of a turn whose
//! environment died cannot yet end it for its user, and every other failure
//! already reaches the user as a terminal chunk.

mod admission;
mod cancel;
mod chunk;
mod coalesce;
pub mod cognito;
mod config;
mod event;
pub mod function_url;
mod handler;
mod idempotency;
mod limits;
mod metrics;
mod model;
mod relay;
mod repeat;
mod retry;
mod sink;
mod state;
mod store;
mod tls;
mod turn;
mod vocabulary;
pub mod websocket;

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};

pub use admission::{AdmissionConfig, RefusalKind, Refused};
pub use coalesce::{Strategy, StrategyParseError};
pub use config::{AppSyncEndpoints, Config, ConfigError};
pub use event::{
    AppSyncEvent, CognitoIdentity, IamIdentity, Identity, Info, LambdaIdentity, OidcIdentity,
    RequestInfo, SendPromptArguments, SendPromptInput, TurnIds, ValidationError,
};
pub use handler::handle;
pub use model::ErrorKind;
pub use sink::appsync::{GraphQlError, PublishError, Publisher};
pub use sink::sse::{EventWriter, SseSink};
pub use sink::websocket::{MessagePoster, WebSocketSink};
pub use sink::{ChunkSink, PublishReport, SinkError};
pub use state::{Core, InitError, State};
pub use store::HistoryBudget;
pub use tls::TlsError;
pub use turn::{TurnError, TurnOutcome};
pub use vocabulary::{ErrorType, StopReason};

/// Installs the log subscriber `lambda_runtime` installs by default, but
/// that never logs raw events (they carry tokens), which follows Lambda's
/// advanced logging controls
/// (<https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-advanced.html>):
/// JSON lines when `AWS_LAMBDA_LOG_FORMAT` is `JSON` (set the function's
/// `LoggingConfig.LogFormat` to `JSON`), text otherwise; the level from
/// `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else `INFO`. `lambda_runtime::run`
/// opens a span with the `requestId` around every invocation and each turn
/// adds one with its `turnId`, so every line of a turn names both. Does
/// nothing if a subscriber is already installed.
pub fn init_tracing() {
    use lambda_runtime::tracing::subscriber::filter::{EnvFilter, LevelFilter};
    if tracing::dispatcher::has_been_set() {
        return;
    }
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    // lambda_runtime logs every raw event at TRACE: an AppSync event's
    // headers and an authorizer's query string carry the caller's token.
    let mut filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy();
    if let Ok(directive) = RAW_EVENTS_AT_MOST.parse() {
        filter = filter.add_directive(directive);
    }
    let collector = lambda_runtime::tracing::subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_env_filter(filter);
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    if json {
        collector.json().init();
    } else {
        collector.init();
    }
}

/// The tracing directive that keeps `lambda_runtime`'s raw-event lines out
/// of the logs whatever level is asked for.
const RAW_EVENTS_AT_MOST: &str = "lambda_runtime::layers::api_response=debug";

/// The function: tracing, configuration, AWS clients, then the Lambda runtime
/// loop (one invocation at a time per execution environment).
///
/// # Errors
/// An init error (bad environment, no region or credentials) or the
/// runtime's own error.
pub async fn run() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let config = Config::from_env()?;
    let sdk = state::sdk_config().await?;
    let state = Arc::new(State::new(config, &sdk)?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let state = Arc::clone(&state);
        async move { handler::handle(&state, event).await }
    }))
    .await
}
