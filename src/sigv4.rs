//! SigV4 request signing for AppSync, shared by the publisher (HTTP
//! `publishChunk`) and the real-time client (IAM connect and `start`). Place in
//! the data path: publisher -> **signature** -> AppSync.
//!
//! Follows <https://docs.aws.amazon.com/appsync/latest/devguide/security-authz.html#aws-iam-authorization>:
//! service name `appsync`; the body that is signed must be the body that is sent.

use std::time::SystemTime;

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4::SigningParams;

/// Why a request could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("invalid signing parameters: {0}")]
    Params(String),
    #[error("the request cannot be signed: {0}")]
    Request(String),
}

/// Signs `POST url` with `headers` and `body`; returns the headers to add
/// (`x-amz-date`, `x-amz-security-token` when the credentials have a session
/// token, `authorization`), lower-case names.
pub fn sign_headers(
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    credentials: &aws_credential_types::Credentials,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, SignError> {
    let identity = credentials.clone().into();
    let params = SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| SignError::Params(e.to_string()))?
        .into();
    let request = SignableRequest::new(
        "POST",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| SignError::Request(e.to_string()))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| SignError::Request(e.to_string()))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect())
}
