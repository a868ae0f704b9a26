//! Place in the data path: client --POST (ID token)--> function URL ->
//! **Cognito check** -> the turn; client --connect (ID token)--> API Gateway
//! -> authorizer -> **Cognito check**. A function URL with `AuthType: NONE`
//! lets anyone invoke the function, and an API Gateway Lambda authorizer is
//! the only check on a WebSocket connection, so both check the caller's
//! Cognito user pool ID token themselves, as the pool's docs say a resource
//! server must
//! (<https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-tokens-verifying-a-jwt.html>):
//! an RS256 signature by a key of the pool's JWKS
//! (`{issuer}/.well-known/jwks.json`), `iss` the pool, `exp` not passed,
//! `token_use: id`, `aud` the app client.
//!
//! The JWKS is fetched once at init and kept. A token signed with a key the
//! set does not hold (the pool rotated its keys) fetches it again, at most
//! once per [`CognitoVerifier::min_refresh`], so tokens with made-up `kid`s
//! cannot make the function fetch on every request.

use std::collections::HashMap;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use thiserror::Error;

use crate::admission::required;
use crate::config::ConfigError;
use tokio::sync::RwLock;
use tokio::time::Instant;

/// The user pool whose ID tokens a function accepts, read at init.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CognitoSettings {
    /// The pool's issuer: `COGNITO_ISSUER`, else
    /// `https://cognito-idp.{AWS_REGION}.amazonaws.com/{COGNITO_USER_POOL_ID}`.
    pub issuer: String,
    /// `COGNITO_APP_CLIENT_ID` (required): the ID tokens' `aud`.
    pub client_id: String,
}

impl CognitoSettings {
    /// Reads the settings through `lookup` (variable name -> value).
    ///
    /// # Errors
    /// [`ConfigError::Missing`] when the app client or the pool is not named.
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let client_id = required(lookup, "COGNITO_APP_CLIENT_ID")?;
        let issuer = match required(lookup, "COGNITO_ISSUER") {
            Ok(issuer) => issuer,
            Err(_) => {
                let pool = required(lookup, "COGNITO_USER_POOL_ID")?;
                let region = required(lookup, "AWS_REGION")?;
                format!("https://cognito-idp.{region}.amazonaws.com/{pool}")
            }
        };
        Ok(Self { issuer, client_id })
    }
}

/// Why a request's token was refused. The messages are safe to show the
/// caller (they name no key, claim value or internal).
#[derive(Debug, Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("sign in first: send your ID token in the Authorization header")]
    Missing,
    /// The header does not hold a JWT.
    #[error("the Authorization header does not hold a token")]
    Malformed,
    /// The token's `exp` has passed.
    #[error("your sign-in has expired; sign in again")]
    Expired,
    /// Not an ID token this pool issued for this app client (another key,
    /// signature, issuer, audience or `token_use`).
    #[error("the token is not valid for this service")]
    Invalid,
    /// The pool's keys could not be fetched, so no token can be checked.
    #[error("sign-in cannot be checked just now; try again")]
    KeysUnavailable,
}

/// Why the pool's JWKS could not be read.
#[derive(Debug, Error)]
pub enum JwksError {
    /// The request failed or the pool answered with an error status.
    #[error("could not fetch the user pool's JWKS from {url}: {source}")]
    Fetch {
        /// The JWKS URL.
        url: String,
        /// The HTTP client's error.
        source: reqwest::Error,
    },
    /// A key of the set is not a usable RSA key.
    #[error("the user pool's JWKS holds a key that cannot be used: {0}")]
    Key(jsonwebtoken::errors::Error),
}

/// Why a verifier could not be built at init.
#[derive(Debug, Error)]
pub enum InitError {
    /// The compiled-in roots were refused.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client for the user pool's keys: {0}")]
    Http(reqwest::Error),
    /// The pool's keys could not be fetched.
    #[error(transparent)]
    Jwks(#[from] JwksError),
}

/// A signed-in user, from a verified ID token.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedUser {
    /// `sub`: the user's id, the owner of their turns.
    pub sub: String,
    /// `cognito:username`.
    pub username: String,
    /// `cognito:groups` (empty when the user is in none).
    pub groups: Vec<String>,
    /// Every claim of the token.
    pub claims: Map<String, Value>,
}

/// The claims checked beyond what [`Validation`] checks.
#[derive(Debug, Deserialize)]
struct IdClaims {
    sub: String,
    token_use: String,
    #[serde(rename = "cognito:username", default)]
    username: Option<String>,
    #[serde(rename = "cognito:groups", default)]
    groups: Vec<String>,
}

/// The pool's keys by `kid`, and when they were fetched.
struct KeySet {
    keys: HashMap<String, DecodingKey>,
    fetched: Option<Instant>,
}

