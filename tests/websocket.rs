//! The API Gateway WebSocket transport through the real path: a stock
//! WebSocket client connects to the devstack's WebSocket API with its ID
//! token in the query string, the `$connect` authorizer (this build's
//! `websocket-authorizer`) checks it, a `sendPrompt` message is routed by
//! its `action` to this build's `websocket` function, invoked
//! asynchronously, which streams the answer back with `PostToConnection`
//! (SigV4, really verified). A client that leaves stops the model; each
//! user reaches only their own connection, conversations and turns; the
//! API's size and time limits hold.

mod common;

use std::time::Duration;

use appsync_client::{Chunk, ServerMessage, WebSocketApiClient, WebSocketApiError};
use aws_sdk_apigatewaymanagement::primitives::Blob;
use common::*;
use devstack::Stack;
use devstack::cognito::{UserPool, new_key, now_secs, sub_for};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

async fn websocket_stack(adjust: impl FnOnce(&mut devstack::StackConfig)) -> Stack {
    stack_with(resolver(), |c| {
        c.websocket_functions = Some(websocket_functions());
        adjust(c);
    })
    .await
}

/// As [`websocket_stack`], with a model that writes 20 tokens a second and
/// never runs out of text, so a long turn is still running when the test
/// acts.
async fn paced_websocket_stack(adjust: impl FnOnce(&mut devstack::StackConfig)) -> Stack {
    websocket_stack(|c| {
        paced(c);
        adjust(c);
    })
    .await
}

async fn connect(stack: &Stack, token: &str) -> WebSocketApiClient {
    let url = stack.websocket_url().expect("a WebSocket API");
    WebSocketApiClient::connect(&url, token)
        .await
        .expect("connects")
}

/// The whole turn started by the last prompt on `client`.
async fn turn(client: &mut WebSocketApiClient) -> Vec<Chunk> {
    tokio::time::timeout(TURN_TIMEOUT, client.collect_turn(None))
        .await
        .expect("the turn ends in time")
        .expect("the connection stays open")
        .expect("the prompt is accepted")
}

/// The next message on `client`, within the turn timeout.
async fn next(client: &mut WebSocketApiClient) -> Result<ServerMessage, WebSocketApiError> {
    tokio::time::timeout(TURN_TIMEOUT, client.next_message())
        .await
        .expect("a message in time")
}

/// A management API client signed with `secret` for the dev access key.
fn management(stack: &Stack, secret: &str) -> aws_sdk_apigatewaymanagement::Client {
    let server = stack.websocket.as_ref().expect("a WebSocket API");
    let credentials = aws_credential_types::Credentials::new(
        devstack::DEV_ACCESS_KEY_ID,
        secret,
        None,
        None,
        "test",
    );
    let config = aws_sdk_apigatewaymanagement::Config::builder()
        .behavior_version(aws_sdk_apigatewaymanagement::config::BehaviorVersion::latest())
        .region(aws_sdk_apigatewaymanagement::config::Region::new(
            devstack::DEV_REGION,
        ))
        .credentials_provider(credentials)
        .endpoint_url(server.connections_url())
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(config)
}

/// The ids of the API's open connections.
fn open_connections(stack: &Stack) -> Vec<String> {
    let server = stack.websocket.as_ref().expect("a WebSocket API");
    server.api().connections().ids()
}

