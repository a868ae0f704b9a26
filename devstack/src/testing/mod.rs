//! Place in the data path: all of it, from a test's side. A devstack on an
//! ephemeral port with a given program as the Lambda function (the root
//! crate's tests pass its real `bootstrap` binary, the devstack's own tests
//! `devstack worker`), and the client steps every end-to-end test repeats:
//! connect, subscribe, send a prompt, collect a turn, sign as IAM.
//!
//! These helpers panic with a message on failure: they are for tests only.

mod function_url;
pub mod node;
pub mod python;

pub use function_url::{post_to_url, sse_chunks};

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::lambda::FunctionCommand;
use crate::{Stack, StackConfig};
use appsync_client::{
    CANCEL_TURN, Chunk, ON_CHUNK, SEND_PROMPT, TurnAssembler, send_prompt_variables,
};
use appsync_client::{RealtimeClient, Subscription};
use serde_json::{Value, json};

/// Paces the scripted model at 20 tokens a second with text that never
/// runs out, so a long turn is still running when a test acts on it.
pub fn paced(config: &mut StackConfig) {
    config.bedrock.scripted_tokens_per_second = 20.0;
    config.bedrock.scripted_repeat = true;
}

/// How long a test waits for a turn before failing.
pub const TURN_TIMEOUT: Duration = Duration::from_secs(60);

/// True when the environment variable `switch` is `skip`: the calling test
/// leaves out a check that needs tools the machine lacks (Node, a browser).
///
/// # Panics
/// When `CI` is set too: in CI a skipped check would be reported as a passed
/// one, so the switch is refused and the test fails saying so.
pub fn skip_requested(switch: &str) -> bool {
    if std::env::var(switch).as_deref() != Ok("skip") {
        return false;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{switch}=skip is refused when CI is set: the check it skips would pass unchecked"
    );
    true
}

/// A local DynamoDB for a test: its data in `data_dir`, dynalite installed
/// once under `target/`, the tables of `infra/template.yaml`.
pub fn dynamodb_config(data_dir: &std::path::Path) -> crate::dynamodb::DynamoDbConfig {
    crate::dynamodb::DynamoDbConfig {
        data_dir: Some(data_dir.to_owned()),
        cache_dir: node::repo().join("target/devstack-cache"),
        template: std::fs::read_to_string(node::repo().join("infra/template.yaml"))
            .expect("infra/template.yaml"),
    }
}

/// A stack running `function` whose default model is `scripted`, as fast as
/// it goes.
pub async fn stack(function: FunctionCommand) -> Stack {
    stack_with(function, |_| {}).await
}

/// As [`stack`], with `adjust` changing the configuration before it starts
/// (logs at `warn` from the function unless `adjust` says otherwise). The
/// local DynamoDB keeps its tables in memory unless `adjust` gives it a
/// directory.
pub async fn stack_with(function: FunctionCommand, adjust: impl FnOnce(&mut StackConfig)) -> Stack {
    let mut config = StackConfig::new(function);
    config.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    config.default_model = "scripted".into();
    config.bedrock.scripted_tokens_per_second = 0.0;
    config.function_environment = vec![("RUST_LOG".into(), "warn".into())];
    config.dynamodb = Some(crate::dynamodb::DynamoDbConfig::in_memory(
        node::repo().join("target/devstack-cache"),
    ));
    adjust(&mut config);
    Stack::start(config).await.expect("the devstack starts")
}

/// A stack that also serves the API (and the web page, when `adjust` gives
/// one) over HTTPS / `wss://` with a fresh certificate, on an ephemeral port.
pub async fn tls_stack_with(
    function: FunctionCommand,
    adjust: impl FnOnce(&mut StackConfig),
) -> Stack {
    stack_with(function, |c| {
        c.tls = Some(crate::tls::DevCertificate::generate().expect("a certificate"));
        c.tls_bind = SocketAddr::from(([127, 0, 0, 1], 0));
        adjust(c)
    })
    .await
}

/// The stack's CA certificate in a file, for `NODE_EXTRA_CA_CERTS` and the like.
pub fn ca_file(stack: &Stack) -> std::path::PathBuf {
    let certificate = stack.certificate.as_ref().expect("a stack with TLS");
    let dir = node::repo().join("target/test-certificates");
    std::fs::create_dir_all(&dir).expect("certificate directory");
    let path = dir.join(format!("ca-{}.pem", stack.tls_addr.expect("TLS").port()));
    std::fs::write(&path, &certificate.ca_pem).expect("CA written");
    path
}

