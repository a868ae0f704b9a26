//! Place in the data path: client --HTTP--> **function URL** --Invoke
//! (response stream)--> Lambda -> execution environment -> the function URL
//! function -> its streamed response -> back out here to the client.
//!
//! A Lambda function URL with `AuthType: NONE` and `InvokeMode:
//! RESPONSE_STREAM`
//! (<https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html>,
//! <https://docs.aws.amazon.com/lambda/latest/dg/configuration-response-streaming.html>),
//! on its own port, so that every path is the function's as on
//! `https://<url-id>.lambda-url.<region>.on.aws/`:
//! - the request becomes a payload format 2.0 event: header names in lower
//!   case, repeated headers joined with commas, cookies in `cookies`, the
//!   body as text for text types and base64 otherwise; at most 6 MB;
//! - the function's response starts with its HTTP integration prelude (JSON
//!   status, headers and cookies, then 8 NUL bytes), which becomes the
//!   response's status and headers; the rest streams as the body, chunk by
//!   chunk, up to 200 MB;
//! - a function error before the response started is `502` (throttling
//!   `429`); an error after it cuts the response short;
//! - CORS is the URL's: a preflight (`OPTIONS` with
//!   `Access-Control-Request-Method`) is answered without invoking the
//!   function, and the configured headers go on every response from an
//!   allowed origin, over any the function set
//!   (<https://docs.aws.amazon.com/lambda/latest/dg/urls-configuration.html#urls-cors>);
//! - a client that disconnects drops the response; the function is not told
//!   and streams on to its end, as on AWS (see `runtime_api`).

use std::net::SocketAddr;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{LambdaService, StreamFrame, StreamedResponse};

/// The largest request a function URL takes (the synchronous invocation
/// payload limit), in bytes.
pub const MAX_REQUEST_BYTES: usize = 6 * 1024 * 1024;
/// The largest streamed response, in bytes.
pub const MAX_STREAMED_RESPONSE_BYTES: u64 = 200 * 1024 * 1024;
/// The content type of a response that starts with the HTTP prelude.
const HTTP_INTEGRATION: &str = "application/vnd.awslambda.http-integration-response";
/// What ends the prelude.
const PRELUDE_DELIMITER: [u8; 8] = [0; 8];
/// The longest prelude read before the response is taken for a bad one.
const MAX_PRELUDE_BYTES: usize = 64 * 1024;

/// A function URL's CORS configuration (`Cors` of `AWS::Lambda::Url`).
#[derive(Debug, Clone, Default)]
pub struct Cors {
    /// `AllowOrigins`: exact origins, or `*`.
    pub allow_origins: Vec<String>,
    /// `AllowMethods`, e.g. `POST`, or `*`.
    pub allow_methods: Vec<String>,
    /// `AllowHeaders`, e.g. `authorization`, `content-type`.
    pub allow_headers: Vec<String>,
    /// `ExposeHeaders`, e.g. `content-type`.
    pub expose_headers: Vec<String>,
    /// `AllowCredentials`.
    pub allow_credentials: bool,
    /// `MaxAge`, in seconds (0: browsers do not cache preflights).
    pub max_age: u64,
}

impl Cors {
    fn allows(&self, origin: &str) -> bool {
        self.allow_origins.iter().any(|o| o == "*" || o == origin)
    }
}

/// A function URL in front of one function.
#[derive(Clone)]
pub struct FunctionUrl {
    service: LambdaService,
    cors: Option<Cors>,
}

impl FunctionUrl {
    /// The URL of `service`'s function, with `cors` when configured.
    pub fn new(service: LambdaService, cors: Option<Cors>) -> Self {
        Self { service, cors }
    }

    /// Every path and method, as the URL's.
    pub fn router(self) -> Router {
        Router::new().fallback(serve).with_state(self)
    }
}

