//! Place in the data path: client --POST--> function URL --Invoke--> **the
//! request** -> Cognito check -> the turn. What Lambda hands a function
//! behind a function URL: the HTTP request as an API Gateway payload
//! format 2.0 event
//! (<https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html>):
//! header names in lower case, repeated headers joined with commas, the
//! body a string, base64 when `isBase64Encoded`.
//!
//! The request a client sends: `POST` with `Authorization: Bearer <ID token>`
//! and a JSON body, the `SendPromptInput` of `schema.graphql`
//! (`conversationId`, `prompt`, and optionally `modelId`, `system`,
//! `maxTokens`, `temperature`). The turn id is the function's to choose, as
//! `sendPrompt`'s resolver chooses it; one sent is ignored.

use std::collections::HashMap;

use base64::Engine as _;
use serde::Deserialize;
use thiserror::Error;

use crate::event::SendPromptInput;

/// The members of a function URL's invocation event that the function reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionUrlRequest {
    /// The path, e.g. `/` or `/cancel`.
    #[serde(default)]
    pub raw_path: Option<String>,
    /// Request headers, names in lower case.
    #[serde(default)]
    pub headers: HashMap<String, String>,
    /// The body as Lambda passes it.
    #[serde(default)]
    pub body: Option<String>,
    /// Whether `body` is base64 (Lambda encodes bodies of non-text types).
    #[serde(default)]
    pub is_base64_encoded: bool,
    /// `requestContext`: the method and the caller's address.
    pub request_context: UrlRequestContext,
}

/// `requestContext` of the event.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UrlRequestContext {
    /// `requestContext.http`.
    pub http: UrlHttp,
    /// The URL's request id (`x-amzn-RequestId`).
    #[serde(default)]
    pub request_id: Option<String>,
}

/// `requestContext.http` of the event.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UrlHttp {
    /// The HTTP method, e.g. `POST`.
    pub method: String,
    /// The path, e.g. `/`.
    #[serde(default)]
    pub path: Option<String>,
}

/// Why a request cannot start a turn, before any model call. Each maps to an
/// HTTP status; the messages are safe to show the caller.
#[derive(Debug, Error, PartialEq)]
pub enum RequestError {
    /// Not a function URL event at all (Lambda error, not an HTTP answer).
    #[error("the invocation is not a function URL request")]
    NotAnHttpRequest,
    /// A method other than `POST`.
    #[error("use POST")]
    MethodNotAllowed,
    /// No body, a body that is not UTF-8 JSON, or JSON without the
    /// request's fields (`conversationId` and `prompt` for a prompt).
    #[error("the body is not a valid request: {0}")]
    BadBody(String),
}

impl FunctionUrlRequest {
    /// Parses the invocation payload.
    ///
    /// # Errors
    /// [`RequestError::NotAnHttpRequest`] when it is not a function URL event.
    pub fn from_value(payload: serde_json::Value) -> Result<Self, RequestError> {
        serde_json::from_value(payload).map_err(|_| RequestError::NotAnHttpRequest)
    }

    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The prompt of a `POST`.
    ///
    /// # Errors
    /// [`RequestError::MethodNotAllowed`] for another method,
    /// [`RequestError::BadBody`] when the body is not the input's JSON.
    pub fn prompt_input(&self) -> Result<SendPromptInput, RequestError> {
        self.json_body()
    }

    /// The JSON body of a `POST`, as `T`.
    ///
    /// # Errors
    /// [`RequestError::MethodNotAllowed`] for another method,
    /// [`RequestError::BadBody`] when the body is not `T`'s JSON.
    pub fn json_body<T: serde::de::DeserializeOwned>(&self) -> Result<T, RequestError> {
        if !self
            .request_context
            .http
            .method
            .eq_ignore_ascii_case("POST")
        {
            return Err(RequestError::MethodNotAllowed);
        }
        let body = self.body.as_deref().unwrap_or_default();
        let bytes = if self.is_base64_encoded {
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .map_err(|_| RequestError::BadBody("the body is not valid base64".into()))?
        } else {
            body.as_bytes().to_vec()
        };
        serde_json::from_slice(&bytes).map_err(|e| RequestError::BadBody(describe(&e)))
    }
}

/// What is wrong with a body, without echoing any of it.
fn describe(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match error.classify() {
        Category::Data => {
            // "missing field `prompt`" names no input; other data errors
            // quote the value they refuse, so they are not passed on.
            let text = error.to_string();
            match text.split(" at line ").next() {
                Some(missing) if missing.starts_with("missing field") => missing.to_owned(),
                _ => "a field has the wrong type".into(),
            }
        }
        Category::Eof => "the JSON ends too early".into(),
        Category::Syntax | Category::Io => "the body is not JSON".into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(method: &str, body: Option<&str>, base64: bool) -> FunctionUrlRequest {
        FunctionUrlRequest::from_value(json!({
            "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
            "headers": {"authorization": "Bearer t", "content-type": "application/json"},
            "requestContext": {"http": {"method": method, "path": "/"}, "requestId": "r"},
            "body": body, "isBase64Encoded": base64
        }))
        .expect("a function URL event")
    }

    #[test]
    fn a_post_with_json_gives_the_input() {
        let input = request(
            "POST",
            Some(r#"{"conversationId":"c1","prompt":"hi"}"#),
            false,
        )
        .prompt_input()
        .expect("the input");
        assert_eq!(input.conversation_id, "c1");
        assert_eq!(input.prompt, "hi");
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(r#"{"conversationId":"c2","prompt":"yo","maxTokens":5}"#);
        let input = request("POST", Some(&encoded), true)
            .prompt_input()
            .expect("the input");
        assert_eq!(
            (input.conversation_id.as_str(), input.max_tokens),
            ("c2", Some(5))
        );
    }

    #[test]
    fn other_methods_and_bad_bodies_are_refused_without_echoing_the_body() {
        assert_eq!(
            request("GET", None, false).prompt_input().err(),
            Some(RequestError::MethodNotAllowed)
        );
        for body in [
            None,
            Some("secret prompt"),
            Some(r#"{"prompt":"secret"}"#),
            Some(r#"{"conversationId":"c","prompt":"p","maxTokens":"secret"}"#),
            Some("{"),
        ] {
            let Err(RequestError::BadBody(why)) = request("POST", body, false).prompt_input()
            else {
                panic!("{body:?} accepted");
            };
            assert!(!why.contains("secret"), "{why}");
        }
        assert!(FunctionUrlRequest::from_value(json!({"arguments": {}})).is_err());
    }
}
