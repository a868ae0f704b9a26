//! Place in the data path: AppSync -> **one real-time socket** -> its owner.
//! The handshake every real-time client makes (`connection_init` ->
//! `connection_ack`, then `start` -> `start_ack`), and a socket its owner
//! reads frame by frame: no routing task, no parsing. [`super::RealtimeClient`]
//! is built on it; a caller that must time each message as it is read (the
//! bench's fan-out, where a thousand subscribers share two cores) reads it
//! directly.
//!
//! Protocol: <https://docs.aws.amazon.com/appsync/latest/devguide/real-time-websocket-client.html>.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::{HeaderTransport, RealtimeAuth, RealtimeError, header_object, host_of};

/// Bytes one socket read may fill. tungstenite zeroes this much of its buffer
/// before every read (its default is 128 KiB); a subscriber reads a message
/// per chunk, and many subscribers in one process (the bench's fan-out) spent
/// most of their time zeroing. A message larger than this takes more reads.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// The `connectionTimeoutMs` assumed when `connection_ack` names none
/// (AppSync's documented default, five minutes).
const DEFAULT_CONNECTION_TIMEOUT_MS: u64 = 300_000;

pub(super) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// An acknowledged connection to AppSync's real-time endpoint that its owner
/// reads itself, one text frame at a time.
///
/// There is no keep-alive watchdog here (that is [`super::RealtimeClient`]'s
/// job): an owner that may wait on a silent link bounds its reads, e.g. by
/// [`Self::connection_timeout`] or a deadline of its own.
pub struct RealtimeSocket {
    pub(super) socket: Socket,
    pub(super) api_host: String,
    pub(super) auth: RealtimeAuth,
    /// The `connectionTimeoutMs` the server sent in `connection_ack`.
    pub connection_timeout: Duration,
}

impl RealtimeSocket {
    /// Connects, sends `connection_init` and waits for `connection_ack`.
    /// `graphql_url` is the API's GraphQL URL: its host is the one every
    /// header object names, as AppSync requires.
    ///
    /// # Errors
    /// [`RealtimeError::Connect`], [`RealtimeError::ConnectionRefused`] (with
    /// AppSync's `errors`), [`RealtimeError::Closed`], [`RealtimeError::Sign`]
    /// or [`RealtimeError::Url`].
    pub async fn open(
        realtime_url: &str,
        graphql_url: &str,
        auth: RealtimeAuth,
        transport: HeaderTransport,
    ) -> Result<Self, RealtimeError> {
        let api_host = host_of(graphql_url)?;
        let header = header_object(&auth, &api_host, "/graphql/connect", "{}")?;
        let encoded = serde_json::to_vec(&header).unwrap_or_default();
        let (url, protocols) = match transport {
            HeaderTransport::Subprotocol => (
                realtime_url.to_owned(),
                format!("graphql-ws, header-{}", URL_SAFE_NO_PAD.encode(&encoded)),
            ),
            HeaderTransport::QueryString => (
                format!(
                    "{realtime_url}?header={}&payload=e30=",
                    STANDARD.encode(&encoded)
                ),
                "graphql-ws".to_owned(),
            ),
        };
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| RealtimeError::Url(e.to_string()))?;
        let protocols = protocols
            .parse()
            .map_err(|_| RealtimeError::Url("unencodable header object".into()))?;
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocols);
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
        // TCP_NODELAY, as browsers set: `start` and `stop` go out at once
        // instead of waiting on the delayed ACK of the message before.
        let disable_nagle = true;
        let (mut socket, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(config), disable_nagle)
                .await
                .map_err(|e| RealtimeError::Connect(e.to_string()))?;
        socket
            .send(Message::Text(
                json!({"type": "connection_init"}).to_string().into(),
            ))
            .await
            .map_err(|e| RealtimeError::Connect(e.to_string()))?;
        let timeout_ms = loop {
            let msg = next_message(&mut socket).await?;
            match msg.get("type").and_then(Value::as_str) {
                Some("connection_ack") => {
                    break msg
                        .pointer("/payload/connectionTimeoutMs")
                        .and_then(Value::as_u64)
                        .unwrap_or(DEFAULT_CONNECTION_TIMEOUT_MS);
                }
                Some("connection_error") => {
                    return Err(RealtimeError::ConnectionRefused(errors_of(&msg)));
                }
                _ => {}
            }
        };
        Ok(Self {
            socket,
            api_host,
            auth,
            connection_timeout: Duration::from_millis(timeout_ms),
        })
    }

    /// Sends `start` for `query` with `variables`, authorized with the
    /// connection's own auth, and reads until its `start_ack`: the
    /// subscription id is returned, and from here on every matching mutation
    /// arrives as a `data` message with that id. Every other frame read
    /// before the answer is dropped (`ka`, and `data` of subscriptions
    /// started earlier): start every subscription before reading data.
    ///
    /// # Errors
    /// [`RealtimeError::Subscription`] with AppSync's `errors`,
    /// [`RealtimeError::Closed`], or [`RealtimeError::Sign`].
    pub async fn start(&mut self, query: &str, variables: Value) -> Result<String, RealtimeError> {
        let id = uuid::Uuid::new_v4().to_string();
        let message = start_message(&self.auth, &self.api_host, &id, query, variables)?;
        self.socket
            .send(Message::Text(message.into()))
            .await
            .map_err(|_| RealtimeError::Closed)?;
        loop {
            let msg = next_message(&mut self.socket).await?;
            if msg.get("id").and_then(Value::as_str) != Some(id.as_str()) {
                continue;
            }
            match msg.get("type").and_then(Value::as_str) {
                Some("start_ack") => return Ok(id),
                Some("error") => return Err(RealtimeError::Subscription(errors_of(&msg))),
                _ => {}
            }
        }
    }

    /// The next text frame as sent (a `data`, `ka`, `error`, ... message),
    /// unparsed; `None` once the connection has ended, closed by either side
    /// or broken by a read error (a frame over the size limit, a protocol
    /// error): either way nothing more can be read.
    pub async fn next_text(&mut self) -> Option<Utf8Bytes> {
        loop {
            match self.socket.next().await? {
                Ok(Message::Text(text)) => return Some(text),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }
}

/// The `start` message of subscription `id`: `data` is the query and
/// variables as a JSON string, authorized by a header object over it.
pub(super) fn start_message(
    auth: &RealtimeAuth,
    api_host: &str,
    id: &str,
    query: &str,
    variables: Value,
) -> Result<String, RealtimeError> {
    let data = json!({"query": query, "variables": variables}).to_string();
    let authorization = header_object(auth, api_host, "/graphql", &data)?;
    Ok(json!({
        "id": id, "type": "start",
        "payload": {"data": data, "extensions": {"authorization": authorization}}
    })
    .to_string())
}

/// The `errors` array of an `error` or `connection_error` message (`null`
/// when it has none).
pub(super) fn errors_of(msg: &Value) -> Value {
    msg.pointer("/payload/errors")
        .cloned()
        .unwrap_or(Value::Null)
}

/// The next text frame, parsed; unparsable frames are skipped.
async fn next_message(socket: &mut Socket) -> Result<Value, RealtimeError> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                if let Ok(msg) = serde_json::from_str(text.as_str()) {
                    return Ok(msg);
                }
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err(RealtimeError::Closed),
        }
    }
}