/// The ids of the API's open connections once there are `count` (a
/// connection is registered just after its upgrade is answered).
async fn wait_for_connections(stack: &Stack, count: usize) -> Vec<String> {
    for _ in 0..100 {
        let ids = open_connections(stack);
        if ids.len() == count {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "expected {count} open connections, have {:?}",
        open_connections(stack)
    );
}

/// Starts a 4,000-token turn in `conversation` and returns its first chunk.
async fn start_long_turn(client: &mut WebSocketApiClient, conversation: &str) -> Chunk {
    let input = json!({"conversationId": conversation, "prompt": "Talk for a long time.", "maxTokens": 4000});
    client.send_prompt(&input).await.expect("sent");
    match next(client).await.expect("open") {
        ServerMessage::Chunk(chunk) => chunk,
        other => panic!("expected a chunk, got {other:?}"),
    }
}

#[tokio::test]
async fn a_prompt_streams_back_over_the_connection_ending_with_the_terminal_chunk() {
    let stack = websocket_stack(|_| {}).await;
    let alice = stack.token("alice");
    let mut client = connect(&stack, &alice).await;
    let prompt = "Tell me about WebSocket APIs.";
    client
        .send_prompt(&json!({"conversationId": "ws-1", "prompt": prompt}))
        .await
        .expect("sent");
    let chunks = turn(&mut client).await;
    let last = chunks.last().expect("chunks");
    assert_eq!(last.stop_reason.as_deref(), Some("end_turn"));
    for (seq, chunk) in chunks.iter().enumerate() {
        assert_eq!(chunk.seq, i64::try_from(seq).expect("small"));
        assert_eq!(chunk.owner, sub_for("alice"));
        assert_eq!(chunk.conversation_id, "ws-1");
        assert_eq!(chunk.turn_id, last.turn_id);
    }
    let text: String = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(text, devstack::bedrock::scripted_answer(prompt, None).0);
    let stored = stack
        .stored_answer(&alice, "ws-1", Duration::from_secs(10))
        .await
        .expect("the answer is stored");
    assert!(stored.iter().any(|m| m.text == text), "{stored:?}");
    stack.shutdown().await;
}

#[tokio::test]
async fn missing_forged_and_expired_tokens_are_refused_at_connect_before_any_model_call() {
    let stack = websocket_stack(|_| {}).await;
    let url = stack.websocket_url().expect("a WebSocket API");
    let forger = UserPool::new(
        &format!("http://{}", stack.addr),
        devstack::DEV_USER_POOL_ID,
        devstack::DEV_CLIENT_ID,
        &new_key().expect("an RSA key"),
    );
    let forged = forger.mint_id_token("alice", &[], now_secs());
    let expired = stack
        .user_pool
        .mint_id_token("alice", &[], now_secs() - 2 * 3600);
    for token in ["", "not-a-token", forged.as_str(), expired.as_str()] {
        match WebSocketApiClient::connect(&url, token).await {
            Err(WebSocketApiError::Refused { status }) => assert_eq!(status, 401, "{token}"),
            Err(other) => panic!("{token}: {other}"),
            Ok(_) => panic!("{token}: connected"),
        }
    }
    // No token parameter at all: refused before the authorizer runs.
    let server = stack.websocket.as_ref().expect("a WebSocket API");
    let mut authorizations = server.api().routes().authorizer.outcomes();
    let bare = tokio_tungstenite::connect_async(url.as_str()).await;
    match bare {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401);
        }
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        authorizations.try_recv().is_err(),
        "the authorizer was not invoked"
    );
    assert!(open_connections(&stack).is_empty());
    assert_eq!(stack.bedrock.requests_served(), 0);
    stack.shutdown().await;
}

/// Bob's connection hears nothing of Alice's turn, his `cancelTurn` of it
/// does nothing, the same conversation id is his own conversation, and
/// `@connections` is closed to anyone without the API's IAM credentials.
#[tokio::test]
async fn another_user_cannot_reach_a_users_stream_turns_or_connection() {
    let stack = paced_websocket_stack(|_| {}).await;
    let (alice, bob) = (stack.token("alice"), stack.token("bob"));
    let mut alices = connect(&stack, &alice).await;
    let first = start_long_turn(&mut alices, "shared-id").await;
    let mut bobs = connect(&stack, &bob).await;

    bobs.cancel_turn("shared-id", &first.turn_id)
        .await
        .expect("sent");
    assert_eq!(
        next(&mut bobs).await.expect("open"),
        ServerMessage::Cancelled {
            turn_id: first.turn_id.clone(),
            cancelled: false
        }
    );
    bobs.send_prompt(
        &json!({"conversationId": "shared-id", "prompt": "Bob's question", "maxTokens": 5}),
    )
    .await
    .expect("sent");
    let bobs_turn = turn(&mut bobs).await;
    assert!(bobs_turn.iter().all(|c| c.owner == sub_for("bob")));
    assert_ne!(bobs_turn[0].turn_id, first.turn_id);
    assert!(
        stack.bedrock.active_generations() > 0,
        "alice's turn goes on"
    );

    // Without the API's credentials, nobody posts to Alice's connection.
    let connections = wait_for_connections(&stack, 2).await;
    for id in &connections {
        let forged = management(&stack, "not-the-secret")
            .post_to_connection()
            .connection_id(id)
            .data(Blob::new("forged"))
            .send()
            .await
            .expect_err("refused");
        let code = forged.as_service_error().and_then(|e| e.meta().code());
        assert_eq!(code, Some("InvalidSignatureException"), "{forged:?}");
        let unsigned = reqwest::Client::new()
            .post(format!(
                "{}/@connections/{}",
                stack.websocket.as_ref().expect("API").connections_url(),
                id
            ))
            .body("unsigned")
            .send()
            .await
            .expect("an answer");
        assert_eq!(unsigned.status(), 403);
    }
    alices
        .cancel_turn("shared-id", &first.turn_id)
        .await
        .expect("sent");
    let rest = tokio::time::timeout(TURN_TIMEOUT, alices.collect_turn(Some(&first.turn_id)))
        .await
        .expect("ends")
        .expect("open")
        .expect("chunks");
    assert!(rest.iter().all(|c| c.owner == sub_for("alice")));
    assert_eq!(
        rest.last().and_then(|c| c.stop_reason.as_deref()),
        Some("cancelled")
    );
    stack.shutdown().await;
}