async fn serve(
    State(url): State<FunctionUrl>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let origin = request
        .headers()
        .get(axum::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut response = if is_preflight(&request) {
        StatusCode::OK.into_response()
    } else {
        invoke(&url, peer, request).await
    };
    if let (Some(cors), Some(origin)) = (&url.cors, origin) {
        apply_cors(cors, &origin, response.headers_mut());
    }
    response
}

fn is_preflight(request: &Request) -> bool {
    request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(axum::http::header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The URL's CORS headers for `origin`, over the function's own; none for an
/// origin not allowed.
fn apply_cors(cors: &Cors, origin: &str, headers: &mut HeaderMap) {
    use axum::http::header;
    for name in [
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::ACCESS_CONTROL_ALLOW_METHODS,
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        header::ACCESS_CONTROL_MAX_AGE,
    ] {
        headers.remove(name);
    }
    if !cors.allows(origin) {
        return;
    }
    let mut set = |name: HeaderName, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.to_owned());
    set(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        cors.allow_methods.join(","),
    );
    set(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        cors.allow_headers.join(","),
    );
    set(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        cors.expose_headers.join(","),
    );
    set(header::ACCESS_CONTROL_MAX_AGE, cors.max_age.to_string());
    if cors.allow_credentials {
        set(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true".to_owned());
    }
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// Invokes the function with the request's event and answers with its
/// streamed response.
async fn invoke(url: &FunctionUrl, peer: SocketAddr, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_REQUEST_BYTES).await else {
        return message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    };
    let event = event(&parts, &body, peer);
    match url.service.invoke_with_response_stream(event).await {
        Ok(streamed) => respond(streamed).await,
        Err(error) if error["errorType"] == "TooManyRequestsException" => {
            message(StatusCode::TOO_MANY_REQUESTS, "Rate Exceeded.")
        }
        Err(_) => message(StatusCode::BAD_GATEWAY, "Internal Server Error"),
    }
}

/// `{"Message": text}` with `status`, as the URL's own errors.
fn message(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({"Message": text}))).into_response()
}

/// The payload format 2.0 event of a request.
fn event(parts: &axum::http::request::Parts, body: &Bytes, peer: SocketAddr) -> Value {
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == axum::http::header::COOKIE {
            cookies.extend(value.split(';').map(|c| c.trim().to_owned()));
            continue;
        }
        match headers.get_mut(name.as_str()) {
            Some(Value::String(joined)) => {
                joined.push(',');
                joined.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    let query = parts.uri.query().unwrap_or_default();
    let text = is_text(parts.headers.get(axum::http::header::CONTENT_TYPE));
    let (body, encoded) = match std::str::from_utf8(body) {
        _ if body.is_empty() => (Value::Null, false),
        Ok(text_body) if text => (Value::String(text_body.to_owned()), false),
        _ => (
            Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
            true,
        ),
    };
    let now = chrono::Utc::now();
    let host = headers
        .get("host")
        .and_then(Value::as_str)
        .unwrap_or("localhost")
        .to_owned();
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.uri.path(),
        "rawQueryString": query,
        "cookies": if cookies.is_empty() { Value::Null } else { json!(cookies) },
        "headers": headers,
        "queryStringParameters": query_parameters(query),
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "devstack",
            "domainName": host,
            "domainPrefix": "devstack",
            "http": {
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "protocol": format!("{:?}", parts.version),
                "sourceIp": peer.ip().to_string(),
                "userAgent": parts.headers.get(axum::http::header::USER_AGENT)
                    .and_then(|v| v.to_str().ok()).unwrap_or_default(),
            },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "body": body,
        "isBase64Encoded": encoded,
    })
}

/// Query parameters, repeated names joined with commas; `null` when none.
fn query_parameters(query: &str) -> Value {
    if query.is_empty() {
        return Value::Null;
    }
    let mut parameters = Map::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match parameters.get_mut(name.as_ref()) {
            Some(Value::String(joined)) => {
                joined.push(',');
                joined.push_str(&value);
            }
            _ => {
                parameters.insert(name.into_owned(), Value::String(value.into_owned()));
            }
        }
    }
    Value::Object(parameters)
}

/// Bodies Lambda passes as text: `text/*` and JSON, XML and JavaScript.
fn is_text(content_type: Option<&HeaderValue>) -> bool {
    let Some(content_type) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || essence.ends_with("/json")
        || essence.ends_with("+json")
        || essence.ends_with("/xml")
        || essence.ends_with("/javascript")
}

/// The prelude of a function URL response.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Prelude {
    #[serde(default)]
    status_code: Option<u16>,
    #[serde(default)]
    headers: Map<String, Value>,
    #[serde(default)]
    cookies: Vec<String>,
}

