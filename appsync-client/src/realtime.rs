//! Place in the data path: AppSync -> **subscriber** (the terminal client,
//! `devstack chat`, the bench and the tests), and the resolver's own
//! `onCancel` subscription (AppSync -> **cancel listener** -> turn). An AppSync
//! real-time client: subscribe over the WebSocket endpoint with the
//! `graphql-ws` subprotocol.
//!
//! Protocol: <https://docs.aws.amazon.com/appsync/latest/devguide/real-time-websocket-client.html>.
//! The auth header object goes in a `header-<base64url>` subprotocol (as Amplify
//! JS v6 sends it) or in the legacy `?header=...&payload=e30=` query. After
//! `connection_init` the server answers `connection_ack` with
//! `connectionTimeoutMs`; a link that sees no `ka` for that long is dead.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::sigv4::{SIGNING_NAME, SignError, sign_headers};

mod socket;

pub use socket::RealtimeSocket;
use socket::{Socket, errors_of, start_message};
/// A text frame as read: cheap to clone and keep, derefs to `str`.
pub use tokio_tungstenite::tungstenite::Utf8Bytes;

/// How a client proves who it is, per AppSync auth mode.
#[derive(Clone, Debug)]
pub enum RealtimeAuth {
    /// `AMAZON_COGNITO_USER_POOLS` (or OIDC): the raw JWT.
    Token(String),
    /// `API_KEY`.
    ApiKey(String),
    /// `AWS_IAM`: connect and every `start` are SigV4-signed.
    Iam {
        /// The signing identity.
        credentials: aws_credential_types::Credentials,
        /// The API's region, e.g. `us-east-1`.
        region: String,
    },
}

/// Where the header object travels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HeaderTransport {
    /// `Sec-WebSocket-Protocol: graphql-ws, header-<base64url>` (Amplify JS v6).
    #[default]
    Subprotocol,
    /// `?header=<base64>&payload=e30=` (older clients).
    QueryString,
}

/// Errors of the real-time client.
#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    /// The WebSocket could not be opened (DNS, TCP, TLS, HTTP upgrade).
    #[error("could not connect: {0}")]
    Connect(String),
    /// A `connection_error`, with AppSync's `errors` array.
    #[error("the connection was refused: {0}")]
    ConnectionRefused(Value),
    /// An `error` for one subscription, with AppSync's `errors` array.
    #[error("the subscription was refused: {0}")]
    Subscription(Value),
    /// No `ka` (or anything else) arrived within `connectionTimeoutMs`.
    #[error("no keep-alive within the connection timeout")]
    KeepAliveTimeout,
    /// The connection is gone.
    #[error("the connection closed")]
    Closed,
    /// An IAM header object could not be signed.
    #[error("could not sign: {0}")]
    Sign(#[from] SignError),
    /// The real-time or GraphQL URL is unusable.
    #[error("invalid URL: {0}")]
    Url(String),
    /// No `complete` came back for a `stop` in time.
    #[error("no answer to stop in time")]
    StopTimeout,
}

impl RealtimeError {
    /// The `errorType` of the first error AppSync sent, for
    /// [`RealtimeError::ConnectionRefused`] and [`RealtimeError::Subscription`].
    pub fn error_type(&self) -> Option<&str> {
        match self {
            RealtimeError::ConnectionRefused(errors) | RealtimeError::Subscription(errors) => {
                errors.pointer("/0/errorType").and_then(Value::as_str)
            }
            _ => None,
        }
    }
}

enum Event {
    Ack,
    Data(Value),
    Error(Value),
    Complete,
}

enum Command {
    Start {
        id: String,
        message: String,
        events: mpsc::UnboundedSender<Event>,
    },
    Stop {
        id: String,
    },
}

/// A connection to AppSync's real-time endpoint.
pub struct RealtimeClient {
    commands: mpsc::UnboundedSender<Command>,
    api_host: String,
    auth: RealtimeAuth,
    /// The `connectionTimeoutMs` the server sent in `connection_ack`.
    pub connection_timeout: Duration,
}

/// One active subscription; dropping it sends `stop` (without waiting for
/// the answer; [`Subscription::unsubscribe`] waits).
pub struct Subscription {
    id: String,
    events: mpsc::UnboundedReceiver<Event>,
    commands: mpsc::UnboundedSender<Command>,
    /// True once the server no longer holds the subscription (refused,
    /// completed) or `stop` has been sent.
    ended: bool,
}

