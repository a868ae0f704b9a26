//! The devstack through a real AppSync client: Amplify JS v6 (`aws-amplify`,
//! pinned in `tests/amplify/package.json`), driven by `tests/amplify/run.mjs`.
//!
//! - `amplify_streams_a_whole_turn_with_user_pool_auth`: `generateClient()`,
//!   subscribe to `onChunk`, wait for Amplify's `start_ack` signal, `sendPrompt`
//!   with a client-chosen `turnId`, collect the turn.
//! - `amplify_iam_subscriber_receives_a_cancellation`: an IAM client
//!   subscribes to `onCancel` (SigV4 over the real-time socket), the user's
//!   `cancelTurn` reaches it; an IAM `ping` is refused.
//! - `amplify_sees_expired_and_forged_tokens_refused`: both the subscription
//!   and a query fail with Amplify's view of `UnauthorizedException`.
//!
//! The package is installed on first use into `target/amplify-node` (npm and
//! its registry needed once), then reused while the pin is unchanged. Needs
//! Node 20+ with npm; `AMPLIFY_TEST=skip` skips these tests.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use devstack::Stack;
use devstack::bedrock::scripted_answer;
use devstack::cognito::sub_for;
use devstack::testing::node::{events, one};
use serde_json::{Value, json};

/// How long one run of `run.mjs` may take.
const NODE_TIMEOUT: Duration = Duration::from_secs(120);

fn node() -> Option<&'static node::Driver> {
    static NODE: OnceLock<Option<node::Driver>> = OnceLock::new();
    NODE.get_or_init(|| {
        if skip_requested("AMPLIFY_TEST") {
            return None;
        }
        let major = node::node_major("AMPLIFY_TEST");
        // ES modules resolve packages from the script's own directory, not
        // from `NODE_PATH`, so the script runs from the install.
        let dir = node::install(
            &node::repo().join("tests/amplify/package.json"),
            "amplify-node",
        );
        let script = node::copy_script(&node::repo().join("tests/amplify/run.mjs"), &dir);
        Some(node::Driver {
            args: node::websocket_args(major),
            script,
            timeout: NODE_TIMEOUT,
        })
    })
    .as_ref()
}

/// The API over HTTPS, as Amplify needs it (it only opens `wss://` sockets),
/// with Node trusting the devstack's CA.
fn base_env(stack: &Stack) -> Vec<(&'static str, String)> {
    vec![
        ("GRAPHQL_URL", stack.https_graphql_url().expect("TLS")),
        ("REGION", devstack::DEV_REGION.to_owned()),
        ("NODE_EXTRA_CA_CERTS", ca_file(stack).display().to_string()),
    ]
}

fn tls_host(stack: &Stack) -> String {
    stack.tls_addr.expect("TLS").to_string()
}

/// Amplify opened the real-time URL it derives from a custom-domain endpoint
/// (`<endpoint>/realtime`, always `wss://`) with the `graphql-ws` and
/// `header-<base64url>` subprotocols, and no query string.
fn assert_amplify_socket(stack: &Stack, lines: &[Value]) -> Value {
    let socket = one(lines, "socket");
    assert_eq!(
        socket["url"],
        format!("wss://{}/graphql/realtime", tls_host(stack)),
        "Amplify's real-time URL"
    );
    assert_eq!(socket["hasQuery"], false);
    assert_eq!(socket["protocols"], json!(["graphql-ws", "header-…"]));
    assert_eq!(socket["header"]["host"], tls_host(stack));
    socket["header"].clone()
}

#[tokio::test]
async fn amplify_streams_a_whole_turn_with_user_pool_auth() {
    let Some(node) = node() else {
        eprintln!("skipped: AMPLIFY_TEST=skip");
        return;
    };
    // Paced, so the answer arrives in several chunks.
    let stack = tls_stack_with(resolver(), |c| c.bedrock.scripted_tokens_per_second = 200.0).await;
    let prompt = "What is AWS Lambda?";
    let max_tokens = 80;
    let mut env = base_env(&stack);
    env.extend([
        ("TOKEN", stack.token("alice")),
        ("CONVERSATION_ID", "conv-amplify".to_owned()),
        ("TURN_ID", "turn-amplify-1".to_owned()),
        ("PROMPT", prompt.to_owned()),
        ("MAX_TOKENS", max_tokens.to_string()),
    ]);
    let (lines, ok) = node.run("stream", &env, |_| None).await;
    assert!(ok, "run.mjs stream failed: {lines:#?}");

    let header = assert_amplify_socket(&stack, &lines);
    assert_eq!(
        header,
        json!({"Authorization": "<string>", "host": tls_host(&stack)})
    );
    let states: Vec<&Value> = events(&lines, "connectionState")
        .iter()
        .map(|l| &l["state"])
        .collect();
    assert!(
        states.contains(&&json!("Connected")),
        "connection states {states:?}"
    );
    one(&lines, "startAck");

    let sent = one(&lines, "sendPrompt");
    assert_eq!(
        sent["data"]["sendPrompt"],
        json!({"conversationId": "conv-amplify", "turnId": "turn-amplify-1", "owner": sub_for("alice")})
    );

    let chunks: Vec<&Value> = events(&lines, "chunk")
        .into_iter()
        .map(|l| &l["chunk"])
        .filter(|c| c["turnId"] == "turn-amplify-1")
        .collect();
    let mut seqs: Vec<u64> = chunks.iter().filter_map(|c| c["seq"].as_u64()).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(
        seqs,
        (0..seqs.len() as u64).collect::<Vec<_>>(),
        "seq is contiguous"
    );
    assert!(seqs.len() > 1, "several chunks: {seqs:?}");
    let done: Vec<&&Value> = chunks.iter().filter(|c| c["done"] == true).collect();
    assert_eq!(done.len(), 1, "exactly one terminal chunk: {chunks:#?}");
    assert_eq!(done[0]["seq"].as_u64(), seqs.last().copied());
    assert!(chunks.iter().all(|c| c["owner"] == sub_for("alice")));

    let (expected, tokens) = scripted_answer(prompt, Some(max_tokens));
    let summary = one(&lines, "summary");
    assert_eq!(summary["text"], expected, "the whole scripted answer");
    assert_eq!(summary["done"], 1);
    assert_eq!(summary["stopReason"], "max_tokens");
    assert_eq!(summary["usage"]["outputTokens"], tokens);
    one(&lines, "end");
    stack.shutdown().await;
}

