//! AppSync semantics over real sockets: validation errors, auth directives,
//! `@aws_subscribe` payload cutting, filters and their limits, and the
//! real-time protocol's limits and errors, as the AWS docs describe them
//! (<https://docs.aws.amazon.com/appsync/latest/devguide/real-time-websocket-client.html>,
//! <https://docs.aws.amazon.com/appsync/latest/devguide/aws-appsync-real-time-data.html>,
//! <https://docs.aws.amazon.com/appsync/latest/devguide/security-authz.html>).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use appsync_client::{HeaderTransport, RealtimeAuth, RealtimeClient, RealtimeError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use devstack::Stack;
use devstack::appsync::auth::{AuthMode, Authenticator};
use devstack::appsync::filter::Filter;
use devstack::appsync::resolvers::{ResolveRequest, ResolverError, Resolvers};
use devstack::appsync::schema::Schema;
use devstack::appsync::{AppSync, AppSyncConfig};
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const QUIET: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------- helpers

/// Opens a raw real-time socket at `url`, offering `protocols` (none if empty).
async fn raw_socket(url: &str, protocols: &[String]) -> Ws {
    let mut request = url.into_client_request().expect("a request");
    if !protocols.is_empty() {
        let value = protocols.join(", ").parse().expect("a header value");
        request
            .headers_mut()
            .insert("sec-websocket-protocol", value);
    }
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the upgrade succeeds");
    ws
}

fn header_protocol(object: &Value) -> String {
    format!(
        "header-{}",
        URL_SAFE_NO_PAD.encode(object.to_string().as_bytes())
    )
}

/// A Cognito-authorized raw socket on the stack, `connection_init` sent and acked.
async fn raw_cognito(stack: &Stack, token: &str) -> (Ws, Value) {
    let object = json!({"host": stack.addr.to_string(), "Authorization": token});
    let mut ws = raw_socket(
        &stack.realtime_url(),
        &["graphql-ws".into(), header_protocol(&object)],
    )
    .await;
    send(&mut ws, json!({"type": "connection_init"})).await;
    let ack = next_frame(&mut ws).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    (ws, object)
}

async fn send(ws: &mut Ws, message: Value) {
    ws.send(Message::Text(message.to_string().into()))
        .await
        .expect("sent");
}

/// The next JSON frame, `ka` included; panics after 5 s or on close.
async fn next_any(ws: &mut Ws) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame in time")
            .expect("the socket stays open")
            .expect("a frame");
        if let Message::Text(t) = frame {
            return serde_json::from_str(&t).expect("JSON");
        }
    }
}

/// The next JSON frame that is not a `ka`.
async fn next_frame(ws: &mut Ws) -> Value {
    loop {
        let v = next_any(ws).await;
        if v["type"] != "ka" {
            return v;
        }
    }
}

/// A `start` for `query` authorized with `authorization`.
/// The next frame, which must be the `error` answering the `start` with
/// `id`; returns its first error.
async fn start_error(ws: &mut Ws, id: &str) -> Value {
    let frame = next_frame(ws).await;
    assert_eq!(
        (frame["type"].as_str(), frame["id"].as_str()),
        (Some("error"), Some(id)),
        "{frame}"
    );
    frame["payload"]["errors"][0].clone()
}

fn start(id: &str, query: &str, variables: Value, authorization: &Value) -> Value {
    let data = json!({"query": query, "variables": variables}).to_string();
    json!({"id": id, "type": "start",
        "payload": {"data": data, "extensions": {"authorization": authorization}}})
}

/// A SigV4-signed publish of `body`; returns (status, body).
async fn publish(stack: &Stack, body: &Value) -> (u16, Value) {
    let text = body.to_string();
    let headers = iam_headers(stack, text.as_bytes(), devstack::DEV_SECRET_ACCESS_KEY);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    post(stack, &headers, body).await
}

fn chunk_input(conversation: &str, owner: &str, seq: i64, text: &str) -> Value {
    json!({"conversationId": conversation, "turnId": "t1", "owner": owner,
        "seq": seq, "text": text, "done": false})
}

fn publish_selecting(selection: &str, input: Value) -> Value {
    json!({
        "query": format!("mutation P($input: ChunkInput!) {{ publishChunk(input: $input) {{ {selection} }} }}"),
        "variables": {"input": input}
    })
}

