//! AppSync's real-time WebSocket endpoint, the server side, speaking the
//! `graphql-ws` subprotocol as the service does (the client side is the
//! shared real-time client the resolver, the CLI and the tests use).
//!
//! Place in the data path: resolver Lambda --publishChunk--> AppSync ->
//! fan-out -> **real-time socket** --onChunk `data`--> subscriber.
//!
//! Protocol: <https://docs.aws.amazon.com/appsync/latest/devguide/real-time-websocket-client.html>.
//! The auth header object comes either as the legacy `?header=<base64>&payload=e30=`
//! query or as a `header-<base64url>` subprotocol (Amplify JS v6). The server
//! answers `connection_init` with `connection_ack`, keeps the link alive with
//! `ka`, acknowledges each authorized `start` with `start_ack`, sends `data`,
//! answers `stop` with `complete`, and reports failures as `error` (one
//! subscription) or `connection_error` (the whole connection).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::AppSync;
use super::auth::{AuthError, Caller};
use super::execute::is_authorized;
use super::filter::argument_filter;
use super::operation::Selected;
use super::operation::{GraphQlRequest, OperationKind, prepare};
use super::pubsub::{RegisterError, Subscription};
use super::realtime_message::{self, ClientMessage, header_object};
use super::resolvers::ResolveRequest;

const SUBPROTOCOL: &str = "graphql-ws";

/// The errorType of a `start` whose resolver set a filter AppSync would refuse
/// (not documented by AWS; see [`register`]).
pub const INVALID_FILTER: &str = "InvalidSubscriptionFilter";

/// Bytes a socket read may fill at once. tungstenite zeroes this much of its
/// buffer before every read, data or not (its default is 128 KiB): with a
/// thousand connections woken per published chunk, that zeroing was the
/// largest cost of a fan-out. Clients send little (`start`, `stop`), so a
/// small buffer costs nothing; a larger message takes more reads.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// `GET /graphql` and `GET /graphql/realtime` with an upgrade: authenticates
/// the connect header object, then serves the socket. A refused or
/// non-`graphql-ws` client is still upgraded and told why with
/// `connection_error`, as the service does.
pub async fn upgrade(
    State(appsync): State<Arc<AppSync>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let offered: Vec<String> = headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_owned()))
        .collect();
    let speaks_protocol = offered.iter().any(|p| p == SUBPROTOCOL);
    let ip = peer.ip().to_string();
    let connect = header_object(&offered, &query)
        .ok_or_else(|| AuthError::unauthorized("You are not authorized to make this call."))
        .and_then(|obj| {
            appsync
                .auth
                .header_object(&obj, "/graphql/connect", b"{}", &ip)
        });
    // Without `graphql-ws` the connection is still upgraded, and then refused
    // with `connection_error` / SubProtocolNotSupportedError, as the service's
    // error logs show. The client's first offered protocol is echoed so a
    // client that insists on one completes the handshake and reads the error
    // (inferred: the docs do not say what the service echoes).
    let echoed = if speaks_protocol {
        SUBPROTOCOL.to_owned()
    } else {
        offered.first().cloned().unwrap_or_default()
    };
    ws.protocols([echoed])
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| connection(socket, appsync, speaks_protocol, connect, ip))
}

/// A `connection_error` message: the whole connection is refused.
fn connection_error(errors: Value) -> String {
    json!({"type": "connection_error", "payload": {"errors": errors}}).to_string()
}

/// An `error` message for the subscription `id`.
fn error(id: &str, error_type: &str, message: &str) -> String {
    json!({"type": "error", "id": id, "payload": {"errors": [{"errorType": error_type, "message": message}]}}).to_string()
}

/// One socket's life: a writer task for everything sent, then the client's
/// messages in order until it closes or the API drops every connection.
async fn connection(
    socket: WebSocket,
    appsync: Arc<AppSync>,
    speaks_protocol: bool,
    connect: Result<Caller, AuthError>,
    ip: String,
) {
    let (mut sink, mut stream) = socket.split();
    let (out, mut outgoing) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        while let Some(text) = outgoing.recv().await {
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    if !speaks_protocol {
        let _ = out.send(connection_error(
            json!([{"message": "SubProtocolNotSupportedError", "errorCode": 400}]),
        ));
        drop(out);
        let _ = writer.await;
        return;
    }
    if let Err(e) = connect {
        tracing::debug!(reason = %e.message, "real-time connection refused");
        let _ = out.send(connection_error(json!([{
            "errorType": "UnauthorizedException",
            "message": "You are not authorized to make this call.",
            "errorCode": 401
        }])));
        drop(out);
        let _ = writer.await;
        return;
    }
    let id = appsync.next_connection.fetch_add(1, Ordering::Relaxed);
    let mut keep_alive = None;
    let mut drops = appsync.realtime_drops.subscribe();
    loop {
        let message = tokio::select! {
            m = stream.next() => m,
            _ = drops.changed() => break,
        };
        let Some(Ok(message)) = message else { break };
        let text = match message {
            Message::Text(t) => t.to_string(),
            Message::Close(_) => break,
            _ => continue,
        };
        match realtime_message::parse(&text) {
            ClientMessage::Init => {
                let ack = json!({"type": "connection_ack", "payload": {"connectionTimeoutMs": appsync.config.connection_timeout_ms}});
                let _ = out.send(ack.to_string());
                if keep_alive.is_none() {
                    keep_alive = Some(spawn_keep_alive(out.clone(), appsync.config.keep_alive));
                }
            }
            ClientMessage::Start {
                id: sub_id,
                data,
                authorization,
            } => start(&appsync, id, &sub_id, &data, &authorization, &out, &ip),
            ClientMessage::Stop { id: sub_id } => {
                appsync.pubsub.remove(id, &sub_id);
                let _ = out.send(json!({"type": "complete", "id": sub_id}).to_string());
            }
            ClientMessage::Refused {
                id: sub_id,
                error_type,
                message,
            } => {
                let _ = out.send(error(&sub_id, error_type, message));
            }
        }
    }
    appsync.pubsub.remove_connection(id);
    if let Some(task) = keep_alive {
        task.abort();
    }
    drop(out);
    writer.abort();
}

/// Sends `ka` every `every` until the connection's writer is gone.
fn spawn_keep_alive(
    out: mpsc::UnboundedSender<String>,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if out.send(json!({"type": "ka"}).to_string()).is_err() {
                break;
            }
        }
    })
}

