//! devstack: a local AWS for bedrock-appsync-stream. AppSync, Cognito, Lambda
//! and Bedrock stand-ins that speak the services' own wire protocols, on one
//! port, so the whole data path runs on one machine:
//!
//! ```text
//! client --sendPrompt--> AppSync --Invoke(Event)--> Lambda (resolver process)
//! resolver --ConverseStream--> Bedrock (smollm2 | scripted)
//! resolver --publishChunk (SigV4)--> AppSync --onChunk (WebSocket)--> client
//! client --listConversations etc.--> AppSync --DynamoDB data source--> local DynamoDB
//! ```
//!
//! Place in the data path: every hop but the resolver itself, which runs as
//! a real process in a Lambda stand-in's worker.
//!
//! With a certificate ([`StackConfig::tls`]) the same API also listens over
//! HTTPS / `wss://` on a second port, which browsers and Amplify need, and
//! serves the web chat page there.
//!
//! # Layout
//!
//! One module per service, in data-path order: [`appsync`] (GraphQL over
//! HTTP, the real-time server, auth, the APPSYNC_JS resolvers, fan-out),
//! [`lambda`] (the Runtime API and its worker processes), [`bedrock`]
//! (ConverseStream with the `scripted` and `smollm2` models). Beside them:
//! [`cognito`] (the user pool), [`sigv4_verify`] (the service side of SigV4),
//! [`tls`] and [`web`] (the HTTPS listener and the web chat's origin), and the
//! command line's [`cli`] and [`bench`]. [`Stack`] wires them onto one port.

pub mod apigateway;
pub mod appsync;
pub mod bedrock;
pub mod bench;
pub mod cli;
pub mod cognito;
pub mod dynamodb;
pub mod lambda;
pub mod sigv4_verify;
pub mod testing;
pub mod tls;
pub mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use appsync_client::{HeaderTransport, RealtimeAuth, RealtimeClient, RealtimeError};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use apigateway::WebSocketApiServer;
use appsync::auth::{AuthMode, Authenticator};
use appsync::dynamodb_source::DynamoDbSource;
use appsync::js::{ApiDefinition, JsResolvers};
use appsync::schema::Schema;
use appsync::{AppSync, AppSyncConfig};
use bedrock::{BedrockConfig, BedrockState};
use cognito::UserPool;
use lambda::function_url::{Cors, FunctionUrlServer};
use lambda::{FunctionCommand, LambdaConfig, LambdaService};
use sigv4_verify::{IamUser, IamUsers, SignedRequest};

/// The dev IAM principal the resolver signs with (static, local only).
pub const DEV_ACCESS_KEY_ID: &str = "DEVSTACKACCESSKEY";
/// The dev IAM principal's secret (static, local only).
pub const DEV_SECRET_ACCESS_KEY: &str = "devstack/secret/access/key";
/// The account the devstack pretends to be.
pub const DEV_ACCOUNT_ID: &str = "123456789012";
/// The region the devstack pretends to be in.
pub const DEV_REGION: &str = "us-east-1";
/// The user pool id of the dev pool (the tokens' issuer is
/// `{base_url}/{DEV_USER_POOL_ID}`).
pub const DEV_USER_POOL_ID: &str = "us-east-1_devstack";
/// The app client id of the dev pool (the ID tokens' `aud`).
pub const DEV_CLIENT_ID: &str = "devstackappclient";
/// The API key the devstack accepts for `API_KEY` auth.
pub const DEV_API_KEY: &str = "da2-devstack";

/// The function URL function's runtime loop, exposed as [`run_resolver`] is.
pub use bedrock_appsync_stream::function_url::run as run_url_function;
/// The resolver Lambda's runtime loop (`bedrock_appsync_stream::run`): what a
/// Lambda worker process runs, as the deployed `bootstrap` does. Exposed so a
/// test binary can serve as the function without building the root crate's
/// binary.
pub use bedrock_appsync_stream::run as run_resolver;
/// The WebSocket API's `$connect` authorizer's runtime loop.
pub use bedrock_appsync_stream::websocket::authorizer::run as run_websocket_authorizer;
/// The WebSocket API's route function's runtime loop.
pub use bedrock_appsync_stream::websocket::run as run_websocket_function;

