//! Place in the data path: the whole of it, with `appsync-chat` as the
//! **subscriber**: client --sendPrompt--> AppSync --> Lambda --> Bedrock
//! (the devstack's stand-ins, the real resolver) --> AppSync --onChunk-->
//! `appsync-chat`. End-to-end tests of the terminal client: the binary runs as
//! a child process with piped stdin and stdout, against an in-process devstack.

use std::net::SocketAddr;
use std::process::{Output, Stdio};
use std::time::Duration;

use devstack::bedrock::scripted_answer;
use devstack::lambda::FunctionCommand;
use devstack::{Stack, StackConfig};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// Set in the Lambda workers' environment: this test binary then serves the
/// Lambda Runtime API as the resolver (see [`lambda_worker`]).
const WORKER_ENV: &str = "APPSYNC_CHAT_TEST_WORKER";
/// How long a test waits for any one step before failing.
const DEADLINE: Duration = Duration::from_secs(120);

/// Not a test: the resolver, run by the devstack's Lambda workers as
/// `<this binary> lambda_worker --exact --ignored --nocapture` with
/// [`WORKER_ENV`] set. Another package's binary is not built for these tests,
/// so the test binary runs the resolver itself. Ignored, so a test run reports
/// it as such rather than as a pass; run without [`WORKER_ENV`] it fails.
#[test]
#[ignore = "the resolver process of the other tests, not a test"]
fn lambda_worker() {
    serve_as("lambda_worker", devstack::run_resolver());
}

/// Not a test: the function URL's function, as [`lambda_worker`] is the
/// resolver.
#[test]
#[ignore = "the function URL process of the other tests, not a test"]
fn lambda_worker_url() {
    serve_as("lambda_worker_url", devstack::run_url_function());
}

/// Not a test: the WebSocket API's route function.
#[test]
#[ignore = "the WebSocket API's function process of the other tests, not a test"]
fn lambda_worker_websocket() {
    serve_as(
        "lambda_worker_websocket",
        devstack::run_websocket_function(),
    );
}

/// Not a test: the WebSocket API's authorizer.
#[test]
#[ignore = "the WebSocket API's authorizer process of the other tests, not a test"]
fn lambda_worker_authorizer() {
    serve_as(
        "lambda_worker_authorizer",
        devstack::run_websocket_authorizer(),
    );
}

/// Runs a function's runtime loop as this process, when the Lambda stand-in
/// started it (with [`WORKER_ENV`] set).
fn serve_as(
    name: &str,
    function: impl std::future::Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>,
) {
    assert!(
        std::env::var_os(WORKER_ENV).is_some(),
        "{name} is a Lambda function of the other tests; it runs with {WORKER_ENV} set"
    );
    let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime");
    if let Err(error) = runtime.block_on(function) {
        eprintln!("the function stopped: {error}");
        std::process::exit(1);
    }
}

/// The worker command of this test binary running test `name`.
fn worker(name: &str) -> FunctionCommand {
    FunctionCommand {
        program: std::env::current_exe().expect("the test binary's path"),
        args: [name, "--exact", "--ignored", "--nocapture"]
            .map(String::from)
            .into(),
    }
}

/// A devstack on a free port whose default model is `scripted`, streaming
/// `tokens_per_second` words a second (0: as fast as it goes).
async fn stack(tokens_per_second: f64) -> Stack {
    stack_with(tokens_per_second, |_| {}).await
}

/// As [`stack`], adjusted by `adjust` before it starts.
async fn stack_with(tokens_per_second: f64, adjust: impl FnOnce(&mut StackConfig)) -> Stack {
    let mut config = StackConfig::new(worker("lambda_worker"));
    config.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    config.default_model = "scripted".into();
    config.bedrock.scripted_tokens_per_second = tokens_per_second;
    config.function_environment = vec![
        (WORKER_ENV.into(), "1".into()),
        ("RUST_LOG".into(), "warn".into()),
    ];
    adjust(&mut config);
    Stack::start(config).await.expect("the devstack starts")
}

