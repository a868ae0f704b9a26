//! Place in the data path: Lambda -> execution environment **Runtime API** ->
//! resolver process (`lambda_runtime`'s client) -> its handler.
//!
//! The routes each environment serves under `/2018-06-01/runtime`, as
//! `lambda_runtime` uses them inside Lambda
//! (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>):
//! `GET invocation/next` long-polls for an event (the environment is frozen
//! while it waits), then `POST invocation/{id}/response` or `.../error`
//! answers it (whole, or streamed: see [`stream_response`]); `POST
//! init/error` reports a failed init.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};

use super::{Invocation, LambdaService, StreamFrame, function_arn};

/// One environment's view of the service: what its Runtime API serves.
#[derive(Clone)]
struct EnvironmentApi {
    service: LambdaService,
    id: u64,
    /// The invocations given to this environment, in order.
    deliveries: Arc<Mutex<mpsc::UnboundedReceiver<Invocation>>>,
}

/// The Runtime API routes of environment `id`.
pub(super) fn router(
    service: LambdaService,
    id: u64,
    deliveries: Arc<Mutex<mpsc::UnboundedReceiver<Invocation>>>,
) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(invocation_response),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            post(invocation_error),
        )
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(EnvironmentApi {
            service,
            id,
            deliveries,
        })
}

/// `GET /runtime/invocation/next`: long-polls for the environment's next
/// event and hands it over with the headers `lambda_runtime` reads (request
/// id, deadline, ARN, trace id).
async fn next_invocation(State(api): State<EnvironmentApi>) -> Response {
    api.service.waiting_for_next(api.id);
    let invocation = api.deliveries.lock().await.recv().await;
    let handed = invocation.and_then(|i| api.service.hand_over(api.id, i));
    let Some((request_id, payload, deadline)) = handed else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let deadline_ms = deadline
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let arn = function_arn(&api.service.inner.config.function_name);
    let trace = format!(
        "Root=1-{:08x}-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
        &uuid::Uuid::new_v4().simple().to_string()[..24]
    );
    let mut headers = HeaderMap::new();
    let pairs = [
        ("lambda-runtime-aws-request-id", request_id),
        ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
        ("lambda-runtime-invoked-function-arn", arn),
        ("lambda-runtime-trace-id", trace),
        ("content-type", "application/json".into()),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    (headers, payload.to_string()).into_response()
}

/// The largest buffered response, as Lambda's synchronous invocation limit.
const MAX_BUFFERED_RESPONSE: usize = 6 * 1024 * 1024;

/// `POST /runtime/invocation/{id}/response`: the function's result, whole,
/// or streamed when the runtime says `Lambda-Runtime-Function-Response-Mode:
/// streaming` and the invoker reads a stream (see [`stream_response`]).
async fn invocation_response(
    State(api): State<EnvironmentApi>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let streaming = headers
        .get("lambda-runtime-function-response-mode")
        .is_some_and(|mode| mode.as_bytes().eq_ignore_ascii_case(b"streaming"));
    if streaming {
        let content_type = headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(frames) = api.service.start_stream(api.id, &id, content_type) {
            return stream_response(&api, &id, frames, body).await;
        }
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BUFFERED_RESPONSE).await else {
        let error = json!({
            "errorType": "Function.ResponseSizeTooLarge",
            "errorMessage": "Response payload size exceeded maximum allowed payload size (6291456 bytes)."
        });
        return accepted(api.service.finish(api.id, &id, Err(error)));
    };
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    accepted(api.service.finish(api.id, &id, Ok(value)))
}

/// Forwards a streamed response's body to its invoker frame by frame, as
/// it arrives, and answers once it has ended (the invocation ends then,
/// and the environment is free). A mid-stream error arrives as the
/// `Lambda-Runtime-Function-Error-Type` and `-Body` trailers the runtime
/// declared; `lambda_runtime` writes them as the body's last lines instead,
/// so both are read.
///
/// When the invoker has gone (the function URL's client disconnected), the
/// rest is still read, to its end, and dropped: Lambda does not interrupt or
/// stop a streamed response when the invoking client's connection breaks,
/// and bills the function's whole duration
/// (<https://docs.aws.amazon.com/lambda/latest/dg/configuration-response-streaming.html>),
/// so the function's writes keep succeeding and it learns nothing of the
/// departure.
async fn stream_response(
    api: &EnvironmentApi,
    id: &str,
    frames: mpsc::Sender<StreamFrame>,
    body: Body,
) -> Response {
    let mut body = body;
    let mut error = None;
    let mut reader_left = false;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            // The runtime's connection broke: the response is cut short.
            error = Some(StreamFrame::Error {
                error_type: "Runtime.StreamError".into(),
                message: "the function's response stream broke off".into(),
            });
            break;
        };
        let frame = match frame.into_data() {
            Ok(data) => match error_trailer_lines(&data) {
                Some(found) => {
                    error = Some(found);
                    continue;
                }
                None => StreamFrame::Data(data),
            },
            Err(frame) => {
                if let Some(trailers) = frame.trailers_ref() {
                    error = error_trailers(trailers).or(error);
                }
                continue;
            }
        };
        if !reader_left && frames.send(frame).await.is_err() {
            tracing::info!(target: "lambda", request_id = %id, "the stream's reader left; the function streams on, unread");
            reader_left = true;
        }
    }
    let result = match error {
        Some(StreamFrame::Error {
            error_type,
            message,
        }) => {
            tracing::warn!(target: "lambda", request_id = %id, %error_type, "the function's stream failed");
            let _ = frames
                .send(StreamFrame::Error {
                    error_type: error_type.clone(),
                    message: message.clone(),
                })
                .await;
            Err(json!({"errorType": error_type, "errorMessage": message}))
        }
        _ => Ok(Value::Null),
    };
    drop(frames);
    accepted(api.service.finish(api.id, id, result))
}