/// The resolver function's name in the devstack (`AWS_LAMBDA_FUNCTION_NAME`).
pub const FUNCTION_NAME: &str = "bedrock-appsync-stream";
/// The function URL function's name in the devstack.
pub const URL_FUNCTION_NAME: &str = "bedrock-appsync-stream-url";
/// The WebSocket API's route function's name in the devstack.
pub const WEBSOCKET_FUNCTION_NAME: &str = "bedrock-appsync-stream-websocket";
/// The WebSocket API's `$connect` authorizer's name in the devstack.
pub const AUTHORIZER_FUNCTION_NAME: &str = "bedrock-appsync-stream-authorizer";

/// The programs behind the WebSocket API: the route function (the root
/// crate's `websocket`, or `devstack worker-websocket`) and the `$connect`
/// authorizer (`websocket-authorizer`, or `devstack worker-authorizer`).
#[derive(Debug, Clone)]
pub struct WebSocketFunctions {
    /// The route function.
    pub function: FunctionCommand,
    /// The `$connect` REQUEST authorizer.
    pub authorizer: FunctionCommand,
}

/// The schema every part of the project shares.
pub const SCHEMA: &str = include_str!("../../schema.graphql");

/// Everything a stack needs to start.
pub struct StackConfig {
    /// Where to listen; port 0 picks a free one.
    pub bind: SocketAddr,
    /// The program a Lambda execution environment runs (the resolver).
    pub function: FunctionCommand,
    /// The most execution environments at once (concurrent turns): the
    /// template's `ReservedConcurrentExecutions`, else
    /// [`DEFAULT_CONCURRENCY`]. 0 throttles every invocation.
    pub concurrency: usize,
    /// The model the resolver uses when a prompt names none.
    pub default_model: String,
    /// The Lambda function's timeout (the template's `Timeout`).
    pub function_timeout: Duration,
    /// The function's `MemorySize`, in MB (the template's).
    pub function_memory_mb: u64,
    /// The function's environment variables the template gives (parameter
    /// defaults and literals), under the devstack's own endpoints and
    /// [`Self::function_environment`].
    pub template_environment: Vec<(String, String)>,
    /// `MaximumEventAgeInSeconds` of the async invoke config (the template's).
    pub max_event_age: Duration,
    /// An execution environment idle this long is shut down.
    pub idle_timeout: Duration,
    /// Freeze execution environments between invocations, as Lambda does.
    pub freeze: bool,
    /// The Cognito pool's key; `None` makes a fresh one.
    pub cognito_key: Option<rsa::RsaPrivateKey>,
    /// The Bedrock stand-in's settings (model pace, weights cache, faults).
    pub bedrock: BedrockConfig,
    /// The AppSync stand-in's real-time settings.
    pub appsync: AppSyncConfig,
    /// Extra environment for the function (e.g. `RUST_LOG`).
    pub function_environment: Vec<(String, String)>,
    /// `ctx.env` variables over the template's `EnvironmentVariables` (e.g.
    /// `QUOTA_MAX_TURNS_IN_FLIGHT`), as a deployment's parameters would set them.
    pub api_environment: Vec<(String, String)>,
    /// The model ids `sendPrompt` accepts.
    pub allowed_models: Vec<String>,
    /// Lambda's retries of a failed asynchronous invocation (the template's
    /// `MaximumRetryAttempts`).
    pub max_retry_attempts: u32,
    /// The wait before the first retry; the n-th waits n times as long.
    pub retry_delay: Duration,
    /// Where the API definition (`template.yaml` and the APPSYNC_JS resolver
    /// files it names) is read from; `None` uses the copy of `infra/`
    /// compiled into the devstack.
    pub infra_dir: Option<PathBuf>,
    /// Also serve everything over HTTPS / `wss://` with this certificate, on
    /// [`Self::tls_bind`]; the web page is served there too.
    pub tls: Option<tls::DevCertificate>,
    /// Where the HTTPS listener listens; port 0 picks a free one.
    pub tls_bind: SocketAddr,
    /// The built web chat (`client-examples/web/dist`), served at `/` of the
    /// HTTPS listener.
    pub web_dir: Option<PathBuf>,
    /// The local DynamoDB to start beside the stand-ins (by default in
    /// memory; `None`: none, and `sendPrompt`, which keeps quotas in it,
    /// fails). Its
    /// endpoint and the template's table name reach the function as
    /// `AWS_ENDPOINT_URL_DYNAMODB` and `CONVERSATIONS_TABLE`, and the API's
    /// DynamoDB data sources (the conversations API) run against it. A server
    /// that cannot start is a warning, not a failure: the stack runs without
    /// it, and those fields fail.
    pub dynamodb: Option<dynamodb::DynamoDbConfig>,
    /// The function URL function (the root crate's `function-url`, or
    /// `devstack worker-url`), served behind a function URL on its own port
    /// ([`Self::function_url_bind`]); `None`: no function URL.
    pub url_function: Option<FunctionCommand>,
    /// Where the function URL listens; port 0 picks a free one.
    pub function_url_bind: SocketAddr,
    /// The function URL's CORS configuration; with TLS on, the web page's
    /// origin is allowed besides these.
    pub function_url_cors: Cors,
    /// The functions behind an API Gateway WebSocket API on its own port
    /// ([`Self::websocket_bind`]); `None`: no WebSocket API.
    pub websocket_functions: Option<WebSocketFunctions>,
    /// Where the WebSocket API listens; port 0 picks a free one.
    pub websocket_bind: SocketAddr,
    /// The WebSocket API's settings (stage, identity source, time limits).
    pub websocket: apigateway::WebSocketApiConfig,
}