/// A client that leaves mid-answer stops the model: the next
/// `PostToConnection` is `GoneException`, and the turn ends.
#[tokio::test]
async fn a_client_that_disconnects_stops_the_model() {
    let stack = paced_websocket_stack(|_| {}).await;
    let alice = stack.token("alice");
    let mut client = connect(&stack, &alice).await;
    start_long_turn(&mut client, "ws-gone").await;
    assert!(stack.bedrock.active_generations() > 0);
    client.close().await.expect("closed");
    assert_model_stops(&stack, Duration::from_secs(5)).await;
    let stored = stack
        .stored_answer(&alice, "ws-gone", Duration::from_secs(10))
        .await
        .expect("the turn's end is stored");
    let answer = stored.iter().find(|m| m.is_answer()).expect("an answer");
    assert_ne!(answer.stop_reason.as_deref(), Some("max_tokens"));
    stack.shutdown().await;
}

#[tokio::test]
async fn refused_prompts_and_unknown_actions_are_answered_with_an_error_message() {
    let stack = websocket_stack(|c| {
        c.api_environment = vec![("QUOTA_MAX_TURNS_IN_FLIGHT".into(), "1".into())];
        paced(c);
    })
    .await;
    let alice = stack.token("alice");
    let mut client = connect(&stack, &alice).await;
    for (message, error_type) in [
        (json!({"action": "nope"}), "ValidationException"),
        (json!({"no": "action"}), "ValidationException"),
        (
            json!({"action": "sendPrompt", "input": {"conversationId": "bad id!", "prompt": "p"}}),
            "ValidationException",
        ),
        (json!({"action": "sendPrompt"}), "ValidationException"),
        (
            json!({"action": "sendPrompt", "input": {"conversationId": "c"}}),
            "ValidationException",
        ),
        (
            json!({"action": "sendPrompt", "input": {"conversationId": "c", "prompt": "p", "maxTokens": "ten"}}),
            "ValidationException",
        ),
        (
            json!({"action": "sendPrompt", "input": {"conversationId": "c", "prompt": "p", "modelId": "anthropic.claude-v2"}}),
            "ValidationException",
        ),
    ] {
        client.send(&message).await.expect("sent");
        match next(&mut client).await.expect("open") {
            ServerMessage::Error { error_type: t, .. } => assert_eq!(t, error_type, "{message}"),
            other => panic!("{message}: {other:?}"),
        }
    }
    assert_eq!(stack.bedrock.requests_served(), 0);
    // One turn in flight is the limit: a second prompt is refused.
    let first = start_long_turn(&mut client, "ws-quota").await;
    client
        .send_prompt(&json!({"conversationId": "ws-quota", "prompt": "Another."}))
        .await
        .expect("sent");
    let refused = loop {
        match next(&mut client).await.expect("open") {
            ServerMessage::Chunk(_) => {}
            other => break other,
        }
    };
    assert!(
        matches!(&refused, ServerMessage::Error { error_type, .. } if error_type == "TooManyTurns"),
        "{refused:?}"
    );
    client
        .cancel_turn("ws-quota", &first.turn_id)
        .await
        .expect("sent");
    stack.shutdown().await;
}

