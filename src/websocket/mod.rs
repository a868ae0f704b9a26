//! Place in the data path: client --message--> API Gateway WebSocket API
//! (route `$request.body.action`) --Invoke--> **WebSocket function** ->
//! relay -> model, coalescer, turn driver -> WebSocket sink --PostToConnection-->
//! API Gateway -> client. The same relay as the AppSync resolver's, over
//! the third transport.
//!
//! The API has five routes, all on this function but the authorizer:
//! - `$connect`: the [`authorizer`] has already checked the caller's token;
//!   the function accepts (200).
//! - `sendPrompt` (`{"action": "sendPrompt", "input": {...}}`): invoked
//!   asynchronously (`X-Amz-Invocation-Type: Event`), because a route's
//!   synchronous integration must answer within 29 s and a turn takes
//!   longer. The prompt is admitted as on the function URL (validation,
//!   allowed model, quota slot) and the turn streams back on the sender's
//!   connection, one message per chunk ([`crate::sink::websocket`]); a
//!   refusal is one `{"type": "error"}` message.
//! - `cancelTurn` (`{"action": "cancelTurn", "conversationId", "turnId"}`):
//!   marks the caller's own turn's claim; the streaming turn reads it and
//!   stops. Answered on the connection with `{"type": "cancelled"}`.
//! - `$default`: any other message; answered with an `error` message.
//! - `$disconnect`: nothing to clean up (no connection table: a turn learns
//!   that its client left from its next post).
//!
//! A client that disconnects stops its turn: the next `PostToConnection`
//! fails with `GoneException`, the driver ends the turn and drops the model
//! stream
//! (<https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-how-to-call-websocket-api-connections.html>).
//! The caller is the authorizer's `principalId`, so a connection reaches
//! only its own user's conversations and turns.
//!
//! # Layout
//! - `authorizer`: the `$connect` REQUEST authorizer (its own function).
//! - `event`: the route's event and the client's message.
//! - `connection`: `@connections`, how the function talks back.

pub mod authorizer;
mod connection;
mod event;

use std::sync::Arc;
use std::time::SystemTime;

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::admission::{Admission, AdmissionConfig};
use crate::config::Config;
use crate::event::TurnIds;
use crate::function_url::cancel::{CancelInput, cancelled};
use crate::handler::soft_deadline;
use crate::relay::relay_turn;
use crate::sink::websocket::WebSocketSink;
use crate::state::Core;
use crate::turn::TurnContext;
use crate::vocabulary::ErrorType;

pub use connection::{Connection, PostError};
pub use event::{ClientMessage, EventError, WebSocketContext, WebSocketEvent};

/// What every invocation of the WebSocket function shares.
#[derive(Debug)]
pub struct WebSocketState {
    core: Core,
    admission: Admission,
    sdk: aws_config::SdkConfig,
}

impl WebSocketState {
    /// The state from the relay's [`Core`], the admission settings and the
    /// AWS configuration the `@connections` clients are built from.
    pub fn new(core: Core, admission: &AdmissionConfig, sdk: aws_config::SdkConfig) -> Self {
        let admission = Admission::new(admission, &core.config.default_model_id);
        Self {
            core,
            admission,
            sdk,
        }
    }
}

impl From<EventError> for Diagnostic {
    fn from(error: EventError) -> Self {
        Diagnostic {
            error_type: ErrorType::InvalidEvent.as_str().to_owned(),
            error_message: error.to_string(),
        }
    }
}

/// The route `sendPrompt`.
pub const SEND_PROMPT_ROUTE: &str = "sendPrompt";
/// The route `cancelTurn`.
pub const CANCEL_TURN_ROUTE: &str = "cancelTurn";