async fn next_data(subscription: &mut appsync_client::Subscription) -> Value {
    tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .expect("delivered in time")
        .expect("open")
        .expect("data")
}

async fn nothing_arrives(subscription: &mut appsync_client::Subscription) {
    let got = tokio::time::timeout(QUIET, subscription.next()).await;
    assert!(got.is_err(), "expected nothing, got {got:?}");
}

// ------------------------------------------------------- 1. validation

#[tokio::test]
async fn validation_errors_have_graphql_java_shapes_and_locations() {
    let stack = stack(resolver()).await;
    let token = stack.token("alice");
    let auth = [("authorization", token.as_str())];
    let (status, body) = post(&stack, &auth, &json!({"query": "{\n  nope }"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["data"], Value::Null);
    assert_eq!(
        body["errors"][0]["message"],
        "Validation error of type FieldUndefined: Field 'nope' in type 'Query' is undefined @ 'nope'"
    );
    assert_eq!(
        body["errors"][0]["locations"],
        json!([{"line": 2, "column": 3, "sourceName": null}])
    );
    let (status, body) = post(&stack, &auth, &json!({"query": "{ ping(x: 1) }"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Validation error of type UnknownArgument:")),
        "{body}"
    );
    let (status, body) = post(&stack, &auth, &json!({"query": "{ ping { x } }"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("SubSelectionNotAllowed")),
        "{body}"
    );
    // A subscription start that does not validate gets the same errors on the socket.
    let (mut ws, auth_object) = raw_cognito(&stack, &token).await;
    send(
        &mut ws,
        start(
            "v1",
            "subscription { onChunk { seq } }",
            json!({}),
            &auth_object,
        ),
    )
    .await;
    let error = start_error(&mut ws, "v1").await;
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("MissingFieldArgument")),
        "{error}"
    );
    stack.shutdown().await;
}

// ------------------------------------------------------------- 3. auth

#[tokio::test]
async fn an_api_key_is_refused_on_the_cognito_only_query_and_a_bad_key_is_401() {
    let stack = stack(resolver()).await;
    let ping = json!({"query": "{ ping }"});
    let (status, body) = post(&stack, &[("x-api-key", devstack::DEV_API_KEY)], &ping).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], Value::Null, "{body}");
    assert_eq!(body["errors"][0]["errorType"], "Unauthorized");
    assert_eq!(
        body["errors"][0]["message"],
        "Not Authorized to access ping on type Query"
    );
    assert_eq!(body["errors"][0]["path"], json!(["ping"]));
    assert_eq!(body["errors"].as_array().map(Vec::len), Some(1), "{body}");
    let (status, body) = post(&stack, &[("x-api-key", "da2-wrong")], &ping).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["errors"][0]["errorType"], "UnauthorizedException");
    let (status, body) = post(&stack, &[], &ping).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["errors"][0]["errorType"], "UnauthorizedException");
    // On the socket: an API key may connect but not subscribe to a Cognito-only field.
    let client = RealtimeClient::connect(
        &stack.realtime_url(),
        &stack.graphql_url(),
        RealtimeAuth::ApiKey(devstack::DEV_API_KEY.into()),
        HeaderTransport::QueryString,
    )
    .await
    .expect("an API key connects");
    match client
        .subscribe(appsync_client::ON_CHUNK, json!({"conversationId": "c"}))
        .await
    {
        Err(RealtimeError::Subscription(errors)) => {
            assert_eq!(errors[0]["errorType"], "Unauthorized");
            assert_eq!(
                errors[0]["message"],
                "Not Authorized to access onChunk on type Subscription"
            );
        }
        Err(other) => panic!("expected Unauthorized, got {other}"),
        Ok(_) => panic!("an API key subscribed to onChunk"),
    }
    stack.shutdown().await;
}

// ------------------------------------------- 4. subscription payloads

