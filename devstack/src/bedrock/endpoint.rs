//! The ConverseStream HTTP route: `POST /model/{modelId}/converse-stream`,
//! answered with an event-stream body or an AWS error response, each with an
//! `x-amzn-RequestId`.
//!
//! Place in the data path: resolver Lambda --ConverseStream (SigV4, checked by
//! the layer the stack wraps around [`router`])--> **Bedrock endpoint** ->
//! model -> event-stream body -> resolver.
//!
//! Follows <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html>.

use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::error::BedrockError;
use super::eventstream::EVENT_STREAM_CONTENT_TYPE;
use super::model::ModelId;
use super::request;
use super::state::BedrockState;
use super::stream::{self, Fault};

/// The Bedrock Runtime routes: `POST /model/{modelId}/converse-stream`.
///
/// `{modelId}` is percent-decoded (`...v1%3A0` is `...v1:0`). Every response
/// carries an `x-amzn-RequestId`.
pub fn router(state: BedrockState) -> Router {
    Router::new()
        .route(
            "/model/{model_id}/converse-stream",
            post(answer_converse_stream),
        )
        .with_state(state)
}

/// The route's handler: counts the request, answers it with a stream or a
/// refusal, and stamps either with a fresh `x-amzn-RequestId`.
async fn answer_converse_stream(
    State(state): State<BedrockState>,
    Path(model_id): Path<String>,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    state.count_request();
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut response = match start_event_stream(&state, &model_id, &body, started).await {
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

/// Checks the call in the order the service does (the model id, then the
/// body, then an injected refusal), starts the model, and returns the 200
/// response whose body streams the model's events as frames.
async fn start_event_stream(
    state: &BedrockState,
    model_id: &str,
    body: &[u8],
    started: Instant,
) -> Result<Response, BedrockError> {
    let model = ModelId::resolve(model_id)?;
    let request = request::parse_converse_stream(body)?;
    state.record_conversation(&request.messages);
    let fault = state.fault();
    if let Some(refusal) = fault.as_ref().and_then(injected_refusal) {
        return Err(refusal);
    }
    let generation = state.generate(model, &request).await?;
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

/// A [`Fault::Reject`] as the refusal it stands for; the other faults act on
/// the stream once it runs.
fn injected_refusal(fault: &Fault) -> Option<BedrockError> {
    match fault {
        Fault::Reject {
            status,
            code,
            message,
        } => Some(BedrockError::Injected {
            status: *status,
            code: code.clone(),
            message: message.clone(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    //! End to end over real sockets: the router on 127.0.0.1:0, `reqwest` as
    //! the client, frames decoded with the smithy decoder.

    use std::net::SocketAddr;
    use std::time::Duration;

    use aws_smithy_eventstream::frame::MessageFrameDecoder;
    use bytes::BytesMut;
    use serde_json::Value;
    use tokio::net::TcpListener;

    use super::*;
    use crate::bedrock::eventstream::{decode_frames, header_str};
    use crate::bedrock::{BedrockConfig, StreamException, scripted_answer};

    /// The longest wait for a response or for the next piece of its body
    /// (the real model is slow on a small CPU).
    const PATIENCE: Duration = Duration::from_secs(120);

    async fn serve(state: BedrockState) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, router(state)).await;
        });
        addr
    }

    /// POSTs `body` to `path`; returns once the response head has arrived,
    /// with its body still streaming (dropping it closes the connection).
    async fn send(addr: SocketAddr, path: &str, body: &str) -> reqwest::Response {
        let sent = reqwest::Client::new()
            .post(format!("http://{addr}{path}"))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send();
        tokio::time::timeout(PATIENCE, sent)
            .await
            .expect("response in time")
            .expect("response")
    }

    /// A response read to its end.
    struct HttpResponse {
        status: u16,
        headers: reqwest::header::HeaderMap,
        body: Vec<u8>,
    }

    impl HttpResponse {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(name).and_then(|v| v.to_str().ok())
        }
    }

    async fn post(addr: SocketAddr, path: &str, body: &str) -> HttpResponse {
        let response = send(addr, path, body).await;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = tokio::time::timeout(PATIENCE, response.bytes())
            .await
            .expect("body in time")
            .expect("read");
        HttpResponse {
            status,
            headers,
            body: body.to_vec(),
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

    /// Reads the streaming body until `needle` shows up in what was received.
    async fn read_until(response: &mut reqwest::Response, needle: &[u8]) -> Duration {
        let started = Instant::now();
        let mut seen = Vec::new();
        loop {
            let chunk = tokio::time::timeout(PATIENCE, response.chunk())
                .await
                .expect("data in time")
                .expect("read");
            let Some(chunk) = chunk else {
                panic!("the body ended before {needle:?}");
            };
            seen.extend_from_slice(&chunk);
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
        let mut response = send(
            addr,
            "/model/scripted/converse-stream",
            &body_for("hi", 1000),
        )
        .await;
        read_until(&mut response, b"contentBlockDelta").await;
        assert_eq!(state.active_generations(), 1);
        drop(response);
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
        let mut response = send(
            addr,
            "/model/smollm2/converse-stream",
            &body_for(prompt, 64),
        )
        .await;
        let first = read_until(&mut response, b"contentBlockDelta").await;
        let _rest = response.bytes().await.expect("read");
        let total = started.elapsed();

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

        let mut response = send(
            addr,
            "/model/smollm2/converse-stream",
            &body_for(prompt, 200),
        )
        .await;
        read_until(&mut response, b"contentBlockDelta").await;
        drop(response);
        let stopped = wait_idle(&state, Duration::from_secs(3)).await;
        eprintln!("smollm2: model stopped {stopped:?} after the client disconnected");
    }
}
