//! Place in the data path: turn driver -> **AppSync publisher** -> AppSync ->
//! `onChunk` -> subscriber. The [`ChunkSink`] of this service.
//!
//! Sends each chunk as the `publishChunk` GraphQL mutation to AppSync, signed
//! with SigV4 for service `appsync` (IAM authorization:
//! <https://docs.aws.amazon.com/appsync/latest/devguide/security-authz.html#aws-iam-authorization>;
//! signing: <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html>).
//! AppSync then fans the result out to `onChunk` subscribers.
//!
//! The body is serialised once; those exact bytes are signed and sent. A reply
//! is a failure when its HTTP status is not 2xx or when its body carries GraphQL
//! `errors`, even with HTTP 200 (AppSync reports authorization problems of the
//! payload type that way). Retryable failures are retried with exponential
//! backoff and jitter, resending the same `(turnId, seq)` so subscribers can
//! drop repeats.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use appsync_client::sigv4::GRAPHQL_CONTENT_TYPE;
use appsync_client::{Chunk, CredentialsCache, CredentialsError, SignError, sign_graphql_post};
use aws_credential_types::Credentials;
use serde::Deserialize;
use thiserror::Error;
use tracing::{debug, warn};

use crate::retry::{self, RetryPolicy};
use crate::sink::{ChunkSink, PublishReport};

/// One entry of a GraphQL `errors` array as AppSync writes it
/// (`{"errorType": ..., "message": ...}`; `errorType` is AppSync's addition).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphQlError {
    /// e.g. `UnauthorizedException`, `Unauthorized`, `BadRequestException`.
    #[serde(default)]
    pub error_type: Option<String>,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
}

impl fmt::Display for GraphQlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error_type {
            Some(t) => write!(f, "{t}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Why a chunk could not be published.
#[derive(Debug, Error)]
pub enum PublishError {
    /// AppSync answered with a non-2xx status. Retryable for 429 and 5xx.
    #[error("AppSync answered HTTP {status}{}", describe(.errors))]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The `errors` of the body, if it had any.
        errors: Vec<GraphQlError>,
    },
    /// AppSync answered 2xx with GraphQL `errors`. Retryable only for
    /// throttling-type errors.
    #[error("AppSync returned GraphQL errors{}", describe(.errors))]
    GraphQl {
        /// The `errors` array.
        errors: Vec<GraphQlError>,
    },
    /// AppSync answered 2xx without errors but `data.publishChunk` was null, so
    /// nothing was broadcast.
    #[error("AppSync returned a null publishChunk result")]
    NullResult,
    /// The reply body was not a GraphQL response.
    #[error("AppSync sent an unreadable reply (HTTP {status}): {detail}")]
    Decode {
        /// The HTTP status code.
        status: u16,
        /// The parse error.
        detail: String,
    },
    /// The request did not get an HTTP reply (connect, timeout, ...). Retryable.
    #[error("could not reach AppSync: {0}")]
    Transport(#[source] reqwest::Error),
    /// No AWS credentials to sign with.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// SigV4 signing failed.
    #[error("could not sign the request: {0}")]
    Signing(#[source] SignError),
    /// The GraphQL URL is not an absolute URL.
    #[error("invalid AppSync GraphQL URL: {0}")]
    InvalidUrl(#[source] url::ParseError),
    /// The mutation could not be encoded.
    #[error("could not encode the mutation: {0}")]
    Encode(#[from] serde_json::Error),
}

fn describe(errors: &[GraphQlError]) -> String {
    if errors.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    format!(": {}", parts.join("; "))
}

impl PublishError {
    /// True when sending the same request again may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            PublishError::Http { status, .. } => *status == 429 || *status >= 500,
            PublishError::GraphQl { errors } => errors.iter().any(|e| {
                e.error_type.as_deref().is_some_and(|t| {
                    let t = t.to_ascii_lowercase();
                    t.contains("throttl") || t.contains("serviceunavailable")
                })
            }),
            PublishError::Transport(e) => !e.is_builder(),
            PublishError::NullResult
            | PublishError::Decode { .. }
            | PublishError::Credentials(_)
            | PublishError::Signing(_)
            | PublishError::InvalidUrl(_)
            | PublishError::Encode(_) => false,
        }
    }

    /// The HTTP status, when AppSync answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            PublishError::Http { status, .. } | PublishError::Decode { status, .. } => {
                Some(*status)
            }
            PublishError::GraphQl { .. } | PublishError::NullResult => Some(200),
            _ => None,
        }
    }
}