impl StackConfig {
    /// Defaults: 127.0.0.1:4000, the `smollm2` model, and the function as
    /// the built-in `infra/template.yaml` configures it.
    pub fn new(function: FunctionCommand) -> Self {
        // The built-in template is checked by a test, so its settings always
        // apply; Lambda's own defaults stand in should it ever not parse.
        let settings = embedded_function_settings().unwrap_or_default();
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 4000)),
            function,
            concurrency: settings.reserved_concurrency.unwrap_or(DEFAULT_CONCURRENCY),
            default_model: "smollm2".into(),
            function_timeout: settings.timeout,
            function_memory_mb: settings.memory_size_mb,
            template_environment: settings.environment,
            max_event_age: settings.max_event_age,
            idle_timeout: Duration::from_secs(300),
            freeze: true,
            cognito_key: None,
            bedrock: BedrockConfig::default(),
            appsync: AppSyncConfig::default(),
            function_environment: Vec::new(),
            api_environment: Vec::new(),
            allowed_models: vec!["smollm2".into(), "scripted".into()],
            max_retry_attempts: settings.max_retry_attempts,
            retry_delay: Duration::from_secs(1),
            infra_dir: None,
            tls: None,
            tls_bind: SocketAddr::from(([127, 0, 0, 1], 4443)),
            web_dir: None,
            dynamodb: Some(dynamodb::DynamoDbConfig::in_memory(state_dir())),
            url_function: None,
            function_url_bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            function_url_cors: default_cors(),
            websocket_functions: None,
            websocket_bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            websocket: apigateway::WebSocketApiConfig::default(),
        }
    }

    /// Runs the function as `settings` (read from a template) configure it.
    pub fn apply_function_settings(&mut self, settings: &lambda::settings::FunctionSettings) {
        self.concurrency = settings.reserved_concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        self.function_timeout = settings.timeout;
        self.function_memory_mb = settings.memory_size_mb;
        self.template_environment = settings.environment.clone();
        self.max_retry_attempts = settings.max_retry_attempts;
        self.max_event_age = settings.max_event_age;
    }
}