impl RealtimeClient {
    /// Connects, sends `connection_init` and waits for `connection_ack`.
    /// `graphql_url` is the API's GraphQL URL: its host is the one every
    /// header object names, as AppSync requires.
    ///
    /// # Errors
    /// [`RealtimeError::Connect`], [`RealtimeError::ConnectionRefused`] (with
    /// AppSync's `errors`), [`RealtimeError::Closed`], [`RealtimeError::Sign`]
    /// or [`RealtimeError::Url`].
    pub async fn connect(
        realtime_url: &str,
        graphql_url: &str,
        auth: RealtimeAuth,
        transport: HeaderTransport,
    ) -> Result<Self, RealtimeError> {
        let RealtimeSocket {
            socket,
            api_host,
            auth,
            connection_timeout,
        } = RealtimeSocket::open(realtime_url, graphql_url, auth, transport).await?;
        let (sink, stream) = socket.split();
        let (commands, command_rx) = mpsc::unbounded_channel();
        tokio::spawn(run_connection(sink, stream, command_rx, connection_timeout));
        Ok(Self {
            commands,
            api_host,
            auth,
            connection_timeout,
        })
    }

    /// Sends `start` and waits for `start_ack`: once this returns, every
    /// matching mutation is delivered (subscribe before you send the prompt).
    /// The `start` is authorized with the connection's own auth.
    ///
    /// # Errors
    /// [`RealtimeError::Subscription`] with AppSync's `errors`,
    /// [`RealtimeError::Closed`], or [`RealtimeError::Sign`].
    pub async fn subscribe(
        &self,
        query: &str,
        variables: Value,
    ) -> Result<Subscription, RealtimeError> {
        self.subscribe_with(query, variables, &self.auth).await
    }

    /// As [`RealtimeClient::subscribe`], authorizing the `start` with `auth`
    /// (e.g. IAM credentials fresher than the ones the connection was opened
    /// with). Cancel-safe: if the returned future is dropped before the
    /// `start_ack`, a `stop` is sent.
    ///
    /// # Errors
    /// As [`RealtimeClient::subscribe`].
    pub async fn subscribe_with(
        &self,
        query: &str,
        variables: Value,
        auth: &RealtimeAuth,
    ) -> Result<Subscription, RealtimeError> {
        let id = uuid::Uuid::new_v4().to_string();
        let message = start_message(auth, &self.api_host, &id, query, variables)?;
        let (events_tx, events) = mpsc::unbounded_channel();
        self.commands
            .send(Command::Start {
                id: id.clone(),
                message,
                events: events_tx,
            })
            .map_err(|_| RealtimeError::Closed)?;
        // From here on dropping `subscription` sends `stop`.
        let mut subscription = Subscription {
            id,
            events,
            commands: self.commands.clone(),
            ended: false,
        };
        match subscription.events.recv().await {
            Some(Event::Ack) => Ok(subscription),
            Some(Event::Error(errors)) => {
                subscription.ended = true;
                Err(RealtimeError::Subscription(errors))
            }
            Some(Event::Complete) | None => {
                subscription.ended = true;
                Err(RealtimeError::Closed)
            }
            Some(Event::Data(_)) => Err(RealtimeError::Subscription(
                json!([{"errorType": "ProtocolError", "message": "data before start_ack"}]),
            )),
        }
    }

    /// True once the connection has ended (closed by either side, or no
    /// keep-alive within the connection timeout): reconnect to subscribe again.
    pub fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }
}

impl Subscription {
    /// The next `data` payload (`{"data": {...}, "errors"?: [...]}`); `None`
    /// once the subscription completes or the connection closes.
    pub async fn next(&mut self) -> Option<Result<Value, RealtimeError>> {
        loop {
            let Some(event) = self.events.recv().await else {
                self.ended = true;
                return None;
            };
            match event {
                Event::Data(payload) => return Some(Ok(payload)),
                Event::Error(errors) => return Some(Err(RealtimeError::Subscription(errors))),
                Event::Complete => {
                    self.ended = true;
                    return None;
                }
                Event::Ack => continue,
            }
        }
    }

    /// Sends `stop` and waits up to `wait` for AppSync's `complete`, so the
    /// subscription is gone on the server before this returns (a Lambda
    /// execution environment may be frozen right after the invocation).
    ///
    /// # Errors
    /// [`RealtimeError::StopTimeout`] when no `complete` came in time;
    /// [`RealtimeError::Closed`] never (a closed connection holds no subscriptions).
    pub async fn unsubscribe(mut self, wait: Duration) -> Result<(), RealtimeError> {
        if self.ended {
            return Ok(());
        }
        self.ended = true;
        if self
            .commands
            .send(Command::Stop {
                id: self.id.clone(),
            })
            .is_err()
        {
            return Ok(());
        }
        let completed = async {
            loop {
                match self.events.recv().await {
                    Some(Event::Complete) | None => return,
                    Some(_) => continue,
                }
            }
        };
        tokio::time::timeout(wait, completed)
            .await
            .map_err(|_| RealtimeError::StopTimeout)
    }

    /// The subscription id sent in `start`.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.commands.send(Command::Stop {
                id: self.id.clone(),
            });
        }
    }
}

type Sink = futures_util::stream::SplitSink<Socket, Message>;
type Stream = futures_util::stream::SplitStream<Socket>;

