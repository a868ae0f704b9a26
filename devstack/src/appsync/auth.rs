//! Who is calling AppSync: the auth modes, the checks for each, and the
//! `identity` object resolvers see.
//!
//! Place in the data path: client (`sendPrompt`, Cognito), resolver Lambda
//! (`publishChunk`, IAM) and subscriber (`onChunk`, Cognito) -> **AppSync
//! auth** -> resolvers.
//!
//! Header forms and identity shapes follow
//! <https://docs.aws.amazon.com/appsync/latest/devguide/security-authz.html>,
//! <https://docs.aws.amazon.com/appsync/latest/devguide/real-time-websocket-client.html>
//! and <https://docs.aws.amazon.com/appsync/latest/devguide/resolver-context-reference-js.html#aws-appsync-resolver-context-reference-identity-js>.

use std::time::SystemTime;

use http::HeaderMap;
use serde_json::{Value, json};

use crate::cognito::{CognitoError, UserPool};
use crate::sigv4_verify::{IamUsers, SigV4Error, SignedRequest, verify};

/// AppSync's authorization modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// `API_KEY`: an `x-api-key` header.
    ApiKey,
    /// `AWS_IAM`: a SigV4-signed request (the resolver's `publishChunk`).
    Iam,
    /// `AMAZON_COGNITO_USER_POOLS`: a user pool JWT in `Authorization`.
    CognitoUserPools,
    /// `OPENID_CONNECT`: named in directives; no caller is authenticated this way here.
    Oidc,
    /// `AWS_LAMBDA`: named in directives; no caller is authenticated this way here.
    Lambda,
}

impl AuthMode {
    /// The mode's name in AppSync's API (`AMAZON_COGNITO_USER_POOLS`, ...).
    pub fn name(self) -> &'static str {
        match self {
            AuthMode::ApiKey => "API_KEY",
            AuthMode::Iam => "AWS_IAM",
            AuthMode::CognitoUserPools => "AMAZON_COGNITO_USER_POOLS",
            AuthMode::Oidc => "OPENID_CONNECT",
            AuthMode::Lambda => "AWS_LAMBDA",
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The mode the caller was authenticated with.
    pub mode: AuthMode,
    /// The resolver context's `identity` (`null` for API keys).
    pub identity: Value,
    /// Cognito groups, for `cognito_groups` checks.
    pub groups: Vec<String>,
}

impl Caller {
    /// The caller's Cognito or OIDC `sub`.
    pub fn sub(&self) -> Option<&str> {
        self.identity.get("sub").and_then(Value::as_str)
    }
}

/// Why a caller was refused: AppSync's `errorType` and message.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthError {
    /// 401 or 403, as AppSync answers over HTTP.
    pub status: u16,
    /// AppSync's `errorType`, e.g. `UnauthorizedException`.
    pub error_type: &'static str,
    /// The message AppSync sends with it.
    pub message: String,
}

impl AuthError {
    /// 401 `UnauthorizedException` with `message`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: 401,
            error_type: "UnauthorizedException",
            message: message.into(),
        }
    }

    /// The HTTP body: `{"errors":[{"errorType":...,"message":...}]}`.
    pub fn body(&self) -> Value {
        json!({"errors": [{"errorType": self.error_type, "message": self.message}]})
    }
}

impl From<SigV4Error> for AuthError {
    fn from(e: SigV4Error) -> Self {
        Self {
            status: 403,
            error_type: e.error_type(),
            message: e.to_string(),
        }
    }
}

impl From<CognitoError> for AuthError {
    fn from(e: CognitoError) -> Self {
        AuthError::unauthorized(e.to_string())
    }
}

/// What AppSync knows to check callers against.
#[derive(Clone)]
pub struct Authenticator {
    /// The Cognito user pool whose tokens are accepted.
    pub user_pool: UserPool,
    /// The IAM principals whose SigV4 signatures are accepted.
    pub iam_users: IamUsers,
    /// The API keys accepted for `API_KEY`.
    pub api_keys: Vec<String>,
    /// The API's default mode: the only one allowed on a field and type
    /// without auth directives.
    pub default_mode: AuthMode,
}

