//! Place in the data path: client --connect (`?token=<ID token>`)--> API
//! Gateway `$connect` --> **the Lambda REQUEST authorizer** -> allow or
//! deny the connection. The only check on a WebSocket connection: API
//! Gateway runs authorizers on `$connect` alone, once per connection, and
//! passes what it returns to every route of that connection
//! (<https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api-lambda-auth.html>).
//!
//! A browser's `WebSocket` cannot set headers, so the Cognito ID token comes
//! in the query string (`token`; the API's identity source is
//! `route.request.querystring.token`, so a connection without one is refused
//! before the authorizer runs). The token is checked as the function URL
//! checks it ([`crate::cognito`]). An accepted token answers with an IAM
//! policy allowing `execute-api:Invoke` on the method ARN, the user's `sub`
//! as `principalId`, and a `context` of scalars (`username`, `groups` as a
//! JSON array in a string, `issuer`, `expiresAt`: the token's `exp`, after
//! which the route function refuses the connection's prompts); any refused token fails the invocation with
//! the message `Unauthorized`, which API Gateway answers with 401
//! (<https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-lambda-authorizer-output.html>).
//! Keys that cannot be fetched fail it with another message (500): the
//! caller may try again.

use std::collections::HashMap;
use std::sync::Arc;

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::info;

use crate::cognito::{AuthError, CognitoSettings, CognitoVerifier};

/// The query string parameter holding the ID token.
pub const TOKEN_PARAMETER: &str = "token";

/// The message that makes API Gateway deny a connection with 401.
const UNAUTHORIZED: &str = "Unauthorized";

/// The part of a REQUEST authorizer's event the check reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerEvent {
    /// `REQUEST`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `arn:aws:execute-api:{region}:{account}:{apiId}/{stage}/$connect`.
    pub method_arn: String,
    /// The connect request's query string.
    #[serde(default)]
    pub query_string_parameters: Option<HashMap<String, String>>,
}

/// Checks one connection's token; the policy document on success.
///
/// # Errors
/// A [`Diagnostic`] whose message is `Unauthorized` for a missing or
/// refused token, another for keys that cannot be fetched or an event
/// that is not a REQUEST authorizer's.
pub async fn authorize(verifier: &CognitoVerifier, event: Value) -> Result<Value, Diagnostic> {
    let event: AuthorizerEvent = serde_json::from_value(event).map_err(|e| Diagnostic {
        error_type: "InvalidEvent".into(),
        error_message: format!("not a REQUEST authorizer event: {e}"),
    })?;
    let token = event
        .query_string_parameters
        .as_ref()
        .and_then(|q| q.get(TOKEN_PARAMETER))
        .map(String::as_str);
    let user = verifier.verify(token).await.map_err(|error| {
        info!(%error, "connection refused");
        match error {
            AuthError::KeysUnavailable => Diagnostic {
                error_type: "KeysUnavailable".into(),
                error_message: error.to_string(),
            },
            _ => Diagnostic {
                error_type: UNAUTHORIZED.into(),
                error_message: UNAUTHORIZED.into(),
            },
        }
    })?;
    Ok(json!({
        "principalId": user.sub,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{
                "Action": "execute-api:Invoke",
                "Effect": "Allow",
                "Resource": event.method_arn,
            }],
        },
        "context": {
            "username": user.username,
            "groups": serde_json::to_string(&user.groups).unwrap_or_else(|_| "[]".into()),
            "issuer": verifier.issuer(),
            "expiresAt": user.claims.get("exp").and_then(Value::as_i64).unwrap_or(0),
        },
    }))
}

/// The authorizer function: tracing, the pool's keys, then the Lambda
/// runtime loop.
///
/// # Errors
/// An init error (no pool named, keys that cannot be fetched) or the
/// runtime's own error.
pub async fn run() -> Result<(), lambda_runtime::Error> {
    crate::init_tracing();
    let settings = CognitoSettings::from_lookup(&|name| std::env::var(name).ok())?;
    let verifier = Arc::new(CognitoVerifier::at_init(&settings).await?);
    let handler = lambda_runtime::service_fn(move |event: LambdaEvent<Value>| {
        let verifier = Arc::clone(&verifier);
        async move { authorize(&verifier, event.payload).await }
    });
    lambda_runtime::Runtime::new(handler)
        .layer(lambda_runtime::layers::TracingLayer::new())
        .run()
        .await
}
