//! Conversations that last, through the real path and the real DynamoDB
//! stand-in: the resolver's `bootstrap` claims each turn, loads the
//! conversation's history for the model, stores the turn's chunks beside
//! publishing, and writes the answer once at the end.

mod common;

use std::path::{Path, PathBuf};

use appsync_client::Chunk;
use aws_sdk_dynamodb::types::AttributeValue;
use common::*;
use devstack::Stack;
use devstack::bedrock::model::{ChatMessage, Role};
use devstack::bedrock::{Fault, scripted_answer};
use serde_json::json;

type Item = std::collections::HashMap<String, AttributeValue>;

const FIRST: &str = "What is a delta?";
const SECOND: &str = "And a chunk?";
const THIRD: &str = "And a subscriber?";

fn data_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("conversations-{name}-{}", uuid::Uuid::new_v4()))
}

async fn stack_on(data: &Path, tokens_per_second: f64) -> Stack {
    stack_with(resolver(), |c| {
        c.bedrock.scripted_tokens_per_second = tokens_per_second;
        c.dynamodb = Some(dynamodb_config(data));
    })
    .await
}

/// One turn as alice, to its terminal chunk and the end of its invocation
/// (when the turn's record is written).
async fn turn(stack: &Stack, conversation: &str, turn: &str, prompt: &str) -> Vec<Chunk> {
    let token = stack.token("alice");
    let client = connect(stack, &token).await;
    let mut subscription = subscribe(&client, conversation).await;
    let mut outcomes = stack.lambda.outcomes();
    send_prompt(stack, &token, conversation, turn, prompt, Some(20)).await;
    let chunks = collect_turn(&mut subscription, turn).await;
    tokio::time::timeout(TURN_TIMEOUT, outcomes.recv())
        .await
        .expect("the invocation ends")
        .expect("an outcome");
    chunks
}

fn text_of(chunks: &[Chunk]) -> String {
    let mut sorted = chunks.to_vec();
    sorted.sort_by_key(|c| c.seq);
    sorted.into_iter().map(|c| c.text).collect()
}

fn said(role: Role, text: &str) -> ChatMessage {
    ChatMessage {
        role,
        text: text.to_owned(),
    }
}

/// Alice's items in `conversation`'s partition whose sort key starts with `prefix`.
async fn items(stack: &Stack, conversation: &str, prefix: &str) -> Vec<Item> {
    let owner = devstack::cognito::sub_for("alice");
    stack
        .dynamodb
        .as_ref()
        .expect("the local DynamoDB started")
        .client()
        .query()
        .table_name(devstack::CONVERSATIONS_TABLE)
        .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
        .expression_attribute_values(":pk", AttributeValue::S(format!("{owner}#{conversation}")))
        .expression_attribute_values(":prefix", AttributeValue::S(prefix.into()))
        .send()
        .await
        .expect("query")
        .items
        .unwrap_or_default()
}

fn s<'a>(item: &'a Item, name: &str) -> &'a str {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map_or("", String::as_str)
}

#[tokio::test]
async fn a_second_turn_carries_the_first_as_history() {
    let data = data_dir("history");
    let stack = stack_on(&data, 400.0).await;
    let first = turn(&stack, "conv-h", "turn-1", FIRST).await;
    assert_eq!(text_of(&first), scripted_answer(FIRST, Some(20)).0);
    turn(&stack, "conv-h", "turn-2", SECOND).await;

    let given = stack.bedrock.conversations();
    assert_eq!(given.len(), 2, "{given:?}");
    assert_eq!(given[0], [said(Role::User, FIRST)]);
    assert_eq!(
        given[1],
        [
            said(Role::User, FIRST),
            said(Role::Assistant, &text_of(&first)),
            said(Role::User, SECOND),
        ],
        "the model got the first turn before the second prompt"
    );
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
}

