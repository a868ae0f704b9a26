//! cancelTurn through the real path: the owner's cancellation reaches the
//! running resolver through AppSync (its IAM `onCancel` subscription), the
//! Bedrock stream is dropped so the model stops, and the turn ends `cancelled`.
//! Another user's cancellation of the same turn changes nothing.

mod common;

use std::time::{Duration, Instant};

use appsync_client::{CANCEL_TURN, Chunk};
use common::*;
use devstack::Stack;
use serde_json::{Value, json};

async fn cancel(stack: &Stack, token: &str, conversation: &str, turn: &str) -> Value {
    let body = json!({"query": CANCEL_TURN, "variables": {"conversationId": conversation, "turnId": turn}});
    let (status, body) = post(stack, &[("authorization", token)], &body).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn next_chunk(subscription: &mut appsync_client::Subscription) -> Chunk {
    let payload = tokio::time::timeout(TURN_TIMEOUT, subscription.next())
        .await
        .expect("a chunk in time")
        .expect("open")
        .expect("data");
    appsync_client::chunk_from_payload(&payload).expect("a chunk")
}

#[tokio::test]
async fn the_owner_cancels_a_running_turn_and_the_model_stops() {
    let stack = stack_with(resolver(), |c| c.bedrock.scripted_tokens_per_second = 20.0).await;
    let alice = stack.token("alice");
    let bob = stack.token("bob");
    let client = connect(&stack, &alice).await;
    let mut subscription = subscribe(&client, "conv-cancel").await;
    send_prompt(
        &stack,
        &alice,
        "conv-cancel",
        "turn-c",
        "Talk for a long time.",
        Some(4000),
    )
    .await;
    let first = next_chunk(&mut subscription).await;
    assert!(!first.done);

    // Bob's cancellation carries his own sub as owner: it matches nothing.
    let refused = cancel(&stack, &bob, "conv-cancel", "turn-c").await;
    assert_eq!(
        refused["data"]["cancelTurn"]["owner"],
        devstack::cognito::sub_for("bob")
    );
    let until = Instant::now() + Duration::from_millis(800);
    let mut still_streaming = 0;
    while Instant::now() < until {
        let chunk = next_chunk(&mut subscription).await;
        assert!(!chunk.done, "bob's cancellation stopped alice's turn");
        still_streaming += 1;
    }
    assert!(still_streaming > 0);

    let accepted = cancel(&stack, &alice, "conv-cancel", "turn-c").await;
    assert_eq!(accepted["data"]["cancelTurn"]["turnId"], "turn-c");
    let cancelled_at = Instant::now();
    let mut after_cancel = 0;
    let last = loop {
        let chunk = next_chunk(&mut subscription).await;
        if chunk.done {
            break chunk;
        }
        after_cancel += 1;
    };
    assert_eq!(last.stop_reason.as_deref(), Some("cancelled"), "{last:?}");
    assert!(last.error.is_none());
    assert!(
        after_cancel <= 2,
        "{after_cancel} chunks after the cancellation"
    );
    assert!(cancelled_at.elapsed() < Duration::from_secs(2));
    assert_model_stops(&stack, Duration::from_secs(2)).await;
    stack.shutdown().await;
}
