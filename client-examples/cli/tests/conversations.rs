//! Place in the data path: the whole of it, with `appsync-chat` as the
//! **subscriber** and the conversations table behind AppSync: client
//! --sendPrompt--> AppSync --> Lambda (the real resolver, which stores each
//! turn's messages and chunks in the local DynamoDB) --> Bedrock (scripted)
//! --> AppSync --onChunk--> `appsync-chat`, and client --listMessages,
//! turnChunks--> AppSync --> the table. End-to-end tests of `/history`,
//! `--conversation` and recovery from missed chunks, against an in-process
//! devstack with its local DynamoDB (which needs Node).

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use appsync_client::{Chunk, Message, QueryError, TurnAssembler, list_messages, turn_chunks};
use devstack::Stack;
use devstack::bedrock::model::{ChatMessage, Role};
use devstack::bedrock::scripted_answer;
use devstack::lambda::FunctionCommand;
use devstack::testing::{
    collect_turn, connect, dynamodb_config, send_prompt, stack_with, subscribe,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::Instant;

/// Set in the Lambda workers' environment: this test binary then serves the
/// Lambda Runtime API as the resolver (see [`lambda_worker`]).
const WORKER_ENV: &str = "APPSYNC_CHAT_TEST_WORKER";
/// How long a test waits for any one step before failing.
const DEADLINE: Duration = Duration::from_secs(120);

const FIRST: &str = "What is a delta?";
const SECOND: &str = "And a chunk?";

/// Not a test: the resolver, run by the devstack's Lambda workers as
/// `<this binary> lambda_worker --exact --ignored --nocapture` with
/// [`WORKER_ENV`] set (as in `tests/chat.rs`: another package's binary is not
/// built for these tests). Run without [`WORKER_ENV`] it fails.
#[test]
#[ignore = "the resolver process of the other tests, not a test"]
fn lambda_worker() {
    assert!(
        std::env::var_os(WORKER_ENV).is_some(),
        "lambda_worker is the Lambda function of the other tests; it runs with {WORKER_ENV} set"
    );
    let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime");
    if let Err(error) = runtime.block_on(devstack::run_resolver()) {
        eprintln!("the resolver stopped: {error}");
        std::process::exit(1);
    }
}

/// A devstack on a free port with a fresh local DynamoDB, whose default model
/// is `scripted` at `tokens_per_second` words a second (0: as fast as it
/// goes). Returns the DynamoDB's data directory too, to remove at the end.
async fn stack(tokens_per_second: f64) -> (Stack, PathBuf) {
    let data = std::env::temp_dir().join(format!("appsync-chat-{}", uuid::Uuid::new_v4()));
    let function = FunctionCommand {
        program: std::env::current_exe().expect("the test binary's path"),
        args: ["lambda_worker", "--exact", "--ignored", "--nocapture"]
            .map(String::from)
            .into(),
    };
    let stack = stack_with(function, |config| {
        config.bedrock.scripted_tokens_per_second = tokens_per_second;
        config
            .function_environment
            .push((WORKER_ENV.into(), "1".into()));
        config.dynamodb = Some(dynamodb_config(&data));
    })
    .await;
    assert!(
        stack.dynamodb.is_some(),
        "the local DynamoDB started (it needs Node)"
    );
    (stack, data)
}

async fn stop(stack: Stack, data: PathBuf) {
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
}

/// Starts `appsync-chat` against `graphql_url` with piped stdio.
fn spawn_chat(graphql_url: &str, token: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_appsync-chat"))
        .args(["--graphql-url", graphql_url, "--token", token])
        .args(extra)
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

/// The next line of the child's stdout; `None` at end of output.
async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> Option<String> {
    tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("a line in time")
        .expect("stdout readable")
}

/// The conversation's messages once at least `answers` answers are stored
/// (the resolver writes an answer when its turn has ended, just after the
/// terminal chunk).
async fn stored_messages(
    stack: &Stack,
    token: &str,
    conversation: &str,
    answers: usize,
) -> Vec<Message> {
    let http = reqwest::Client::new();
    let until = Instant::now() + DEADLINE;
    loop {
        let messages = list_messages(&http, &stack.graphql_url(), token, conversation)
            .await
            .expect("listMessages answers");
        if messages.iter().filter(|m| m.is_answer()).count() >= answers {
            return messages;
        }
        assert!(
            Instant::now() < until,
            "{answers} answers were not stored in time: {messages:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The conversation id in `appsync-chat`'s closing line on stderr.
fn continued_id(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|line| line.contains("--conversation "))
        .unwrap_or_else(|| panic!("no line naming the conversation: {stderr}"));
    line.split_whitespace()
        .last()
        .expect("the id ends the line")
        .to_owned()
}

/// The chunks of a turn as its subscriber shows them: in `seq` order, each once.
fn in_order(received: Vec<Chunk>) -> Vec<Chunk> {
    let mut assembler = TurnAssembler::new();
    received
        .into_iter()
        .flat_map(|chunk| assembler.push(chunk))
        .collect()
}

fn text_of(chunks: &[Chunk]) -> String {
    chunks.iter().map(|c| c.text.as_str()).collect()
}

fn said(role: Role, text: &str) -> ChatMessage {
    ChatMessage {
        role,
        text: text.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn history_after_two_turns_prints_both_prompts_and_answers() {
    let (stack, data) = stack(0.0).await;
    let token = stack.token("alice");
    let mut child = spawn_chat(
        &stack.graphql_url(),
        &token,
        &["--conversation", "conv-history", "--max-tokens", "20"],
    );
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let answers = [FIRST, SECOND].map(|prompt| scripted_answer(prompt, Some(20)).0);
    for (prompt, answer) in [FIRST, SECOND].iter().zip(&answers) {
        stdin
            .write_all(format!("{prompt}\n").as_bytes())
            .await
            .expect("written");
        assert_eq!(next_line(&mut lines).await.as_ref(), Some(answer));
    }
    // Both answers are stored before `/history` asks for them.
    stored_messages(&stack, &token, "conv-history", 2).await;
    stdin.write_all(b"/history\n").await.expect("written");
    drop(stdin);
    let mut printed = Vec::new();
    while let Some(line) = next_line(&mut lines).await {
        printed.push(line);
    }
    // 20 words cut both answers short: `max_tokens` is noted.
    assert_eq!(
        printed,
        [
            format!("you: {FIRST}"),
            format!("assistant: {} [stopped: max_tokens]", answers[0]),
            format!("you: {SECOND}"),
            format!("assistant: {} [stopped: max_tokens]", answers[1]),
        ]
    );
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("exits in time")
        .expect("ran");
    assert!(status.success());
    stop(stack, data).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_conversation_is_continued_with_the_id_printed_at_exit() {
    let (stack, data) = stack(0.0).await;
    let token = stack.token("alice");
    let url = stack.graphql_url();
    let first_answer = scripted_answer(FIRST, Some(20)).0;

    let first = run_to_end(
        spawn_chat(&url, &token, &["--max-tokens", "20"]),
        &format!("{FIRST}\n"),
    )
    .await;
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&first.stdout),
        format!("{first_answer}\n")
    );
    let id = continued_id(&stderr);
    assert!(
        stderr.contains(&format!("New conversation {id}.")),
        "{stderr}"
    );
    stored_messages(&stack, &token, &id, 1).await;

    let second = run_to_end(
        spawn_chat(&url, &token, &["--conversation", &id, "--max-tokens", "20"]),
        &format!("{SECOND}\n"),
    )
    .await;
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("Continuing conversation {id}.")),
        "{stderr}"
    );
    assert_eq!(continued_id(&stderr), id);

    let given = stack.bedrock.conversations();
    assert_eq!(given.len(), 2, "{given:?}");
    assert_eq!(given[0], [said(Role::User, FIRST)]);
    assert_eq!(given[1].len(), 3, "{given:?}");
    assert_eq!(
        given[1],
        [
            said(Role::User, FIRST),
            said(Role::Assistant, &first_answer),
            said(Role::User, SECOND),
        ],
        "the second turn's model request carried the first turn"
    );

    // Without --conversation, a new one: no history.
    let third = run_to_end(
        spawn_chat(&url, &token, &["--max-tokens", "20"]),
        &format!("{SECOND}\n"),
    )
    .await;
    assert!(third.status.success());
    assert_ne!(continued_id(&String::from_utf8_lossy(&third.stderr)), id);
    assert_eq!(stack.bedrock.conversations()[2], [said(Role::User, SECOND)]);
    stop(stack, data).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn turn_chunks_gives_back_what_the_subscription_delivered() {
    // Paced, so that the answer comes in several chunks.
    let (stack, data) = stack(200.0).await;
    let token = stack.token("alice");
    let (conversation, turn) = ("conv-recover", "turn-recover");
    let client = connect(&stack, &token).await;
    let mut subscription = subscribe(&client, conversation).await;
    let mut outcomes = stack.lambda.outcomes();
    send_prompt(&stack, &token, conversation, turn, FIRST, Some(60)).await;
    let delivered = in_order(collect_turn(&mut subscription, turn).await);
    // The turn's chunks are all stored once its invocation has ended.
    tokio::time::timeout(DEADLINE, outcomes.recv())
        .await
        .expect("the invocation ends")
        .expect("an outcome");
    assert_eq!(text_of(&delivered), scripted_answer(FIRST, Some(60)).0);
    assert!(delivered.len() >= 3, "{delivered:?}");

    let http = reqwest::Client::new();
    let url = stack.graphql_url();
    let stored = turn_chunks(&http, &url, &token, conversation, turn, -1)
        .await
        .expect("turnChunks answers");
    assert_eq!(stored, delivered, "every chunk, as the subscriber got it");

    // A subscriber that has seq 0 to `last` asks for the rest, and with it
    // its assembler finishes the answer exactly once.
    let last = (delivered.len() / 2) as i64;
    let rest = turn_chunks(&http, &url, &token, conversation, turn, last)
        .await
        .expect("turnChunks answers");
    assert_eq!(rest, delivered[delivered.len() / 2 + 1..]);
    let mut assembler = TurnAssembler::new();
    let mut shown = Vec::new();
    for chunk in delivered[..=delivered.len() / 2]
        .iter()
        .cloned()
        .chain(rest)
        .chain(stored)
    {
        shown.extend(assembler.push(chunk));
    }
    assert_eq!(shown, delivered);
    assert!(assembler.finished().is_some());

    // Another user's token finds nothing; a malformed id is a typed error.
    let bob = turn_chunks(&http, &url, &stack.token("bob"), conversation, turn, -1)
        .await
        .expect("turnChunks answers bob");
    assert!(bob.is_empty(), "{bob:?}");
    let error = turn_chunks(&http, &url, &token, "not#an-id", turn, -1)
        .await
        .expect_err("a malformed id is refused");
    assert!(matches!(&error, QueryError::Refused { .. }), "{error:?}");
    assert_eq!(error.error_type(), Some("ValidationException"), "{error}");
    stop(stack, data).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chat_recovers_the_chunks_published_while_its_connection_was_down() {
    let (stack, data) = stack(40.0).await;
    let prompt = "Tell me how a lost chunk comes back.";
    let mut child = spawn_chat(
        &stack.graphql_url(),
        &stack.token("alice"),
        &["--max-tokens", "120"],
    );
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(format!("{prompt}\n").as_bytes())
        .await
        .expect("written");
    drop(stdin);
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");

    // Text has streamed: the turn is running.
    let mut seen = vec![0; 4096];
    let n = tokio::time::timeout(DEADLINE, stdout.read(&mut seen))
        .await
        .expect("text in time")
        .expect("stdout readable");
    assert!(n > 0, "stdout closed before any text");
    seen.truncate(n);
    // Cut every real-time socket, again and again, for 600 ms: the chunks
    // published meanwhile never reach the subscription (the scripted model
    // sends about 40 words a second, the answer takes 3 s).
    for _ in 0..12 {
        stack.appsync.drop_realtime_connections();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::timeout(DEADLINE, stdout.read_to_end(&mut seen))
        .await
        .expect("the answer ends in time")
        .expect("stdout readable");
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("exits in time")
        .expect("ran");
    let mut errors = String::new();
    stderr
        .read_to_string(&mut errors)
        .await
        .expect("stderr readable");
    assert!(status.success(), "{errors}");

    // The whole answer, once, in order.
    let answer = scripted_answer(prompt, Some(120)).0;
    assert_eq!(
        String::from_utf8_lossy(&seen),
        format!("{answer}\n"),
        "{errors}"
    );
    // And it took a reconnection and chunks only turnChunks had.
    assert!(errors.contains("reconnected"), "{errors}");
    assert!(errors.contains("missed chunk"), "{errors}");
    stop(stack, data).await;
}
