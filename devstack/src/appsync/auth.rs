//! Who is calling AppSync: the auth modes, the checks for each, and the
//! `identity` object resolvers see. Place in the data path: publisher and
//! subscribers -> **AppSync auth** -> resolvers.
//!
//! Header forms and identity shapes follow
//! <https://docs.aws.amazon.com/appsync/latest/devguide/security-authz.html>,
//! <https://docs.aws.amazon.com/appsync/latest/devguide/real-time-websocket-client.html>
//! and <https://docs.aws.amazon.com/appsync/latest/devguide/resolver-context-reference-js.html#aws-appsync-resolver-context-reference-identity-js>.

use std::time::SystemTime;

use http::HeaderMap;
use serde_json::{Value, json};

use crate::cognito::{CognitoError, UserPool};
use crate::sigv4::{IamUsers, SigV4Error, SignedRequest, verify};

/// AppSync's authorization modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    ApiKey,
    Iam,
    CognitoUserPools,
    Oidc,
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
    pub error_type: &'static str,
    pub message: String,
}

impl AuthError {
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
    pub user_pool: UserPool,
    pub iam_users: IamUsers,
    pub api_keys: Vec<String>,
    pub default_mode: AuthMode,
}

impl Authenticator {
    /// Authenticates an HTTP request to `POST /graphql` from its headers and body.
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

fn iam_caller(caller: &crate::sigv4::VerifiedCaller, source_ip: &str) -> Caller {
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
