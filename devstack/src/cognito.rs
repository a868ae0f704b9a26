//! The Cognito user pool stand-in: an RS256 key pair, its JWKS, ID tokens for
//! dev users, and the token check AppSync runs for `AMAZON_COGNITO_USER_POOLS`.
//!
//! Place in the data path: client (`sendPrompt`) and subscriber (`onChunk`)
//! --ID token--> **AppSync auth (Cognito)** -> resolvers.
//!
//! Tokens carry the claims of a real Cognito ID token
//! (<https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-the-id-token.html>)
//! and are checked the way AppSync checks them: signature against the pool's
//! JWKS, `iss`, `exp`, `token_use`, and the app client id against `aud`
//! (ID token) or `client_id` (access token).

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// How long a minted token is valid, in seconds (Cognito's default: one hour).
pub const TOKEN_TTL_SECS: u64 = 3600;

/// Errors of key handling and token checks. The `Display` texts are AppSync's.
#[derive(Debug, thiserror::Error)]
pub enum CognitoError {
    /// The token's `exp` has passed (no leeway).
    #[error("Token has expired.")]
    Expired,
    /// The token is not a JWT (its header does not decode).
    #[error("Unable to parse JWT token.")]
    Unparsable,
    /// A JWT this pool did not issue for its app client: another key or
    /// algorithm, a bad signature, another issuer, audience or `token_use`.
    #[error("Valid authorization header not provided.")]
    Invalid,
    /// The pool key file could not be read or written.
    #[error("could not read or write the pool key {path}: {source}")]
    KeyFile {
        /// The key file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The pool key could not be made, encoded or decoded as PKCS#1 RSA.
    #[error("the pool key is not a PKCS#1 RSA key: {0}")]
    KeyFormat(String),
}

/// The claims of a Cognito ID token, as AppSync sees them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IdTokenClaims {
    /// The user's stable id (see [`sub_for`]).
    pub sub: String,
    /// `cognito:username` (an access token's `username`): the name the user
    /// signs in with.
    #[serde(rename = "cognito:username", alias = "username")]
    pub username: String,
    /// `cognito:groups`: the user's groups, absent when there are none.
    #[serde(
        rename = "cognito:groups",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub groups: Option<Vec<String>>,
    /// The issuer: `{base_url}/{pool_id}`.
    pub iss: String,
    /// The app client id, in an ID token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// The app client id, in an access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `id` or `access`.
    pub token_use: String,
    /// When the user signed in, in seconds since the epoch.
    pub auth_time: u64,
    /// When the token was issued, in seconds since the epoch.
    pub iat: u64,
    /// When the token expires, in seconds since the epoch.
    pub exp: u64,
    /// The user's email (`NAME@example.com` for dev users).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The token's unique id.
    #[serde(default)]
    pub jti: Option<String>,
}

/// A verified token: its claims as JSON (for `identity.claims`) and the parts
/// AppSync's identity object names.
#[derive(Clone, Debug)]
pub struct VerifiedToken {
    /// The user's `sub`.
    pub sub: String,
    /// `cognito:username`.
    pub username: String,
    /// `cognito:groups`, when the token has any.
    pub groups: Option<Vec<String>>,
    /// `iss`.
    pub issuer: String,
    /// Every claim of the token, as AppSync's `identity.claims`.
    pub claims: Value,
}

/// One user pool with one app client.
#[derive(Clone)]
pub struct UserPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    pool_id: String,
    client_id: String,
    issuer: String,
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    modulus: String,
    exponent: String,
}

impl UserPool {
    /// A pool whose tokens are issued by `{base_url}/{pool_id}` (so the JWKS is at
    /// `{iss}/.well-known/jwks.json`, as with Cognito) and signed with `key`.
    pub fn new(base_url: &str, pool_id: &str, client_id: &str, key: &rsa::RsaPrivateKey) -> Self {
        let der = key
            .to_pkcs1_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        let modulus = URL_SAFE_NO_PAD.encode(key.n().to_bytes_be());
        let exponent = URL_SAFE_NO_PAD.encode(key.e().to_bytes_be());
        let kid = hex::encode(&Sha256::digest(modulus.as_bytes())[..12]);
        let decoding = DecodingKey::from_rsa_components(&modulus, &exponent)
            .unwrap_or_else(|_| DecodingKey::from_rsa_der(&[]));
        Self {
            inner: Arc::new(PoolInner {
                pool_id: pool_id.to_owned(),
                client_id: client_id.to_owned(),
                issuer: format!("{}/{}", base_url.trim_end_matches('/'), pool_id),
                kid,
                encoding: EncodingKey::from_rsa_der(&der),
                decoding,
                modulus,
                exponent,
            }),
        }
    }

    /// The pool's id, e.g. `us-east-1_devstack`.
    pub fn pool_id(&self) -> &str {
        &self.inner.pool_id
    }

    /// The id of the pool's one app client (tokens' `aud`).
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// The tokens' `iss`: `{base_url}/{pool_id}`.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The pool's JSON Web Key Set, as served at `/{poolId}/.well-known/jwks.json`.
    pub fn jwks(&self) -> Value {
        json!({"keys": [{
            "alg": "RS256", "e": self.inner.exponent, "kid": self.inner.kid,
            "kty": "RSA", "n": self.inner.modulus, "use": "sig"
        }]})
    }

