//! Place in the data path: route function --PostToConnection (SigV4)-->
//! **`@connections`** -> the connection's socket -> client. The WebSocket
//! API's management API
//! (<https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-how-to-call-websocket-api-connections.html>):
//! `POST /{stage}/@connections/{id}` sends the body as one message, `GET`
//! describes the connection, `DELETE` closes it. Every call is SigV4-signed
//! for the service `execute-api` and really verified. Errors are the
//! service's: `GoneException` (410) for a connection that is not (or no
//! longer) open, `PayloadTooLargeException` (413) over 128 KB,
//! `LimitExceededException` (429) when the client's buffer is full, 403
//! for a request that is not signed (`ForbiddenException`) or whose
//! signature fails (`InvalidSignatureException`, ...); each with
//! `x-amzn-ErrorType` and `{"message"}`, as the SDKs read them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::WebSocketApi;
use super::events::ConnectionFacts;
use crate::sigv4_verify::{self, SignedRequest};

/// The largest message, in bytes (128 KB).
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;
/// The largest frame, in bytes (32 KB).
pub const MAX_FRAME_BYTES: usize = 32 * 1024;
/// Messages waiting for a slow client before posts are refused with
/// `LimitExceededException`.
pub const CLIENT_BUFFER: usize = 256;

/// What a connection's socket is told to do.
#[derive(Debug)]
pub enum Outgoing {
    /// Send a text message.
    Text(String),
    /// Send a binary message.
    Binary(Bytes),
}

/// One open connection, as the management API sees it.
#[derive(Debug)]
pub struct Open {
    /// What its events carry.
    pub facts: ConnectionFacts,
    /// Its socket's queue.
    pub sender: mpsc::Sender<Outgoing>,
    /// Rung by `DeleteConnection`: close now, whatever is queued.
    pub close: tokio::sync::Notify,
    /// The last message in either direction.
    pub last_active: Mutex<(Instant, SystemTime)>,
}

impl Open {
    /// Records traffic now.
    pub fn touch(&self) {
        if let Ok(mut last) = self.last_active.lock() {
            *last = (Instant::now(), SystemTime::now());
        }
    }

    /// When the last message went either way.
    pub fn last_active(&self) -> (Instant, SystemTime) {
        self.last_active
            .lock()
            .map(|l| *l)
            .unwrap_or_else(|_| (Instant::now(), SystemTime::now()))
    }
}

/// The open connections, by id.
#[derive(Debug, Default, Clone)]
pub struct Connections {
    open: Arc<Mutex<HashMap<String, Arc<Open>>>>,
}

impl Connections {
    /// Registers an open connection.
    pub fn insert(&self, open: Arc<Open>) {
        if let Ok(mut map) = self.open.lock() {
            map.insert(open.facts.connection_id.clone(), open);
        }
    }

    /// Forgets a closed connection.
    pub fn remove(&self, id: &str) {
        if let Ok(mut map) = self.open.lock() {
            map.remove(id);
        }
    }

    /// The open connection `id`.
    pub fn get(&self, id: &str) -> Option<Arc<Open>> {
        self.open.lock().ok()?.get(id).cloned()
    }

    /// The ids of the open connections.
    pub fn ids(&self) -> Vec<String> {
        self.open
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// How many are open.
    pub fn len(&self) -> usize {
        self.open.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An error as the management API answers it.
fn error(status: StatusCode, error_type: &str, message: &str) -> Response {
    let mut response = (status, axum::Json(json!({"message": message}))).into_response();
    if let Ok(value) = HeaderValue::from_str(error_type) {
        response.headers_mut().insert("x-amzn-errortype", value);
    }
    response
}

fn gone() -> Response {
    error(StatusCode::GONE, "GoneException", "")
}

/// `POST`, `GET`, `DELETE /{stage}/@connections/{connection_id}`.
pub async fn handle(
    State(api): State<WebSocketApi>,
    Path((stage, connection_id)): Path<(String, String)>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 2 * MAX_MESSAGE_BYTES).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            "Message too long",
        );
    };
    let signed = SignedRequest::of(&parts, &body);
    if parts.headers.get("authorization").is_none() {
        return error(
            StatusCode::FORBIDDEN,
            "ForbiddenException",
            "Missing Authentication Token",
        );
    }
    if let Err(e) = sigv4_verify::verify(&signed, "execute-api", api.iam_users(), SystemTime::now())
    {
        return error(StatusCode::FORBIDDEN, e.error_type(), &e.to_string());
    }
    if stage != api.config().stage {
        return error(StatusCode::FORBIDDEN, "ForbiddenException", "Forbidden");
    }
    let Some(open) = api.connections().get(&connection_id) else {
        return gone();
    };
    match parts.method {
        Method::POST => post(&open, body),
        Method::GET => describe(&open),
        Method::DELETE => {
            open.close.notify_one();
            StatusCode::NO_CONTENT.into_response()
        }
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "BadRequestException",
            "Method not allowed",
        ),
    }
}

/// `PostToConnection`: the body as one message, text when it is UTF-8.
fn post(open: &Open, body: Bytes) -> Response {
    if body.len() > MAX_MESSAGE_BYTES {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            "Message too long",
        );
    }
    let message = match String::from_utf8(body.to_vec()) {
        Ok(text) => Outgoing::Text(text),
        Err(_) => Outgoing::Binary(body),
    };
    match open.sender.try_send(message) {
        Ok(()) => {
            open.touch();
            StatusCode::OK.into_response()
        }
        Err(mpsc::error::TrySendError::Full(_)) => error(
            StatusCode::TOO_MANY_REQUESTS,
            "LimitExceededException",
            "The client's buffer is full",
        ),
        Err(mpsc::error::TrySendError::Closed(_)) => gone(),
    }
}

/// `GetConnection`: when it connected, who it is, when it last talked.
fn describe(open: &Open) -> Response {
    let time =
        |at: SystemTime| DateTime::<Utc>::from(at).to_rfc3339_opts(SecondsFormat::Millis, true);
    let facts = &open.facts;
    axum::Json(json!({
        "connectedAt": time(facts.connected_at),
        "identity": {"sourceIp": facts.source_ip, "userAgent": facts.user_agent},
        "lastActiveAt": time(open.last_active().1),
    }))
    .into_response()
}
