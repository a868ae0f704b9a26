// Data path: resolver --ConverseStream--> [bedrock: model] --deltas--> coalescer ->
// publisher -> AppSync -> subscriber.
//
// The local stand-in for Amazon Bedrock Runtime: the HTTP endpoint, its errors,
// and the state (models, faults) behind it.

//! A stand-in for Amazon Bedrock Runtime's `ConverseStream`, close enough on
//! the wire that the real `aws-sdk-bedrockruntime` client talks to it unchanged.
//!
//! Follows <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html>:
//! `POST /model/{modelId}/converse-stream` with a restJson1 body, answered by
//! HTTP 200 `application/vnd.amazon.eventstream` frames (see [`eventstream`]),
//! or by an HTTP error with `x-amzn-ErrorType` and `{"message": ...}` (the
//! header is what the SDK reads the error code from).
//!
//! Models (the `{modelId}`): `scripted` ([`scripted`], deterministic text, no
//! weights) and `smollm2` ([`smollm2`], SmolLM2-135M-Instruct on the CPU).
//! Closing the response body stops the model. SigV4 is checked by the caller,
//! as a layer around [`router`].

pub mod eventstream;
pub mod model;
pub mod request;
pub mod scripted;
pub mod smollm2;
pub mod stream;
pub mod weights;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

pub use eventstream::{EVENT_STREAM_CONTENT_TYPE, StreamEvent, StreamException};
pub use model::{
    ChatMessage, Generation, GenerationRequest, ModelEvent, ModelId, Role, StopReason,
};
pub use request::RequestError;
pub use scripted::scripted_answer;
pub use smollm2::SmolLm2Error;
pub use stream::Fault;
pub use weights::WeightsError;

use model::ActiveCounter;
use smollm2::SmolLm2Slot;

/// The namespace suffix the service appends to `x-amzn-ErrorType` codes.
const ERROR_TYPE_SUFFIX: &str = ":http://internal.amazon.com/coral/com.amazon.bedrock/";

/// Settings of the Bedrock stand-in.
#[derive(Debug, Clone, PartialEq)]
pub struct BedrockConfig {
    /// Pace of the `scripted` model in words (tokens) per second; 0 = as fast
    /// as the client reads. Default 50.
    pub scripted_tokens_per_second: f64,
    /// Cache root for model weights (`models/` under it). `None`: the
    /// `$DEVSTACK_CACHE_DIR`, `$XDG_CACHE_HOME`, `$HOME/.cache` chain.
    pub cache_dir: Option<PathBuf>,
    /// Seed of `smollm2`'s sampler when a request sets a temperature > 0.
    pub seed: u64,
    /// A fault injected into every request from the start (see [`Fault`]).
    pub fault: Option<Fault>,
    /// `scripted`: pauses drawn from this range instead of the rate (seeded with `seed`).
    pub scripted_gaps: Option<(std::time::Duration, std::time::Duration)>,
    /// `scripted`: repeat the passage up to `maxTokens`.
    pub scripted_repeat: bool,
}

impl Default for BedrockConfig {
    fn default() -> Self {
        Self {
            scripted_tokens_per_second: 50.0,
            cache_dir: None,
            seed: 299_792_458,
            fault: None,
            scripted_gaps: None,
            scripted_repeat: false,
        }
    }
}

/// Why a ConverseStream call was refused before streaming. Each maps to the
/// HTTP status and error code the real service uses (see [`Self::code`]).
#[derive(Debug, thiserror::Error)]
pub enum BedrockError {
    /// Unknown `{modelId}` (404 `ResourceNotFoundException`).
    #[error(
        "Could not resolve the foundation model from model identifier {0:?}. This stand-in serves: scripted, smollm2."
    )]
    ModelNotFound(String),
    /// Bad request body (400 `ValidationException`).
    #[error(transparent)]
    Validation(#[from] RequestError),
    /// Prompt plus `maxTokens` exceed the context window (400 `ValidationException`).
    #[error("{0}")]
    InputTooLong(String),
    /// The SmolLM2 model could not be fetched or loaded (500 `InternalServerException`).
    #[error("model unavailable: {0}")]
    Model(#[from] SmolLm2Error),
    /// An injected [`Fault::Reject`].
    #[error("{message}")]
    Injected {
        /// HTTP status.
        status: u16,
        /// Error code.
        code: String,
        /// Message.
        message: String,
    },
}

impl BedrockError {
    /// HTTP status of the error response.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::ModelNotFound(_) => StatusCode::NOT_FOUND,
            Self::Validation(_) | Self::InputTooLong(_) => StatusCode::BAD_REQUEST,
            Self::Model(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Injected { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    /// Error code, as put (with the service's namespace suffix) in `x-amzn-ErrorType`.
    pub fn code(&self) -> &str {
        match self {
            Self::ModelNotFound(_) => "ResourceNotFoundException",
            Self::Validation(_) | Self::InputTooLong(_) => "ValidationException",
            Self::Model(_) => "InternalServerException",
            Self::Injected { code, .. } => code,
        }
    }
}

impl IntoResponse for BedrockError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "message": self.to_string() }).to_string();
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(value) = HeaderValue::from_str(&format!("{}{ERROR_TYPE_SUFFIX}", self.code())) {
            headers.insert("x-amzn-errortype", value);
        }
        response
    }
}