/// Handles a `start`: authenticate its own authorization, validate the
/// subscription, run its resolver, register it, then `start_ack`.
fn start(
    appsync: &AppSync,
    connection: u64,
    id: &str,
    data: &str,
    authorization: &Value,
    out: &mpsc::UnboundedSender<String>,
    ip: &str,
) {
    let reply = |m: String| {
        let _ = out.send(m);
    };
    let caller = match appsync
        .auth
        .header_object(authorization, "/graphql", data.as_bytes(), ip)
    {
        Ok(c) => c,
        Err(e) if e.status == 403 => return reply(error(id, "BadRequestException", &e.message)),
        Err(_) => {
            let m = json!({"type": "error", "id": id, "payload": {"errors": [{"errorType": "UnauthorizedException", "message": "You are not authorized to make this call.", "errorCode": 401}]}});
            return reply(m.to_string());
        }
    };
    let request: GraphQlRequest = match serde_json::from_str(data) {
        Ok(r) => r,
        Err(_) => {
            return reply(error(
                id,
                "MalformedHttpRequestException",
                "The start payload's data is not a GraphQL request.",
            ));
        }
    };
    let prepared = match prepare(&appsync.schema, &request) {
        Ok(p) if p.kind == OperationKind::Subscription => p,
        Ok(_) => {
            return reply(error(
                id,
                "UnsupportedOperation",
                "Only subscriptions are supported through the realtime channel",
            ));
        }
        Err(errors) => {
            let errors: Vec<Value> = errors.iter().map(|e| e.to_json()).collect();
            return reply(
                json!({"type": "error", "id": id, "payload": {"errors": errors}}).to_string(),
            );
        }
    };
    let Some(selected) = prepared
        .fields
        .iter()
        .find(|f| f.name != "__typename")
        .cloned()
    else {
        return reply(error(
            id,
            "UnsupportedOperation",
            "A subscription needs a field.",
        ));
    };
    match register(
        appsync,
        connection,
        id,
        &prepared.root_type,
        selected,
        caller,
        out,
    ) {
        Ok(()) => reply(json!({"type": "start_ack", "id": id}).to_string()),
        Err(m) => reply(m),
    }
}

/// Authorizes the subscription field for `caller`, runs its resolver (which
/// may set an enhanced filter), checks the filter, and adds the subscription;
/// the `Err` is the `error` message to send.
fn register(
    appsync: &AppSync,
    connection: u64,
    id: &str,
    root: &str,
    selected: Selected,
    caller: Caller,
    out: &mpsc::UnboundedSender<String>,
) -> Result<(), String> {
    let def = appsync
        .schema
        .field(root, &selected.name)
        .ok_or_else(|| error(id, "UnsupportedOperation", "Unknown subscription field."))?;
    let denied = || {
        error(
            id,
            "Unauthorized",
            &format!("Not Authorized to access {} on type {root}", selected.name),
        )
    };
    if !is_authorized(appsync, root, def, &caller) {
        return Err(denied());
    }
    let request = ResolveRequest {
        parent_type: root,
        field: &selected.name,
        arguments: &selected.arguments,
        caller: &caller,
        selection_set_list: Selected::selection_set_list(&selected.children),
    };
    let enhanced_filter = appsync
        .resolvers
        .subscribe(request)
        .map_err(|e| error(id, &e.error_type, &e.message))?;
    // A filter over AppSync's limits (10 groups, 5 filters a group, 5 `in`
    // values, 20 `containsAny` values, 5 path levels:
    // https://docs.aws.amazon.com/appsync/latest/devguide/aws-appsync-real-time-enhanced-filtering.html)
    // is refused on `start`. The docs state the limits but not the errorType
    // the service uses; `InvalidSubscriptionFilter` is this stand-in's own,
    // descriptive name, and the message says which limit was broken.
    if let Some(filter) = &enhanced_filter {
        filter
            .validate()
            .map_err(|e| error(id, INVALID_FILTER, &e.to_string()))?;
    }
    let subscription = Subscription {
        connection,
        id: id.to_owned(),
        ty: def.ty.clone(),
        mutations: appsync.schema.subscribed_mutations(def),
        argument_filter: argument_filter(&selected.arguments),
        enhanced_filter,
        selected,
        caller,
        sender: out.clone(),
    };
    appsync
        .pubsub
        .register(
            subscription,
            appsync.config.max_subscriptions_per_connection,
        )
        .map_err(|e| match e {
            RegisterError::Duplicated => error(
                id,
                "DuplicatedOperationError",
                &format!("Duplicate operation with Id ({id})"),
            ),
            RegisterError::MaxReached => error(
                id,
                "MaxSubscriptionsReachedError",
                "Max number of subscriptions reached",
            ),
        })
}
