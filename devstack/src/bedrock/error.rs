//! A ConverseStream call refused before its stream starts, answered as the
//! service answers it: an HTTP status, `x-amzn-ErrorType` (the header the SDK
//! reads the error code from) and a `{"message": ...}` body.
//!
//! Place in the data path: resolver Lambda --ConverseStream--> **Bedrock
//! (refused)** --HTTP error--> resolver, which turns it into the turn's error
//! chunk -> AppSync -> subscriber.
//!
//! Statuses and codes follow the Errors section of
//! <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html>.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::request::RequestError;
use super::smollm2::SmolLm2Error;

/// The namespace suffix the service appends to `x-amzn-ErrorType` codes.
const ERROR_TYPE_SUFFIX: &str = ":http://internal.amazon.com/coral/com.amazon.bedrock/";

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
    /// An injected [`super::Fault::Reject`].
    #[error("{message}")]
    Injected {
        /// The HTTP status to answer with, e.g. 429.
        status: u16,
        /// The error code put in `x-amzn-ErrorType`, e.g. `ThrottlingException`.
        code: String,
        /// The `message` of the JSON body.
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
