//! Place in the data path: client --WebSocket--> API Gateway WebSocket API
//! -> route function --PostToConnection--> API Gateway --> **this client**
//! -> the client's [`crate::TurnAssembler`]. The third transport's two
//! ends at the client: a connection opened with the user's ID token in the
//! query string (`?token=`, the `$connect` authorizer's identity source: a
//! browser's `WebSocket` cannot send headers), `{"action": ...}` messages
//! out, and the function's messages in.
//!
//! The function sends JSON text messages with a `type`: `chunk` (the
//! `onChunk` object), `error` (a refused prompt or an unknown action),
//! `cancelled` (the answer to `cancelTurn`).

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::chunk::Chunk;

/// Why the WebSocket API could not be used.
#[derive(Debug, Error)]
pub enum WebSocketApiError {
    /// The connection was refused: the upgrade's HTTP status (401 for a
    /// missing, forged or expired token).
    #[error("the WebSocket API refused the connection ({status})")]
    Refused {
        /// The HTTP status.
        status: u16,
    },
    /// The socket failed.
    #[error("the WebSocket API connection failed: {0}")]
    Socket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The URL is not a WebSocket URL.
    #[error("not a WebSocket API URL: {0}")]
    Url(String),
    /// The connection closed: its close code (1009 for a message too big,
    /// 1001 for an idle or too-old connection) and reason.
    #[error("the WebSocket API closed the connection ({code}: {reason})")]
    Closed {
        /// The close code (1005 without one).
        code: u16,
        /// The close reason.
        reason: String,
    },
}

/// A message from the route function.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// One chunk of a turn.
    Chunk(Chunk),
    /// A refusal: the error type and a message safe to show.
    Error {
        /// e.g. `ValidationException`, `TooManyTurns`.
        error_type: String,
        /// What to tell the user.
        message: String,
        /// The refused prompt's turn, when it had got one.
        turn_id: Option<String>,
    },
    /// The answer to `cancelTurn`: whether the turn was still running.
    Cancelled {
        /// The turn named.
        turn_id: String,
        /// `true` when it was stopped.
        cancelled: bool,
    },
    /// Anything else, as sent (e.g. API Gateway's `Internal server error`).
    Other(Value),
}

impl ServerMessage {
    /// Reads one text message.
    pub fn parse(text: &str) -> Self {
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            return Self::Other(Value::String(text.to_owned()));
        };
        let field = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        match value.get("type").and_then(Value::as_str) {
            Some("chunk") => match value
                .get("chunk")
                .map(|c| serde_json::from_value::<Chunk>(c.clone()))
            {
                Some(Ok(chunk)) => Self::Chunk(chunk),
                _ => Self::Other(value),
            },
            Some("error") => Self::Error {
                error_type: field("errorType"),
                message: field("message"),
                turn_id: Some(field("turnId")).filter(|t| !t.is_empty()),
            },
            Some("cancelled") => Self::Cancelled {
                turn_id: field("turnId"),
                cancelled: value.get("cancelled").and_then(Value::as_bool) == Some(true),
            },
            _ => Self::Other(value),
        }
    }
}