/// Checks ID tokens of one user pool and app client. Build it once per
/// execution environment.
pub struct CognitoVerifier {
    issuer: String,
    client_id: String,
    jwks_url: String,
    http: reqwest::Client,
    keys: RwLock<KeySet>,
    /// The shortest time between two fetches of the JWKS.
    pub min_refresh: Duration,
}

impl std::fmt::Debug for CognitoVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CognitoVerifier")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// How long a fetched JWKS is trusted to be complete: a token with an unknown
/// `kid` refetches the set only after this long.
pub const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(60);

impl CognitoVerifier {
    /// A verifier for tokens of `issuer` (the pool:
    /// `https://cognito-idp.<region>.amazonaws.com/<poolId>`) and app client
    /// `client_id`, fetching keys with `http`. Holds no keys until
    /// [`Self::refresh`].
    pub fn new(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        http: reqwest::Client,
    ) -> Self {
        let issuer = issuer.into();
        let jwks_url = format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/'));
        Self {
            issuer,
            client_id: client_id.into(),
            jwks_url,
            http,
            keys: RwLock::new(KeySet {
                keys: HashMap::new(),
                fetched: None,
            }),
            min_refresh: DEFAULT_MIN_REFRESH,
        }
    }

    /// The verifier of `settings`' pool with its keys fetched, as a
    /// function's init builds it (keys fetched over the compiled-in roots,
    /// 3 s to connect, 5 s per fetch).
    ///
    /// # Errors
    /// [`InitError`] when the HTTP client cannot be built or the keys cannot
    /// be fetched.
    pub async fn at_init(settings: &CognitoSettings) -> Result<Self, InitError> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(crate::tls::appsync_client_config()?)
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(InitError::Http)?;
        let verifier = Self::new(&settings.issuer, &settings.client_id, http);
        verifier.refresh().await?;
        Ok(verifier)
    }

    /// The issuer tokens must name (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Fetches the pool's JWKS and replaces the keys held.
    ///
    /// # Errors
    /// [`JwksError`] when the set cannot be fetched or holds an unusable key;
    /// the keys held before stay.
    pub async fn refresh(&self) -> Result<(), JwksError> {
        let fetch = |source| JwksError::Fetch {
            url: self.jwks_url.clone(),
            source,
        };
        let set: JwkSet = self
            .http
            .get(&self.jwks_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(fetch)?
            .json()
            .await
            .map_err(fetch)?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            if let Some(kid) = &jwk.common.key_id {
                keys.insert(
                    kid.clone(),
                    DecodingKey::from_jwk(jwk).map_err(JwksError::Key)?,
                );
            }
        }
        let mut held = self.keys.write().await;
        held.keys = keys;
        held.fetched = Some(Instant::now());
        Ok(())
    }

    /// Checks `authorization` (an `Authorization` header's value: the token,
    /// with or without `Bearer `) and returns its user.
    ///
    /// # Errors
    /// [`AuthError`] saying why the token is refused.
    pub async fn verify(&self, authorization: Option<&str>) -> Result<VerifiedUser, AuthError> {
        let token = authorization.ok_or(AuthError::Missing)?.trim();
        let token = token
            .strip_prefix("Bearer ")
            .or_else(|| token.strip_prefix("bearer "))
            .unwrap_or(token)
            .trim();
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Invalid);
        }
        let kid = header.kid.ok_or(AuthError::Invalid)?;
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 0;
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                    _ => AuthError::Invalid,
                }
            })?;
        let claims = data.claims;
        let id: IdClaims = serde_json::from_value(Value::Object(claims.clone()))
            .map_err(|_| AuthError::Invalid)?;
        if id.token_use != "id" {
            return Err(AuthError::Invalid);
        }
        Ok(VerifiedUser {
            username: id.username.unwrap_or_else(|| id.sub.clone()),
            sub: id.sub,
            groups: id.groups,
            claims,
        })
    }

    /// The key `kid`, fetching the set again when it is unknown and the last
    /// fetch is older than [`Self::min_refresh`].
    async fn key(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        let stale = {
            let held = self.keys.read().await;
            if let Some(key) = held.keys.get(kid) {
                return Ok(key.clone());
            }
            held.fetched
                .is_none_or(|at| at.elapsed() >= self.min_refresh)
        };
        if !stale {
            return Err(AuthError::Invalid);
        }
        if let Err(error) = self.refresh().await {
            tracing::warn!(%error, "could not refresh the user pool's keys");
            // Remember the attempt, so a failing pool is not asked again at once.
            self.keys.write().await.fetched = Some(Instant::now());
            return Err(AuthError::KeysUnavailable);
        }
        let held = self.keys.read().await;
        held.keys.get(kid).cloned().ok_or(AuthError::Invalid)
    }
}

#[cfg(test)]
mod tests;
