//! The AppSync stand-in: the GraphQL HTTP endpoint, the real-time WebSocket,
//! auth, schema, resolvers and `@aws_subscribe` fan-out.
//!
//! Place in the data path: client --sendPrompt--> **AppSync** --Invoke(Event)-->
//! Lambda (resolver) -> Bedrock -> resolver --publishChunk--> **AppSync**
//! --onChunk--> subscriber.
//!
//! A request meets, in order: [`auth`] (who is calling), [`operation`] (parse
//! and validate, with input coercion), [`execute`] (per-field authorization,
//! [`resolvers`], completion), then for a mutation [`pubsub`] (fan-out, with
//! [`filter`]) to the sockets of [`realtime_server`]. [`schema`] is read by all
//! of them; [`js`] runs the deployment's resolver code, sending what it asks
//! of a DynamoDB data source to [`dynamodb_source`]; [`faults`] injects
//! publish failures for tests.
//! <https://docs.aws.amazon.com/appsync/latest/devguide/what-is-appsync.html>

pub mod auth;
pub mod dynamodb_source;
pub mod execute;
pub mod faults;
pub mod filter;
pub mod js;
pub mod operation;
pub mod pubsub;
pub mod realtime_message;
pub mod realtime_server;
pub mod resolvers;
mod scalars;
pub mod schema;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use serde_json::json;

use auth::{AuthError, AuthMode, Authenticator, Caller};
use execute::Completer;
use faults::PublishFault;
use operation::{GraphQlRequest, OperationKind, prepare};
use pubsub::PubSub;
use resolvers::Resolvers;
use schema::Schema;

/// Real-time settings, with AppSync's values as defaults.
#[derive(Clone, Debug)]
pub struct AppSyncConfig {
    /// Sent in `connection_ack`; clients drop the link after this long without `ka`.
    pub connection_timeout_ms: u64,
    /// How often `ka` is sent (AppSync: about every 60 s).
    pub keep_alive: Duration,
    /// Subscriptions one connection may hold (AppSync: 100).
    pub max_subscriptions_per_connection: usize,
}

impl Default for AppSyncConfig {
    fn default() -> Self {
        Self {
            connection_timeout_ms: 300_000,
            keep_alive: Duration::from_secs(60),
            max_subscriptions_per_connection: 100,
        }
    }
}

/// One GraphQL API: its schema, auth, resolvers, active subscriptions and
/// settings, shared by the HTTP endpoint and every real-time connection.
pub struct AppSync {
    /// The schema operations are validated and completed against.
    pub schema: Schema,
    /// The callers it accepts and its default auth mode.
    pub auth: Authenticator,
    /// What resolves fields (the devstack's: `infra/`'s APPSYNC_JS files).
    pub resolvers: Box<dyn Resolvers>,
    /// Every active subscription, fed by mutations.
    pub pubsub: PubSub,
    /// Real-time settings (keep-alive, limits).
    pub config: AppSyncConfig,
    /// Faults injected into publishes (tests, `devstack up --publish-*`).
    pub publish_faults: faults::PublishFaults,
    /// Mutations and bytes received from publishers.
    pub publish_stats: faults::PublishStats,
    next_connection: AtomicU64,
    /// Bumped by [`AppSync::drop_realtime_connections`]; every open socket watches it.
    realtime_drops: tokio::sync::watch::Sender<u64>,
}