#[tokio::test]
async fn a_subscriber_asking_for_an_unpublished_non_null_field_gets_null_and_the_error() {
    let stack = stack(resolver()).await;
    let token = stack.token("alice");
    let owner = devstack::cognito::sub_for("alice");
    let client = connect(&stack, &token).await;
    let mut sub = client
        .subscribe(
            "subscription S($c: ID!) { onChunk(conversationId: $c) { seq text } }",
            json!({"c": "conv-cut"}),
        )
        .await
        .expect("subscribed");
    let (status, body) = publish(
        &stack,
        &publish_selecting(
            "conversationId owner seq",
            chunk_input("conv-cut", &owner, 0, "hidden"),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["publishChunk"]["seq"], 0, "{body}");
    let payload = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("delivered in time")
        .expect("open")
        .expect("data");
    assert_eq!(payload["data"], json!({"onChunk": null}), "{payload}");
    assert_eq!(
        payload["errors"][0]["message"],
        "Cannot return null for non-nullable type: 'String' within parent 'Chunk' (/onChunk/text)"
    );
    assert_eq!(payload["errors"][0]["path"], json!(["onChunk", "text"]));
    stack.shutdown().await;
}

#[tokio::test]
async fn subscribers_sharing_a_connection_get_their_own_selection_and_filter() {
    // A publish decides and completes once per audience (filters, selection,
    // auth): subscriptions that differ in any of them must not share.
    let stack = stack(resolver()).await;
    let token = stack.token("alice");
    let owner = devstack::cognito::sub_for("alice");
    let client = connect(&stack, &token).await;
    let selecting = |selection: &str| {
        format!("subscription S($c: ID!) {{ onChunk(conversationId: $c) {{ {selection} }} }}")
    };
    let mut both = client
        .subscribe(&selecting("seq text"), json!({"c": "conv-a"}))
        .await
        .expect("subscribed");
    let mut seq_only = client
        .subscribe(&selecting("seq"), json!({"c": "conv-a"}))
        .await
        .expect("subscribed");
    let mut same_as_both = client
        .subscribe(&selecting("seq text"), json!({"c": "conv-a"}))
        .await
        .expect("subscribed");
    let mut other_conversation = client
        .subscribe(&selecting("seq text"), json!({"c": "conv-b"}))
        .await
        .expect("subscribed");
    let all = "conversationId turnId owner seq text done";
    let (status, body) = publish(
        &stack,
        &publish_selecting(all, chunk_input("conv-a", &owner, 0, "hello")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let expected = json!({"onChunk": {"seq": 0, "text": "hello"}});
    assert_eq!(next_data(&mut both).await["data"], expected);
    assert_eq!(next_data(&mut same_as_both).await["data"], expected);
    assert_eq!(
        next_data(&mut seq_only).await["data"],
        json!({"onChunk": {"seq": 0}})
    );
    nothing_arrives(&mut other_conversation).await;
    stack.shutdown().await;
}

#[tokio::test]
async fn an_argument_filter_on_a_field_the_mutation_did_not_select_delivers_nothing() {
    let stack = stack(resolver()).await;
    let token = stack.token("alice");
    let owner = devstack::cognito::sub_for("alice");
    let client = connect(&stack, &token).await;
    let mut sub = subscribe(&client, "conv-unselected").await;
    let all = "conversationId turnId owner seq text done";
    // Without conversationId in the selection, the argument cannot match.
    let (status, body) = publish(
        &stack,
        &publish_selecting(
            "turnId owner seq text done",
            chunk_input("conv-unselected", &owner, 0, "a"),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    nothing_arrives(&mut sub).await;
    // A different conversation does not match either.
    publish(
        &stack,
        &publish_selecting(all, chunk_input("conv-other", &owner, 1, "b")),
    )
    .await;
    nothing_arrives(&mut sub).await;
    publish(
        &stack,
        &publish_selecting(all, chunk_input("conv-unselected", &owner, 2, "c")),
    )
    .await;
    let payload = sub.next().await.expect("open").expect("data");
    assert_eq!(payload["data"]["onChunk"]["seq"], 2, "{payload}");
    stack.shutdown().await;
}

#[tokio::test]
async fn a_message_over_240_kb_is_dropped_silently() {
    let stack = stack(resolver()).await;
    let token = stack.token("alice");
    let owner = devstack::cognito::sub_for("alice");
    let client = connect(&stack, &token).await;
    let mut sub = subscribe(&client, "conv-big").await;
    let all = "conversationId turnId owner seq text done";
    let big = "x".repeat(250 * 1024);
    let (status, body) = publish(
        &stack,
        &publish_selecting(all, chunk_input("conv-big", &owner, 0, &big)),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.get("errors").is_none(), "no error for the publisher");
    assert_eq!(body["data"]["publishChunk"]["seq"], 0);
    nothing_arrives(&mut sub).await;
    let (status, _) = publish(
        &stack,
        &publish_selecting(all, chunk_input("conv-big", &owner, 1, "small")),
    )
    .await;
    assert_eq!(status, 200);
    let payload = sub.next().await.expect("open").expect("data");
    assert_eq!(payload["data"]["onChunk"]["seq"], 1, "{payload}");
    assert_eq!(payload["data"]["onChunk"]["text"], "small");
    stack.shutdown().await;
}

// ------------------------------------------------ 6. real-time protocol

#[tokio::test]
async fn connection_ack_carries_the_timeout_and_stop_is_completed() {
    let stack = stack(resolver()).await;
    let token = stack.token("alice");
    let object = json!({"host": stack.addr.to_string(), "Authorization": token});
    let mut ws = raw_socket(
        &stack.realtime_url(),
        &["graphql-ws".into(), header_protocol(&object)],
    )
    .await;
    send(&mut ws, json!({"type": "connection_init"})).await;
    let ack = next_frame(&mut ws).await;
    assert_eq!(
        ack,
        json!({"type": "connection_ack", "payload": {"connectionTimeoutMs": 300000}})
    );
    let on_chunk = appsync_client::ON_CHUNK;
    send(
        &mut ws,
        start("s1", on_chunk, json!({"conversationId": "c"}), &object),
    )
    .await;
    assert_eq!(
        next_frame(&mut ws).await,
        json!({"type": "start_ack", "id": "s1"})
    );
    send(&mut ws, json!({"type": "stop", "id": "s1"})).await;
    assert_eq!(
        next_frame(&mut ws).await,
        json!({"type": "complete", "id": "s1"})
    );
    assert_eq!(stack.appsync.pubsub.len(), 0, "the subscription is gone");
    stack.shutdown().await;
}

#[tokio::test]
async fn a_reused_id_a_start_without_extensions_and_the_101st_subscription_are_refused() {
    let stack = stack(resolver()).await;
    let token = stack.token("alice");
    let (mut ws, object) = raw_cognito(&stack, &token).await;
    let on_chunk = appsync_client::ON_CHUNK;
    let vars = json!({"conversationId": "c"});
    send(&mut ws, start("dup", on_chunk, vars.clone(), &object)).await;
    assert_eq!(next_frame(&mut ws).await["type"], "start_ack");
    send(&mut ws, start("dup", on_chunk, vars.clone(), &object)).await;
    let dup = start_error(&mut ws, "dup").await;
    assert_eq!(dup["errorType"], "DuplicatedOperationError");

    let data = json!({"query": on_chunk, "variables": vars}).to_string();
    send(
        &mut ws,
        json!({"id": "bare", "type": "start", "payload": {"data": data}}),
    )
    .await;
    let bare = start_error(&mut ws, "bare").await;
    assert_eq!(bare["errorType"], "UnsupportedOperation");
    assert!(
        bare["message"]
            .as_str()
            .is_some_and(|m| m.contains("not supported through the realtime channel")),
        "{bare}"
    );

    // "dup" is the first; 99 more reach the limit of 100.
    for i in 1..100 {
        send(
            &mut ws,
            start(&format!("s{i}"), on_chunk, vars.clone(), &object),
        )
        .await;
        let ack = next_frame(&mut ws).await;
        assert_eq!(ack["type"], "start_ack", "subscription {i}: {ack}");
    }
    send(&mut ws, start("s100", on_chunk, vars.clone(), &object)).await;
    let refused = start_error(&mut ws, "s100").await;
    assert_eq!(refused["errorType"], "MaxSubscriptionsReachedError");
    // Stopping one makes room again.
    send(&mut ws, json!({"type": "stop", "id": "s1"})).await;
    assert_eq!(next_frame(&mut ws).await["type"], "complete");
    send(&mut ws, start("s101", on_chunk, vars, &object)).await;
    assert_eq!(next_frame(&mut ws).await["type"], "start_ack");
    stack.shutdown().await;
}

#[tokio::test]
async fn iam_signed_starts_are_verified() {
    let stack = stack(resolver()).await;
    let iam = |secret: &str| RealtimeAuth::Iam {
        credentials: aws_credential_types::Credentials::new(
            devstack::DEV_ACCESS_KEY_ID,
            secret.to_owned(),
            None,
            None,
            "test",
        ),
        region: devstack::DEV_REGION.into(),
    };
    let client = RealtimeClient::connect(
        &stack.realtime_url(),
        &stack.graphql_url(),
        iam(devstack::DEV_SECRET_ACCESS_KEY),
        HeaderTransport::Subprotocol,
    )
    .await
    .expect("a signed connect is accepted");
    let on_cancel =
        "subscription C($t: ID!, $o: ID!) { onCancel(turnId: $t, owner: $o) { turnId owner } }";
    let vars = json!({"t": "t1", "o": "o1"});
    client
        .subscribe(on_cancel, vars.clone())
        .await
        .expect("a good signature subscribes");
    match client
        .subscribe_with(on_cancel, vars, &iam("not-the-secret"))
        .await
    {
        Err(RealtimeError::Subscription(errors)) => {
            assert_eq!(errors[0]["errorType"], "BadRequestException", "{errors}");
        }
        Err(other) => panic!("expected BadRequestException, got {other}"),
        Ok(_) => panic!("a bad signature subscribed"),
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn keep_alive_cadence_is_configurable() {
    let stack = stack_with(resolver(), |c| {
        c.appsync.keep_alive = Duration::from_millis(200)
    })
    .await;
    let token = stack.token("alice");
    let (mut ws, _) = raw_cognito(&stack, &token).await;
    let mut kas = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(1100);
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(until, ws.next()).await {
        if let Message::Text(t) = frame {
            let v: Value = serde_json::from_str(&t).expect("JSON");
            if v["type"] == "ka" {
                kas += 1;
            }
        }
    }
    assert!((4..=8).contains(&kas), "{kas} ka frames in 1.1 s at 200 ms");
    stack.shutdown().await;
}

#[tokio::test]
async fn a_wrong_or_missing_subprotocol_gets_a_connection_error() {
    let stack = stack(resolver()).await;
    let token = stack.token("alice");
    let object = json!({"host": stack.addr.to_string(), "Authorization": token});
    let query = format!(
        "{}?header={}&payload=e30=",
        stack.realtime_url(),
        base64::engine::general_purpose::STANDARD.encode(object.to_string())
    );
    for offered in [vec!["graphql-transport-ws".to_string()], Vec::new()] {
        let mut ws = raw_socket(&query, &offered).await;
        send(&mut ws, json!({"type": "connection_init"})).await;
        let refused = next_frame(&mut ws).await;
        assert_eq!(
            refused["type"], "connection_error",
            "{offered:?}: {refused}"
        );
        assert_eq!(
            refused["payload"]["errors"][0]["message"],
            "SubProtocolNotSupportedError"
        );
        assert_eq!(refused["payload"]["errors"][0]["errorCode"], 400);
    }
    // The same header object with graphql-ws is accepted.
    let mut ws = raw_socket(&query, &["graphql-ws".into()]).await;
    send(&mut ws, json!({"type": "connection_init"})).await;
    assert_eq!(next_frame(&mut ws).await["type"], "connection_ack");
    stack.shutdown().await;
}

// ------------------------- a test API: another schema, stub resolvers

const TEST_SDL: &str = r#"
    schema { query: Query mutation: Mutation subscription: Subscription }
    type Query { ping: String }
    type Item @aws_api_key {
        id: ID!
        at: AWSDateTime
        tags: [String]
    }
    type Mutation {
        put(id: ID!, at: AWSDateTime, tags: [String]): Item @aws_api_key
    }
    type Subscription {
        onItem: Item @aws_subscribe(mutations: ["put"]) @aws_api_key
        onOverLimit: Item @aws_subscribe(mutations: ["put"]) @aws_api_key
    }
"#;

const TEST_KEY: &str = "da2-test";

/// `put` echoes its arguments; `onItem` sets an enhanced filter with `in` and
/// `containsAny`; `onOverLimit` sets one with 11 groups.
struct TestResolvers;

impl Resolvers for TestResolvers {
    fn resolve<'a>(
        &'a self,
        request: ResolveRequest<'a>,
    ) -> BoxFuture<'a, Result<Value, ResolverError>> {
        let v = Value::Object(request.arguments.clone());
        Box::pin(async move { Ok(v) })
    }

    fn subscribe(&self, request: ResolveRequest<'_>) -> Result<Option<Filter>, ResolverError> {
        let filter = match request.field {
            "onItem" => json!({"filterGroup": [
                {"filters": [{"fieldName": "id", "operator": "in", "value": ["a", "b"]}]},
                {"filters": [{"fieldName": "tags", "operator": "containsAny", "value": ["hot"]}]}
            ]}),
            _ => {
                let group =
                    json!({"filters": [{"fieldName": "id", "operator": "eq", "value": "a"}]});
                json!({"filterGroup": vec![group; 11]})
            }
        };
        serde_json::from_value(filter)
            .map(Some)
            .map_err(|e| ResolverError::new("InternalError", e.to_string()))
    }
}

async fn test_api() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let key = devstack::cognito::new_key().expect("a key");
    let auth = Authenticator {
        user_pool: devstack::cognito::UserPool::new("http://127.0.0.1:1", "pool", "client", &key),
        iam_users: devstack::dev_iam_users(),
        api_keys: vec![TEST_KEY.into()],
        default_mode: AuthMode::ApiKey,
    };
    let schema = Schema::parse(TEST_SDL).expect("the test schema");
    let appsync = Arc::new(AppSync::new(
        schema,
        auth,
        Box::new(TestResolvers),
        AppSyncConfig::default(),
    ));
    appsync
        .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("serves")
}

async fn test_post(addr: SocketAddr, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .header("x-api-key", TEST_KEY)
        .body(body.to_string())
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn test_socket(addr: SocketAddr) -> (Ws, Value) {
    let object = json!({"host": addr.to_string(), "x-api-key": TEST_KEY});
    let mut ws = raw_socket(
        &format!("ws://{addr}/graphql"),
        &["graphql-ws".into(), header_protocol(&object)],
    )
    .await;
    send(&mut ws, json!({"type": "connection_init"})).await;
    assert_eq!(next_frame(&mut ws).await["type"], "connection_ack");
    (ws, object)
}

#[tokio::test]
async fn aws_scalars_are_validated_over_http() {
    let (addr, server) = test_api().await;
    let put = "mutation P($at: AWSDateTime) { put(id: \"a\", at: $at) { id at } }";
    let (status, body) =
        test_post(addr, json!({"query": put, "variables": {"at": "tomorrow"}})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("WrongType") && m.contains("'AWSDateTime'")),
        "{body}"
    );
    let at = "2024-01-01T00:00:00.000Z";
    let (status, body) = test_post(addr, json!({"query": put, "variables": {"at": at}})).await;
    assert_eq!(
        (status, body),
        (200, json!({"data": {"put": {"id": "a", "at": at}}}))
    );
    server.abort();
}

#[tokio::test]
async fn enhanced_filters_select_and_a_filter_over_the_limits_is_refused_on_start() {
    let (addr, server) = test_api().await;
    let (mut ws, object) = test_socket(addr).await;
    send(
        &mut ws,
        start(
            "big",
            "subscription { onOverLimit { id } }",
            json!({}),
            &object,
        ),
    )
    .await;
    let refused = start_error(&mut ws, "big").await;
    assert_eq!(
        refused["errorType"],
        devstack::appsync::realtime_server::INVALID_FILTER
    );
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("at most 10 filter groups")),
        "{refused}"
    );

    send(
        &mut ws,
        start(
            "f",
            "subscription { onItem { id tags } }",
            json!({}),
            &object,
        ),
    )
    .await;
    assert_eq!(next_frame(&mut ws).await["type"], "start_ack");
    let put = "mutation P($id: ID!, $tags: [String]) { put(id: $id, tags: $tags) { id tags } }";
    for (id, tags) in [
        ("c", json!(["cold"])),
        ("b", json!([])),
        ("d", json!(["x", "hot"])),
    ] {
        let (status, body) = test_post(
            addr,
            json!({"query": put, "variables": {"id": id, "tags": tags}}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    // "c" matches no group; "b" matches `in`; "d" matches `containsAny`.
    let first = next_frame(&mut ws).await;
    assert_eq!(first["payload"]["data"]["onItem"]["id"], "b", "{first}");
    let second = next_frame(&mut ws).await;
    assert_eq!(second["payload"]["data"]["onItem"]["id"], "d", "{second}");
    server.abort();
}
