//! Place in the data path: WebSocket function -> **`@connections`** -> API
//! Gateway -> the client's WebSocket. How the function talks back: every
//! message it sends is a `PostToConnection` call, SigV4-signed for the
//! service `execute-api`
//! (<https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-how-to-call-websocket-api-connections.html>).
//!
//! The endpoint is the API's own, `https://{domainName}/{stage}` from the
//! event, unless `AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI` names another
//! (the SDK's standard per-service endpoint variable).
//!
//! Messages are JSON text with a `type`: `chunk` (see
//! [`crate::sink::websocket`]), `error` (`errorType`, `message`: a prompt
//! that was refused before it started) and `cancelled` (the answer to
//! `cancelTurn`). A post that is not answered in 5 s is tried again, and
//! one that has not succeeded in 15 s fails.

use std::time::Duration;

use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::config::timeout::TimeoutConfig;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use serde_json::{Value, json};
use thiserror::Error;

use super::event::WebSocketContext;
use crate::sink::SinkError;
use crate::sink::websocket::MessagePoster;

/// The standard variable that points the SDK at another `@connections`
/// endpoint.
const ENDPOINT_VARIABLE: &str = "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI";

/// A refusal as the client reads it: `{"type": "error", "errorType",
/// "message"}`, with the `conversationId` and `turnId` of the prompt it
/// refuses when there is one.
pub fn error_message(error_type: &str, message: &str, turn: Option<&(String, String)>) -> Value {
    let mut refusal = json!({"type": "error", "errorType": error_type, "message": message});
    if let Some((conversation_id, turn_id)) = turn {
        refusal["conversationId"] = json!(conversation_id);
        refusal["turnId"] = json!(turn_id);
    }
    refusal
}

/// How long one `PostToConnection` attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a post may take with all its retries.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a message did not reach the client.
#[derive(Debug, Error)]
pub enum PostError {
    /// `GoneException`: the client has disconnected (or never finished
    /// connecting).
    #[error("the client has disconnected")]
    Gone,
    /// `PayloadTooLargeException`: the message is over 128 KB.
    #[error("the message is larger than a WebSocket API message may be")]
    TooLarge,
    /// Any other failure (signature refused, throttled after retries, the
    /// network).
    #[error("the message could not be posted: {0}")]
    Failed(String),
}

/// One client's connection, as the function reaches it.
#[derive(Debug, Clone)]
pub struct Connection {
    client: Client,
    id: String,
}

impl Connection {
    /// The connection of `context`, through the `@connections` endpoint of
    /// its API (or the one the environment names).
    pub fn new(sdk: &aws_config::SdkConfig, context: &WebSocketContext) -> Self {
        let timeouts = TimeoutConfig::builder()
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT)
            .build();
        let mut config =
            aws_sdk_apigatewaymanagement::config::Builder::from(sdk).timeout_config(timeouts);
        if std::env::var_os(ENDPOINT_VARIABLE).is_none() {
            config =
                config.endpoint_url(format!("https://{}/{}", context.domain_name, context.stage));
        }
        Self {
            client: Client::from_conf(config.build()),
            id: context.connection_id.clone(),
        }
    }

    /// Sends `message` to the client as one text message.
    ///
    /// # Errors
    /// [`PostError`], `Gone` once the client has left.
    pub async fn send(&self, message: String) -> Result<(), PostError> {
        let sent = self
            .client
            .post_to_connection()
            .connection_id(&self.id)
            .data(Blob::new(message.into_bytes()))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(error) => match error.as_service_error() {
                Some(e) if e.is_gone_exception() => Err(PostError::Gone),
                Some(e) if e.is_payload_too_large_exception() => Err(PostError::TooLarge),
                _ => Err(PostError::Failed(
                    aws_sdk_apigatewaymanagement::error::DisplayErrorContext(&error).to_string(),
                )),
            },
        }
    }

    /// Sends one JSON message (an answer or a refusal); a client already
    /// gone is not an error here.
    pub async fn send_value(&self, message: &Value) {
        if let Err(error) = self.send(message.to_string()).await {
            tracing::warn!(%error, "could not answer the client");
        }
    }
}

impl MessagePoster for Connection {
    async fn post(&self, message: String) -> Result<(), SinkError> {
        self.send(message).await.map_err(SinkError::from)
    }
}