/// Starts `appsync-chat` against `graphql_url` with piped stdio.
fn spawn_chat(graphql_url: &str, token: &str, extra: &[&str]) -> Child {
    let mut args = vec!["--graphql-url", graphql_url, "--token", token];
    args.extend_from_slice(extra);
    spawn_chat_with(&args)
}

/// Starts `appsync-chat` with `args` and piped stdio, its settings from the
/// environment removed.
fn spawn_chat_with(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_appsync-chat"))
        .args(args)
        .env_remove("APPSYNC_GRAPHQL_URL")
        .env_remove("COGNITO_ID_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("appsync-chat starts")
}

/// Writes `input` to the child's stdin, closes it, and waits for the exit.
async fn run_to_end(mut child: Child, input: &str) -> Output {
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(input.as_bytes()).await.expect("written");
    drop(stdin);
    tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("appsync-chat exits in time")
        .expect("appsync-chat ran")
}

/// The child's stdout, line by line.
fn stdout_lines(child: &mut Child) -> Lines<BufReader<ChildStdout>> {
    BufReader::new(child.stdout.take().expect("piped stdout")).lines()
}

/// The next `--json` line, parsed; `None` at end of output.
async fn next_chunk(lines: &mut Lines<BufReader<ChildStdout>>) -> Option<Value> {
    let line = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("a line in time")
        .expect("stdout readable")?;
    Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
}

/// Chunks of one turn, split out of `--json` lines in the order they came.
fn turns(chunks: &[Value]) -> Vec<Vec<Value>> {
    let mut turns: Vec<Vec<Value>> = Vec::new();
    for chunk in chunks {
        match turns.last_mut() {
            Some(turn) if turn[0]["turnId"] == chunk["turnId"] => turn.push(chunk.clone()),
            _ => turns.push(vec![chunk.clone()]),
        }
    }
    turns
}

/// The text of a turn's chunks, joined.
fn text_of(turn: &[Value]) -> String {
    turn.iter().filter_map(|c| c["text"].as_str()).collect()
}

/// Sends SIGINT, as Ctrl-C in a terminal does.
fn interrupt(child: &Child) {
    let pid = child.id().expect("still running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_prompts_get_two_answers_in_order_and_end_of_input_exits_cleanly() {
    let stack = stack(0.0).await;
    let child = spawn_chat(
        &stack.graphql_url(),
        &stack.token("alice"),
        &["--max-tokens", "40"],
    );
    let output = run_to_end(child, "What is streaming?\n\n   \nWhy order by seq?\n").await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let expected = format!(
        "{}\n{}\n",
        scripted_answer("What is streaming?", Some(40)).0,
        scripted_answer("Why order by seq?", Some(40)).0
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), expected);
    assert_eq!(stderr.matches("40 out tokens").count(), 2, "{stderr}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn json_mode_prints_every_chunk_in_seq_order_with_one_terminal_chunk() {
    let stack = stack(0.0).await;
    let child = spawn_chat(
        &stack.graphql_url(),
        &stack.token("alice"),
        &[
            "--json",
            "--realtime-url",
            &stack.realtime_url(),
            "--conversation-id",
            "conv-json",
            "--max-tokens",
            "1000",
        ],
    );
    let prompts = ["Tell me about chunks.", "And about usage?"];
    let output = run_to_end(child, &format!("{}\n{}\n", prompts[0], prompts[1])).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let chunks: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("every stdout line is JSON"))
        .collect();
    let turns = turns(&chunks);
    assert_eq!(turns.len(), 2);
    for (turn, prompt) in turns.iter().zip(prompts) {
        let (answer, output_tokens) = scripted_answer(prompt, Some(1000));
        let seqs: Vec<u64> = turn.iter().filter_map(|c| c["seq"].as_u64()).collect();
        assert_eq!(seqs, (0..turn.len() as u64).collect::<Vec<_>>());
        assert_eq!(turn.iter().filter(|c| c["done"] == true).count(), 1);
        let last = &turn[turn.len() - 1];
        assert_eq!(last["done"], true);
        assert_eq!(last["stopReason"], "end_turn");
        assert_eq!(last["usage"]["outputTokens"], output_tokens);
        assert!(last["error"].is_null());
        assert_eq!(last["conversationId"], "conv-json");
        assert_eq!(text_of(turn), answer);
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_cancels_the_running_turn_and_the_chat_goes_on() {
    let stack = stack(20.0).await;
    let mut child = spawn_chat(
        &stack.graphql_url(),
        &stack.token("alice"),
        &["--json", "--max-tokens", "4000"],
    );
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut lines = stdout_lines(&mut child);
    stdin
        .write_all(b"Talk for a long time.\n")
        .await
        .expect("written");

    // Some text has streamed: the turn is running. Ctrl-C.
    let first = loop {
        let chunk = next_chunk(&mut lines).await.expect("a chunk");
        if chunk["text"].as_str().is_some_and(|t| !t.is_empty()) {
            break chunk;
        }
    };
    interrupt(&child);
    let last = loop {
        let chunk = next_chunk(&mut lines).await.expect("the turn ends");
        assert_eq!(chunk["turnId"], first["turnId"]);
        if chunk["done"] == true {
            break chunk;
        }
    };
    assert_eq!(last["stopReason"], "cancelled", "{last}");

    // Still chatting: the next prompt gets its whole answer.
    let prompt = "Now a short one.";
    stdin
        .write_all(format!("{prompt}\n").as_bytes())
        .await
        .expect("written");
    drop(stdin);
    let mut second = Vec::new();
    while let Some(chunk) = next_chunk(&mut lines).await {
        second.push(chunk);
    }
    assert_ne!(second[0]["turnId"], first["turnId"]);
    assert_eq!(text_of(&second), scripted_answer(prompt, Some(4000)).0);
    assert_eq!(second[second.len() - 1]["stopReason"], "end_turn");
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("exits in time")
        .expect("ran");
    assert!(status.success());
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_or_expired_token_is_a_clear_error_not_a_panic() {
    let stack = stack(0.0).await;
    let two_days_ago = devstack::cognito::now_secs() - 2 * 24 * 3600;
    let expired = stack.user_pool.mint_id_token("alice", &[], two_days_ago);
    let mut forged = stack.token("alice");
    forged.push('x');
    for token in [expired.as_str(), forged.as_str(), "not-a-jwt"] {
        let child = spawn_chat(&stack.graphql_url(), token, &[]);
        let output = run_to_end(child, "Hello?\n").await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(stderr.contains("UnauthorizedException"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(output.stdout.is_empty());
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_endpoint_is_a_clear_error() {
    // Bind and drop a listener: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}/graphql");
    let output = run_to_end(spawn_chat(&url, "any-token", &[]), "Hello?\n").await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("could not reach"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The same chat over the relay's other transports: the answer streams back
/// on the function URL's response or the WebSocket connection, in order,
/// and `/history` still reads the conversation through AppSync.
#[tokio::test(flavor = "multi_thread")]
async fn the_function_url_and_the_websocket_api_give_the_same_answers() {
    let stack = stack_with(0.0, |c| {
        c.url_function = Some(worker("lambda_worker_url"));
        c.websocket_functions = Some(devstack::WebSocketFunctions {
            function: worker("lambda_worker_websocket"),
            authorizer: worker("lambda_worker_authorizer"),
        });
    })
    .await;
    let token = stack.token("alice");
    let urls = [
        (
            "function-url",
            stack.function_url().expect("a function URL"),
        ),
        ("websocket", stack.websocket_url().expect("a WebSocket API")),
    ];
    for (transport, url) in urls {
        let graphql_url = stack.graphql_url();
        let child = spawn_chat_with(&[
            "--transport",
            transport,
            "--url",
            &url,
            "--token",
            &token,
            "--graphql-url",
            &graphql_url,
            "--max-tokens",
            "30",
        ]);
        let output = run_to_end(child, "What is streaming?\nWhy order by seq?\n").await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{transport}: {stderr}");
        let expected = format!(
            "{}\n{}\n",
            scripted_answer("What is streaming?", Some(30)).0,
            scripted_answer("Why order by seq?", Some(30)).0
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            expected,
            "{transport}"
        );
        assert_eq!(
            stderr.matches("30 out tokens").count(),
            2,
            "{transport}: {stderr}"
        );
    }
    stack.shutdown().await;
}