/// What the model was given for the third of three turns in one
/// conversation, on a fresh stack whose function has this history budget
/// (`HISTORY_MAX_MESSAGES`, `HISTORY_MAX_CHARS`).
async fn third_turns_history(max_messages: usize, max_chars: usize) -> Vec<ChatMessage> {
    let data = data_dir("budget");
    let stack = stack_with(resolver(), |c| {
        c.bedrock.scripted_tokens_per_second = 400.0;
        c.dynamodb = Some(dynamodb_config(&data));
        c.function_environment.extend([
            ("HISTORY_MAX_MESSAGES".to_owned(), max_messages.to_string()),
            ("HISTORY_MAX_CHARS".to_owned(), max_chars.to_string()),
        ]);
    })
    .await;
    turn(&stack, "conv-budget", "turn-1", FIRST).await;
    turn(&stack, "conv-budget", "turn-2", SECOND).await;
    turn(&stack, "conv-budget", "turn-3", THIRD).await;
    let given = stack
        .bedrock
        .conversations()
        .pop()
        .expect("three model calls");
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
    given
}

/// The second turn, then the third prompt: what fits a budget of one turn.
fn second_turn_then_third_prompt() -> Vec<ChatMessage> {
    vec![
        said(Role::User, SECOND),
        said(Role::Assistant, &scripted_answer(SECOND, Some(20)).0),
        said(Role::User, THIRD),
    ]
}

/// Characters a turn of `prompt` adds to the history.
fn turn_chars(prompt: &str) -> usize {
    prompt.chars().count() + scripted_answer(prompt, Some(20)).0.chars().count()
}

#[tokio::test]
async fn history_keeps_the_newest_whole_turns_within_its_message_budget() {
    // 3 messages: one whole turn (a prompt without its answer is never sent).
    assert_eq!(
        third_turns_history(3, 400_000).await,
        second_turn_then_third_prompt()
    );
}

#[tokio::test]
async fn history_keeps_the_newest_whole_turns_within_its_character_budget() {
    let both = turn_chars(FIRST) + turn_chars(SECOND);
    // One character short of both earlier turns: only the newer one fits.
    assert_eq!(
        third_turns_history(200, both - 1).await,
        second_turn_then_third_prompt()
    );
    // Exactly both: both are sent, oldest first.
    let given = third_turns_history(200, both).await;
    assert_eq!(given.len(), 5, "{given:?}");
    assert_eq!(given[0], said(Role::User, FIRST));
}