#[tokio::test]
async fn amplify_iam_subscriber_receives_a_cancellation() {
    let Some(node) = node() else {
        eprintln!("skipped: AMPLIFY_TEST=skip");
        return;
    };
    let stack = tls_stack_with(resolver(), |_| {}).await;
    let mut env = base_env(&stack);
    env.extend([
        ("TOKEN", stack.token("alice")),
        ("ACCESS_KEY_ID", devstack::DEV_ACCESS_KEY_ID.to_owned()),
        (
            "SECRET_ACCESS_KEY",
            devstack::DEV_SECRET_ACCESS_KEY.to_owned(),
        ),
        ("CONVERSATION_ID", "conv-amplify-iam".to_owned()),
        ("TURN_ID", "turn-amplify-iam".to_owned()),
        ("OWNER", sub_for("alice")),
    ]);
    let (lines, ok) = node.run("iam", &env, |_| None).await;
    assert!(ok, "run.mjs iam failed: {lines:#?}");

    // The SigV4 connect headers of a signed `POST /graphql/connect`.
    let header = assert_amplify_socket(&stack, &lines);
    for key in [
        "accept",
        "content-encoding",
        "content-type",
        "x-amz-date",
        "authorization",
    ] {
        assert!(
            header.get(key).is_some(),
            "IAM connect header {key}: {header}"
        );
    }
    one(&lines, "startAck");

    let cancellation = json!({
        "conversationId": "conv-amplify-iam",
        "turnId": "turn-amplify-iam",
        "owner": sub_for("alice"),
    });
    assert_eq!(
        one(&lines, "cancelTurn")["data"]["cancelTurn"],
        cancellation
    );
    assert_eq!(
        one(&lines, "onCancel")["data"]["onCancel"],
        cancellation,
        "the IAM subscriber receives the user's cancellation"
    );

    let refused = one(&lines, "iamPing");
    assert!(refused.get("data").is_none(), "{refused}");
    let errors = &refused["error"]["errors"];
    assert_eq!(
        errors[0]["errorType"], "Unauthorized",
        "an IAM ping is refused: {refused}"
    );
    assert_eq!(
        errors[0]["message"],
        "Not Authorized to access ping on type Query"
    );
    assert_eq!(
        one(&lines, "userPoolPing")["data"],
        json!({"ping": "ok"}),
        "the same client's user-pool ping succeeds"
    );
    one(&lines, "end");
    stack.shutdown().await;
}

#[tokio::test]
async fn amplify_sees_expired_and_forged_tokens_refused() {
    let Some(node) = node() else {
        eprintln!("skipped: AMPLIFY_TEST=skip");
        return;
    };
    let stack = tls_stack_with(resolver(), |_| {}).await;
    let now = devstack::cognito::now_secs();
    let expired = stack.user_pool.mint_id_token("alice", &[], now - 7200);
    let forger = devstack::cognito::UserPool::new(
        &format!("http://{}", stack.addr),
        devstack::DEV_USER_POOL_ID,
        devstack::DEV_CLIENT_ID,
        &devstack::cognito::new_key().expect("key"),
    );
    let forged = forger.mint_id_token("alice", &[], now);

    for (what, token) in [("expired", expired), ("forged", forged)] {
        let mut env = base_env(&stack);
        env.extend([
            ("TOKEN", token),
            ("CONVERSATION_ID", format!("conv-amplify-{what}")),
        ]);
        let (lines, ok) = node.run("auth-errors", &env, |_| None).await;
        assert!(ok, "run.mjs auth-errors ({what}) failed: {lines:#?}");
        assert_amplify_socket(&stack, &lines);
        assert!(events(&lines, "startAck").is_empty(), "{what}: {lines:#?}");

        let subscription = one(&lines, "subscription");
        let message = subscription["error"]["errors"][0]["message"]
            .as_str()
            .unwrap_or_default();
        assert_eq!(
            message, "Connection failed: UnauthorizedException",
            "{what}: the subscription fails with the connection_error's type: {subscription}"
        );

        let ping = one(&lines, "ping");
        assert!(ping.get("data").is_none(), "{what}: {ping}");
        // Amplify keeps the error's type as `originalError` and rewrites its
        // message to `Unauthorized` (`repackageUnauthorizedError`).
        let error = &ping["error"]["errors"][0];
        assert_eq!(
            (error["originalError"].as_str(), error["message"].as_str()),
            (Some("UnauthorizedException"), Some("Unauthorized")),
            "{what}: client.graphql rejects with UnauthorizedException: {ping}"
        );
    }
    stack.shutdown().await;
}
