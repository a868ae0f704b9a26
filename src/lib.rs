//! Place in the data path: the resolver Lambda that runs
//! "model -> coalescer -> publisher -> AppSync -> subscriber".
//!
//! AppSync invokes this function asynchronously for `sendPrompt`; each
//! invocation streams one Bedrock ConverseStream answer back to AppSync as
//! `publishChunk` mutations, which AppSync fans out to `onChunk` subscribers.
//! Configuration and clients are built once per process (Lambda init):
//! <https://docs.aws.amazon.com/lambda/latest/dg/rust-handler.html>
//!
//! Deployment note: configure the function's asynchronous invocation with
//! `MaximumRetryAttempts: 0`. A repeated event in the same execution
//! environment is recognised and not streamed again ([`idempotency`]); one in
//! another environment is not, and every failure already reaches the user as
//! a terminal chunk, so Lambda's retries can only duplicate an answer.

pub mod cancel;
pub mod client;
pub mod coalesce;
pub mod config;
pub mod event;
pub mod idempotency;
pub mod metrics;
pub mod model;
pub mod publish;
pub mod realtime;
pub mod retry;
pub mod sigv4;
pub mod turn;

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aws_config::BehaviorVersion;
use lambda_runtime::{LambdaEvent, service_fn};
use thiserror::Error;

use crate::cancel::CancelListener;
use crate::config::{Config, ConfigError};
use crate::event::TurnIds;
use crate::idempotency::RecentTurns;
use crate::publish::{PublishError, Publisher};
use crate::sigv4::CredentialsCache;
use crate::turn::{TurnError, TurnOutcome};

/// What every invocation shares, built once at init and kept for the life of
/// the execution environment (Lambda reuses it across invocations).
#[derive(Debug)]
pub struct State {
    /// The environment.
    pub config: Config,
    /// Bedrock Runtime client (endpoint overridable with the standard
    /// `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`), with [`model::sdk_retry_config`].
    pub bedrock: aws_sdk_bedrockruntime::Client,
    /// Signs and sends `publishChunk`.
    pub publisher: Publisher,
    /// The `onCancel` subscriptions, over one lazily opened IAM connection.
    pub cancel: CancelListener,
    /// Turns started in this execution environment.
    pub recent_turns: Mutex<RecentTurns>,
}

/// Why the function could not initialise.
#[derive(Debug, Error)]
pub enum InitError {
    /// A bad or missing environment variable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No region for signing AppSync requests (set `AWS_REGION`).
    #[error("no AWS region configured; set AWS_REGION")]
    MissingRegion,
    /// No credentials provider for signing AppSync requests.
    #[error("no AWS credentials provider configured")]
    MissingCredentials,
    /// The publisher could not be built.
    #[error("could not build the AppSync publisher: {0}")]
    Publisher(#[from] PublishError),
}

impl State {
    /// Builds the shared state from the configuration and the loaded AWS
    /// configuration (region and credentials sign AppSync requests too).
    ///
    /// # Errors
    /// [`InitError`] when the region or credentials are missing or the
    /// publisher cannot be built.
    pub fn new(config: Config, sdk: &aws_config::SdkConfig) -> Result<Self, InitError> {
        let region = sdk.region().ok_or(InitError::MissingRegion)?.to_string();
        let credentials = Arc::new(CredentialsCache::new(
            sdk.credentials_provider()
                .ok_or(InitError::MissingCredentials)?,
        ));
        let publisher = Publisher::new(
            &config.appsync_graphql_url,
            region.clone(),
            Arc::clone(&credentials),
        )?;
        let cancel = CancelListener::new(
            config.appsync_realtime_url.clone(),
            config.appsync_graphql_url.clone(),
            region,
            credentials,
        );
        let bedrock_config = aws_sdk_bedrockruntime::config::Builder::from(sdk)
            .retry_config(model::sdk_retry_config())
            .build();
        Ok(Self {
            config,
            bedrock: aws_sdk_bedrockruntime::Client::from_conf(bedrock_config),
            publisher,
            cancel,
            recent_turns: Mutex::new(RecentTurns::default()),
        })
    }

    /// Records that turn `ids` starts in this execution environment; `false`
    /// when it already did (a repeated event, which must not stream again).
    pub fn start_turn(&self, ids: &TurnIds) -> bool {
        self.recent_turns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .start(ids)
    }

    /// Handles one invocation; see [`turn::handle_event`].
    ///
    /// # Errors
    /// [`TurnError`], returned to Lambda as the invocation error.
    pub async fn handle(
        &self,
        event: LambdaEvent<serde_json::Value>,
    ) -> Result<TurnOutcome, TurnError> {
        let deadline = turn::soft_deadline(event.context.deadline, SystemTime::now());
        turn::handle_event(self, event.payload, deadline, &event.context.request_id).await
    }
}

/// Installs `lambda_runtime`'s log subscriber, which follows Lambda's
/// advanced logging controls
/// (<https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-advanced.html>):
/// JSON lines when `AWS_LAMBDA_LOG_FORMAT` is `JSON` (set the function's
/// `LoggingConfig.LogFormat` to `JSON`), text otherwise; the level from
/// `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else `INFO`. `lambda_runtime::run`
/// opens a span with the `requestId` around every invocation and each turn
/// adds one with its `turnId`, so every line of a turn names both. Does
/// nothing if a subscriber is already installed.
pub fn init_tracing() {
    if tracing::dispatcher::has_been_set() {
        return;
    }
    lambda_runtime::tracing::init_default_subscriber();
}

/// The function: tracing, configuration, AWS clients, then the Lambda runtime
/// loop (one invocation at a time per execution environment).
///
/// # Errors
/// An init error (bad environment, no region or credentials) or the
/// runtime's own error.
pub async fn run() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let config = Config::from_env()?;
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let state = Arc::new(State::new(config, &sdk)?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let state = Arc::clone(&state);
        async move { state.handle(event).await }
    }))
    .await
}