#[tokio::test]
async fn history_is_per_conversation() {
    let data = data_dir("separate");
    let stack = stack_on(&data, 400.0).await;
    turn(&stack, "conv-a", "turn-1", FIRST).await;
    turn(&stack, "conv-b", "turn-2", SECOND).await;
    let given = stack.bedrock.conversations();
    assert_eq!(given[1], [said(Role::User, SECOND)]);
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn a_turn_leaves_its_messages_chunks_and_conversation() {
    let data = data_dir("items");
    let stack = stack_on(&data, 400.0).await;
    let chunks = turn(&stack, "conv-i", "turn-1", FIRST).await;

    let messages = items(&stack, "conv-i", "MSG#").await;
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(s(&messages[0], "role"), "user");
    assert_eq!(s(&messages[0], "text"), FIRST);
    assert_eq!(s(&messages[1], "role"), "assistant");
    assert_eq!(s(&messages[1], "text"), text_of(&chunks));
    assert_eq!(s(&messages[1], "stopReason"), "max_tokens");
    assert_eq!(s(&messages[1], "modelId"), "scripted");
    let usage = messages[1]
        .get("usage")
        .and_then(|u| u.as_m().ok())
        .expect("usage");
    assert_eq!(usage["outputTokens"].as_n().map(String::as_str), Ok("20"));

    let stored = items(&stack, "conv-i", "CHUNK#turn-1#").await;
    assert_eq!(stored.len(), chunks.len(), "every chunk once");
    let stored_text: String = stored.iter().map(|c| s(c, "text")).collect();
    assert_eq!(stored_text, text_of(&chunks));
    assert!(stored.iter().all(|c| c.contains_key("expiresAt")));
    let last = stored.last().expect("chunks");
    assert_eq!(last.get("done"), Some(&AttributeValue::Bool(true)));

    let owner = devstack::cognito::sub_for("alice");
    let conversation = stack
        .dynamodb
        .as_ref()
        .expect("dynamodb")
        .client()
        .get_item()
        .table_name(devstack::CONVERSATIONS_TABLE)
        .key("pk", AttributeValue::S(owner))
        .key("sk", AttributeValue::S("CONV#conv-i".into()))
        .send()
        .await
        .expect("get")
        .item
        .expect("the conversation item");
    assert_eq!(s(&conversation, "title"), FIRST);
    assert_eq!(s(&conversation, "conversationId"), "conv-i");
    assert!(s(&conversation, "createdAt") <= s(&conversation, "updatedAt"));
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn a_cancelled_turn_keeps_its_partial_text() {
    let data = data_dir("cancel");
    let stack = stack_on(&data, 20.0).await;
    let token = stack.token("alice");
    let client = connect(&stack, &token).await;
    let mut subscription = subscribe(&client, "conv-c").await;
    let mut outcomes = stack.lambda.outcomes();
    send_prompt(&stack, &token, "conv-c", "turn-1", FIRST, Some(500)).await;
    let chunks =
        cancel_after_first_chunk(&stack, &token, &mut subscription, ("conv-c", "turn-1")).await;
    tokio::time::timeout(TURN_TIMEOUT, outcomes.recv())
        .await
        .expect("the invocation ends")
        .expect("an outcome");

    let messages = items(&stack, "conv-c", "MSG#").await;
    let answer = messages.last().expect("an answer");
    assert_eq!(s(answer, "stopReason"), "cancelled");
    let partial = text_of(&chunks);
    assert!(!partial.is_empty());
    assert_eq!(s(answer, "text"), partial);
    assert!(partial.len() < scripted_answer(FIRST, Some(500)).0.len());

    turn(&stack, "conv-c", "turn-2", SECOND).await;
    let given = stack.bedrock.conversations();
    assert_eq!(
        given.last().map(|m| m[1].clone()),
        Some(said(Role::Assistant, &partial)),
        "the partial answer is history"
    );
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn history_survives_a_restart() {
    let data = data_dir("restart");
    let stack = stack_on(&data, 400.0).await;
    let first = turn(&stack, "conv-r", "turn-1", FIRST).await;
    stack.shutdown().await;

    let stack = stack_on(&data, 400.0).await;
    turn(&stack, "conv-r", "turn-2", SECOND).await;
    let given = stack.bedrock.conversations();
    assert_eq!(given.len(), 1);
    assert_eq!(
        given[0][..2],
        [
            said(Role::User, FIRST),
            said(Role::Assistant, &text_of(&first))
        ]
    );
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn a_store_outage_streams_without_history() {
    let stack = stack_with(resolver(), |c| {
        c.bedrock.scripted_tokens_per_second = 400.0;
        c.function_environment.extend([
            (
                "CONVERSATIONS_TABLE".into(),
                devstack::CONVERSATIONS_TABLE.into(),
            ),
            (
                "AWS_ENDPOINT_URL_DYNAMODB".into(),
                "http://127.0.0.1:9".into(),
            ),
        ]);
    })
    .await;
    let first = turn(&stack, "conv-o", "turn-1", FIRST).await;
    assert_eq!(text_of(&first), scripted_answer(FIRST, Some(20)).0);
    let second = turn(&stack, "conv-o", "turn-2", SECOND).await;
    assert_eq!(text_of(&second), scripted_answer(SECOND, Some(20)).0);
    assert_eq!(stack.bedrock.conversations()[1], [said(Role::User, SECOND)]);
    stack.shutdown().await;
}

#[tokio::test]
async fn a_worker_killed_mid_turn_is_ended_by_the_retry_as_interrupted() {
    let data = data_dir("killed");
    let stack = stack_with(resolver(), |c| {
        // One environment: the retry lands in its replacement.
        c.concurrency = 1;
        c.bedrock.scripted_tokens_per_second = 400.0;
        c.bedrock.fault = Some(Fault::Stall { after_deltas: 8 });
        c.dynamodb = Some(dynamodb_config(&data));
        c.function_environment
            .push(("CLAIM_LEASE_SECONDS".into(), "3".into()));
    })
    .await;
    let token = stack.token("alice");
    let client = connect(&stack, &token).await;
    let mut subscription = subscribe(&client, "conv-k").await;
    send_prompt(&stack, &token, "conv-k", "turn-k", FIRST, Some(100)).await;
    let until = tokio::time::Instant::now() + TURN_TIMEOUT;
    let mut chunks = vec![next_chunk(&mut subscription, until).await];
    // The model stalls after 8 deltas: let every chunk before it be
    // published and stored, then kill the environment.
    let quiet = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
    while let Ok(Some(Ok(payload))) = tokio::time::timeout_at(quiet, subscription.next()).await {
        chunks.extend(appsync_client::chunk_from_payload(&payload));
    }
    let pid = stack.lambda.worker_pids()[0];
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());

    while !chunks.last().is_some_and(|c| c.done) {
        chunks.push(next_chunk(&mut subscription, until).await);
    }
    let seqs: Vec<i64> = chunks.iter().map(|c| c.seq).collect();
    assert_eq!(
        seqs,
        (0..chunks.len() as i64).collect::<Vec<_>>(),
        "seq contiguous"
    );
    let last = chunks.last().expect("a terminal chunk");
    let error = last.error.as_ref().expect("an error");
    assert_eq!(error.error_type, "Interrupted");
    assert!(error.retryable);
    assert_eq!(last.stop_reason.as_deref(), Some("error"));
    let text = text_of(&chunks);
    assert!(!text.is_empty());
    assert!(scripted_answer(FIRST, Some(100)).0.starts_with(&text));
    let extra = tokio::time::timeout(std::time::Duration::from_secs(3), subscription.next()).await;
    assert!(extra.is_err(), "one terminal chunk only: {extra:?}");

    let messages = items(&stack, "conv-k", "MSG#").await;
    let answer = messages.last().expect("the answer");
    assert_eq!(s(answer, "role"), "assistant");
    assert_eq!(s(answer, "text"), text);
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
}

const TURN_CHUNKS: &str = "query ($c: ID!, $t: ID!, $after: Int, $next: String) {
  turnChunks(conversationId: $c, turnId: $t, afterSeq: $after, nextToken: $next) {
    items { conversationId turnId owner seq text done stopReason usage { inputTokens outputTokens totalTokens } error { errorType message retryable } }
    nextToken
  }
}";

/// `turnChunks` as the token's user, every page.
async fn turn_chunks(
    stack: &Stack,
    token: &str,
    conversation: &str,
    turn: &str,
    after: i64,
) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let body = json!({"query": TURN_CHUNKS, "variables": {"c": conversation, "t": turn, "after": after, "next": next}});
        let (status, body) = post(stack, &[("authorization", token)], &body).await;
        assert_eq!(status, 200, "{body}");
        let page = &body["data"]["turnChunks"];
        assert!(page.is_object(), "{body}");
        for item in page["items"].as_array().expect("items") {
            chunks.push(serde_json::from_value(item.clone()).expect("a chunk"));
        }
        match page["nextToken"].as_str() {
            Some(token) => next = Some(token.to_owned()),
            None => return chunks,
        }
    }
}