/// Owns the socket: routes server messages to subscriptions, sends commands,
/// and gives up when no `ka` (or anything else) arrives within the timeout.
async fn run_connection(
    mut sink: Sink,
    mut stream: Stream,
    mut commands: mpsc::UnboundedReceiver<Command>,
    timeout: Duration,
) {
    let mut subscriptions: HashMap<String, mpsc::UnboundedSender<Event>> = HashMap::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Start { id, message, events }) => {
                    subscriptions.insert(id, events);
                    if sink.send(Message::Text(message.into())).await.is_err() { break; }
                }
                Some(Command::Stop { id }) => {
                    let stop = json!({"type": "stop", "id": id}).to_string();
                    if sink.send(Message::Text(stop.into())).await.is_err() { break; }
                }
                None => break,
            },
            message = tokio::time::timeout(timeout, stream.next()) => {
                let Ok(Some(Ok(message))) = message else { break };
                let Some(msg) = parse(&message) else { continue };
                route(&msg, &mut subscriptions);
            }
        }
    }
    let _ = sink.close().await;
    // Dropping the senders ends every subscription's stream with `None`.
}

fn route(msg: &Value, subscriptions: &mut HashMap<String, mpsc::UnboundedSender<Event>>) {
    let id = msg.get("id").and_then(Value::as_str).unwrap_or_default();
    let event = match msg.get("type").and_then(Value::as_str) {
        Some("start_ack") => Event::Ack,
        Some("data") => Event::Data(msg.get("payload").cloned().unwrap_or(Value::Null)),
        Some("error") => Event::Error(errors_of(msg)),
        Some("complete") => Event::Complete,
        _ => return,
    };
    let finished = matches!(event, Event::Complete);
    if let Some(tx) = subscriptions.get(id) {
        let _ = tx.send(event);
    }
    if finished {
        subscriptions.remove(id);
    }
}

fn parse(message: &Message) -> Option<Value> {
    match message {
        Message::Text(t) => serde_json::from_str(t.as_str()).ok(),
        _ => None,
    }
}

/// The host (and port) of a URL, as the header object's `host`.
fn host_of(url: &str) -> Result<String, RealtimeError> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    if host.is_empty() {
        return Err(RealtimeError::Url(url.to_owned()));
    }
    Ok(host.to_owned())
}

/// The auth header object for connect (`/graphql/connect`, body `{}`) or a
/// `start` (`/graphql`, body = the start's `data` string).
fn header_object(
    auth: &RealtimeAuth,
    host: &str,
    path: &str,
    body: &str,
) -> Result<Value, RealtimeError> {
    Ok(match auth {
        RealtimeAuth::Token(token) => json!({"host": host, "Authorization": token}),
        RealtimeAuth::ApiKey(key) => json!({"host": host, "x-api-key": key}),
        RealtimeAuth::Iam {
            credentials,
            region,
        } => {
            let base = [
                ("accept", "application/json, text/javascript"),
                ("content-encoding", "amz-1.0"),
                ("content-type", "application/json; charset=UTF-8"),
                ("host", host),
            ];
            let url = format!("https://{host}{path}");
            let signed = sign_headers(
                &url,
                &base,
                body.as_bytes(),
                credentials,
                region,
                SIGNING_NAME,
                SystemTime::now(),
            )?;
            let mut object = serde_json::Map::new();
            for (k, v) in base {
                object.insert(k.to_owned(), json!(v));
            }
            for (k, v) in signed {
                let key = if k == "authorization" {
                    "Authorization".to_owned()
                } else {
                    k
                };
                object.insert(key, json!(v));
            }
            Value::Object(object)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_taken_from_the_graphql_url() {
        assert_eq!(
            host_of("http://127.0.0.1:4000/graphql").expect("host"),
            "127.0.0.1:4000"
        );
        assert_eq!(
            host_of("https://abc.appsync-api.us-east-1.amazonaws.com/graphql").expect("host"),
            "abc.appsync-api.us-east-1.amazonaws.com"
        );
        assert!(host_of("").is_err());
    }

    #[test]
    fn token_and_key_header_objects_have_appsync_names() {
        let t = header_object(&RealtimeAuth::Token("jwt".into()), "h", "/graphql", "{}")
            .expect("object");
        assert_eq!(t, json!({"host": "h", "Authorization": "jwt"}));
        let k = header_object(&RealtimeAuth::ApiKey("k".into()), "h", "/graphql", "{}")
            .expect("object");
        assert_eq!(k, json!({"host": "h", "x-api-key": "k"}));
    }

    #[test]
    fn iam_header_objects_carry_a_signature() {
        let credentials = aws_credential_types::Credentials::new(
            "AKID",
            "SECRET",
            Some("TOKEN".into()),
            None,
            "test",
        );
        let auth = RealtimeAuth::Iam {
            credentials,
            region: "us-east-1".into(),
        };
        let o = header_object(&auth, "h", "/graphql/connect", "{}").expect("object");
        assert!(
            o["Authorization"]
                .as_str()
                .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 Credential=AKID/"))
        );
        assert_eq!(o["x-amz-security-token"], "TOKEN");
        assert!(o["x-amz-date"].is_string());
    }
}
