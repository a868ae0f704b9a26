//! Place in the data path: client --WebSocket--> **one connection** of the
//! WebSocket API: its `$connect` (identity source, authorizer, `$connect`
//! integration), then every message routed by the route selection
//! expression to its integration, the management API's messages sent back,
//! the limits, and `$disconnect` when it ends.
//!
//! Following
//! <https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api-route-keys-connect-disconnect.html>
//! and the quotas of
//! <https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-execution-service-websocket-limits-table.html>:
//! - the upgrade waits for the authorizer and the `$connect` integration;
//!   a missing token (the identity source) is 401 without calling the
//!   authorizer; a `$connect` answer that is not 2xx refuses the connection;
//!   the connection is open (and `@connections` reaches it) only after;
//! - `$request.body.action` picks the route: a JSON message whose `action`
//!   is a route key goes to that route, anything else to `$default`; an
//!   asynchronous route is invoked with `InvocationType: Event`; a
//!   synchronous route's `body` is sent back to the client (a two-way
//!   route), its failure is `{"message": "Internal server error"}`;
//! - a frame over 32 KB or a message over 128 KB closes the connection with
//!   1009; ten minutes without a message either way, or two hours in all,
//!   close it with 1001;
//! - `$disconnect` is invoked once the connection is gone, with the close
//!   code and reason, best effort.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::WebSocketApi;
use super::authorizer::{Refusal, verdict};
use super::connections::{CLIENT_BUFFER, MAX_FRAME_BYTES, MAX_MESSAGE_BYTES, Open, Outgoing};
use super::events::{self, ConnectRequest, ConnectionFacts};

/// The route of messages no other route takes.
pub const DEFAULT_ROUTE: &str = "$default";

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"message": message}))).into_response()
}

/// `GET /{stage}` with a WebSocket upgrade: `$connect`.
pub(super) async fn connect(
    State(api): State<WebSocketApi>,
    Path(stage): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if stage != api.config().stage {
        return refuse(StatusCode::FORBIDDEN, "Forbidden");
    }
    let Ok(upgrade) = upgrade else {
        return refuse(
            StatusCode::UPGRADE_REQUIRED,
            "Upgrade to WebSocket required",
        );
    };
    let request = ConnectRequest::new(&headers, uri.query());
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let facts = ConnectionFacts {
        api_id: api.config().api_id.clone(),
        stage,
        domain_name: text("host").unwrap_or_else(|| peer.to_string()),
        connection_id: events::connection_id(),
        connected_at: SystemTime::now(),
        source_ip: peer.ip().to_string(),
        user_agent: text("user-agent"),
    };
    let identity = match authorize(&api, &facts, &request).await {
        Ok(identity) => identity,
        Err(refusal) => return refuse(refusal.status, refusal.message),
    };
    let event = events::connect_event(&facts, &request, &identity);
    let answer = api.invoke_sync(event).await;
    let status = answer
        .as_ref()
        .ok()
        .and_then(|a| a.get("statusCode"))
        .and_then(Value::as_u64)
        .unwrap_or(500);
    if !(200..300).contains(&status) {
        return refuse(
            StatusCode::from_u16(u16::try_from(status).unwrap_or(500))
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "Forbidden",
        );
    }
    let protocol = answer
        .ok()
        .and_then(|a| a.pointer("/headers/Sec-WebSocket-Protocol").cloned())
        .and_then(|p| p.as_str().map(str::to_owned));
    let mut upgrade = upgrade
        .max_frame_size(MAX_FRAME_BYTES)
        .max_message_size(MAX_MESSAGE_BYTES);
    if let Some(protocol) = protocol {
        upgrade = upgrade.protocols([protocol]);
    }
    upgrade.on_upgrade(move |socket| run(api, facts, identity, socket))
}

/// The identity source, then the authorizer.
async fn authorize(
    api: &WebSocketApi,
    facts: &ConnectionFacts,
    request: &ConnectRequest,
) -> Result<Value, Refusal> {
    let unauthorized = Refusal {
        status: StatusCode::UNAUTHORIZED,
        message: "Unauthorized",
    };
    let source = api.config().token_parameter.as_str();
    if request.query_value(source).is_none_or(str::is_empty) {
        return Err(unauthorized);
    }
    let event = events::authorizer_event(facts, request);
    let call = api.routes().authorizer.invoke(event);
    let result = tokio::time::timeout(api.config().integration_timeout, call)
        .await
        .unwrap_or_else(|_| Err(json!({"errorMessage": "the authorizer did not answer in time"})));
    verdict(result, &events::method_arn(facts))
}

/// One open connection, from its upgrade to `$disconnect`.
async fn run(api: WebSocketApi, facts: ConnectionFacts, identity: Value, socket: WebSocket) {
    let (sender, outgoing) = mpsc::channel(CLIENT_BUFFER);
    let open = Arc::new(Open {
        facts,
        sender,
        close: tokio::sync::Notify::new(),
        last_active: Mutex::new((Instant::now(), SystemTime::now())),
    });
    api.connections().insert(Arc::clone(&open));
    let (code, reason) = serve(&api, &open, &identity, socket, outgoing).await;
    api.connections().remove(&open.facts.connection_id);
    let event = events::disconnect_event(&open.facts, &identity, code, reason);
    if let Err(error) = api.invoke_sync(event).await {
        tracing::debug!(%error, "$disconnect failed");
    }
}