/// Execution environments when the template reserves no concurrency: turns
/// mostly wait on the model, so a 2-core machine runs ten at once with room
/// to spare (`devstack bench --users` measures it).
pub const DEFAULT_CONCURRENCY: usize = 10;

/// The function's settings in the built-in `infra/template.yaml`.
fn embedded_function_settings() -> Option<lambda::settings::FunctionSettings> {
    use appsync::js::template::{EMBEDDED_INFRA, TEMPLATE_FILE};
    let (_, template) = EMBEDDED_INFRA.iter().find(|(p, _)| *p == TEMPLATE_FILE)?;
    match lambda::settings::function_settings(template) {
        Ok(settings) => Some(settings),
        Err(error) => {
            tracing::warn!(%error, "the built-in template's function settings do not apply");
            None
        }
    }
}

/// A running stack.
pub struct Stack {
    /// Where the HTTP listener (every stand-in) listens.
    pub addr: SocketAddr,
    /// The HTTPS listener's address, when [`StackConfig::tls`] was given.
    pub tls_addr: Option<SocketAddr>,
    /// Its certificate (clients trust `ca_pem`).
    pub certificate: Option<tls::DevCertificate>,
    /// The dev user pool (mint tokens with [`Stack::token`]).
    pub user_pool: UserPool,
    /// The GraphQL API (its subscriptions, publish faults and counters).
    pub appsync: Arc<AppSync>,
    /// The Lambda service running the resolver.
    pub lambda: LambdaService,
    /// The Bedrock stand-in (its fault switch and counters).
    pub bedrock: BedrockState,
    /// The local DynamoDB, when [`StackConfig::dynamodb`] asked for one and it
    /// started.
    pub dynamodb: Option<dynamodb::LocalDynamoDb>,
    /// The function URL and its function, when [`StackConfig::url_function`]
    /// was given.
    pub function_url: Option<FunctionUrlServer>,
    /// The WebSocket API and its functions, when
    /// [`StackConfig::websocket_functions`] was given.
    pub websocket: Option<WebSocketApiServer>,
    server: JoinHandle<()>,
    tls_server: Option<axum_server::Handle<SocketAddr>>,
}

