//! Place in the data path: Lambda -> execution environment **Runtime API** ->
//! resolver process (`lambda_runtime`'s client) -> its handler.
//!
//! The routes each environment serves under `/2018-06-01/runtime`, as
//! `lambda_runtime` uses them inside Lambda
//! (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>):
//! `GET invocation/next` long-polls for an event (the environment is frozen
//! while it waits), then `POST invocation/{id}/response` or `.../error`
//! answers it; `POST init/error` reports a failed init.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};

use super::{Invocation, LambdaService, function_arn};

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

/// `POST /runtime/invocation/{id}/response`: the function's result.
async fn invocation_response(
    State(api): State<EnvironmentApi>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    accepted(api.service.finish(api.id, &id, Ok(value)))
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