/// The HTTP response of a streamed invocation: its prelude's status and
/// headers, then the rest of its frames as the body.
async fn respond(mut streamed: StreamedResponse) -> Response {
    if streamed.content_type.as_deref() != Some(HTTP_INTEGRATION) {
        return streamed_body(Response::new(Body::empty()), Vec::new(), streamed);
    }
    let mut read = Vec::new();
    let split = loop {
        if let Some(at) = read
            .windows(PRELUDE_DELIMITER.len())
            .position(|w| w == PRELUDE_DELIMITER)
        {
            break at;
        }
        if read.len() > MAX_PRELUDE_BYTES {
            return message(StatusCode::BAD_GATEWAY, "Internal Server Error");
        }
        match streamed.frames.recv().await {
            Some(StreamFrame::Data(data)) => read.extend_from_slice(&data),
            _ => return message(StatusCode::BAD_GATEWAY, "Internal Server Error"),
        }
    };
    let Ok(prelude) = serde_json::from_slice::<Prelude>(&read[..split]) else {
        return message(StatusCode::BAD_GATEWAY, "Internal Server Error");
    };
    let rest = read[split + PRELUDE_DELIMITER.len()..].to_vec();
    let mut response = Response::new(Body::empty());
    *response.status_mut() = prelude
        .status_code
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    for (name, value) in &prelude.headers {
        let value = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned);
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::from_str(&value),
        ) {
            headers.append(name, value);
        }
    }
    for cookie in &prelude.cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            headers.append(axum::http::header::SET_COOKIE, value);
        }
    }
    streamed_body(response, rest, streamed)
}

/// `response` with a body of `first` and then `streamed`'s frames, cut short
/// (the connection aborted) at a mid-stream error or past the size limit.
fn streamed_body(mut response: Response, first: Vec<u8>, streamed: StreamedResponse) -> Response {
    let frames = tokio_stream_of(streamed.frames);
    let mut sent = 0u64;
    let body =
        futures_util::stream::iter((!first.is_empty()).then(|| StreamFrame::Data(first.into())))
            .chain(frames)
            .map(move |frame| match frame {
                StreamFrame::Data(data) => {
                    sent += data.len() as u64;
                    if sent > MAX_STREAMED_RESPONSE_BYTES {
                        Err(std::io::Error::other(
                            "the response passed Lambda's streamed response limit",
                        ))
                    } else {
                        Ok(data)
                    }
                }
                StreamFrame::Error { error_type, .. } => Err(std::io::Error::other(format!(
                    "the function failed mid-stream ({error_type})"
                ))),
            });
    *response.body_mut() = Body::from_stream(body);
    response
}

/// The frames of `receiver` as a stream.
fn tokio_stream_of(
    mut receiver: tokio::sync::mpsc::Receiver<StreamFrame>,
) -> impl futures_util::Stream<Item = StreamFrame> {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// A function URL served on its own port.
pub struct FunctionUrlServer {
    /// Where it listens: the URL is `http://{addr}/`.
    pub addr: SocketAddr,
    /// The function behind it.
    pub lambda: LambdaService,
    server: tokio::task::JoinHandle<()>,
}

impl FunctionUrlServer {
    /// Starts `service` and serves its URL on `bind` (port 0 picks one).
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn start(
        service: LambdaService,
        cors: Option<Cors>,
        bind: SocketAddr,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(bind).await?;
        Self::serve(listener, service, cors).await
    }

    /// Starts `service` and serves its URL on `listener` (bound first, so
    /// that others can name its address).
    ///
    /// # Errors
    /// The listener has no address.
    pub async fn serve(
        listener: tokio::net::TcpListener,
        service: LambdaService,
        cors: Option<Cors>,
    ) -> std::io::Result<Self> {
        use axum::serve::ListenerExt;
        let addr = listener.local_addr()?;
        let app = FunctionUrl::new(service.clone(), cors).router();
        let listener = listener.tap_io(crate::appsync::set_no_delay);
        let server = tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the function URL stopped");
            }
        });
        service.start().await;
        Ok(Self {
            addr,
            lambda: service,
            server,
        })
    }

    /// `http://HOST:PORT/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Stops the URL and the function's environments.
    pub async fn shutdown(self) {
        self.server.abort();
        self.lambda.stop().await;
    }
}

#[cfg(test)]
mod tests;