impl AppSync {
    /// An API with no subscriptions, no faults and nothing counted yet.
    pub fn new(
        schema: Schema,
        auth: Authenticator,
        resolvers: Box<dyn Resolvers>,
        config: AppSyncConfig,
    ) -> Self {
        Self {
            schema,
            auth,
            resolvers,
            pubsub: PubSub::default(),
            config,
            publish_faults: faults::PublishFaults::default(),
            publish_stats: faults::PublishStats::default(),
            next_connection: AtomicU64::new(1),
            realtime_drops: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Cuts every open real-time socket at once, without a close frame or a
    /// `complete`, as a lost network or a service-side reset does; clients
    /// must reconnect and subscribe again (a fault for tests).
    pub fn drop_realtime_connections(&self) {
        self.realtime_drops.send_modify(|n| *n += 1);
    }

    /// A completer of results for `caller`: keyed by alias for a response
    /// (`by_alias`), by field name for a result handed to the fan-out.
    pub fn completer<'a>(&'a self, caller: &'a Caller, by_alias: bool) -> Completer<'a> {
        Completer {
            schema: &self.schema,
            caller,
            default_mode: self.auth.default_mode,
            by_alias,
            errors: Vec::new(),
        }
    }

    /// `POST /graphql`, and the real-time socket at `GET /graphql` (the
    /// realtime host's path) and `GET /graphql/realtime` (a custom domain's).
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/graphql", get(realtime_server::upgrade).post(graphql))
            .route("/graphql/realtime", get(realtime_server::upgrade))
            .with_state(self)
    }
}

impl AppSync {
    /// Serves this API alone (its `POST /graphql` and real-time socket) on
    /// `bind`, e.g. with a test schema and stub resolvers. Returns the bound
    /// address and the server task (abort it to stop).
    ///
    /// # Errors
    ///
    /// The I/O error of binding `bind` (e.g. the port is taken).
    pub async fn serve(
        self: Arc<Self>,
        bind: SocketAddr,
    ) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let listener = listener.tap_io(set_no_delay);
        let app = self.router();
        let task = tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            if let Err(e) = axum::serve(listener, service).await {
                tracing::error!(error = %e, "AppSync server stopped");
            }
        });
        Ok((addr, task))
    }
}

/// Sets TCP_NODELAY on an accepted connection, for `axum::serve`'s
/// `tap_io`: every message is written as soon as it is sent, as the HTTPS
/// listener's acceptor does too. With Nagle's algorithm a chunk written while
/// the previous one waits for its delayed ACK is held up to 40 ms.
pub fn set_no_delay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
}

/// A refused caller, as AppSync answers over HTTP: 401 or 403, the error
/// body, and the `x-amzn-ErrorType` header.
fn auth_failure(e: AuthError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut response = (status, axum::Json(e.body())).into_response();
    if let Ok(v) = HeaderValue::from_str(e.error_type) {
        response.headers_mut().insert("x-amzn-errortype", v);
    }
    response
}

/// 400 `MalformedHttpRequestException` with `message`.
fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(
            json!({"errors": [{"errorType": "MalformedHttpRequestException", "message": message}]}),
        ),
    )
        .into_response()
}

/// `POST /graphql`: authenticate, validate, execute, answer `{data, errors}`.
async fn graphql(
    State(appsync): State<Arc<AppSync>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ip = peer.ip().to_string();
    let caller =
        match appsync
            .auth
            .http(uri.path(), uri.query().unwrap_or(""), &headers, &body, &ip)
        {
            Ok(c) => c,
            Err(e) => return auth_failure(e),
        };
    let Ok(request) = serde_json::from_slice::<GraphQlRequest>(&body) else {
        return bad_request("Unable to parse GraphQL query.");
    };
    let prepared = match prepare(&appsync.schema, &request) {
        Ok(p) => p,
        Err(errors) => {
            let errors: Vec<_> = errors.iter().map(|e| e.to_json()).collect();
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"data": null, "errors": errors})),
            )
                .into_response();
        }
    };
    if prepared.kind == OperationKind::Subscription {
        return bad_request("Subscriptions are only supported through the realtime endpoint.");
    }
    if caller.mode == AuthMode::Iam && prepared.kind == OperationKind::Mutation {
        appsync.publish_stats.record(body.len());
        return publish(&appsync, &prepared, &caller).await;
    }
    let outcome = execute::execute(&appsync, &prepared, &caller).await;
    axum::Json(outcome.to_json()).into_response()
}

/// A publisher's mutation, through whatever faults are injected.
async fn publish(appsync: &AppSync, prepared: &operation::Prepared, caller: &Caller) -> Response {
    let half_trip = appsync.publish_faults.round_trip() / 2;
    tokio::time::sleep(half_trip).await;
    let fault = appsync.publish_faults.take();
    if let Some(PublishFault::Status(status)) = fault {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, axum::Json(PublishFault::body(status.as_u16()))).into_response();
    }
    let outcome = execute::execute(appsync, prepared, caller).await;
    tokio::time::sleep(half_trip).await;
    if fault == Some(PublishFault::DropAfterExecute) {
        let broken = futures_util::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "dropped",
            ))
        });
        return Response::new(axum::body::Body::from_stream(broken));
    }
    axum::Json(outcome.to_json()).into_response()
}
