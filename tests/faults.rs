//! Every fault through the real path, judged by what the subscriber ends with:
//! the whole text or a typed error, `seq` contiguous, no repeated text, and
//! exactly one terminal chunk.

mod common;

use std::time::Duration;

use appsync_client::{Chunk, TurnAssembler};
use aws_sdk_dynamodb::types::AttributeValue;
use common::*;
use devstack::Stack;
use devstack::appsync::faults::PublishFault;
use devstack::bedrock::{Fault, StreamException, scripted_answer};

const PROMPT: &str = "Tell me about streaming.";

/// Runs one turn as alice; returns every chunk received (repeats included).
async fn turn(stack: &Stack, conversation: &str, max_tokens: u32) -> Vec<Chunk> {
    let token = stack.token("alice");
    let client = connect(stack, &token).await;
    let mut subscription = subscribe(&client, conversation).await;
    send_prompt(
        stack,
        &token,
        conversation,
        "turn-f",
        PROMPT,
        Some(max_tokens),
    )
    .await;
    collect_turn(&mut subscription, "turn-f").await
}

/// The subscriber's final view after ordering and dropping repeats.
fn assembled(chunks: &[Chunk]) -> (String, Chunk) {
    let mut assembler = TurnAssembler::new();
    let mut text = String::new();
    for chunk in chunks.iter().cloned() {
        for ready in assembler.push(chunk) {
            text.push_str(&ready.text);
        }
    }
    let last = assembler.finished().cloned().expect("a terminal chunk");
    (text, last)
}