struct Inner {
    config: BedrockConfig,
    smollm2: SmolLm2Slot,
    active: ActiveCounter,
    fault: Mutex<Option<Fault>>,
    requests: AtomicU64,
    emissions: scripted::Emissions,
}

/// Shared state of the Bedrock stand-in: configuration, the lazily loaded
/// models, the fault switch. Cheap to clone.
#[derive(Clone)]
pub struct BedrockState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BedrockState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BedrockState")
            .field("config", &self.inner.config)
            .field("active_generations", &self.active_generations())
            .finish()
    }
}

impl BedrockState {
    /// A state with nothing loaded yet; `smollm2` loads on first use or [`Self::warm`].
    pub fn new(config: BedrockConfig) -> Self {
        let fault = Mutex::new(config.fault.clone());
        Self {
            inner: Arc::new(Inner {
                smollm2: SmolLm2Slot::new(config.cache_dir.clone()),
                active: ActiveCounter::default(),
                fault,
                requests: AtomicU64::new(0),
                emissions: scripted::Emissions::default(),
                config,
            }),
        }
    }

    /// When each delta of the latest `scripted` answer left the model, with the
    /// answer's length in bytes after it.
    pub fn last_emissions(&self) -> Vec<scripted::Emission> {
        self.inner
            .emissions
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// The configuration this state was built with.
    pub fn config(&self) -> &BedrockConfig {
        &self.inner.config
    }

    /// Loads `model_id` ahead of the first request (for `smollm2`: fetches the
    /// weights if needed, then loads them; a no-op for `scripted`).
    ///
    /// Errors: [`BedrockError::ModelNotFound`], [`BedrockError::Model`].
    pub async fn warm(&self, model_id: &str) -> Result<(), BedrockError> {
        match ModelId::parse(model_id) {
            None => Err(BedrockError::ModelNotFound(model_id.to_owned())),
            Some(ModelId::Scripted) => Ok(()),
            Some(ModelId::SmolLm2) => self
                .inner
                .smollm2
                .get()
                .await
                .map(|_| ())
                .map_err(Into::into),
        }
    }

    /// Generations whose model is still running (they end shortly after their
    /// response body is dropped).
    pub fn active_generations(&self) -> usize {
        self.inner.active.get()
    }

    /// ConverseStream requests received so far, refused ones included (e.g. to
    /// see that the SDK retried a throttled call).
    pub fn requests_served(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// Sets (or clears) the fault injected into every following request.
    pub fn set_fault(&self, fault: Option<Fault>) {
        *self.inner.fault.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }

    fn fault(&self) -> Option<Fault> {
        self.inner
            .fault
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Starts a generation with model `model_id`, without HTTP: the events a
    /// ConverseStream response would carry, before framing and stop sequences.
    ///
    /// Errors: unknown model, a prompt too long for the context, model loading.
    pub async fn generate(
        &self,
        model_id: &str,
        request: &GenerationRequest,
    ) -> Result<Generation, BedrockError> {
        let guard = self.inner.active.enter();
        match ModelId::parse(model_id) {
            None => Err(BedrockError::ModelNotFound(model_id.to_owned())),
            Some(ModelId::Scripted) => {
                let config = &self.inner.config;
                let options = scripted::ScriptedOptions {
                    tokens_per_second: config.scripted_tokens_per_second,
                    gaps: config.scripted_gaps,
                    repeat: config.scripted_repeat,
                    seed: config.seed,
                };
                Ok(scripted::start(
                    request,
                    &options,
                    self.inner.emissions.clone(),
                    guard,
                ))
            }
            Some(ModelId::SmolLm2) => {
                smollm2::start(&self.inner.smollm2, request, self.inner.config.seed, guard)
                    .await
                    .map_err(|e| match e {
                        smollm2::StartError::Model(e) => BedrockError::Model(e),
                        smollm2::StartError::TooLong(m) => BedrockError::InputTooLong(m),
                    })
            }
        }
    }

    async fn converse_stream(
        &self,
        model_id: &str,
        body: &[u8],
        started: Instant,
    ) -> Result<Response, BedrockError> {
        if ModelId::parse(model_id).is_none() {
            return Err(BedrockError::ModelNotFound(model_id.to_owned()));
        }
        let request = request::parse_converse_stream(body)?;
        let fault = self.fault();
        if let Some(Fault::Reject {
            status,
            code,
            message,
        }) = &fault
        {
            return Err(BedrockError::Injected {
                status: *status,
                code: code.clone(),
                message: message.clone(),
            });
        }
        let generation = self.generate(model_id, &request).await?;
        tracing::debug!(
            model = model_id,
            input_tokens = generation.input_tokens,
            "ConverseStream started"
        );
        let frames = stream::body(generation, started, request.stop_sequences, fault);
        let mut response = Response::new(Body::from_stream(frames));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(EVENT_STREAM_CONTENT_TYPE),
        );
        Ok(response)
    }
}

/// The Bedrock Runtime routes: `POST /model/{modelId}/converse-stream`.
///
/// `{modelId}` is percent-decoded (`...v1%3A0` is `...v1:0`). Every response
/// carries an `x-amzn-RequestId`.
pub fn router(state: BedrockState) -> Router {
    Router::new()
        .route("/model/{model_id}/converse-stream", post(converse_stream))
        .with_state(state)
}

async fn converse_stream(
    State(state): State<BedrockState>,
    Path(model_id): Path<String>,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    state.inner.requests.fetch_add(1, Ordering::Relaxed);
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut response = match state.converse_stream(&model_id, &body, started).await {
        Ok(response) => response,
        Err(error) => {
            tracing::info!(model = %model_id, code = error.code(), %error, "ConverseStream refused");
            error.into_response()
        }
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
    response
}

#[cfg(test)]
mod tests {
    //! End to end over real sockets: the router on 127.0.0.1:0, a minimal
    //! HTTP/1.1 client, frames decoded with the smithy decoder.

    use super::eventstream::{decode_frames, header_str};
    use super::*;
    use aws_smithy_eventstream::frame::MessageFrameDecoder;
    use bytes::BytesMut;
    use serde_json::Value;
    use std::net::SocketAddr;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    async fn serve(state: BedrockState) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, router(state)).await;
        });
        addr
    }

    async fn send(addr: SocketAddr, path: &str, body: &str) -> TcpStream {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        stream.write_all(body.as_bytes()).await.expect("write");
        stream
    }

    struct HttpResponse {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl HttpResponse {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    fn dechunk(mut data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
                panic!("truncated chunked body");
            };
            let size_hex = std::str::from_utf8(&data[..eol]).expect("chunk size");
            let size = usize::from_str_radix(size_hex.trim(), 16).expect("hex size");
            data = &data[eol + 2..];
            if size == 0 {
                return out;
            }
            out.extend_from_slice(&data[..size]);
            data = &data[size + 2..];
        }
    }

    async fn post(addr: SocketAddr, path: &str, body: &str) -> HttpResponse {
        let mut stream = send(addr, path, body).await;
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(120), stream.read_to_end(&mut raw))
            .await
            .expect("response in time")
            .expect("read");
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("end of head");
        let head = std::str::from_utf8(&raw[..split]).expect("utf8 head");
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .expect("status");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let rest = &raw[split + 4..];
        let chunked = headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
        });
        let body = if chunked {
            dechunk(rest)
        } else {
            rest.to_vec()
        };
        HttpResponse {
            status,
            headers,
            body,
        }
    }

    fn frames(body: &[u8]) -> Vec<(String, String, Value)> {
        let mut decoder = MessageFrameDecoder::new();
        let mut buf = BytesMut::from(body);
        let messages = decode_frames(&mut decoder, &mut buf).expect("frames decode");
        assert!(buf.is_empty(), "no trailing partial frame");
        messages
            .iter()
            .map(|m| {
                let kind = header_str(m, ":message-type").unwrap_or("?").to_string();
                let name = header_str(m, ":event-type")
                    .or_else(|| header_str(m, ":exception-type"))
                    .unwrap_or("?")
                    .to_string();
                (
                    kind,
                    name,
                    serde_json::from_slice(m.payload()).expect("json"),
                )
            })
            .collect()
    }

    fn text_of(frames: &[(String, String, Value)]) -> String {
        frames
            .iter()
            .filter(|(_, n, _)| n == "contentBlockDelta")
            .filter_map(|(_, _, v)| v["delta"]["text"].as_str())
            .collect()
    }

    fn body_for(prompt: &str, max_tokens: u32) -> String {
        serde_json::json!({
            "messages": [{"role": "user", "content": [{"text": prompt}]}],
            "system": [{"text": "You are terse."}],
            "inferenceConfig": {"maxTokens": max_tokens, "temperature": 0.0},
            "additionalModelRequestFields": {"unknown": true}
        })
        .to_string()
    }

    fn fast_state() -> BedrockState {
        BedrockState::new(BedrockConfig {
            scripted_tokens_per_second: 0.0,
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn scripted_streams_over_http() {
        let addr = serve(fast_state()).await;
        let prompt = "How does streaming work?";
        let resp = post(
            addr,
            "/model/scripted/converse-stream",
            &body_for(prompt, 30),
        )
        .await;
        assert_eq!(resp.status, 200);
        assert_eq!(
            resp.header("content-type"),
            Some("application/vnd.amazon.eventstream")
        );
        assert!(resp.header("x-amzn-requestid").is_some());
        let frames = frames(&resp.body);
        assert!(frames.iter().all(|(k, _, _)| k == "event"));
        let names: Vec<&str> = frames.iter().map(|(_, n, _)| n.as_str()).collect();
        assert_eq!(names.first(), Some(&"messageStart"));
        assert_eq!(
            &names[names.len() - 3..],
            ["contentBlockStop", "messageStop", "metadata"]
        );
        assert!(frames.iter().all(|(_, _, v)| v["p"].is_string()));
        let (expected, tokens) = scripted_answer(prompt, Some(30));
        assert_eq!(text_of(&frames), expected);
        assert!(expected.starts_with("You asked: \"How does streaming work?\". "));
        let stop = &frames[frames.len() - 2].2;
        assert_eq!(stop["stopReason"], "max_tokens");
        let usage = &frames[frames.len() - 1].2["usage"];
        assert_eq!(usage["inputTokens"], 3 + 4);
        assert_eq!(usage["outputTokens"], tokens);
        assert_eq!(usage["totalTokens"], 7 + tokens);
    }

    #[tokio::test]
    async fn errors_carry_the_sdk_error_type() {
        let addr = serve(fast_state()).await;
        let resp = post(
            addr,
            "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream",
            &body_for("hi", 5),
        )
        .await;
        assert_eq!(resp.status, 404);
        assert_eq!(
            resp.header("x-amzn-errortype"),
            Some("ResourceNotFoundException:http://internal.amazon.com/coral/com.amazon.bedrock/")
        );
        let v: Value = serde_json::from_slice(&resp.body).expect("json");
        assert!(
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("anthropic.claude-3-haiku-20240307-v1:0")),
            "model id is percent-decoded: {v}"
        );

        for bad in [
            "{",
            r#"{"messages": []}"#,
            r#"{"messages": [{"role": "user", "content": [{"text": "x"}]}], "inferenceConfig": {"maxTokens": 0}}"#,
        ] {
            let resp = post(addr, "/model/scripted/converse-stream", bad).await;
            assert_eq!(resp.status, 400, "{bad}");
            assert_eq!(
                resp.header("x-amzn-errortype"),
                Some("ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/")
            );
            let v: Value = serde_json::from_slice(&resp.body).expect("json");
            assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }

    #[tokio::test]
    async fn faults_are_injected() {
        let state = fast_state();
        let addr = serve(state.clone()).await;
        state.set_fault(Some(Fault::Reject {
            status: 429,
            code: "ThrottlingException".into(),
            message: "Too many requests, please wait before trying again.".into(),
        }));
        let resp = post(addr, "/model/scripted/converse-stream", &body_for("hi", 5)).await;
        assert_eq!(resp.status, 429);
        assert!(
            resp.header("x-amzn-errortype")
                .is_some_and(|v| v.starts_with("ThrottlingException:"))
        );

        state.set_fault(Some(Fault::Exception {
            after_deltas: 2,
            exception: StreamException::ModelStreamError,
            message: "model fell over".into(),
        }));
        let resp = post(addr, "/model/scripted/converse-stream", &body_for("hi", 50)).await;
        assert_eq!(resp.status, 200);
        let frames = frames(&resp.body);
        let last = frames.last().expect("frames");
        assert_eq!(last.0, "exception");
        assert_eq!(last.1, "modelStreamErrorException");
        assert_eq!(last.2["message"], "model fell over");
        assert_eq!(
            frames
                .iter()
                .filter(|(_, n, _)| n == "contentBlockDelta")
                .count(),
            2
        );

        state.set_fault(Some(Fault::Truncate { after_deltas: 1 }));
        let resp = post(addr, "/model/scripted/converse-stream", &body_for("hi", 50)).await;
        assert_eq!(resp.status, 200);
        let mut decoder = MessageFrameDecoder::new();
        let mut buf = BytesMut::from(&resp.body[..]);
        let complete = decode_frames(&mut decoder, &mut buf).expect("decode");
        assert_eq!(complete.len(), 2, "messageStart and one delta");
        assert!(!buf.is_empty(), "the body ends inside a frame");

        state.set_fault(None);
        let resp = post(addr, "/model/scripted/converse-stream", &body_for("hi", 5)).await;
        assert_eq!(resp.status, 200);
        assert_eq!(text_of(&frames_of(&resp)), scripted_answer("hi", Some(5)).0);
        assert_eq!(state.requests_served(), 4);
    }

    fn frames_of(resp: &HttpResponse) -> Vec<(String, String, Value)> {
        frames(&resp.body)
    }

    /// Reads from the socket until `needle` shows up in what was received.
    async fn read_until(stream: &mut TcpStream, needle: &[u8]) -> Duration {
        let started = Instant::now();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(120), stream.read(&mut buf))
                .await
                .expect("data in time")
                .expect("read");
            assert!(n > 0, "connection closed before {needle:?}");
            seen.extend_from_slice(&buf[..n]);
            if seen.windows(needle.len()).any(|w| w == needle) {
                return started.elapsed();
            }
        }
    }

    async fn wait_idle(state: &BedrockState, within: Duration) -> Duration {
        let started = Instant::now();
        while state.active_generations() > 0 {
            assert!(
                started.elapsed() < within,
                "model still running {within:?} after the client went away"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        started.elapsed()
    }

    #[tokio::test]
    async fn dropping_the_body_stops_the_model() {
        let state = BedrockState::new(BedrockConfig {
            scripted_tokens_per_second: 20.0,
            ..Default::default()
        });
        let addr = serve(state.clone()).await;
        // The full answer takes ~9 s at 20 words/s.
        let mut stream = send(
            addr,
            "/model/scripted/converse-stream",
            &body_for("hi", 1000),
        )
        .await;
        read_until(&mut stream, b"contentBlockDelta").await;
        assert_eq!(state.active_generations(), 1);
        drop(stream);
        let stopped = wait_idle(&state, Duration::from_secs(2)).await;
        eprintln!("scripted: model stopped {stopped:?} after the client disconnected");
    }

    /// The real model over HTTP, with timings, then a cancellation.
    /// Needs the SmolLM2 weights (fetched on first run):
    /// `cargo test --release -p devstack --lib bedrock -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "runs SmolLM2 (98 MB of weights, several seconds of CPU)"]
    async fn smollm2_streams_over_http_and_stops_when_dropped() {
        let state = BedrockState::new(BedrockConfig::default());
        let load = Instant::now();
        state.warm("smollm2").await.expect("warm");
        eprintln!(
            "smollm2: warm (fetch if needed + load) {:?}",
            load.elapsed()
        );
        let addr = serve(state.clone()).await;

        let prompt = "Explain in two sentences why the sky is blue.";
        let started = Instant::now();
        let mut stream = send(
            addr,
            "/model/smollm2/converse-stream",
            &body_for(prompt, 64),
        )
        .await;
        let first = read_until(&mut stream, b"contentBlockDelta").await;
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.expect("read");
        let total = started.elapsed();
        drop(stream);

        let resp = post(
            addr,
            "/model/smollm2/converse-stream",
            &body_for(prompt, 64),
        )
        .await;
        assert_eq!(resp.status, 200);
        let frames = frames(&resp.body);
        let text = text_of(&frames);
        let meta = &frames.last().expect("metadata").2;
        let out = meta["usage"]["outputTokens"]
            .as_u64()
            .expect("outputTokens");
        eprintln!(
            "smollm2: first delta {first:?}, whole turn {total:?}, {out} tokens, usage {}, metrics {}\n  text: {text:?}",
            meta["usage"], meta["metrics"]
        );
        assert!(text.split_whitespace().count() >= 5, "{text:?}");
        assert!(out > 0 && out <= 64);
        assert!(
            meta["usage"]["inputTokens"]
                .as_u64()
                .is_some_and(|n| n > 10)
        );

        let mut stream = send(
            addr,
            "/model/smollm2/converse-stream",
            &body_for(prompt, 200),
        )
        .await;
        read_until(&mut stream, b"contentBlockDelta").await;
        drop(stream);
        let stopped = wait_idle(&state, Duration::from_secs(3)).await;
        eprintln!("smollm2: model stopped {stopped:?} after the client disconnected");
    }
}
