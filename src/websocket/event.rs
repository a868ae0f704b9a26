//! Place in the data path: client message -> API Gateway (route selection)
//! --integration--> **the route's event** -> WebSocket function. What the
//! function reads from an invocation and from the client's message.
//!
//! A Lambda proxy integration of a WebSocket route passes `requestContext`
//! (`routeKey`, `connectionId`, `domainName`, `stage`, `messageId` on
//! messages, and `authorizer`: what the `$connect` authorizer returned, on
//! every route of the connection) and the message as `body`
//! (<https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api-mapping-template-reference.html>).

use serde::Deserialize;
use serde_json::{Map, Value};
use thiserror::Error;

use crate::cognito::VerifiedUser;
use crate::event::SendPromptInput;

/// One invocation of the WebSocket function by a route's integration.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebSocketEvent {
    /// Where the message came from.
    pub request_context: WebSocketContext,
    /// The client's message (messages only), as text or base64.
    #[serde(default)]
    pub body: Option<String>,
    /// Whether `body` is base64 (a binary message).
    #[serde(default)]
    pub is_base64_encoded: bool,
}

/// `requestContext` of a WebSocket route's event.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebSocketContext {
    /// The route the message was routed to: `$connect`, `$disconnect`,
    /// `$default`, `sendPrompt`, `cancelTurn`.
    pub route_key: String,
    /// The connection, the id `@connections` calls name.
    pub connection_id: String,
    /// The API's domain: with `stage`, the `@connections` endpoint.
    pub domain_name: String,
    /// The API's stage.
    pub stage: String,
    /// The message's id (messages only), unique per message.
    #[serde(default)]
    pub message_id: Option<String>,
    /// What the `$connect` authorizer returned: `principalId` and its
    /// `context`'s keys.
    #[serde(default)]
    pub authorizer: Option<Map<String, Value>>,
}

/// Why an invocation cannot be handled.
#[derive(Debug, Error)]
pub enum EventError {
    /// The payload is not a WebSocket route's event.
    #[error("the payload is not an API Gateway WebSocket event: {0}")]
    Shape(#[source] serde_json::Error),
    /// The connection has no authorizer identity (the API has no
    /// authorizer on `$connect`).
    #[error("the connection has no authorizer identity")]
    NoIdentity,
}

impl WebSocketEvent {
    /// Reads an invocation's payload.
    ///
    /// # Errors
    /// [`EventError::Shape`] for anything else.
    pub fn from_value(payload: Value) -> Result<Self, EventError> {
        serde_json::from_value(payload).map_err(EventError::Shape)
    }

    /// The signed-in user the `$connect` authorizer let in, from the
    /// context [`super::authorizer`] returns (`principalId` the `sub`,
    /// `username`, `groups` a JSON array as text: group names may hold
    /// commas).
    ///
    /// # Errors
    /// [`EventError::NoIdentity`] without an authorizer `principalId`.
    pub fn user(&self) -> Result<VerifiedUser, EventError> {
        let authorizer = self
            .request_context
            .authorizer
            .as_ref()
            .ok_or(EventError::NoIdentity)?;
        let text = |key: &str| authorizer.get(key).and_then(Value::as_str).unwrap_or("");
        let sub = text("principalId");
        if sub.is_empty() {
            return Err(EventError::NoIdentity);
        }
        let groups: Vec<String> = serde_json::from_str(text("groups")).unwrap_or_default();
        let username = Some(text("username"))
            .filter(|u| !u.is_empty())
            .unwrap_or(sub);
        let mut claims = Map::new();
        claims.insert("sub".into(), sub.into());
        claims.insert("cognito:username".into(), username.into());
        claims.insert("cognito:groups".into(), groups.clone().into());
        Ok(VerifiedUser {
            sub: sub.to_owned(),
            username: username.to_owned(),
            groups,
            claims,
        })
    }

    /// When the token the connection was opened with expires (`exp`, Unix
    /// seconds), as the authorizer recorded it: a number, or its text (API
    /// Gateway may pass context values as strings).
    pub fn expires_at(&self) -> Option<i64> {
        let value = self.request_context.authorizer.as_ref()?.get("expiresAt")?;
        value
            .as_i64()
            .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
    }

    /// The issuer of the user's token, as the authorizer recorded it.
    pub fn issuer(&self) -> &str {
        self.request_context
            .authorizer
            .as_ref()
            .and_then(|a| a.get("issuer"))
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

/// A client's message, chosen by its `action` (the API's route selection
/// expression is `$request.body.action`).
#[derive(Debug, Deserialize)]
#[serde(tag = "action")]
pub enum ClientMessage {
    /// `{"action": "sendPrompt", "input": SendPromptInput}`: start a turn,
    /// streamed back on this connection.
    #[serde(rename = "sendPrompt")]
    SendPrompt {
        /// The prompt, as `sendPrompt`'s input; without a `turnId`, the
        /// function names the turn after the message.
        input: SendPromptInput,
    },
    /// `{"action": "cancelTurn", "conversationId", "turnId"}`: stop one of
    /// the caller's own turns.
    #[serde(rename = "cancelTurn", rename_all = "camelCase")]
    CancelTurn {
        /// The turn's conversation.
        conversation_id: String,
        /// The turn, as its chunks name it.
        turn_id: String,
    },
}

impl ClientMessage {
    /// Reads the message in `event`'s body.
    ///
    /// # Errors
    /// serde's, for a body that is missing, binary or not a known action.
    pub fn from_event(event: &WebSocketEvent) -> Result<Self, serde_json::Error> {
        let body = match (&event.body, event.is_base64_encoded) {
            (Some(body), false) => body.as_str(),
            _ => "null",
        };
        serde_json::from_str(body)
    }
}