impl Stack {
    /// Binds, serves every stand-in, and starts the Lambda workers.
    ///
    /// # Errors
    ///
    /// A port that cannot be bound, a Cognito key that cannot be made, a
    /// schema or API definition that does not load, a certificate that is
    /// refused, or a worker process that cannot be spawned.
    pub async fn start(config: StackConfig) -> anyhow::Result<Stack> {
        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("could not listen on {}", config.bind))?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}");
        let key = match config.cognito_key {
            Some(k) => k,
            None => cognito::new_key()?,
        };
        let user_pool = UserPool::new(&base_url, DEV_USER_POOL_ID, DEV_CLIENT_ID, &key);
        let iam_users = dev_iam_users();
        let dynamodb = start_dynamodb(config.dynamodb).await;
        // The template's variables, but the table only where there is one.
        let template_environment: Vec<(String, String)> = config
            .template_environment
            .into_iter()
            .filter(|(name, _)| dynamodb.is_some() || name != "CONVERSATIONS_TABLE")
            .collect();
        // The config's own variables come last, so they win (a test points
        // the function at a dead endpoint, a bench turns its table off).
        let mut extra_environment = Vec::new();
        if let Some(local) = &dynamodb {
            extra_environment.extend([
                (
                    "AWS_ENDPOINT_URL_DYNAMODB".to_owned(),
                    local.endpoint().to_owned(),
                ),
                (
                    "CONVERSATIONS_TABLE".to_owned(),
                    CONVERSATIONS_TABLE.to_owned(),
                ),
            ]);
        }
        extra_environment.extend(config.function_environment);
        // What the transports' functions share: the relay's environment,
        // the models a prompt may name, and the quota limits the API's
        // pipeline reads from its environment.
        let transport = |mut environment: Vec<(String, String)>| {
            environment.splice(0..0, extra_environment.iter().cloned());
            environment.push((
                "ALLOWED_MODEL_IDS".to_owned(),
                config.allowed_models.join(","),
            ));
            environment.extend(
                config
                    .api_environment
                    .iter()
                    .filter(|(name, _)| name.starts_with("QUOTA_") || name == "TURN_SLOT_SECONDS")
                    .cloned(),
            );
            function_environment(
                template_environment.clone(),
                &base_url,
                &config.default_model,
                environment,
            )
        };
        let cognito_environment = vec![
            ("COGNITO_ISSUER".to_owned(), user_pool.issuer().to_owned()),
            ("COGNITO_APP_CLIENT_ID".to_owned(), DEV_CLIENT_ID.to_owned()),
        ];
        let transport_function = |name: &str, command: FunctionCommand, environment| {
            LambdaService::new(LambdaConfig {
                concurrency: config.concurrency,
                timeout: config.function_timeout,
                memory_size_mb: config.function_memory_mb,
                environment,
                idle_timeout: config.idle_timeout,
                freeze: config.freeze,
                max_retry_attempts: config.max_retry_attempts,
                retry_delay: config.retry_delay,
                max_event_age: config.max_event_age,
                ..LambdaConfig::new(name, command)
            })
        };
        let url_lambda = match config.url_function {
            Some(command) => {
                let environment = transport(cognito_environment.clone());
                let listener = TcpListener::bind(config.function_url_bind)
                    .await
                    .with_context(|| format!("could not listen on {}", config.function_url_bind))?;
                let service = transport_function(URL_FUNCTION_NAME, command, environment);
                Some((listener, service))
            }
            None => None,
        };
        let transport_urls = web::TransportUrls {
            function_url: match &url_lambda {
                Some((listener, _)) => Some(format!("http://{}/", listener.local_addr()?)),
                None => None,
            },
            websocket_url: None,
        };
        let websocket = match config.websocket_functions {
            Some(functions) => {
                let listener = TcpListener::bind(config.websocket_bind)
                    .await
                    .with_context(|| format!("could not listen on {}", config.websocket_bind))?;
                let endpoint =
                    apigateway::connections_url(listener.local_addr()?, &config.websocket.stage);
                let environment = transport(vec![(
                    "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI".to_owned(),
                    endpoint,
                )]);
                let function =
                    transport_function(WEBSOCKET_FUNCTION_NAME, functions.function, environment);
                let environment = transport(cognito_environment.clone());
                let authorizer =
                    transport_function(AUTHORIZER_FUNCTION_NAME, functions.authorizer, environment);
                let routes = apigateway::WebSocketRoutes {
                    authorizer,
                    function,
                    sync_routes: vec!["cancelTurn".into()],
                    async_routes: vec!["sendPrompt".into()],
                };
                let url = format!("ws://{}/{}", listener.local_addr()?, config.websocket.stage);
                let api =
                    apigateway::WebSocketApi::new(config.websocket, routes, iam_users.clone());
                Some((listener, api, url))
            }
            None => None,
        };
        let lambda = LambdaService::new(LambdaConfig {
            concurrency: config.concurrency,
            timeout: config.function_timeout,
            memory_size_mb: config.function_memory_mb,
            environment: function_environment(
                template_environment,
                &base_url,
                &config.default_model,
                extra_environment,
            ),
            max_retry_attempts: config.max_retry_attempts,
            retry_delay: config.retry_delay,
            max_event_age: config.max_event_age,
            idle_timeout: config.idle_timeout,
            freeze: config.freeze,
            ..LambdaConfig::new(FUNCTION_NAME, config.function)
        });
        let bedrock = BedrockState::new(config.bedrock);
        let schema = Schema::parse(SCHEMA)?;
        let auth = Authenticator {
            user_pool: user_pool.clone(),
            iam_users: iam_users.clone(),
            api_keys: vec![DEV_API_KEY.into()],
            default_mode: AuthMode::CognitoUserPools,
        };
        let api = match &config.infra_dir {
            Some(dir) => ApiDefinition::load(dir)
                .with_context(|| format!("could not load the API from {}", dir.display()))?,
            None => ApiDefinition::embedded().context("could not load the compiled-in API")?,
        };
        // ctx.env: the devstack's own model list replaces the template's
        // default, and the config's variables go over both.
        let env = std::iter::once((
            "ALLOWED_MODEL_IDS".to_owned(),
            config.allowed_models.join(","),
        ))
        .chain(config.api_environment.clone());
        let mut resolvers = JsResolvers::new(api, lambda.clone(), env);
        // The AMAZON_DYNAMODB data sources (the conversations API) read and
        // delete in the local DynamoDB, with its client (the devstack's region
        // and static dev credentials).
        if let Some(local) = &dynamodb {
            resolvers = resolvers.with_dynamodb(DynamoDbSource::new(local.client().clone()));
        }
        let resolvers = Box::new(resolvers);
        let appsync = Arc::new(AppSync::new(schema, auth, resolvers, config.appsync));
        let bedrock_routes = bedrock::router(bedrock.clone()).layer(
            axum::middleware::from_fn_with_state(iam_users, verify_bedrock_signature),
        );
        let jwks_path = format!("/{DEV_USER_POOL_ID}/.well-known/jwks.json");
        let pool = user_pool.clone();
        let app = Router::new()
            .merge(appsync.clone().router())
            .merge(bedrock_routes)
            .route(
                &jwks_path,
                get(move || async move { cognito::jwks_response(&pool) }),
            );
        let (tls_addr, tls_server) = match &config.tls {
            Some(certificate) => {
                let transports = web::TransportUrls {
                    websocket_url: websocket.as_ref().map(|(_, _, url)| url.clone()),
                    ..transport_urls
                };
                let web = web::router(user_pool.clone(), config.web_dir.clone(), transports);
                let (addr, handle) =
                    serve_tls(config.tls_bind, certificate, app.clone().merge(web)).await?;
                (Some(addr), Some(handle))
            }
            None => (None, None),
        };
        let listener = listener.tap_io(appsync::set_no_delay);
        let server = tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            if let Err(e) = axum::serve(listener, service).await {
                tracing::error!(error = %e, "devstack server stopped");
            }
        });
        lambda.start().await;
        let function_url = match url_lambda {
            Some((listener, service)) => {
                let mut cors = config.function_url_cors;
                if let Some(addr) = tls_addr {
                    cors.allow_origins.push(format!("https://{addr}"));
                    cors.allow_origins
                        .push(format!("https://localhost:{}", addr.port()));
                }
                Some(FunctionUrlServer::serve(listener, service, Some(cors)).await?)
            }
            None => None,
        };
        let websocket = match websocket {
            Some((listener, api, _)) => {
                api.routes().authorizer.start().await;
                api.routes().function.start().await;
                Some(WebSocketApiServer::serve(listener, api)?)
            }
            None => None,
        };
        Ok(Stack {
            addr,
            tls_addr,
            certificate: config.tls,
            tls_server,
            user_pool,
            appsync,
            lambda,
            bedrock,
            dynamodb,
            function_url,
            websocket,
            server,
        })
    }

    /// `http://HOST:PORT/graphql`, the AppSync GraphQL URL.
    pub fn graphql_url(&self) -> String {
        format!("http://{}/graphql", self.addr)
    }

    /// `ws://HOST:PORT/graphql/realtime`, the AppSync real-time URL.
    pub fn realtime_url(&self) -> String {
        format!("ws://{}/graphql/realtime", self.addr)
    }

    /// `http://HOST:PORT/`, the function URL, when the stack has one.
    pub fn function_url(&self) -> Option<String> {
        self.function_url.as_ref().map(FunctionUrlServer::url)
    }

    /// `ws://HOST:PORT/{stage}`, the WebSocket API, when the stack has one.
    pub fn websocket_url(&self) -> Option<String> {
        self.websocket.as_ref().map(WebSocketApiServer::url)
    }

    /// `https://HOST:PORT/`, the web page's origin, when TLS is on.
    pub fn https_url(&self) -> Option<String> {
        self.tls_addr.map(|a| format!("https://{a}/"))
    }

    /// `https://HOST:PORT/graphql`, the GraphQL URL over TLS, when TLS is on
    /// (Amplify derives `wss://HOST:PORT/graphql/realtime` from it).
    pub fn https_graphql_url(&self) -> Option<String> {
        self.tls_addr.map(|a| format!("https://{a}/graphql"))
    }

    /// Opens the real-time socket as a signed-in user (`token`: a user pool
    /// ID token), the way Amplify does (the `header-` subprotocol).
    ///
    /// # Errors
    ///
    /// The real-time client's error when the socket cannot be opened or the
    /// connection is refused.
    pub async fn connect_as(&self, token: &str) -> Result<RealtimeClient, RealtimeError> {
        RealtimeClient::connect(
            &self.realtime_url(),
            &self.graphql_url(),
            RealtimeAuth::Token(token.to_owned()),
            HeaderTransport::Subprotocol,
        )
        .await
    }

    /// The messages of `token`'s user's conversation `conversation_id` once
    /// one of its answers is stored, read through the API (`listMessages`)
    /// every 100 ms; `None` when none is within `within`. A function URL's
    /// body ends with the terminal event and its answer is written just
    /// after, so a client that wants the record waits for it.
    pub async fn stored_answer(
        &self,
        token: &str,
        conversation_id: &str,
        within: Duration,
    ) -> Option<Vec<appsync_client::Message>> {
        let http = reqwest::Client::new();
        let graphql_url = self.graphql_url();
        let stored = async {
            loop {
                let listed =
                    appsync_client::list_messages(&http, &graphql_url, token, conversation_id)
                        .await;
                if let Ok(messages) = listed
                    && messages.iter().any(appsync_client::Message::is_answer)
                {
                    return messages;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::time::timeout(within, stored).await.ok()
    }

    /// A fresh ID token for a dev user.
    pub fn token(&self, username: &str) -> String {
        self.user_pool
            .mint_id_token(username, &[], cognito::now_secs())
    }

    /// Stops the workers, the server and the local DynamoDB (whose data
    /// stays on disk).
    pub async fn shutdown(self) {
        self.lambda.stop().await;
        if let Some(url) = self.function_url {
            url.shutdown().await;
        }
        if let Some(websocket) = self.websocket {
            websocket.shutdown().await;
        }
        if let Some(dynamodb) = self.dynamodb {
            dynamodb.shutdown().await;
        }
        self.server.abort();
        if let Some(handle) = self.tls_server {
            handle.shutdown();
        }
    }
}

/// Serves `app` over TLS on `bind`; returns the bound address and the handle
/// that stops it.
async fn serve_tls(
    bind: SocketAddr,
    certificate: &tls::DevCertificate,
    app: Router,
) -> anyhow::Result<(SocketAddr, axum_server::Handle<SocketAddr>)> {
    let rustls = axum_server::tls_rustls::RustlsConfig::from_pem(
        certificate.cert_pem.clone().into_bytes(),
        certificate.key_pem.clone().into_bytes(),
    )
    .await
    .context("the devstack certificate was refused")?;
    let listener =
        std::net::TcpListener::bind(bind).with_context(|| format!("could not listen on {bind}"))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(listener, rustls)?.handle(handle.clone());
    tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = server.serve(service).await {
            tracing::error!(error = %e, "devstack HTTPS server stopped");
        }
    });
    Ok((addr, handle))
}

