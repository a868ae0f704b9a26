//! Place in the data path: what a function builds once, at init, and every
//! invocation of its execution environment shares. [`Core`] is what every
//! transport's turn needs (the configuration, the Bedrock client, the
//! conversations table, the record of turns started here); [`State`] adds the
//! AppSync resolver's own parts (the publisher and the cancel listener).
//! Lambda reuses an execution environment across invocations, so clients are
//! built here and never per invocation
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

/// The AWS configuration every function loads at init: the default chain
/// (region, credentials, `AWS_ENDPOINT_URL_*`) over the compiled-in roots.
///
/// # Errors
/// [`TlsError`] when the SDK rejects the trust store.
pub(crate) async fn sdk_config() -> Result<aws_config::SdkConfig, TlsError> {
    Ok(aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(crate::tls::sdk_http_client()?)
        .load()
        .await)
}

/// What a turn needs whichever transport carries it, built once at init.
#[derive(Debug)]
pub struct Core {
    /// The function's configuration, read from its environment variables.
    pub(crate) config: Config,
    /// Bedrock Runtime client (endpoint overridable with the standard
    /// `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`), with [`crate::model::sdk_retry_config`].
    pub(crate) bedrock: aws_sdk_bedrockruntime::Client,
    /// The conversations table, when `CONVERSATIONS_TABLE` names one.
    pub(crate) store: Option<Store>,
    /// Turns started in this execution environment.
    pub(crate) recent_turns: Mutex<RecentTurns>,
}

impl Core {
    /// The Bedrock client and the table's client from the loaded AWS
    /// configuration.
    pub fn new(config: Config, sdk: &aws_config::SdkConfig) -> Self {
        let bedrock_config = aws_sdk_bedrockruntime::config::Builder::from(sdk)
            .retry_config(crate::model::sdk_retry_config())
            .build();
        let store = config
            .conversations_table
            .clone()
            .map(|table| Store::new(sdk, table));
        Self {
            store,
            config,
            bedrock: aws_sdk_bedrockruntime::Client::from_conf(bedrock_config),
            recent_turns: Mutex::new(RecentTurns::default()),
        }
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

/// What every invocation of the AppSync resolver shares: the [`Core`], and
/// the AppSync API's publisher and cancel listener.
#[derive(Debug)]
pub struct State {
    /// What every transport's turn needs.
    pub(crate) core: Core,
    /// Signs and sends `publishChunk`.
    pub(crate) publisher: Publisher,
    /// The `onCancel` subscriptions, over one lazily opened IAM connection.
    pub(crate) cancel: CancelListener,
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
    /// [`InitError`] when `APPSYNC_GRAPHQL_URL` is unset, the region or
    /// credentials are missing, or the publisher or its TLS configuration
    /// cannot be built.
    pub fn new(config: Config, sdk: &aws_config::SdkConfig) -> Result<Self, InitError> {
        let appsync = config.appsync.clone().ok_or(ConfigError::Missing {
            name: "APPSYNC_GRAPHQL_URL",
        })?;
        let region = sdk.region().ok_or(InitError::MissingRegion)?.to_string();
        let credentials = Arc::new(CredentialsCache::new(
            sdk.credentials_provider()
                .ok_or(InitError::MissingCredentials)?,
        ));
        let publisher = Publisher::new(
            &appsync.graphql_url,
            region.clone(),
            Arc::clone(&credentials),
            crate::tls::appsync_client_config()?,
        )?;
        let cancel = CancelListener::new(
            appsync.realtime_url,
            appsync.graphql_url,
            region,
            credentials,
        );
        Ok(Self {
            core: Core::new(config, sdk),
            publisher,
            cancel,
        })
    }
}