impl Authenticator {
    /// Authenticates an HTTP request to `POST /graphql` from its headers and
    /// body: SigV4 when `Authorization` is signed, else an `x-api-key`, else a
    /// Cognito JWT in `Authorization`.
    ///
    /// # Errors
    ///
    /// 403 with the SigV4 error type for a bad signature; 401
    /// `UnauthorizedException` for an unknown API key, a bad or expired token,
    /// or no credentials at all.
    pub fn http(
        &self,
        path: &str,
        query: &str,
        headers: &HeaderMap,
        body: &[u8],
        source_ip: &str,
    ) -> Result<Caller, AuthError> {
        let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
        if authorization.is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256")) {
            let request = SignedRequest {
                method: "POST",
                path,
                query,
                headers,
                body,
            };
            let caller = verify(&request, "appsync", &self.iam_users, SystemTime::now())?;
            return Ok(iam_caller(&caller, source_ip));
        }
        if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
            return self.api_key(key);
        }
        match authorization {
            Some(token) if !token.is_empty() => self.jwt(token, source_ip),
            _ => Err(AuthError::unauthorized(
                "Valid authorization header not provided.",
            )),
        }
    }

    /// Authenticates a real-time header object (connect or `start`). For IAM,
    /// the object holds the headers of a request signed over `POST {path}` with
    /// `body`: `/graphql/connect` and `{}` on connect, `/graphql` and the
    /// `start` payload's `data` string on each start.
    ///
    /// # Errors
    ///
    /// As [`Self::http`]; 401 when `object` is not a JSON object.
    pub fn header_object(
        &self,
        object: &Value,
        path: &str,
        body: &[u8],
        source_ip: &str,
    ) -> Result<Caller, AuthError> {
        let Some(fields) = object.as_object() else {
            return Err(AuthError::unauthorized(
                "You are not authorized to make this call.",
            ));
        };
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            let (Ok(name), Some(Ok(value))) = (
                http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()),
                value.as_str().map(http::HeaderValue::from_str),
            ) else {
                continue;
            };
            headers.insert(name, value);
        }
        self.http(path, "", &headers, body, source_ip)
    }

    fn api_key(&self, key: &str) -> Result<Caller, AuthError> {
        if self.api_keys.iter().any(|k| k == key) {
            Ok(Caller {
                mode: AuthMode::ApiKey,
                identity: Value::Null,
                groups: Vec::new(),
            })
        } else {
            Err(AuthError::unauthorized(
                "You are not authorized to make this call.",
            ))
        }
    }

    fn jwt(&self, token: &str, source_ip: &str) -> Result<Caller, AuthError> {
        let token = token.strip_prefix("Bearer ").unwrap_or(token);
        let verified = self.user_pool.verify(token)?;
        Ok(Caller {
            mode: AuthMode::CognitoUserPools,
            identity: json!({
                "sub": verified.sub,
                "issuer": verified.issuer,
                "username": verified.username,
                "claims": verified.claims,
                "sourceIp": [source_ip],
                "defaultAuthStrategy": "ALLOW",
                "groups": verified.groups,
            }),
            groups: verified.groups.unwrap_or_default(),
        })
    }
}

/// The `identity` AppSync gives an IAM caller (no Cognito identity pool here).
fn iam_caller(caller: &crate::sigv4_verify::VerifiedCaller, source_ip: &str) -> Caller {
    Caller {
        mode: AuthMode::Iam,
        identity: json!({
            "accountId": caller.account_id,
            "cognitoIdentityPoolId": null,
            "cognitoIdentityId": null,
            "cognitoIdentityAuthType": null,
            "cognitoIdentityAuthProvider": null,
            "sourceIp": [source_ip],
            "username": caller.access_key_id,
            "userArn": caller.user_arn,
        }),
        groups: Vec::new(),
    }
}
