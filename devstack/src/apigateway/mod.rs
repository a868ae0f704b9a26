//! An API Gateway WebSocket API stand-in: the third transport's front door.
//!
//! Place in the data path: client --WebSocket `?token=`--> **WebSocket API**
//! --authorizer (Lambda)--> `$connect`; client --`{"action": ...}`-->
//! **WebSocket API** --route (Lambda, sync or `Event`)--> route function
//! --PostToConnection (SigV4)--> **`@connections`** --> client.
//!
//! On its own port, as `wss://{api-id}.execute-api.{region}.amazonaws.com/{stage}`
//! is its own host: `GET /{stage}` upgrades to a WebSocket, and
//! `/{stage}/@connections/{id}` is the management API at the same address,
//! as on AWS. A stock WebSocket client connects to it, and any SigV4 signer
//! (the AWS SDKs, botocore) calls its management API.
//!
//! # Layout
//! - `session`: one connection: `$connect`, routing, limits, `$disconnect`.
//! - [`authorizer`]: how the authorizer's output admits a connection.
//! - [`connections`]: the open connections and the `@connections` API.
//! - [`events`]: the events Lambda is invoked with.

pub mod authorizer;
pub mod connections;
pub mod events;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::lambda::LambdaService;
use crate::sigv4_verify::IamUsers;
use connections::Connections;

pub use session::{DEFAULT_ROUTE, route_key};

/// The API's settings (`AWS::ApiGatewayV2::Api` and its stage).
#[derive(Debug, Clone)]
pub struct WebSocketApiConfig {
    /// The API id (in method ARNs and `requestContext.apiId`).
    pub api_id: String,
    /// The stage name, the URL's path.
    pub stage: String,
    /// The query string parameter that is the authorizer's identity source
    /// (`route.request.querystring.token`).
    pub token_parameter: String,
    /// A connection with no message either way this long is closed (10
    /// minutes on AWS).
    pub idle_timeout: Duration,
    /// A connection is closed after this long in all (2 hours on AWS).
    pub max_connection_duration: Duration,
    /// A synchronous integration that takes longer fails (29 s on AWS).
    pub integration_timeout: Duration,
}

impl Default for WebSocketApiConfig {
    fn default() -> Self {
        Self {
            api_id: "devstackws".into(),
            stage: "dev".into(),
            token_parameter: "token".into(),
            idle_timeout: Duration::from_secs(10 * 60),
            max_connection_duration: Duration::from_secs(2 * 60 * 60),
            integration_timeout: Duration::from_secs(29),
        }
    }
}

/// The API's integrations: the authorizer on `$connect` and the one
/// function every route invokes.
#[derive(Clone)]
pub struct WebSocketRoutes {
    /// The `$connect` REQUEST authorizer.
    pub authorizer: LambdaService,
    /// The integration of `$connect`, `$disconnect`, `$default` and every
    /// custom route.
    pub function: LambdaService,
    /// Custom route keys invoked synchronously (two-way: the answer's
    /// `body` goes back to the client).
    pub sync_routes: Vec<String>,
    /// Custom route keys invoked asynchronously (`X-Amz-Invocation-Type:
    /// Event`): the message is queued and the client hears nothing back.
    pub async_routes: Vec<String>,
}

impl WebSocketRoutes {
    fn route_keys(&self) -> Vec<String> {
        self.sync_routes
            .iter()
            .chain(&self.async_routes)
            .cloned()
            .collect()
    }

    fn is_async(&self, key: &str) -> bool {
        self.async_routes.iter().any(|r| r == key)
    }
}

/// A WebSocket API: its settings, integrations and open connections.
#[derive(Clone)]
pub struct WebSocketApi {
    inner: Arc<Inner>,
}

struct Inner {
    config: WebSocketApiConfig,
    routes: WebSocketRoutes,
    connections: Connections,
    iam_users: IamUsers,
}

impl WebSocketApi {
    /// An API with `routes`, whose management API accepts `iam_users`.
    pub fn new(config: WebSocketApiConfig, routes: WebSocketRoutes, iam_users: IamUsers) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                routes,
                connections: Connections::default(),
                iam_users,
            }),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &WebSocketApiConfig {
        &self.inner.config
    }

    /// Its integrations.
    pub fn routes(&self) -> &WebSocketRoutes {
        &self.inner.routes
    }

    /// Its open connections.
    pub fn connections(&self) -> &Connections {
        &self.inner.connections
    }

    fn iam_users(&self) -> &IamUsers {
        &self.inner.iam_users
    }

    /// Invokes the route function synchronously within the integration
    /// timeout; the function's error object, or a timeout's, on failure.
    async fn invoke_sync(&self, event: Value) -> Result<Value, Value> {
        let call = self.routes().function.invoke(event);
        match tokio::time::timeout(self.config().integration_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(serde_json::json!({
                "errorType": "IntegrationTimeout",
                "errorMessage": "the integration did not answer in time",
            })),
        }
    }

    /// The API's routes: the WebSocket at `/{stage}`, the management API at
    /// `/{stage}/@connections/{id}`.
    pub fn router(self) -> Router {
        Router::new()
            .route("/{stage}", get(session::connect))
            .route("/{stage}/@connections/{id}", any(connections::handle))
            .with_state(self)
    }
}

/// A WebSocket API served on its own port.
pub struct WebSocketApiServer {
    addr: SocketAddr,
    api: WebSocketApi,
    server: JoinHandle<()>,
}

impl WebSocketApiServer {
    /// Serves `api` on `listener` (bound first, so that the functions'
    /// environment can name its address).
    pub fn serve(listener: TcpListener, api: WebSocketApi) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let app = api.clone().router();
        let server = tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            if let Err(e) = axum::serve(listener, service).await {
                tracing::error!(error = %e, "WebSocket API stopped");
            }
        });
        Ok(Self { addr, api, server })
    }

    /// The API.
    pub fn api(&self) -> &WebSocketApi {
        &self.api
    }

    /// `ws://HOST:PORT/{stage}`, where clients connect.
    pub fn url(&self) -> String {
        format!("ws://{}/{}", self.addr, self.api.config().stage)
    }

    /// `http://HOST:PORT/{stage}`, the `@connections` endpoint.
    pub fn connections_url(&self) -> String {
        connections_url(self.addr, &self.api.config().stage)
    }

    /// Stops serving and the functions.
    pub async fn shutdown(self) {
        self.server.abort();
        self.api.routes().authorizer.stop().await;
        self.api.routes().function.stop().await;
    }
}

/// `http://{addr}/{stage}`: the `@connections` endpoint of an API at `addr`.
pub fn connections_url(addr: SocketAddr, stage: &str) -> String {
    format!("http://{addr}/{stage}")
}