/// Publishes chunks to one AppSync GraphQL API. Build it once per process.
#[derive(Debug)]
pub struct Publisher {
    http: reqwest::Client,
    url: reqwest::Url,
    region: String,
    credentials: Arc<CredentialsCache>,
    retry: RetryPolicy,
}

impl Publisher {
    /// A publisher POSTing to `url` (the API's `/graphql` endpoint), signing for
    /// `region` with credentials from `credentials` (shared with the cancel
    /// listener), over `tls` (the function's is `tls::appsync_client_config`),
    /// with the default [`RetryPolicy`], a 3 s connect timeout and a 10 s
    /// request timeout.
    ///
    /// # Errors
    /// [`PublishError::Transport`] when the HTTP client cannot be built,
    /// [`PublishError::InvalidUrl`] when `url` is not an absolute URL.
    pub fn new(
        url: &str,
        region: impl Into<String>,
        credentials: Arc<CredentialsCache>,
        tls: rustls::ClientConfig,
    ) -> Result<Self, PublishError> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(PublishError::Transport)?;
        Self::with_client(http, url, region, credentials)
    }

    /// As [`Publisher::new`] with a caller-built HTTP client.
    ///
    /// # Errors
    /// [`PublishError::InvalidUrl`] when `url` is not an absolute URL.
    pub fn with_client(
        http: reqwest::Client,
        url: &str,
        region: impl Into<String>,
        credentials: Arc<CredentialsCache>,
    ) -> Result<Self, PublishError> {
        let url = reqwest::Url::parse(url).map_err(PublishError::InvalidUrl)?;
        Ok(Self {
            http,
            url,
            region: region.into(),
            credentials,
            retry: RetryPolicy::default(),
        })
    }

    /// Publishes one chunk, retrying retryable failures (HTTP 429 and 5xx,
    /// throttling errors in a 200 body, timeouts, connection failures and
    /// resets) per the [`RetryPolicy`], and reports how many attempts it took.
    /// Every attempt sends the same bytes, so a repeat carries the same
    /// `(turnId, seq)`.
    pub async fn publish_with_retries(&self, chunk: &Chunk) -> PublishReport {
        let body = match encode(chunk) {
            Ok(b) => b,
            Err(e) => {
                return PublishReport {
                    attempts: 0,
                    result: Err(e.into()),
                };
            }
        };
        let mut attempt = 1;
        loop {
            match self.publish_once(&body).await {
                Ok(()) => {
                    debug!(
                        turn_id = %chunk.turn_id,
                        seq = chunk.seq,
                        bytes = chunk.text.len(),
                        done = chunk.done,
                        attempt,
                        "chunk published"
                    );
                    return PublishReport {
                        attempts: attempt,
                        result: Ok(()),
                    };
                }
                Err(error) if error.retryable() && self.retry.may_retry(attempt) => {
                    let delay = self.retry.delay(attempt, retry::random_u64());
                    warn!(
                        turn_id = %chunk.turn_id,
                        seq = chunk.seq,
                        attempt,
                        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        %error,
                        "publishChunk failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(error) => {
                    return PublishReport {
                        attempts: attempt,
                        result: Err(error.into()),
                    };
                }
            }
        }
    }

    /// One signed POST of `body`.
    async fn publish_once(&self, body: &[u8]) -> Result<(), PublishError> {
        let credentials = self.credentials().await?;
        let headers = sign_request(
            self.url.as_str(),
            body,
            &credentials,
            &self.region,
            SystemTime::now(),
        )?;
        let mut request = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, GRAPHQL_CONTENT_TYPE)
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(PublishError::Transport)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(PublishError::Transport)?;
        interpret_response(status, &bytes).map_err(|e| redact(e, &credentials))
    }

    async fn credentials(&self) -> Result<Credentials, PublishError> {
        self.credentials
            .get()
            .await
            .map_err(PublishError::Credentials)
    }
}