/// The table of conversations in `infra/template.yaml` (its logical id, which
/// the devstack uses as the table's name).
pub const CONVERSATIONS_TABLE: &str = "ConversationsTable";

/// Starts the local DynamoDB that `config` asks for; a failure is logged and
/// the stack goes on without it, as the resolver goes on without its store.
async fn start_dynamodb(
    config: Option<dynamodb::DynamoDbConfig>,
) -> Option<dynamodb::LocalDynamoDb> {
    match dynamodb::LocalDynamoDb::start(config?).await {
        Ok(local) => Some(local),
        Err(error) => {
            tracing::warn!(%error, "no local DynamoDB; running without one");
            None
        }
    }
}

/// The function URL's CORS configuration unless a stack says otherwise:
/// `POST` with `authorization` and `content-type` from the origins the stack
/// adds, `content-type` exposed, preflights cached 5 minutes.
fn default_cors() -> Cors {
    Cors {
        allow_origins: Vec::new(),
        allow_methods: vec!["POST".into()],
        allow_headers: vec!["authorization".into(), "content-type".into()],
        expose_headers: vec!["content-type".into()],
        allow_credentials: false,
        max_age: 300,
    }
}

/// The static dev IAM user every signed request is checked against.
pub fn dev_iam_users() -> IamUsers {
    IamUsers::single(
        DEV_ACCESS_KEY_ID,
        IamUser {
            secret_access_key: DEV_SECRET_ACCESS_KEY.into(),
            session_token: None,
            account_id: DEV_ACCOUNT_ID.into(),
            user_arn: format!("arn:aws:iam::{DEV_ACCOUNT_ID}:user/devstack"),
        },
    )
}