/// The error a body frame carries as `Lambda-Runtime-Function-Error-Type:`
/// and `Lambda-Runtime-Function-Error-Body:` lines (base64 body), as
/// `lambda_runtime` writes a stream's error.
fn error_trailer_lines(data: &[u8]) -> Option<StreamFrame> {
    let text = std::str::from_utf8(data).ok()?;
    let mut error_type = None;
    let mut body = None;
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("lambda-runtime-function-error-type") {
            error_type = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("lambda-runtime-function-error-body") {
            body = Some(value.to_owned());
        } else {
            return None;
        }
    }
    Some(StreamFrame::Error {
        error_type: error_type?,
        message: decode_error_body(body.as_deref().unwrap_or_default()),
    })
}

/// The error real trailers carry.
fn error_trailers(trailers: &HeaderMap) -> Option<StreamFrame> {
    let error_type = trailers
        .get("lambda-runtime-function-error-type")?
        .to_str()
        .ok()?;
    let body = trailers
        .get("lambda-runtime-function-error-body")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    Some(StreamFrame::Error {
        error_type: error_type.to_owned(),
        message: decode_error_body(body),
    })
}

/// `Lambda-Runtime-Function-Error-Body` is base64; its text, or the value
/// itself when it is not.
fn decode_error_body(body: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_else(|| body.to_owned())
}

/// `POST /runtime/invocation/{id}/error`: the function failed this invocation.
async fn invocation_error(
    State(api): State<EnvironmentApi>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| json!({"errorType": "Unhandled", "errorMessage": ""}));
    tracing::warn!(target: "lambda", request_id = %id, error = %value, "invocation failed");
    accepted(api.service.finish(api.id, &id, Err(value)))
}

/// `POST /runtime/init/error`: the function failed before its first invocation.
async fn init_error(body: Bytes) -> Response {
    tracing::error!(target: "lambda", error = %String::from_utf8_lossy(&body), "function init failed");
    (StatusCode::ACCEPTED, axum::Json(json!({"status": "OK"}))).into_response()
}

/// 202, or 400 `InvalidRequestID` for an id this environment was not given.
fn accepted(known: bool) -> Response {
    if known {
        (StatusCode::ACCEPTED, axum::Json(json!({"status": "OK"}))).into_response()
    } else {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"}),
            ),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streams_error_is_read_from_lambda_runtimes_body_lines_and_from_trailers() {
        let lines = b"Lambda-Runtime-Function-Error-Type: Runtime.StreamError\r\nLambda-Runtime-Function-Error-Body: Ym9vbQ==\r\n";
        assert_eq!(
            error_trailer_lines(lines),
            Some(StreamFrame::Error {
                error_type: "Runtime.StreamError".into(),
                message: "boom".into(),
            })
        );
        assert_eq!(error_trailer_lines(b"data: {\"seq\":0}\n\n"), None);
        assert_eq!(
            error_trailer_lines(b"Lambda-Runtime-Function-Error-Body: eA==\r\n"),
            None
        );
        let mut trailers = HeaderMap::new();
        trailers.insert(
            "lambda-runtime-function-error-type",
            HeaderValue::from_static("Function.Crash"),
        );
        trailers.insert(
            "lambda-runtime-function-error-body",
            HeaderValue::from_static("Ym9vbQ=="),
        );
        assert_eq!(
            error_trailers(&trailers),
            Some(StreamFrame::Error {
                error_type: "Function.Crash".into(),
                message: "boom".into(),
            })
        );
    }
}