    /// Mints an ID token for a dev user. The user's `sub` is derived from the
    /// name, so it is the same in every run.
    pub fn mint_id_token(&self, username: &str, groups: &[String], now_secs: u64) -> String {
        let claims = IdTokenClaims {
            sub: sub_for(username),
            username: username.to_owned(),
            groups: (!groups.is_empty()).then(|| groups.to_vec()),
            iss: self.inner.issuer.clone(),
            aud: Some(self.inner.client_id.clone()),
            client_id: None,
            token_use: "id".into(),
            auth_time: now_secs,
            iat: now_secs,
            exp: now_secs + TOKEN_TTL_SECS,
            email: Some(format!("{username}@example.com")),
            jti: Some(uuid::Uuid::new_v4().to_string()),
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.inner.kid.clone());
        // Encoding our own well-formed claims with our own key cannot fail;
        // an empty token would simply be refused later.
        jsonwebtoken::encode(&header, &claims, &self.inner.encoding).unwrap_or_default()
    }

    /// Checks a token as AppSync does for a Cognito user pool.
    ///
    /// # Errors
    ///
    /// [`CognitoError::Unparsable`] for a string that is not a JWT,
    /// [`CognitoError::Expired`] past `exp`, [`CognitoError::Invalid`] for any
    /// other failed check.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, CognitoError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| CognitoError::Unparsable)?;
        if header.alg != Algorithm::RS256 || header.kid.as_deref() != Some(&self.inner.kid) {
            return Err(CognitoError::Invalid);
        }
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.inner.issuer]);
        validation.validate_aud = false;
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Value>(token, &self.inner.decoding, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => CognitoError::Expired,
                _ => CognitoError::Invalid,
            })?;
        let claims: IdTokenClaims =
            serde_json::from_value(data.claims.clone()).map_err(|_| CognitoError::Invalid)?;
        let audience = match claims.token_use.as_str() {
            "id" => claims.aud.as_deref(),
            "access" => claims.client_id.as_deref(),
            _ => None,
        };
        if audience != Some(self.inner.client_id.as_str()) {
            return Err(CognitoError::Invalid);
        }
        Ok(VerifiedToken {
            sub: claims.sub,
            username: claims.username,
            groups: claims.groups,
            issuer: claims.iss,
            claims: data.claims,
        })
    }
}

/// Now, in seconds since the epoch, as JWT times are written.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The stable `sub` of a dev user: a UUID-shaped digest of the name.
pub fn sub_for(username: &str) -> String {
    let d = Sha256::digest(format!("devstack-user:{username}").as_bytes());
    let h = hex::encode(&d[..16]);
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Loads the pool's RSA key from `path`, or makes one and keeps it there, so
/// tokens minted by `devstack token` stay valid across restarts of the stack.
///
/// # Errors
///
/// [`CognitoError::KeyFile`] when the file or its directory cannot be read or
/// written, [`CognitoError::KeyFormat`] for a file that is not a PKCS#1 PEM key.
pub fn load_or_create_key(path: &Path) -> Result<rsa::RsaPrivateKey, CognitoError> {
    let io = |source| CognitoError::KeyFile {
        path: path.display().to_string(),
        source,
    };
    if path.exists() {
        let pem = std::fs::read_to_string(path).map_err(io)?;
        return rsa::RsaPrivateKey::from_pkcs1_pem(&pem)
            .map_err(|e| CognitoError::KeyFormat(e.to_string()));
    }
    let key = new_key()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let pem = key
        .to_pkcs1_pem(LineEnding::LF)
        .map_err(|e| CognitoError::KeyFormat(e.to_string()))?;
    std::fs::write(path, pem.as_bytes()).map_err(io)?;
    Ok(key)
}

/// A fresh RSA-2048 key.
///
/// # Errors
///
/// [`CognitoError::KeyFormat`] if the generator fails.
pub fn new_key() -> Result<rsa::RsaPrivateKey, CognitoError> {
    rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
        .map_err(|e| CognitoError::KeyFormat(e.to_string()))
}

/// The `jwks.json` handler body for a pool.
pub fn jwks_response(pool: &UserPool) -> axum::Json<Value> {
    axum::Json(pool.jwks())
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> UserPool {
        let key = new_key().expect("key");
        UserPool::new(
            "http://127.0.0.1:4000",
            "us-east-1_devstack",
            "client1",
            &key,
        )
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn a_minted_token_verifies_with_cognito_claims() {
        let pool = pool();
        let token = pool.mint_id_token("alice", &["admins".into()], now());
        let v = pool.verify(&token).expect("valid");
        assert_eq!(v.username, "alice");
        assert_eq!(v.sub, sub_for("alice"));
        assert_eq!(v.groups, Some(vec!["admins".to_string()]));
        assert_eq!(v.claims["token_use"], "id");
        assert_eq!(v.claims["aud"], "client1");
    }

    #[test]
    fn expired_forged_and_garbage_tokens_are_refused() {
        let pool = pool();
        let old = pool.mint_id_token("alice", &[], now() - 2 * TOKEN_TTL_SECS);
        assert!(matches!(pool.verify(&old), Err(CognitoError::Expired)));
        let other = UserPool::new(
            "http://127.0.0.1:4000",
            "us-east-1_devstack",
            "client1",
            &new_key().expect("key"),
        );
        let forged = other.mint_id_token("alice", &[], now());
        assert!(matches!(pool.verify(&forged), Err(CognitoError::Invalid)));
        assert!(matches!(
            pool.verify("not-a-jwt"),
            Err(CognitoError::Unparsable)
        ));
    }

    #[test]
    fn subs_are_stable_and_distinct() {
        assert_eq!(sub_for("alice"), sub_for("alice"));
        assert_ne!(sub_for("alice"), sub_for("bob"));
        assert_eq!(sub_for("alice").len(), 36);
    }
}