/// What the resolver function sees, as its Lambda configuration would give
/// it: the template's variables, then the devstack's endpoints and
/// credentials, then `extra` (a later value of a name wins).
fn function_environment(
    template: Vec<(String, String)>,
    base_url: &str,
    default_model: &str,
    extra: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let mut env = template;
    env.extend(
        [
            ("APPSYNC_GRAPHQL_URL", format!("{base_url}/graphql")),
            ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", base_url.to_owned()),
            ("BEDROCK_MODEL_ID", default_model.to_owned()),
            ("AWS_REGION", DEV_REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", DEV_ACCESS_KEY_ID.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", DEV_SECRET_ACCESS_KEY.to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("RUST_LOG", "info".to_owned()),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v)),
    );
    env.extend(extra);
    env
}

/// Bedrock checks SigV4 (signing name `bedrock`) before anything else.
async fn verify_bedrock_signature(
    State(users): State<IamUsers>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request too large").into_response();
    };
    let signed = SignedRequest::of(&parts, &bytes);
    if let Err(e) = sigv4_verify::verify(&signed, "bedrock", &users, SystemTime::now()) {
        let mut response = (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"message": e.to_string()})),
        )
            .into_response();
        if let Ok(v) = e.error_type().parse() {
            response.headers_mut().insert("x-amzn-errortype", v);
        }
        return response;
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Where the devstack keeps its state (the pool key, model weights, the local
/// DynamoDB's data and dynalite):
/// `$DEVSTACK_CACHE_DIR`, else `$XDG_CACHE_HOME/bedrock-appsync-stream`, else
/// `$HOME/.cache/bedrock-appsync-stream`.
pub fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DEVSTACK_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("bedrock-appsync-stream")
}