/// The request body: `{"variables":{"input":...},"query":...,"operationName":"PublishChunk"}`.
///
/// # Errors
/// [`PublishError::Encode`] if serialisation fails.
pub(crate) fn encode(chunk: &Chunk) -> Result<Vec<u8>, PublishError> {
    Ok(appsync_client::documents::publish_chunk_body(chunk)?)
}

/// SigV4-signs `POST url` with `content-type: application/json` and `body`
/// for service `appsync` in `region` at `time`
/// ([`appsync_client::sign_graphql_post`]). Returns the headers to add:
/// `x-amz-date`, `authorization` and, for temporary credentials,
/// `x-amz-security-token` (`host` is implied by the URL).
///
/// # Errors
/// [`PublishError::Signing`] if the URL or parameters are unusable.
pub(crate) fn sign_request(
    url: &str,
    body: &[u8],
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, PublishError> {
    sign_graphql_post(url, body, credentials, region, time).map_err(PublishError::Signing)
}

#[derive(Deserialize)]
struct GraphQlResponse {
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    errors: Option<Vec<GraphQlError>>,
}

/// Judges AppSync's reply: success only for 2xx, no `errors`, and a non-null
/// `data.publishChunk`.
///
/// # Errors
/// [`PublishError::Http`], [`PublishError::GraphQl`], [`PublishError::NullResult`]
/// or [`PublishError::Decode`].
pub(crate) fn interpret_response(status: u16, body: &[u8]) -> Result<(), PublishError> {
    let parsed: Result<GraphQlResponse, _> = serde_json::from_slice(body);
    if !(200..300).contains(&status) {
        let errors = parsed.ok().and_then(|r| r.errors).unwrap_or_default();
        return Err(PublishError::Http { status, errors });
    }
    let response = parsed.map_err(|e| PublishError::Decode {
        status,
        detail: e.to_string(),
    })?;
    if let Some(errors) = response.errors.filter(|e| !e.is_empty()) {
        return Err(PublishError::GraphQl { errors });
    }
    match response.data.as_ref().and_then(|d| d.get("publishChunk")) {
        Some(chunk) if !chunk.is_null() => Ok(()),
        _ => Err(PublishError::NullResult),
    }
}

/// AppSync may quote the canonical request, session token included, in a
/// signature error: keep credentials out of errors and logs.
fn redact(error: PublishError, credentials: &Credentials) -> PublishError {
    let Some(token) = credentials.session_token().filter(|t| !t.is_empty()) else {
        return error;
    };
    let scrub = |errors: Vec<GraphQlError>| {
        errors
            .into_iter()
            .map(|e| GraphQlError {
                error_type: e.error_type,
                message: e.message.replace(token, "<redacted>"),
            })
            .collect()
    };
    match error {
        PublishError::Http { status, errors } => PublishError::Http {
            status,
            errors: scrub(errors),
        },
        PublishError::GraphQl { errors } => PublishError::GraphQl {
            errors: scrub(errors),
        },
        other => other,
    }
}

impl ChunkSink for Publisher {
    fn publish(&self, chunk: &Chunk) -> impl Future<Output = PublishReport> + Send {
        self.publish_with_retries(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn chunk() -> Chunk {
        Chunk {
            conversation_id: "c1".into(),
            turn_id: "t1".into(),
            owner: "o1".into(),
            seq: 3,
            text: "héllo \"world\"".into(),
            done: true,
            stop_reason: Some("end_turn".into()),
            usage: Some(appsync_client::Usage {
                input_tokens: 1,
                output_tokens: 2,
                total_tokens: 3,
            }),
            error: None,
        }
    }

    #[test]
    fn body_is_the_typed_mutation_selecting_every_chunk_field() {
        let body: Value = serde_json::from_slice(&encode(&chunk()).unwrap()).unwrap();
        assert_eq!(body["operationName"], "PublishChunk");
        assert_eq!(
            body["variables"]["input"],
            json!({"conversationId": "c1", "turnId": "t1", "owner": "o1", "seq": 3,
                   "text": "héllo \"world\"", "done": true, "stopReason": "end_turn",
                   "usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3},
                   "error": null})
        );
        let query = body["query"].as_str().unwrap();
        for field in [
            "conversationId",
            "turnId",
            "owner",
            "seq",
            "text",
            "done",
            "stopReason",
            "inputTokens",
            "outputTokens",
            "totalTokens",
            "errorType",
            "message",
            "retryable",
        ] {
            assert!(query.contains(field), "query selects {field}");
        }
    }

    #[test]
    fn signing_adds_date_token_and_authorization_for_appsync() {
        let creds = Credentials::new("AKIDEXAMPLE", "secret", Some("token".into()), None, "test");
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let headers = sign_request(
            "https://abc.appsync-api.us-east-1.amazonaws.com/graphql",
            b"{}",
            &creds,
            "us-east-1",
            time,
        )
        .unwrap();
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("x-amz-date").as_deref(), Some("20231114T221320Z"));
        assert_eq!(get("x-amz-security-token").as_deref(), Some("token"));
        let auth = get("authorization").unwrap();
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/appsync/aws4_request"
        ));
        assert!(auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"));
        // Same inputs, same signature; a different body, a different one.
        let again = sign_request(
            "https://abc.appsync-api.us-east-1.amazonaws.com/graphql",
            b"{}",
            &creds,
            "us-east-1",
            time,
        )
        .unwrap();
        assert_eq!(headers, again);
        let other = sign_request(
            "https://abc.appsync-api.us-east-1.amazonaws.com/graphql",
            b"{ }",
            &creds,
            "us-east-1",
            time,
        )
        .unwrap();
        assert_ne!(headers, other);
    }

    #[test]
    fn success_needs_2xx_no_errors_and_a_result() {
        let ok = br#"{"data":{"publishChunk":{"seq":0}}}"#;
        assert!(interpret_response(200, ok).is_ok());

        let err = interpret_response(200, br#"{"data":{"publishChunk":null}}"#).unwrap_err();
        assert!(matches!(err, PublishError::NullResult));
        assert!(!err.retryable());

        let err = interpret_response(200, b"<html>").unwrap_err();
        assert!(matches!(err, PublishError::Decode { status: 200, .. }));
    }

    #[test]
    fn errors_in_a_200_body_are_failures() {
        let body = br#"{"data":{"publishChunk":null},"errors":[{"errorType":"Unauthorized","message":"Not Authorized to access publishChunk on type Mutation"}]}"#;
        let err = interpret_response(200, body).unwrap_err();
        let PublishError::GraphQl { errors } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(errors[0].error_type.as_deref(), Some("Unauthorized"));
        assert!(!err.retryable());
        assert!(err.to_string().contains("Not Authorized"));

        let throttled = br#"{"errors":[{"errorType":"ThrottlingException","message":"slow"}]}"#;
        assert!(interpret_response(200, throttled).unwrap_err().retryable());
    }

    #[test]
    fn http_statuses_decide_retryability() {
        let body = br#"{"errors":[{"errorType":"UnauthorizedException","message":"Valid authorization header not provided."}]}"#;
        let err = interpret_response(401, body).unwrap_err();
        assert!(matches!(&err, PublishError::Http { status: 401, errors } if errors.len() == 1));
        assert!(!err.retryable());
        assert!(interpret_response(400, b"").unwrap_err().status() == Some(400));
        assert!(interpret_response(429, b"").unwrap_err().retryable());
        assert!(interpret_response(500, b"oops").unwrap_err().retryable());
        assert!(interpret_response(503, b"").unwrap_err().retryable());
    }

    #[test]
    fn session_tokens_are_redacted_from_errors() {
        let creds = Credentials::new("AKID", "secret", Some("SeSsIoN".into()), None, "test");
        let err = PublishError::Http {
            status: 403,
            errors: vec![GraphQlError {
                error_type: Some("BadRequestException".into()),
                message: "canonical: x-amz-security-token:SeSsIoN".into(),
            }],
        };
        let text = redact(err, &creds).to_string();
        assert!(!text.contains("SeSsIoN"), "{text}");
        assert!(text.contains("<redacted>"));
    }
}
