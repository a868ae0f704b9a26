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
use crate::function_url::cancel::{self, CancelInput};
use crate::handler::soft_deadline;
use crate::relay::relay_turn;
use crate::sink::websocket::WebSocketSink;
use crate::state::Core;
use crate::turn::TurnContext;
use crate::vocabulary::ErrorType;

pub use connection::{Connection, PostError, error_message};
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
/// [`EventError`] when the payload is not a WebSocket route's event.
pub async fn handle(
    state: Arc<WebSocketState>,
    event: LambdaEvent<Value>,
) -> Result<Value, EventError> {
    let started = Instant::now();
    let request = WebSocketEvent::from_value(event.payload)?;
    let route = request.request_context.route_key.as_str();
    match route {
        "$connect" | "$disconnect" => return Ok(json!({"statusCode": 200})),
        SEND_PROMPT_ROUTE => {
            let deadline = soft_deadline(event.context.deadline, SystemTime::now());
            let turn = (deadline, started, event.context.request_id.as_str());
            send_prompt(&state, &request, turn).await;
            return Ok(json!({"statusCode": 200}));
        }
        _ => {}
    }
    let answer = match (signed_in(&request), ClientMessage::from_event(&request)) {
        (Err(refused), _) => refused,
        (
            Ok(user),
            Ok(ClientMessage::CancelTurn {
                conversation_id,
                turn_id,
            }),
        ) if route == CANCEL_TURN_ROUTE => {
            let ids = CancelInput::new(conversation_id, turn_id).turn_of(user.sub);
            cancel_turn(&state, ids).await
        }
        _ => error_message(
            ErrorType::Validation.as_str(),
            "send {\"action\": \"sendPrompt\", \"input\": {...}} or {\"action\": \"cancelTurn\", \"conversationId\", \"turnId\"}",
            None,
        ),
    };
    Ok(json!({"statusCode": 200, "body": answer.to_string()}))
}

/// The connection's user, while their sign-in is still valid: a connection
/// may outlive the ID token it was opened with (2 hours against 1), and the
/// authorizer ran only at `$connect`.
fn signed_in(request: &WebSocketEvent) -> Result<crate::cognito::VerifiedUser, Value> {
    let user = request.user().map_err(|error| {
        warn!(%error, "a message without the connection's identity");
        error_message("UnauthorizedException", "sign in first", None)
    })?;
    let now = chrono::Utc::now().timestamp();
    if request.expires_at().is_some_and(|exp| exp <= now) {
        return Err(error_message(
            "UnauthorizedException",
            "your sign-in has expired; connect again with a fresh token",
            None,
        ));
    }
    Ok(user)
}

/// `sendPrompt`, invoked asynchronously: nobody reads the return value, so
/// every refusal is posted to the connection, naming the turn.
async fn send_prompt(
    state: &WebSocketState,
    request: &WebSocketEvent,
    turn: (Option<Instant>, Instant, &str),
) {
    let connection = Connection::new(&state.sdk, &request.request_context);
    let user = match signed_in(request) {
        Ok(user) => user,
        Err(refused) => return connection.send_value(&refused).await,
    };
    let input = match ClientMessage::from_event(request) {
        Ok(ClientMessage::SendPrompt { input }) => input,
        Ok(ClientMessage::CancelTurn { .. }) | Err(_) => {
            let message = ClientMessage::from_event(request)
                .err()
                .map_or_else(|| "not a sendPrompt message".to_owned(), |e| e.to_string());
            let refused = error_message(
                ErrorType::Validation.as_str(),
                &format!("the sendPrompt message is not valid: {message}"),
                None,
            );
            return connection.send_value(&refused).await;
        }
    };
    let Some(turn_id) = input.turn_id.clone().or_else(|| turn_id_of(request)) else {
        warn!("a sendPrompt event without a messageId");
        let refused = error_message(
            ErrorType::InvalidEvent.as_str(),
            "the message could not be read; send it again",
            None,
        );
        return connection.send_value(&refused).await;
    };
    let ids = (input.conversation_id.clone(), turn_id.clone());
    let issuer = request.issuer().to_owned();
    let admitted = state
        .admission
        .admit(&state.core, user, &issuer, input, turn_id)
        .await;
    match admitted {
        Ok(admitted) => stream_turn(state, &admitted, connection, turn).await,
        Err(refused) => {
            let message = error_message(refused.error_type, &refused.message, Some(&ids));
            connection.send_value(&message).await;
        }
    }
}

/// A turn id for a message whose input names none: the same for every
/// delivery of the same message (an asynchronous invocation may be delivered again), so the
/// turn's claim makes it run once. `None` without a `messageId`.
fn turn_id_of(request: &WebSocketEvent) -> Option<String> {
    let context = &request.request_context;
    let message_id = context.message_id.as_deref().filter(|m| !m.is_empty())?;
    let name = format!("{}/{message_id}", context.connection_id);
    Some(uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes()).to_string())
}

/// `cancelTurn`: asks the caller's own turn `ids` to stop; the answer
/// message.
async fn cancel_turn(state: &WebSocketState, ids: Option<TurnIds>) -> Value {
    let refused = |refused: cancel::CancelRefused| {
        error_message(refused.error_type(), refused.message(), None)
    };
    let Some(ids) = ids else {
        return refused(cancel::CancelRefused::Invalid);
    };
    match cancel::request(state.core.store.as_ref(), &ids).await {
        Ok(cancelled) => json!({
            "type": "cancelled",
            "conversationId": ids.conversation_id,
            "turnId": ids.turn_id,
            "cancelled": cancelled,
        }),
        Err(refusal) => refused(refusal),
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
    let ctx = TurnContext::new(&state.core.config, &sink, deadline, started);
    let stopped = cancel::cancelled(state.core.store.as_ref(), &turn.ids);
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
