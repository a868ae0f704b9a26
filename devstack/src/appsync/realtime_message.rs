//! The client's messages on AppSync's real-time WebSocket, parsed, and the
//! auth header object of the connection request, decoded: everything the
//! server reads from the network before it authenticates anything.
//!
//! Place in the data path: subscriber --`connection_init`/`start`/`stop`-->
//! **real-time socket** -> subscription registry -> fan-out.
//!
//! Protocol: <https://docs.aws.amazon.com/appsync/latest/devguide/real-time-websocket-client.html>.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;

/// One message from the client, as the server acts on it.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientMessage {
    /// `connection_init`: answered with `connection_ack`.
    Init,
    /// `start` of subscription `id`: `data` is the GraphQL request as text
    /// (what the `authorization` object's signature covers).
    Start {
        /// The subscription id, never empty.
        id: String,
        /// `payload.data`: the JSON text of the GraphQL request.
        data: String,
        /// `payload.extensions.authorization`: the auth header object.
        authorization: Value,
    },
    /// `stop` of subscription `id` (empty when the message named none).
    Stop {
        /// The subscription id.
        id: String,
    },
    /// A message the server refuses: answered with an `error` for `id`.
    Refused {
        /// The subscription id it named, or empty.
        id: String,
        /// AppSync's `errorType`.
        error_type: &'static str,
        /// AppSync's `message`.
        message: &'static str,
    },
}

/// Parses one text frame from the client. Never fails: what cannot be served
/// is a [`ClientMessage::Refused`] with the error AppSync answers.
pub fn parse(text: &str) -> ClientMessage {
    let Ok(message) = serde_json::from_str::<Value>(text) else {
        return refused("", "UnsupportedOperation", "Unable to parse the message.");
    };
    let id = message
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match message.get("type").and_then(Value::as_str) {
        Some("connection_init") => ClientMessage::Init,
        Some("start") => start(id, &message),
        Some("stop") => ClientMessage::Stop { id },
        _ => refused(
            &id,
            "UnsupportedOperation",
            "Operation not supported through the realtime channel",
        ),
    }
}

fn start(id: String, message: &Value) -> ClientMessage {
    if id.is_empty() {
        return refused("", "UnsupportedOperation", "A start message needs an id.");
    }
    let payload = message.get("payload").unwrap_or(&Value::Null);
    let data = payload
        .get("data")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match payload.pointer("/extensions/authorization") {
        Some(authorization) => ClientMessage::Start {
            id,
            data,
            authorization: authorization.clone(),
        },
        None => refused(
            &id,
            "UnsupportedOperation",
            "Subscription without authorization is not supported through the realtime channel",
        ),
    }
}

fn refused(id: &str, error_type: &'static str, message: &'static str) -> ClientMessage {
    ClientMessage::Refused {
        id: id.to_owned(),
        error_type,
        message,
    }
}

/// The auth header object of a connection request: from a `header-<base64url>`
/// subprotocol (Amplify JS v6), else from the `header` query parameter
/// (base64, or base64url); `None` when neither decodes to JSON.
pub fn header_object(offered: &[String], query: &HashMap<String, String>) -> Option<Value> {
    let from_protocol = offered
        .iter()
        .find_map(|p| p.strip_prefix("header-"))
        .and_then(|b| URL_SAFE_NO_PAD.decode(b.trim_end_matches('=')).ok());
    let from_query = query.get("header").and_then(|h| {
        STANDARD
            .decode(h)
            .ok()
            .or_else(|| URL_SAFE_NO_PAD.decode(h.trim_end_matches('=')).ok())
    });
    let bytes = from_protocol.or(from_query)?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod properties;
