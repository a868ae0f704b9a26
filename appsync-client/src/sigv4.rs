//! Place in the data path: resolver -> **signature** -> AppSync. SigV4
//! request signing for AppSync, shared by the resolver's publisher (HTTP
//! `publishChunk`) and the real-time client (IAM connect and `start`), and the
//! credentials cache both sign with.
//!
//! Follows <https://docs.aws.amazon.com/appsync/latest/devguide/security-authz.html#aws-iam-authorization>:
//! service name `appsync`; the body that is signed must be the body that is sent.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4::SigningParams;

/// SigV4 signing name of AppSync.
pub const SIGNING_NAME: &str = "appsync";

/// `content-type` of a GraphQL POST to AppSync.
pub const GRAPHQL_CONTENT_TYPE: &str = "application/json";

/// Why a request could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// Region, service or time unusable for a signature.
    #[error("invalid signing parameters: {0}")]
    Params(#[source] aws_sigv4::sign::v4::signing_params::BuildError),
    /// The URL or headers cannot be signed.
    #[error("the request cannot be signed: {0}")]
    Request(#[source] aws_sigv4::http_request::SigningError),
}

/// The credentials provider could not supply credentials; the provider's
/// error is the source (its message is for logs, never for users).
#[derive(Debug, thiserror::Error)]
#[error("could not resolve AWS credentials: {0}")]
pub struct CredentialsError(#[source] pub aws_credential_types::provider::error::CredentialsError);

/// One process-wide cache in front of the SDK's credentials provider, shared
/// by the publisher and the cancel listener so both sign with the same
/// identity. Credentials are reused until [`CredentialsCache::REFRESH_MARGIN`]
/// before they expire (Lambda's execution-role credentials:
/// <https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html>).
#[derive(Debug)]
pub struct CredentialsCache {
    provider: SharedCredentialsProvider,
    cached: tokio::sync::Mutex<Option<Credentials>>,
}

impl CredentialsCache {
    /// Credentials are refreshed this long before they expire.
    pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

    /// A cache over `provider` (e.g. `SdkConfig::credentials_provider()`).
    pub fn new(provider: SharedCredentialsProvider) -> Self {
        Self {
            provider,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// Credentials that are valid for at least [`Self::REFRESH_MARGIN`] (or
    /// have no expiry).
    ///
    /// # Errors
    /// [`CredentialsError`] when the provider fails.
    pub async fn get(&self) -> Result<Credentials, CredentialsError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            let fresh = c
                .expiry()
                .is_none_or(|exp| exp > SystemTime::now() + Self::REFRESH_MARGIN);
            if fresh {
                return Ok(c.clone());
            }
        }
        let c = self
            .provider
            .provide_credentials()
            .await
            .map_err(CredentialsError)?;
        *cached = Some(c.clone());
        Ok(c)
    }
}

/// Signs `POST url` with `headers` and `body`; returns the headers to add
/// (`x-amz-date`, `x-amz-security-token` when the credentials have a session
/// token, `authorization`), lower-case names.
///
/// # Errors
/// [`SignError`] when the parameters or the request cannot be signed.
pub fn sign_headers(
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    credentials: &Credentials,
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
        .map_err(SignError::Params)?
        .into();
    let request = SignableRequest::new(
        "POST",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(SignError::Request)?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(SignError::Request)?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect())
}

/// Signs a GraphQL `POST url` (`content-type: application/json`, `body`) for
/// AppSync ([`SIGNING_NAME`]) in `region` at `time`. Returns the headers to
/// add, as [`sign_headers`] does (`host` is implied by the URL).
///
/// # Errors
/// [`SignError`] when the URL or parameters are unusable.
pub fn sign_graphql_post(
    url: &str,
    body: &[u8],
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, SignError> {
    sign_headers(
        url,
        &[("content-type", GRAPHQL_CONTENT_TYPE)],
        body,
        credentials,
        region,
        SIGNING_NAME,
        time,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::future;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug)]
    struct Counting {
        calls: std::sync::Arc<AtomicU32>,
        expiry: Option<SystemTime>,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            self.calls.fetch_add(1, Ordering::SeqCst);
            future::ProvideCredentials::ready(Ok(Credentials::new(
                "AKID",
                "SECRET",
                None,
                self.expiry,
                "test",
            )))
        }
    }

    #[tokio::test]
    async fn fresh_credentials_are_reused_and_expiring_ones_refreshed() {
        let calls = std::sync::Arc::new(AtomicU32::new(0));
        let cache = CredentialsCache::new(SharedCredentialsProvider::new(Counting {
            calls: calls.clone(),
            expiry: None,
        }));
        cache.get().await.expect("credentials");
        cache.get().await.expect("credentials");
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = std::sync::Arc::new(AtomicU32::new(0));
        let cache = CredentialsCache::new(SharedCredentialsProvider::new(Counting {
            calls: calls.clone(),
            expiry: Some(SystemTime::now() + Duration::from_secs(60)),
        }));
        cache.get().await.expect("credentials");
        cache.get().await.expect("credentials");
        assert_eq!(calls.load(Ordering::SeqCst), 2, "expires within the margin");
    }
}
