//! Place in the data path: what the resolver Lambda builds once, at init, and
//! every invocation of its execution environment shares: the configuration,
//! the Bedrock client, the AppSync publisher, the cancel listener and the
//! record of turns started here. Lambda reuses an execution environment across
//! invocations, so clients are built here and never per invocation
//! (<https://docs.aws.amazon.com/lambda/latest/dg/rust-handler.html>).

use std::sync::{Arc, Mutex};

use appsync_client::CredentialsCache;
use thiserror::Error;

use crate::cancel::CancelListener;
use crate::config::{Config, ConfigError};
use crate::event::TurnIds;
use crate::idempotency::RecentTurns;
use crate::sink::appsync::{PublishError, Publisher};
use crate::store::Store;
use crate::tls::TlsError;

/// What every invocation shares, built once at init and kept for the life of
/// the execution environment (Lambda reuses it across invocations).
#[derive(Debug)]
pub struct State {
    /// The function's configuration, read from its environment variables.
    pub(crate) config: Config,
    /// Bedrock Runtime client (endpoint overridable with the standard
    /// `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`), with [`crate::model::sdk_retry_config`].
    pub(crate) bedrock: aws_sdk_bedrockruntime::Client,
    /// Signs and sends `publishChunk`.
    pub(crate) publisher: Publisher,
    /// The `onCancel` subscriptions, over one lazily opened IAM connection.
    pub(crate) cancel: CancelListener,
    /// The conversations table, when `CONVERSATIONS_TABLE` names one.
    pub(crate) store: Option<Store>,
    /// Turns started in this execution environment.
    pub(crate) recent_turns: Mutex<RecentTurns>,
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
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl State {
    /// Builds the shared state from the configuration and the loaded AWS
    /// configuration (region and credentials sign AppSync requests too).
    ///
    /// # Errors
    /// [`InitError`] when the region or credentials are missing or the
    /// publisher or its TLS configuration cannot be built.
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
            crate::tls::appsync_client_config()?,
        )?;
        let cancel = CancelListener::new(
            config.appsync_realtime_url.clone(),
            config.appsync_graphql_url.clone(),
            region,
            credentials,
        );
        let bedrock_config = aws_sdk_bedrockruntime::config::Builder::from(sdk)
            .retry_config(crate::model::sdk_retry_config())
            .build();
        let store = config
            .conversations_table
            .clone()
            .map(|table| Store::new(sdk, table));
        Ok(Self {
            store,
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
}
