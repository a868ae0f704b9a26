//! Smoke test of the real model through the whole path: SmolLM2-135M-Instruct
//! (candle) behind the Bedrock stand-in, the real resolver, AppSync, and a
//! subscriber. The first run fetches the weights (about 98 MB) and caches them.

mod common;

use common::*;
use devstack::Stack;

/// A stack whose default model is SmolLM2, loaded before the first prompt,
/// with a function URL and a WebSocket API too.
async fn smollm2_stack() -> Stack {
    let stack = stack_with(resolver(), |c| {
        c.default_model = "smollm2".into();
        c.url_function = Some(url_function());
        c.websocket_functions = Some(websocket_functions());
    })
    .await;
    stack
        .bedrock
        .warm("smollm2")
        .await
        .expect("the model loads");
    stack
}

/// A whole answer of the real model to a short question, at most
/// `max_tokens` long: real words, usage counting the prompt, a model's stop.
fn assert_real_answer(chunks: &[appsync_client::Chunk], max_tokens: i64) {
    let last = chunks.last().expect("chunks");
    assert!(last.done && last.error.is_none(), "{last:?}");
    let text: String = chunks.iter().map(|c| c.text.as_str()).collect();
    assert!(
        text.chars().any(char::is_alphabetic),
        "real words: {text:?}"
    );
    let usage = last.usage.as_ref().expect("usage");
    assert!((1..=max_tokens).contains(&usage.output_tokens), "{usage:?}");
    assert!(usage.input_tokens > 5, "the prompt was counted: {usage:?}");
    assert!(matches!(
        last.stop_reason.as_deref(),
        Some("end_turn" | "max_tokens")
    ));
}

#[tokio::test]
async fn the_real_model_streams_a_short_answer() {
    let stack = smollm2_stack().await;
    let token = stack.token("alice");
    let client = connect(&stack, &token).await;
    let mut subscription = subscribe(&client, "conv-real").await;
    send_prompt(
        &stack,
        &token,
        "conv-real",
        "turn-real",
        "What is the capital of France?",
        Some(12),
    )
    .await;
    let chunks = collect_turn(&mut subscription, "turn-real").await;
    assert_real_answer(&chunks, 12);
    stack.shutdown().await;
}

/// The same model through the second transport: the function URL's
/// Server-Sent Events.
#[tokio::test]
async fn the_real_model_streams_through_the_function_url() {
    let stack = smollm2_stack().await;
    let body = serde_json::json!({
        "conversationId": "conv-url",
        "prompt": "What is the capital of France?",
        "maxTokens": 12
    });
    let response = post_to_url(&stack, Some(&stack.token("alice")), &body).await;
    assert_eq!(response.status(), 200);
    let chunks = sse_chunks(response).await;
    assert_real_answer(&chunks, 12);
    stack.shutdown().await;
}

/// The same model through the third transport: messages on an API Gateway
/// WebSocket API connection.
#[tokio::test]
async fn the_real_model_streams_through_the_websocket_api() {
    let stack = smollm2_stack().await;
    let url = stack.websocket_url().expect("a WebSocket API");
    let mut client = appsync_client::WebSocketApiClient::connect(&url, &stack.token("alice"))
        .await
        .expect("connects");
    let input = serde_json::json!({
        "conversationId": "conv-ws",
        "prompt": "What is the capital of France?",
        "maxTokens": 12
    });
    client.send_prompt(&input).await.expect("sent");
    let chunks = tokio::time::timeout(TURN_TIMEOUT, client.collect_turn(None))
        .await
        .expect("the turn ends in time")
        .expect("the connection stays open")
        .expect("the prompt is accepted");
    assert_real_answer(&chunks, 12);
    stack.shutdown().await;
}

/// SmolLM2's context window is 8,192 tokens: a prompt whose `maxTokens`
/// leaves no room for it is refused by the model (Bedrock's
/// `ValidationException`, as for any model's own limits), and the turn ends
/// at once with a terminal chunk that says so in words safe to show.
#[tokio::test]
async fn max_tokens_past_the_models_context_ends_the_turn_with_a_clear_error() {
    let stack = smollm2_stack().await;
    let token = stack.token("alice");
    let client = connect(&stack, &token).await;
    let mut subscription = subscribe(&client, "conv-context").await;
    let body = send_prompt(
        &stack,
        &token,
        "conv-context",
        "turn-context",
        "Write a long story.",
        Some(8192),
    )
    .await;
    assert!(body.get("errors").is_none(), "the API allows 8192: {body}");
    let chunks = collect_turn(&mut subscription, "turn-context").await;
    assert_eq!(chunks.len(), 1, "{chunks:?}");
    let last = &chunks[0];
    assert_eq!(last.stop_reason.as_deref(), Some("error"));
    assert!(last.text.is_empty(), "{last:?}");
    let error = last.error.as_ref().expect("an error");
    assert_eq!(error.error_type, "ValidationException");
    assert_eq!(
        error.message,
        "The model could not accept this request. Try a shorter prompt or different settings."
    );
    assert!(!error.retryable);
    stack.shutdown().await;
}
