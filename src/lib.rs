//! Place in the data path: the resolver Lambda that runs
//! "model -> coalescer -> publisher -> AppSync -> subscriber".
//!
//! AppSync invokes this function asynchronously for `sendPrompt`; each
//! invocation streams one Bedrock ConverseStream answer back to AppSync as
//! `publishChunk` mutations, which AppSync fans out to `onChunk` subscribers.
//! Configuration and clients are built once per process (Lambda init):
//! <https://docs.aws.amazon.com/lambda/latest/dg/rust-handler.html>

pub mod client;
pub mod coalesce;
pub mod config;
pub mod event;
pub mod model;
pub mod publish;
pub mod realtime;
pub mod sigv4;
pub mod turn;

use std::sync::Arc;
use std::time::SystemTime;

use aws_config::BehaviorVersion;
use lambda_runtime::{LambdaEvent, service_fn};
use thiserror::Error;

use crate::config::{Config, ConfigError};
use crate::publish::{PublishError, Publisher};
use crate::turn::{TurnError, TurnOutcome};

/// What every invocation shares, built once at init.
#[derive(Debug)]
pub struct State {
    /// The environment.
    pub config: Config,
    /// Bedrock Runtime client (endpoint overridable with the standard
    /// `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`).
    pub bedrock: aws_sdk_bedrockruntime::Client,
    /// Signs and sends `publishChunk`.
    pub publisher: Publisher,
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
        let credentials = sdk
            .credentials_provider()
            .ok_or(InitError::MissingCredentials)?;
        let publisher = Publisher::new(&config.appsync_graphql_url, region, credentials)?;
        Ok(Self {
            config,
            bedrock: aws_sdk_bedrockruntime::Client::new(sdk),
            publisher,
        })
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
        turn::handle_event(self, event.payload, deadline).await
    }
}

/// Installs the JSON log subscriber: level from `RUST_LOG` (default `info`),
/// no ANSI colours, no timestamps (CloudWatch adds its own).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .try_init();
}

/// The function: tracing, configuration, AWS clients, then the Lambda runtime
/// loop.
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