/// Moves messages both ways until the connection ends; its close code and
/// reason.
async fn serve(
    api: &WebSocketApi,
    open: &Arc<Open>,
    identity: &Value,
    socket: WebSocket,
    mut outgoing: mpsc::Receiver<Outgoing>,
) -> (u16, &'static str) {
    let (mut to_client, mut from_client) = socket.split();
    let ends = Instant::now() + api.config().max_connection_duration;
    let close = |code: u16, reason: &'static str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))
    };
    loop {
        let idle_until = open.last_active().0 + api.config().idle_timeout;
        tokio::select! {
            incoming = from_client.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    open.touch();
                    route(api, open, identity, text.as_str(), false);
                }
                Some(Ok(Message::Binary(bytes))) => {
                    open.touch();
                    let body = base64::engine::general_purpose::STANDARD.encode(&bytes);
                    route(api, open, identity, &body, true);
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => open.touch(),
                Some(Ok(Message::Close(frame))) => {
                    return (frame.map_or(1005, |f| f.code), "Client closed the connection");
                }
                Some(Err(error)) if too_big(&error) => {
                    let _ = to_client.send(close(1009, "Message too big")).await;
                    return (1009, "Message too big");
                }
                Some(Err(_)) | None => return (1006, "Connection closed abnormally"),
            },
            message = outgoing.recv() => {
                let message = match message {
                    Some(Outgoing::Text(text)) => Message::Text(text.into()),
                    Some(Outgoing::Binary(bytes)) => Message::Binary(bytes),
                    None => return (1011, "Internal server error"),
                };
                if to_client.send(message).await.is_err() {
                    return (1006, "Connection closed abnormally");
                }
            }
            () = open.close.notified() => {
                let _ = to_client.send(close(1000, "Going away")).await;
                return (1000, "Deleted through @connections");
            }
            () = tokio::time::sleep_until(idle_until) => {
                if open.last_active().0 + api.config().idle_timeout <= Instant::now() {
                    let _ = to_client.send(close(1001, "Going away")).await;
                    return (1001, "Idle timeout");
                }
            }
            () = tokio::time::sleep_until(ends) => {
                let _ = to_client.send(close(1001, "Going away")).await;
                return (1001, "Connection duration exceeded");
            }
        }
    }
}

/// Whether a receive failed on the frame or message size limit.
fn too_big(error: &axum::Error) -> bool {
    let text = error.to_string();
    text.contains("Space limit exceeded") || text.contains("too long") || text.contains("too big")
}

/// The route `$request.body.action` picks for `body`.
pub fn route_key(body: &str, is_binary: bool, routes: &[String]) -> String {
    if is_binary {
        return DEFAULT_ROUTE.to_owned();
    }
    let action = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|message| message.get("action").cloned());
    let key = match action {
        Some(Value::String(s)) => s,
        Some(Value::Null) | None => return DEFAULT_ROUTE.to_owned(),
        Some(other) => other.to_string(),
    };
    if routes.contains(&key) {
        key
    } else {
        DEFAULT_ROUTE.to_owned()
    }
}

/// Invokes the route of one message: queued for an asynchronous route,
/// else called, and its answer's `body` sent back.
fn route(api: &WebSocketApi, open: &Arc<Open>, identity: &Value, body: &str, is_binary: bool) {
    let routes = api.routes();
    let key = route_key(body, is_binary, &routes.route_keys());
    let event = events::message_event(&open.facts, &key, identity, body, is_binary);
    if routes.is_async(&key) {
        routes.function.invoke_async(event);
        return;
    }
    let api = api.clone();
    let open = Arc::clone(open);
    tokio::spawn(async move {
        let reply = match api.invoke_sync(event).await {
            Ok(answer) => answer
                .get("body")
                .and_then(Value::as_str)
                .map(str::to_owned),
            Err(_) => Some(
                json!({
                    "message": "Internal server error",
                    "connectionId": open.facts.connection_id,
                    "requestId": events::request_id(),
                })
                .to_string(),
            ),
        };
        if let Some(reply) = reply {
            let _ = open.sender.send(Outgoing::Text(reply)).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_action_picks_the_route_and_anything_else_goes_to_default() {
        let routes = vec!["sendPrompt".to_owned(), "7".to_owned()];
        let key = |body: &str| route_key(body, false, &routes);
        assert_eq!(key(r#"{"action":"sendPrompt","input":{}}"#), "sendPrompt");
        assert_eq!(key(r#"{"action":"SendPrompt"}"#), DEFAULT_ROUTE);
        assert_eq!(key(r#"{"action":7}"#), "7");
        assert_eq!(key(r#"{"other":1}"#), DEFAULT_ROUTE);
        assert_eq!(key("not json"), DEFAULT_ROUTE);
        assert_eq!(route_key("sendPrompt", true, &routes), DEFAULT_ROUTE);
    }
}
