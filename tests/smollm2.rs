//! Smoke test of the real model through the whole path: SmolLM2-135M-Instruct
//! (candle) behind the Bedrock stand-in, the real resolver, AppSync, and a
//! subscriber. The first run fetches the weights (about 98 MB) and caches them.

mod common;

use common::*;

#[tokio::test]
async fn the_real_model_streams_a_short_answer() {
    let stack = stack_with(resolver(), |c| c.default_model = "smollm2".into()).await;
    stack
        .bedrock
        .warm("smollm2")
        .await
        .expect("the model loads");
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
    let last = chunks.last().expect("chunks");
    assert!(last.done && last.error.is_none(), "{last:?}");
    let text: String = chunks.iter().map(|c| c.text.as_str()).collect();
    assert!(
        text.chars().any(char::is_alphabetic),
        "real words: {text:?}"
    );
    let usage = last.usage.as_ref().expect("usage");
    assert!((1..=12).contains(&usage.output_tokens), "{usage:?}");
    assert!(usage.input_tokens > 5, "the prompt was counted: {usage:?}");
    assert!(matches!(
        last.stop_reason.as_deref(),
        Some("end_turn" | "max_tokens")
    ));
    stack.shutdown().await;
}