fn assert_one_terminal_and_contiguous(chunks: &[Chunk]) {
    let mut seqs: Vec<i64> = chunks.iter().map(|c| c.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(
        seqs,
        (0..seqs.len() as i64).collect::<Vec<_>>(),
        "seq contiguous"
    );
    let terminal: std::collections::HashSet<i64> =
        chunks.iter().filter(|c| c.done).map(|c| c.seq).collect();
    assert_eq!(terminal.len(), 1, "exactly one terminal chunk");
    assert_eq!(
        terminal.iter().next(),
        seqs.last(),
        "the terminal chunk is last"
    );
}

#[tokio::test]
async fn mid_stream_exceptions_end_with_a_typed_error_after_the_text_so_far() {
    let cases = [
        (StreamException::ModelStreamError, "ModelStreamError", true),
        (StreamException::Throttling, "ThrottlingException", true),
        (
            StreamException::InternalServer,
            "InternalServerException",
            true,
        ),
        (
            StreamException::ServiceUnavailable,
            "ServiceUnavailableException",
            true,
        ),
        (StreamException::Validation, "ValidationException", false),
    ];
    let stack = stack(resolver()).await;
    for (n, (exception, error_type, retryable)) in cases.into_iter().enumerate() {
        stack.bedrock.set_fault(Some(Fault::Exception {
            after_deltas: 3,
            exception,
            message: "internal detail that must not reach the user".into(),
        }));
        let chunks = turn(&stack, &format!("conv-exc-{n}"), 40).await;
        assert_one_terminal_and_contiguous(&chunks);
        let (text, last) = assembled(&chunks);
        let error = last.error.clone().expect("a typed error");
        assert_eq!(
            (error.error_type.as_str(), error.retryable),
            (error_type, retryable),
            "{exception:?}"
        );
        assert!(
            !error.message.contains("internal detail"),
            "safe message: {}",
            error.message
        );
        assert_eq!(last.stop_reason.as_deref(), Some("error"));
        let (full, _) = scripted_answer(PROMPT, Some(40));
        assert!(
            !text.is_empty() && full.starts_with(&text),
            "the text before the fault arrived: {text:?}"
        );
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn a_truncated_stream_ends_with_a_retryable_error() {
    let stack = stack(resolver()).await;
    stack
        .bedrock
        .set_fault(Some(Fault::Truncate { after_deltas: 2 }));
    let chunks = turn(&stack, "conv-trunc", 40).await;
    assert_one_terminal_and_contiguous(&chunks);
    let (_, last) = assembled(&chunks);
    let error = last.error.expect("a typed error");
    assert_eq!(error.error_type, "StreamTruncated");
    assert!(error.retryable);
    stack.shutdown().await;
}

#[tokio::test]
async fn a_connection_cut_mid_stream_ends_with_a_retryable_error() {
    let stack = stack(resolver()).await;
    stack
        .bedrock
        .set_fault(Some(Fault::Disconnect { after_deltas: 2 }));
    let chunks = turn(&stack, "conv-cut", 40).await;
    assert_one_terminal_and_contiguous(&chunks);
    let (text, last) = assembled(&chunks);
    let error = last.error.expect("a typed error");
    assert!(error.retryable, "{error:?}");
    assert!(!text.is_empty(), "the text before the cut arrived");
    stack.shutdown().await;
}

#[tokio::test]
async fn a_stalled_model_is_cut_short_at_the_lambda_deadline() {
    let stack = stack_with(resolver(), |c| c.function_timeout = Duration::from_secs(3)).await;
    stack
        .bedrock
        .set_fault(Some(Fault::Stall { after_deltas: 3 }));
    let chunks = turn(&stack, "conv-stall", 40).await;
    assert_one_terminal_and_contiguous(&chunks);
    let (text, last) = assembled(&chunks);
    assert_eq!(last.stop_reason.as_deref(), Some("deadline"), "{last:?}");
    assert!(last.error.is_none());
    let (full, _) = scripted_answer(PROMPT, Some(40));
    assert!(!text.is_empty() && full.starts_with(&text));
    stack.shutdown().await;
}

#[tokio::test]
async fn throttling_before_the_stream_is_retried_then_reported() {
    let stack = stack(resolver()).await;
    stack.bedrock.set_fault(Some(Fault::Reject {
        status: 429,
        code: "ThrottlingException".into(),
        message: "Too many requests, please wait before trying again.".into(),
    }));
    let chunks = turn(&stack, "conv-throttle", 20).await;
    assert_eq!(chunks.len(), 1, "one terminal chunk and no text");
    let error = chunks[0].error.clone().expect("a typed error");
    assert_eq!(
        (error.error_type.as_str(), error.retryable),
        ("ThrottlingException", true)
    );
    assert!(
        stack.bedrock.requests_served() > 1,
        "the SDK retried before giving up"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn appsync_throttling_and_server_errors_are_retried_without_loss() {
    let stack = stack(resolver()).await;
    stack
        .appsync
        .publish_faults
        .push(PublishFault::Status(429), 2);
    stack
        .appsync
        .publish_faults
        .push(PublishFault::Status(500), 1);
    let chunks = turn(&stack, "conv-429", 30).await;
    assert_one_terminal_and_contiguous(&chunks);
    let (text, last) = assembled(&chunks);
    assert_eq!(text, scripted_answer(PROMPT, Some(30)).0);
    assert!(last.error.is_none(), "{last:?}");
    stack.shutdown().await;
}

#[tokio::test]
async fn a_dropped_connection_repeats_a_chunk_that_the_client_drops() {
    let stack = stack(resolver()).await;
    stack
        .appsync
        .publish_faults
        .push(PublishFault::DropAfterExecute, 1);
    let chunks = turn(&stack, "conv-drop", 30).await;
    assert_one_terminal_and_contiguous(&chunks);
    let repeats = chunks.len()
        - chunks
            .iter()
            .map(|c| c.seq)
            .collect::<std::collections::HashSet<_>>()
            .len();
    assert!(
        repeats >= 1,
        "the dropped publish was retried with the same seq"
    );
    let (text, last) = assembled(&chunks);
    assert_eq!(
        text,
        scripted_answer(PROMPT, Some(30)).0,
        "no repeated text"
    );
    assert!(last.error.is_none());
    stack.shutdown().await;
}

#[tokio::test]
async fn a_publish_round_trip_delays_but_loses_nothing() {
    let stack = stack_with(resolver(), |c| c.bedrock.scripted_tokens_per_second = 200.0).await;
    stack
        .appsync
        .publish_faults
        .set_round_trip(Duration::from_millis(30));
    let chunks = turn(&stack, "conv-rtt", 60).await;
    assert_one_terminal_and_contiguous(&chunks);
    let (text, _) = assembled(&chunks);
    assert_eq!(text, scripted_answer(PROMPT, Some(60)).0);
    assert!(
        chunks.len() < 60,
        "deltas were merged while publishes were in flight: {} chunks",
        chunks.len()
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn publishes_that_keep_failing_end_the_turn_with_an_error_chunk() {
    let stack = stack(resolver()).await;
    // More failures than the publisher's attempts for one chunk, then recovery.
    stack
        .appsync
        .publish_faults
        .push(PublishFault::Status(500), 4);
    let chunks = turn(&stack, "conv-fail", 30).await;
    let (_, last) = assembled(&chunks);
    let error = last.error.expect("a typed error");
    assert!(error.retryable, "{error:?}");
    assert_eq!(chunks.iter().filter(|c| c.done).count(), 1);
    stack.shutdown().await;
}

#[tokio::test]
async fn the_lambda_deadline_cuts_the_turn_short_with_a_terminal_chunk() {
    let stack = stack_with(resolver(), |c| {
        c.bedrock.scripted_tokens_per_second = 20.0;
        c.function_timeout = Duration::from_secs(3);
    })
    .await;
    let chunks = turn(&stack, "conv-deadline", 2000).await;
    assert_one_terminal_and_contiguous(&chunks);
    let (text, last) = assembled(&chunks);
    assert_eq!(last.stop_reason.as_deref(), Some("deadline"));
    assert!(!text.is_empty());
    stack.shutdown().await;
}

#[tokio::test]
async fn a_duplicate_delivery_of_the_event_does_not_stream_twice() {
    let stack = stack_with(resolver(), |c| c.concurrency = 1).await;
    stack.lambda.set_duplicate_delivery(1);
    let token = stack.token("alice");
    let client = connect(&stack, &token).await;
    let mut subscription = subscribe(&client, "conv-dup").await;
    send_prompt(&stack, &token, "conv-dup", "turn-f", PROMPT, Some(20)).await;
    let chunks = collect_turn(&mut subscription, "turn-f").await;
    // The second delivery runs after the first on the one worker; anything it
    // published would arrive now.
    let extra = tokio::time::timeout(Duration::from_secs(1), subscription.next()).await;
    assert!(extra.is_err(), "the answer was streamed again: {extra:?}");
    let (text, _) = assembled(&chunks);
    assert_eq!(text, scripted_answer(PROMPT, Some(20)).0);
    assert_eq!(chunks.iter().filter(|c| c.done).count(), 1);
    stack.shutdown().await;
}

#[tokio::test]
async fn a_duplicate_in_another_execution_environment_does_not_stream_twice() {
    let data = std::env::temp_dir().join(format!("faults-dynamodb-{}", uuid::Uuid::new_v4()));
    // Two idle environments take the two copies of the event at once.
    let stack = stack_with(resolver(), |c| {
        c.concurrency = 2;
        c.bedrock.scripted_tokens_per_second = 200.0;
        c.dynamodb = Some(dynamodb_config(&data));
    })
    .await;
    let dynamodb = stack.dynamodb.as_ref().expect("the local DynamoDB started");
    stack.lambda.set_duplicate_delivery(1);
    let token = stack.token("alice");
    let client = connect(&stack, &token).await;
    let mut subscription = subscribe(&client, "conv-dup2").await;
    send_prompt(&stack, &token, "conv-dup2", "turn-g", PROMPT, Some(20)).await;
    let chunks = collect_turn(&mut subscription, "turn-g").await;
    let extra = tokio::time::timeout(Duration::from_secs(1), subscription.next()).await;
    assert!(extra.is_err(), "the answer was streamed again: {extra:?}");
    assert!(
        chunks.iter().enumerate().all(|(i, c)| c.seq == i as i64),
        "every chunk once, in order"
    );
    let (text, _) = assembled(&chunks);
    assert_eq!(text, scripted_answer(PROMPT, Some(20)).0);

    let owner = devstack::cognito::sub_for("alice");
    let claim = dynamodb
        .client()
        .get_item()
        .table_name(devstack::CONVERSATIONS_TABLE)
        .key("pk", AttributeValue::S(format!("{owner}#conv-dup2")))
        .key("sk", AttributeValue::S("TURN#turn-g".into()))
        .send()
        .await
        .expect("read the claim")
        .item;
    assert!(claim.is_some_and(|item| item.contains_key("expiresAt")));
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn a_store_that_cannot_be_reached_never_fails_the_turn() {
    // A table on a port where nothing listens: the claim fails, the turn streams.
    let stack = stack_with(resolver(), |c| {
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
    let chunks = turn(&stack, "conv-outage", 20).await;
    let (text, last) = assembled(&chunks);
    assert_eq!(text, scripted_answer(PROMPT, Some(20)).0);
    assert_eq!(last.stop_reason.as_deref(), Some("max_tokens"));
    stack.shutdown().await;
}