/// Handles one route's invocation (see the module docs); the integration's
/// response, `{"statusCode": 200}` with a `body` on the routes that answer.
///
/// # Errors
/// [`EventError`] when the payload is not a WebSocket route's event, or a
/// message route's connection has no authorizer identity.
pub async fn handle(
    state: Arc<WebSocketState>,
    event: LambdaEvent<Value>,
) -> Result<Value, EventError> {
    let started = Instant::now();
    let request = WebSocketEvent::from_value(event.payload)?;
    let route = request.request_context.route_key.as_str();
    if matches!(route, "$connect" | "$disconnect") {
        return Ok(json!({"statusCode": 200}));
    }
    let user = request.user()?;
    let message = ClientMessage::from_event(&request);
    let body = match message {
        Ok(ClientMessage::SendPrompt { input }) if route == SEND_PROMPT_ROUTE => {
            let deadline = soft_deadline(event.context.deadline, SystemTime::now());
            let connection = Connection::new(&state.sdk, &request.request_context);
            let turn_id = turn_id_of(&request);
            let issuer = request.issuer().to_owned();
            let admitted = state
                .admission
                .admit(&state.core, user, &issuer, input, turn_id)
                .await;
            match admitted {
                Ok(turn) => {
                    let ctx = (deadline, started, event.context.request_id.as_str());
                    stream_turn(&state, &turn, connection, ctx).await;
                }
                Err(refused) => {
                    connection
                        .send_error(refused.error_type, &refused.message)
                        .await
                }
            }
            return Ok(json!({"statusCode": 200}));
        }
        Ok(ClientMessage::CancelTurn {
            conversation_id,
            turn_id,
        }) if route == CANCEL_TURN_ROUTE => {
            let input = CancelInput::new(conversation_id, turn_id);
            cancel_turn(&state, input.turn_of(user.sub)).await
        }
        _ => json!({
            "type": "error",
            "errorType": ErrorType::Validation.as_str(),
            "message": "send {\"action\": \"sendPrompt\", \"input\": {...}} or {\"action\": \"cancelTurn\", \"conversationId\", \"turnId\"}",
        }),
    };
    Ok(json!({"statusCode": 200, "body": body.to_string()}))
}

/// A turn id for a message: the same for every delivery of the same
/// message (an asynchronous invocation may be delivered again), so the
/// turn's claim makes it run once.
fn turn_id_of(request: &WebSocketEvent) -> String {
    let context = &request.request_context;
    let name = format!(
        "{}/{}",
        context.connection_id,
        context.message_id.as_deref().unwrap_or_default()
    );
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes()).to_string()
}

/// `cancelTurn`: asks the caller's own turn `ids` to stop; the answer
/// message.
async fn cancel_turn(state: &WebSocketState, ids: Option<TurnIds>) -> Value {
    let error = |error_type: &str, message: &str| json!({"type": "error", "errorType": error_type, "message": message});
    let Some(ids) = ids else {
        return error(
            ErrorType::Validation.as_str(),
            "conversationId and turnId must be 1 to 128 characters of A-Z, a-z, 0-9, '-', '_', '.', ':'",
        );
    };
    let Some(store) = &state.core.store else {
        return error("NotSupported", "turns cannot be cancelled here");
    };
    match store.request_cancel(&ids).await {
        Ok(cancelled) => json!({
            "type": "cancelled",
            "conversationId": ids.conversation_id,
            "turnId": ids.turn_id,
            "cancelled": cancelled,
        }),
        Err(e) => {
            warn!(error = %e, "could not record the cancellation");
            error(
                "ServiceUnavailable",
                "the answer could not be stopped just now; try again",
            )
        }
    }
}

/// Relays `turn` to `connection`, until it ends, its client leaves or its
/// owner cancels it.
async fn stream_turn(
    state: &WebSocketState,
    turn: &crate::event::TurnRequest,
    connection: Connection,
    (deadline, started, request_id): (Option<Instant>, Instant, &str),
) {
    let sink = WebSocketSink::new(connection);
    let config = &state.core.config;
    let ctx = TurnContext {
        sink: &sink,
        strategy: config.strategy,
        max_chunk_bytes: config.max_chunk_bytes,
        max_hold: config.max_hold,
        deadline,
        started,
    };
    let stopped = cancelled(state.core.store.as_ref(), &turn.ids);
    match relay_turn(&state.core, &ctx, turn, request_id, stopped).await {
        Ok(o) => info!(stop_reason = %o.stop_reason, chunks = o.chunks, "turn ended"),
        Err(error) => warn!(%error, "turn ended without delivering its answer"),
    }
}

/// The WebSocket function: tracing, configuration, AWS clients, then the
/// Lambda runtime loop.
///
/// # Errors
/// An init error (bad environment, no region) or the runtime's own error.
pub async fn run() -> Result<(), lambda_runtime::Error> {
    crate::init_tracing();
    let config = Config::from_env()?;
    let admission = AdmissionConfig::from_lookup(|name| std::env::var(name).ok());
    let sdk = crate::state::sdk_config().await?;
    let state = Arc::new(WebSocketState::new(
        Core::new(config, &sdk),
        &admission,
        sdk,
    ));
    let handler = lambda_runtime::service_fn(move |event: LambdaEvent<Value>| {
        handle(Arc::clone(&state), event)
    });
    lambda_runtime::Runtime::new(handler)
        .layer(lambda_runtime::layers::TracingLayer::new())
        .run()
        .await
}
