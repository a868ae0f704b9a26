//! Place in the data path: WebSocket API -> **the events it invokes Lambda
//! with** -> the authorizer and the route function. Their shapes follow
//! API Gateway's
//! (<https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api-mapping-template-reference.html>,
//! <https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api-lambda-auth.html>):
//! a REQUEST authorizer's event on `$connect`, and Lambda proxy events for
//! `$connect` (headers, query string), messages (`body`,
//! `isBase64Encoded`, `messageId`) and `$disconnect` (the close code and
//! reason). Header names are given in lower case (HTTP/1.1 names are
//! case-insensitive and the stand-in's server normalizes them).

use std::collections::BTreeMap;
use std::time::SystemTime;

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

/// What every event of one connection shares.
#[derive(Debug, Clone)]
pub struct ConnectionFacts {
    /// The API's id (`apiId`).
    pub api_id: String,
    /// The stage (`stage`).
    pub stage: String,
    /// The host clients connected to (`domainName`).
    pub domain_name: String,
    /// The connection's id.
    pub connection_id: String,
    /// When it connected.
    pub connected_at: SystemTime,
    /// The client's address.
    pub source_ip: String,
    /// The client's `User-Agent`, if it sent one.
    pub user_agent: Option<String>,
}

/// The `$connect` request as the events carry it.
#[derive(Debug, Clone, Default)]
pub struct ConnectRequest {
    /// Header name (lower case) -> values in order.
    pub headers: BTreeMap<String, Vec<String>>,
    /// Query parameter -> values in order.
    pub query: BTreeMap<String, Vec<String>>,
}

impl ConnectRequest {
    /// The headers and the raw query string of the upgrade request.
    pub fn new(headers: &HeaderMap, raw_query: Option<&str>) -> Self {
        let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            by_name
                .entry(name.as_str().to_owned())
                .or_default()
                .push(value);
        }
        let mut query: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in url::form_urlencoded::parse(raw_query.unwrap_or("").as_bytes()) {
            query
                .entry(name.into_owned())
                .or_default()
                .push(value.into_owned());
        }
        Self {
            headers: by_name,
            query,
        }
    }

    /// The last value of query parameter `name`, as API Gateway's
    /// single-value map keeps it.
    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query.get(name)?.last().map(String::as_str)
    }

    fn single(map: &BTreeMap<String, Vec<String>>) -> Value {
        if map.is_empty() {
            return Value::Null;
        }
        map.iter()
            .filter_map(|(k, v)| Some((k.clone(), Value::from(v.last()?.clone()))))
            .collect::<Map<_, _>>()
            .into()
    }

    fn multi(map: &BTreeMap<String, Vec<String>>) -> Value {
        if map.is_empty() {
            return Value::Null;
        }
        map.iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect::<Map<_, _>>()
            .into()
    }
}

fn millis(at: SystemTime) -> i64 {
    DateTime::<Utc>::from(at).timestamp_millis()
}

/// `requestContext` for `route_key` and `event_type` at `now`.
fn request_context(
    facts: &ConnectionFacts,
    route_key: &str,
    event_type: &str,
) -> Map<String, Value> {
    let now = SystemTime::now();
    let request_id = request_id();
    let mut context = json!({
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestId": request_id,
        "requestTime": DateTime::<Utc>::from(now).format("%d/%b/%Y:%H:%M:%S %z").to_string(),
        "requestTimeEpoch": millis(now),
        "messageDirection": "IN",
        "stage": facts.stage,
        "connectedAt": millis(facts.connected_at),
        "identity": {"sourceIp": facts.source_ip, "userAgent": facts.user_agent},
        "domainName": facts.domain_name,
        "connectionId": facts.connection_id,
        "apiId": facts.api_id,
    });
    context
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default()
}

/// An id in API Gateway's style: 12 random bytes, URL-safe base64 with its
/// padding (connection ids hold `=`, which `@connections` paths encode).
pub fn request_id() -> String {
    use base64::Engine as _;
    let bytes: [u8; 12] = rand_bytes();
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}

/// A connection id: 11 random bytes, URL-safe base64 ending in `=`.
pub fn connection_id() -> String {
    use base64::Engine as _;
    let bytes: [u8; 11] = rand_bytes();
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::Rng::fill(&mut rand::thread_rng(), &mut out[..]);
    out
}

/// The method ARN an authorizer's policy must allow.
pub fn method_arn(facts: &ConnectionFacts) -> String {
    format!(
        "arn:aws:execute-api:{}:{}:{}/{}/$connect",
        crate::DEV_REGION,
        crate::DEV_ACCOUNT_ID,
        facts.api_id,
        facts.stage
    )
}

/// The REQUEST authorizer's event for a `$connect`.
pub fn authorizer_event(facts: &ConnectionFacts, request: &ConnectRequest) -> Value {
    json!({
        "type": "REQUEST",
        "methodArn": method_arn(facts),
        "headers": ConnectRequest::single(&request.headers),
        "multiValueHeaders": ConnectRequest::multi(&request.headers),
        "queryStringParameters": ConnectRequest::single(&request.query),
        "multiValueQueryStringParameters": ConnectRequest::multi(&request.query),
        "stageVariables": {},
        "requestContext": request_context(facts, "$connect", "CONNECT"),
    })
}

/// The `$connect` integration's event, with the authorizer's `identity`.
pub fn connect_event(facts: &ConnectionFacts, request: &ConnectRequest, identity: &Value) -> Value {
    let mut context = request_context(facts, "$connect", "CONNECT");
    context.insert("authorizer".into(), identity.clone());
    json!({
        "headers": ConnectRequest::single(&request.headers),
        "multiValueHeaders": ConnectRequest::multi(&request.headers),
        "queryStringParameters": ConnectRequest::single(&request.query),
        "multiValueQueryStringParameters": ConnectRequest::multi(&request.query),
        "requestContext": context,
        "isBase64Encoded": false,
    })
}

/// A message's event: `body` is the text, or base64 for a binary message.
pub fn message_event(
    facts: &ConnectionFacts,
    route_key: &str,
    identity: &Value,
    body: &str,
    is_base64_encoded: bool,
) -> Value {
    let mut context = request_context(facts, route_key, "MESSAGE");
    context.insert("messageId".into(), request_id().into());
    context.insert("authorizer".into(), identity.clone());
    json!({
        "requestContext": context,
        "body": body,
        "isBase64Encoded": is_base64_encoded,
    })
}

/// The `$disconnect` event: why the connection closed.
pub fn disconnect_event(
    facts: &ConnectionFacts,
    identity: &Value,
    code: u16,
    reason: &str,
) -> Value {
    let mut context = request_context(facts, "$disconnect", "DISCONNECT");
    context.insert("authorizer".into(), identity.clone());
    context.insert("disconnectStatusCode".into(), code.into());
    context.insert("disconnectReason".into(), reason.into());
    json!({
        "headers": {"host": facts.domain_name},
        "requestContext": context,
        "isBase64Encoded": false,
    })
}
