//! Place in the data path: function URL function -> **its short answers**
//! -> the function URL -> client. Everything the function says without
//! streaming a turn: a refusal (`{"errorType", "message"}` with its HTTP
//! status, `Allow` on a 405, `WWW-Authenticate` on a 401), a cancellation's
//! JSON, and the HTTP integration prelude every response starts with
//! (<https://docs.aws.amazon.com/lambda/latest/dg/config-rs-invoke-furls.html>).

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use lambda_runtime::MetadataPrelude;
use lambda_runtime::streaming::{Body, Response};
use serde_json::{Value, json};

use super::request::RequestError;
use crate::admission::{RefusalKind, Refused};
use crate::cognito::AuthError;
use crate::vocabulary::ErrorType;

/// Why a request is refused before it streams: its status, error type and
/// message for the caller.
pub(super) struct Refusal {
    status: StatusCode,
    error_type: &'static str,
    message: String,
}

impl Refusal {
    pub(super) fn new(
        status: StatusCode,
        error_type: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error_type,
            message: message.into(),
        }
    }
}

impl From<AuthError> for Refusal {
    fn from(error: AuthError) -> Self {
        let status = match error {
            AuthError::KeysUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        };
        Self::new(status, "UnauthorizedException", error.to_string())
    }
}

impl From<Refused> for Refusal {
    fn from(refused: Refused) -> Self {
        let status = match refused.kind {
            RefusalKind::Invalid => StatusCode::BAD_REQUEST,
            RefusalKind::Limit => StatusCode::TOO_MANY_REQUESTS,
            RefusalKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::new(status, refused.error_type, refused.message)
    }
}

impl From<RequestError> for Refusal {
    fn from(error: RequestError) -> Self {
        let status = match error {
            RequestError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, ErrorType::Validation.as_str(), error.to_string())
    }
}

/// A refusal as the HTTP answer: its status and `{"errorType", "message"}`.
pub(super) fn refuse(refusal: Refusal) -> Response<Body> {
    let body = json!({"errorType": refusal.error_type, "message": refusal.message});
    let mut response = answer(refusal.status, &body);
    let headers = &mut response.metadata_prelude.headers;
    if refusal.status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(http::header::ALLOW, HeaderValue::from_static("POST"));
    }
    if refusal.status == StatusCode::UNAUTHORIZED {
        headers.insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer"),
        );
    }
    response
}

/// A short JSON answer with `status`.
pub(super) fn answer(status: StatusCode, body: &Value) -> Response<Body> {
    let body = body.to_string();
    let (mut sender, stream) = lambda_runtime::streaming::channel();
    tokio::spawn(async move {
        // The body is all or nothing: a client that left needs none of it.
        let _ = sender.send_data(Bytes::from(body)).await;
    });
    Response {
        metadata_prelude: prelude(status, "application/json"),
        stream,
    }
}

/// The HTTP integration prelude: `status`, `content_type`, and no caching.
pub(super) fn prelude(status: StatusCode, content_type: &'static str) -> MetadataPrelude {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    MetadataPrelude {
        status_code: status,
        headers,
        cookies: Vec::new(),
    }
}