#[tokio::test]
async fn a_subscriber_cut_off_mid_turn_recovers_the_rest_with_turn_chunks() {
    let data = data_dir("recover");
    let stack = stack_on(&data, 100.0).await;
    let token = stack.token("alice");
    let client = connect(&stack, &token).await;
    let mut subscription = subscribe(&client, "conv-x").await;
    let mut outcomes = stack.lambda.outcomes();
    send_prompt(&stack, &token, "conv-x", "turn-x", FIRST, Some(100)).await;
    let until = tokio::time::Instant::now() + TURN_TIMEOUT;
    let mut assembler = appsync_client::TurnAssembler::new();
    let mut seen = String::new();
    let mut after = -1;
    for _ in 0..3 {
        for chunk in assembler.push(next_chunk(&mut subscription, until).await) {
            seen.push_str(&chunk.text);
            after = chunk.seq;
        }
    }
    // The socket goes: the rest of the turn is published to nobody.
    drop(subscription);
    drop(client);
    tokio::time::timeout(TURN_TIMEOUT, outcomes.recv())
        .await
        .expect("the invocation ends")
        .expect("an outcome");

    assert!(after >= 0, "some chunks arrived");
    let missed = turn_chunks(&stack, &token, "conv-x", "turn-x", after).await;
    assert!(
        missed
            .iter()
            .all(|c| c.seq > after && c.owner == devstack::cognito::sub_for("alice"))
    );
    for chunk in missed {
        for ready in assembler.push(chunk) {
            seen.push_str(&ready.text);
        }
    }
    assert!(
        assembler.finished().is_some(),
        "the terminal chunk was recovered"
    );
    assert_eq!(
        seen,
        scripted_answer(FIRST, Some(100)).0,
        "the whole answer, once"
    );
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
}