/// A connection to the WebSocket API.
pub struct WebSocketApiClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WebSocketApiClient {
    /// Connects to `url` (`wss://{api}.execute-api.{region}.amazonaws.com/{stage}`)
    /// as the holder of user pool ID token `token`.
    ///
    /// # Errors
    /// [`WebSocketApiError::Refused`] with the upgrade's status, or
    /// [`WebSocketApiError::Socket`].
    pub async fn connect(url: &str, token: &str) -> Result<Self, WebSocketApiError> {
        let mut url =
            reqwest::Url::parse(url).map_err(|e| WebSocketApiError::Url(e.to_string()))?;
        url.query_pairs_mut().append_pair("token", token);
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((socket, _)) => Ok(Self { socket }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(WebSocketApiError::Refused {
                    status: response.status().as_u16(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sends `{"action": "sendPrompt", "input": input}` (`input`: the
    /// `SendPromptInput` JSON). The answer comes as [`ServerMessage`]s.
    ///
    /// # Errors
    /// [`WebSocketApiError::Socket`].
    pub async fn send_prompt(&mut self, input: &Value) -> Result<(), WebSocketApiError> {
        self.send(&json!({"action": "sendPrompt", "input": input}))
            .await
    }

    /// Sends `{"action": "cancelTurn", "conversationId", "turnId"}`.
    ///
    /// # Errors
    /// [`WebSocketApiError::Socket`].
    pub async fn cancel_turn(
        &mut self,
        conversation_id: &str,
        turn_id: &str,
    ) -> Result<(), WebSocketApiError> {
        let message =
            json!({"action": "cancelTurn", "conversationId": conversation_id, "turnId": turn_id});
        self.send(&message).await
    }

    /// Sends any JSON message.
    ///
    /// # Errors
    /// [`WebSocketApiError::Socket`].
    pub async fn send(&mut self, message: &Value) -> Result<(), WebSocketApiError> {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .map_err(Into::into)
    }

    /// Sends a raw frame (tests of the API's limits).
    ///
    /// # Errors
    /// [`WebSocketApiError::Socket`].
    pub async fn send_raw(&mut self, message: Message) -> Result<(), WebSocketApiError> {
        self.socket.send(message).await.map_err(Into::into)
    }

    /// The next message from the function.
    ///
    /// # Errors
    /// [`WebSocketApiError::Closed`] once the API has closed the
    /// connection, or [`WebSocketApiError::Socket`].
    pub async fn next_message(&mut self) -> Result<ServerMessage, WebSocketApiError> {
        loop {
            let message = self.socket.next().await;
            match message {
                Some(Ok(Message::Text(text))) => return Ok(ServerMessage::parse(text.as_str())),
                Some(Ok(Message::Binary(bytes))) => {
                    return Ok(ServerMessage::parse(&String::from_utf8_lossy(&bytes)));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(WebSocketApiError::Closed {
                        code: frame.as_ref().map_or(1005, |f| u16::from(f.code)),
                        reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    });
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => {
                    return Err(WebSocketApiError::Closed {
                        code: 1006,
                        reason: String::new(),
                    });
                }
            }
        }
    }

    /// Reads messages until turn `turn_id`'s (or, with `None`, the first
    /// turn's) terminal chunk; that turn's chunks in order of arrival.
    ///
    /// # Errors
    /// As [`Self::next_message`]; a refusal of the prompt (one naming the
    /// turn, or no turn) is returned as `Ok` with the refusal in `Err` of
    /// the inner result.
    pub async fn collect_turn(
        &mut self,
        turn_id: Option<&str>,
    ) -> Result<Result<Vec<Chunk>, ServerMessage>, WebSocketApiError> {
        let mut chunks: Vec<Chunk> = Vec::new();
        loop {
            match self.next_message().await? {
                ServerMessage::Chunk(chunk) => {
                    let wanted = turn_id
                        .or(chunks.first().map(|c| c.turn_id.as_str()))
                        .is_none_or(|t| t == chunk.turn_id);
                    if wanted {
                        let done = chunk.done;
                        chunks.push(chunk);
                        if done {
                            return Ok(Ok(chunks));
                        }
                    }
                }
                ServerMessage::Error {
                    turn_id: Some(ref refused),
                    ..
                } if turn_id.is_some_and(|t| t != refused) => {}
                refusal @ ServerMessage::Error { .. } => return Ok(Err(refusal)),
                _ => {}
            }
        }
    }

    /// Closes the connection (close code 1000).
    ///
    /// # Errors
    /// [`WebSocketApiError::Socket`].
    pub async fn close(mut self) -> Result<(), WebSocketApiError> {
        self.socket.close(None).await.map_err(Into::into)
    }
}