/// A frame over 32 KB, or a message over 128 KB in smaller frames, closes
/// the connection with 1009; a post over 128 KB is refused; the SDK's
/// `GetConnection` and `DeleteConnection` work, and a closed connection is
/// `GoneException`.
#[tokio::test]
async fn the_apis_limits_and_management_calls_hold() {
    let stack = websocket_stack(|_| {}).await;
    let alice = stack.token("alice");
    let api = management(&stack, devstack::DEV_SECRET_ACCESS_KEY);

    let mut client = connect(&stack, &alice).await;
    let big_frame = "x".repeat(40 * 1024);
    client
        .send_raw(Message::text(big_frame))
        .await
        .expect("sent");
    assert!(
        matches!(
            next(&mut client).await,
            Err(WebSocketApiError::Closed { code: 1009, .. })
        ),
        "a 40 KB frame closes the connection"
    );

    let mut client = connect(&stack, &alice).await;
    let piece = vec![b'x'; 30 * 1024];
    for i in 0..5 {
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message(piece.clone(), opcode, i == 4);
        if client.send_raw(Message::Frame(frame)).await.is_err() {
            break;
        }
    }
    assert!(
        matches!(
            next(&mut client).await,
            Err(WebSocketApiError::Closed { code: 1009, .. })
        ),
        "a 150 KB message closes the connection"
    );

    wait_for_connections(&stack, 0).await;
    let client = connect(&stack, &alice).await;
    let id = wait_for_connections(&stack, 1).await.remove(0);
    let described = api
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("described");
    assert!(described.connected_at().is_some());
    let too_large = api
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new(vec![b'x'; 129 * 1024]))
        .send()
        .await
        .expect_err("too large");
    assert!(
        too_large
            .as_service_error()
            .is_some_and(|e| e.is_payload_too_large_exception()),
        "{too_large:?}"
    );
    api.delete_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("deleted");
    let mut client = client;
    assert!(matches!(
        next(&mut client).await,
        Err(WebSocketApiError::Closed { .. })
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let gone = api
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new("hello"))
        .send()
        .await
        .expect_err("gone");
    assert!(
        gone.as_service_error()
            .is_some_and(|e| e.is_gone_exception()),
        "{gone:?}"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_with_1001() {
    let stack = websocket_stack(|c| {
        c.websocket.idle_timeout = Duration::from_millis(500);
    })
    .await;
    let mut client = connect(&stack, &stack.token("alice")).await;
    assert!(matches!(
        next(&mut client).await,
        Err(WebSocketApiError::Closed { code: 1001, .. })
    ));
    stack.shutdown().await;
}

/// Lambda may deliver an asynchronous event twice: the turn id comes from
/// the message, so the second delivery finds the turn's claim and streams
/// nothing.
#[tokio::test]
async fn a_repeated_delivery_of_a_prompt_runs_its_turn_once() {
    let stack = websocket_stack(|_| {}).await;
    let server = stack.websocket.as_ref().expect("a WebSocket API");
    server.api().routes().function.set_duplicate_delivery(1);
    let alice = stack.token("alice");
    let mut client = connect(&stack, &alice).await;
    client
        .send_prompt(&json!({"conversationId": "ws-twice", "prompt": "Once, please."}))
        .await
        .expect("sent");
    let chunks = turn(&mut client).await;
    assert!(chunks.last().is_some_and(|c| c.done));
    let more = tokio::time::timeout(Duration::from_secs(2), client.next_message()).await;
    assert!(more.is_err(), "nothing more arrives: {more:?}");
    assert_eq!(stack.bedrock.requests_served(), 1);
    stack.shutdown().await;
}

/// The authorizer runs once, at `$connect`, and a connection may outlive
/// its token: once the token has expired, prompts on the connection are
/// refused, so the user must connect again with a fresh one.
#[tokio::test]
async fn a_connection_whose_token_has_expired_can_no_longer_prompt() {
    let stack = websocket_stack(|_| {}).await;
    let lifetime = devstack::cognito::TOKEN_TTL_SECS;
    let soon = stack
        .user_pool
        .mint_id_token("alice", &[], now_secs() - lifetime + 2);
    let mut client = connect(&stack, &soon).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    client
        .send_prompt(&json!({"conversationId": "ws-late", "prompt": "Still there?"}))
        .await
        .expect("sent");
    match next(&mut client).await.expect("open") {
        ServerMessage::Error { error_type, .. } => assert_eq!(error_type, "UnauthorizedException"),
        other => panic!("{other:?}"),
    }
    assert_eq!(stack.bedrock.requests_served(), 0);
    stack.shutdown().await;
}

/// botocore, the Python SDK, signs `@connections` calls its own way (its
/// path encoding of the `=` in a connection id, its headers): the stand-in
/// verifies them as API Gateway does, and the message reaches the client.
#[tokio::test]
async fn botocore_signed_connections_calls_work_unchanged() {
    if skip_requested("BOTOCORE_TEST") {
        eprintln!("skipped: BOTOCORE_TEST=skip");
        return;
    }
    let python = tokio::task::spawn_blocking(|| {
        devstack::testing::python::venv("botocore-venv", &["botocore==1.43.11"])
    })
    .await
    .expect("the venv is made");
    let stack = websocket_stack(|_| {}).await;
    let mut client = connect(&stack, &stack.token("alice")).await;
    let id = wait_for_connections(&stack, 1).await.remove(0);
    let server = stack.websocket.as_ref().expect("a WebSocket API");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/websocket/connections.py");
    let output = tokio::process::Command::new(python)
        .arg(script)
        .args([&server.connections_url(), &id, "hello from botocore"])
        .env("AWS_ACCESS_KEY_ID", devstack::DEV_ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", devstack::DEV_SECRET_ACCESS_KEY)
        .env("AWS_DEFAULT_REGION", devstack::DEV_REGION)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .await
        .expect("python runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(result["gone"], "GoneException", "{result}");
    assert_eq!(result["sourceIp"], "127.0.0.1", "{result}");
    assert_eq!(
        next(&mut client).await.expect("open"),
        ServerMessage::Other(serde_json::Value::String("hello from botocore".into()))
    );
    stack.shutdown().await;
}
