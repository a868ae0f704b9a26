//! The whole path over real sockets: sendPrompt -> Lambda worker (the real
//! `bootstrap`) -> Bedrock stand-in -> publishChunk (SigV4) -> AppSync ->
//! onChunk over the real-time WebSocket.

mod common;

use std::time::Duration;

use common::*;
use devstack::bedrock::{ESCAPES_MARKER, scripted_answer};

#[tokio::test]
async fn a_subscriber_receives_the_scripted_answer_whole_and_in_order() {
    let stack = stack(resolver()).await;
    let token = stack.token("alice");
    let client = connect(&stack, &token).await;
    let mut subscription = subscribe(&client, "conv-whole").await;
    let prompt = "What is AWS Lambda?";
    let body = send_prompt(&stack, &token, "conv-whole", "turn-1", prompt, Some(40)).await;
    assert_eq!(body["data"]["sendPrompt"]["turnId"], "turn-1", "{body}");
    assert_eq!(
        body["data"]["sendPrompt"]["owner"],
        devstack::cognito::sub_for("alice")
    );

    let chunks = collect_turn(&mut subscription, "turn-1").await;
    let seqs: Vec<i64> = chunks.iter().map(|c| c.seq).collect();
    assert_eq!(
        seqs,
        (0..chunks.len() as i64).collect::<Vec<_>>(),
        "seq is contiguous and in order"
    );
    let done: Vec<_> = chunks.iter().filter(|c| c.done).collect();
    assert_eq!(done.len(), 1, "exactly one terminal chunk");
    assert!(
        chunks.last().is_some_and(|c| c.done),
        "the terminal chunk is last"
    );
    let text: String = chunks.iter().map(|c| c.text.as_str()).collect();
    let (expected, tokens) = scripted_answer(prompt, Some(40));
    assert_eq!(text, expected);
    let last = chunks.last().expect("chunks");
    assert_eq!(last.stop_reason.as_deref(), Some("max_tokens"));
    assert_eq!(
        last.usage.as_ref().map(|u| u.output_tokens),
        Some(i64::from(tokens))
    );
    assert!(last.error.is_none());
    assert!(
        chunks
            .iter()
            .all(|c| c.owner == devstack::cognito::sub_for("alice"))
    );
    stack.shutdown().await;
}

/// AppSync drops a subscription message over 240 KB silently, and JSON writes
/// a control character as six bytes: chunks at the largest bound the settings
/// allow, of text made only of such characters, still all arrive, whole.
#[tokio::test]
async fn the_largest_chunks_of_the_most_escaped_text_are_all_delivered() {
    let stack = stack_with(resolver(), |c| {
        c.bedrock.scripted_tokens_per_second = 0.0;
        c.function_environment.extend([
            ("MAX_CHUNK_BYTES".to_owned(), "40000".to_owned()),
            ("COALESCE_STRATEGY".to_owned(), "timer:60000".to_owned()),
        ]);
    })
    .await;
    let token = stack.token("alice");
    let client = connect(&stack, &token).await;
    let mut subscription = subscribe(&client, "conv-escapes").await;
    send_prompt(
        &stack,
        &token,
        "conv-escapes",
        "turn-1",
        ESCAPES_MARKER,
        Some(8192),
    )
    .await;

    let chunks = collect_turn(&mut subscription, "turn-1").await;
    let text: String = chunks.iter().map(|c| c.text.as_str()).collect();
    let (expected, _) = scripted_answer(ESCAPES_MARKER, Some(8192));
    assert!(text == expected, "the answer arrived changed or incomplete");
    let sizes: Vec<usize> = chunks.iter().map(|c| c.text.len()).collect();
    assert!(sizes.iter().all(|&n| n <= 40_000), "{sizes:?}");
    assert!(
        sizes.iter().filter(|&&n| n == 40_000).count() >= 2,
        "chunks at the bound: {sizes:?}"
    );
    let last = chunks.last().expect("chunks");
    assert_eq!(last.stop_reason.as_deref(), Some("end_turn"));
    stack.shutdown().await;
}

#[tokio::test]
async fn another_users_subscription_receives_nothing() {
    let stack = stack(resolver()).await;
    let alice = stack.token("alice");
    let bob = stack.token("bob");
    let alice_client = connect(&stack, &alice).await;
    let bob_client = connect(&stack, &bob).await;
    let mut alice_sub = subscribe(&alice_client, "conv-private").await;
    let mut bob_sub = subscribe(&bob_client, "conv-private").await;
    send_prompt(
        &stack,
        &alice,
        "conv-private",
        "turn-a",
        "a secret",
        Some(10),
    )
    .await;
    let chunks = collect_turn(&mut alice_sub, "turn-a").await;
    assert!(chunks.last().is_some_and(|c| c.done));
    let leaked = tokio::time::timeout(Duration::from_millis(500), bob_sub.next()).await;
    assert!(leaked.is_err(), "bob received {leaked:?}");
    stack.shutdown().await;
}

#[tokio::test]
async fn the_legacy_query_string_header_form_subscribes_too() {
    use appsync_client::{HeaderTransport, RealtimeAuth, RealtimeClient};
    let stack = stack(resolver()).await;
    let token = stack.token("carol");
    let client = RealtimeClient::connect(
        &stack.realtime_url(),
        &stack.graphql_url(),
        RealtimeAuth::Token(token.clone()),
        HeaderTransport::QueryString,
    )
    .await
    .expect("connects");
    let mut subscription = subscribe(&client, "conv-legacy").await;
    send_prompt(&stack, &token, "conv-legacy", "turn-l", "hello", Some(5)).await;
    let chunks = collect_turn(&mut subscription, "turn-l").await;
    assert!(chunks.last().is_some_and(|c| c.done));
    stack.shutdown().await;
}