/// Waits until the Bedrock stand-in has no generation running (a cancelled
/// turn's model stream was dropped); fails after `within`.
pub async fn assert_model_stops(stack: &Stack, within: Duration) {
    let stopped = async {
        while stack.bedrock.active_generations() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(within, stopped)
        .await
        .expect("the model stopped generating");
}

/// A real-time connection as the user whose ID token is `token`.
pub async fn connect(stack: &Stack, token: &str) -> RealtimeClient {
    stack.connect_as(token).await.expect("connects")
}

/// `onChunk` for `conversation_id`, acknowledged.
pub async fn subscribe(client: &RealtimeClient, conversation_id: &str) -> Subscription {
    client
        .subscribe(ON_CHUNK, json!({"conversationId": conversation_id}))
        .await
        .expect("subscribed")
}

/// POSTs a GraphQL request with the given headers; returns (status, body).
pub async fn post(stack: &Stack, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(stack.graphql_url());
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.body(body.to_string()).send().await.expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Sends `sendPrompt` as the token's user; returns the response body.
pub async fn send_prompt(
    stack: &Stack,
    token: &str,
    conversation_id: &str,
    turn_id: &str,
    prompt: &str,
    max_tokens: Option<u32>,
) -> Value {
    let variables = send_prompt_variables(conversation_id, turn_id, prompt, None, max_tokens);
    let (status, body) = post(
        stack,
        &[("authorization", token)],
        &json!({"query": SEND_PROMPT, "variables": variables}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The next chunk on `subscription`; fails the test if none comes before
/// `until`, the subscription ends or errs, or the message is not a chunk.
pub async fn next_chunk(subscription: &mut Subscription, until: tokio::time::Instant) -> Chunk {
    let payload = tokio::time::timeout_at(until, subscription.next())
        .await
        .expect("the next chunk arrives in time")
        .expect("the subscription stays open")
        .expect("no subscription error");
    appsync_client::chunk_from_payload(&payload).expect("a chunk")
}

/// Every chunk of one turn, in arrival order, until the terminal chunk.
pub async fn collect_turn(subscription: &mut Subscription, turn_id: &str) -> Vec<Chunk> {
    let mut received = Vec::new();
    let mut assembler = TurnAssembler::new();
    let until = tokio::time::Instant::now() + TURN_TIMEOUT;
    while assembler.finished().is_none() {
        let chunk = next_chunk(subscription, until).await;
        if chunk.turn_id != turn_id {
            continue;
        }
        received.push(chunk.clone());
        assembler.push(chunk);
    }
    received
}

/// Reads the first chunk on `subscription`, cancels turn `turn_id` of
/// `conversation_id` as the user of `token` (`cancelTurn`), and reads on to
/// the terminal chunk, which must say `cancelled`: every chunk received.
pub async fn cancel_after_first_chunk(
    stack: &Stack,
    token: &str,
    subscription: &mut Subscription,
    (conversation_id, turn_id): (&str, &str),
) -> Vec<Chunk> {
    let until = tokio::time::Instant::now() + TURN_TIMEOUT;
    let mut chunks = vec![next_chunk(subscription, until).await];
    let body = json!({"query": CANCEL_TURN,
        "variables": {"conversationId": conversation_id, "turnId": turn_id}});
    let (status, _) = post(stack, &[("authorization", token)], &body).await;
    assert_eq!(status, 200);
    while !chunks.last().is_some_and(|c| c.done) {
        chunks.push(next_chunk(subscription, until).await);
    }
    assert_eq!(
        chunks.last().and_then(|c| c.stop_reason.as_deref()),
        Some("cancelled")
    );
    chunks
}

/// A SigV4-signed `POST /graphql` with the dev IAM credentials.
pub fn iam_headers(stack: &Stack, body: &[u8], secret: &str) -> Vec<(String, String)> {
    let host = stack.addr.to_string();
    let credentials = aws_credential_types::Credentials::new(
        crate::DEV_ACCESS_KEY_ID,
        secret,
        None,
        None,
        "test",
    );
    let base = [
        ("content-type", "application/json"),
        ("host", host.as_str()),
    ];
    let signed = appsync_client::sign_headers(
        &stack.graphql_url(),
        &base,
        body,
        &credentials,
        crate::DEV_REGION,
        "appsync",
        SystemTime::now(),
    )
    .expect("signed");
    base.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain(signed)
        .collect()
}
