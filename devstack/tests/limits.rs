//! Input limits: bad prompts are refused with a GraphQL error by the sendPrompt
//! resolver, before anything is invoked and before any model call.

mod common;

use std::time::Duration;

use appsync_client::SEND_PROMPT;
use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn bad_input_is_refused_before_any_model_call() {
    let stack = stack(resolver()).await;
    let token = stack.token("alice");
    let client = connect(&stack, &token).await;
    let mut subscription = subscribe(&client, "conv-limits").await;
    let id_rule = "must be 1 to 128 characters of A-Z, a-z, 0-9, '-', '_', '.', ':'.";
    let prompt_rule = "prompt must be 1 to 32000 characters and not blank.";
    let cases = [
        (
            "an empty prompt",
            json!({"conversationId": "conv-limits", "prompt": ""}),
            prompt_rule.to_owned(),
        ),
        (
            "a blank prompt",
            json!({"conversationId": "conv-limits", "prompt": " \n "}),
            prompt_rule.to_owned(),
        ),
        (
            "an oversized prompt",
            json!({"conversationId": "conv-limits", "prompt": "x".repeat(32_001)}),
            prompt_rule.to_owned(),
        ),
        (
            "an oversized prompt of characters outside the BMP",
            json!({"conversationId": "conv-limits", "prompt": "\u{1F600}".repeat(32_001)}),
            prompt_rule.to_owned(),
        ),
        (
            "an oversized system prompt",
            json!({"conversationId": "conv-limits", "prompt": "hi", "system": "s".repeat(32_001)}),
            "system must be at most 32000 characters.".to_owned(),
        ),
        (
            "an unknown model",
            json!({"conversationId": "conv-limits", "prompt": "hi", "modelId": "no-such-model"}),
            "modelId 'no-such-model' is not available; use one of: ".to_owned(),
        ),
        (
            "maxTokens 0",
            json!({"conversationId": "conv-limits", "prompt": "hi", "maxTokens": 0}),
            "maxTokens must be between 1 and 8192.".to_owned(),
        ),
        (
            "maxTokens too large",
            json!({"conversationId": "conv-limits", "prompt": "hi", "maxTokens": 8193}),
            "maxTokens must be between 1 and 8192.".to_owned(),
        ),
        (
            "temperature above 1",
            json!({"conversationId": "conv-limits", "prompt": "hi", "temperature": 2.5}),
            "temperature must be between 0 and 1.".to_owned(),
        ),
        (
            "temperature below 0",
            json!({"conversationId": "conv-limits", "prompt": "hi", "temperature": -0.1}),
            "temperature must be between 0 and 1.".to_owned(),
        ),
        (
            "a malformed conversationId",
            json!({"conversationId": "conv limits!", "prompt": "hi"}),
            format!("conversationId {id_rule}"),
        ),
        (
            "an oversized conversationId",
            json!({"conversationId": "c".repeat(129), "prompt": "hi"}),
            format!("conversationId {id_rule}"),
        ),
        (
            "a malformed turnId",
            json!({"conversationId": "conv-limits", "prompt": "hi", "turnId": "t/../1"}),
            format!("turnId {id_rule}"),
        ),
    ];
    for (what, input, message) in cases {
        let body = json!({"query": SEND_PROMPT, "variables": {"input": input}});
        let (status, body) = post(&stack, &[("authorization", &token)], &body).await;
        assert_eq!(status, 200, "{what}: {body}");
        assert_eq!(body["data"], Value::Null, "{what}: {body}");
        assert_eq!(
            body["errors"][0]["errorType"], "ValidationException",
            "{what}: {body}"
        );
        assert_eq!(body["errors"][0]["path"], json!(["sendPrompt"]), "{what}");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(&message)),
            "{what}: {body}"
        );
    }
    assert_eq!(stack.bedrock.requests_served(), 0, "no model was called");
    let nothing = tokio::time::timeout(Duration::from_millis(300), subscription.next()).await;
    assert!(nothing.is_err(), "no chunk for a refused prompt");
    stack.shutdown().await;
}

/// The largest inputs the limits allow are answered whole, through the
/// resolver, the Lambda (which checks the same limits) and the model. Sizes
/// are characters, not bytes or UTF-16 units: a prompt of 32,000 characters
/// outside the BMP (64,000 UTF-16 units, 128,000 bytes) is allowed.
#[tokio::test]
async fn inputs_at_each_limit_are_answered() {
    let stack = stack_with(resolver(), |c| {
        c.bedrock.scripted_tokens_per_second = 0.0;
    })
    .await;
    let token = stack.token("alice");
    let conversation = "c".repeat(128);
    let client = connect(&stack, &token).await;
    let mut subscription = subscribe(&client, &conversation).await;
    let cases = [
        (
            "a prompt of 32000 characters",
            json!({"prompt": "x".repeat(32_000)}),
        ),
        (
            "a prompt of 32000 characters outside the BMP",
            json!({"prompt": "\u{1F600}".repeat(32_000)}),
        ),
        (
            "a system prompt of 32000 characters",
            json!({"prompt": "hi", "system": "s".repeat(32_000)}),
        ),
        ("maxTokens 1", json!({"prompt": "hi", "maxTokens": 1})),
        ("maxTokens 8192", json!({"prompt": "hi", "maxTokens": 8192})),
        ("temperature 0", json!({"prompt": "hi", "temperature": 0.0})),
        ("temperature 1", json!({"prompt": "hi", "temperature": 1.0})),
    ];
    for (i, (what, mut input)) in cases.into_iter().enumerate() {
        let turn = format!("{i:0>128}");
        input["conversationId"] = json!(conversation);
        input["turnId"] = json!(turn);
        let body = json!({"query": SEND_PROMPT, "variables": {"input": input}});
        let (status, body) = post(&stack, &[("authorization", &token)], &body).await;
        assert_eq!(status, 200, "{what}: {body}");
        assert!(body.get("errors").is_none(), "{what}: {body}");
        let chunks = collect_turn(&mut subscription, &turn).await;
        let last = chunks.last().expect("chunks");
        assert!(last.error.is_none(), "{what}: {last:?}");
        assert!(
            matches!(last.stop_reason.as_deref(), Some("end_turn" | "max_tokens")),
            "{what}: {last:?}"
        );
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn a_wrongly_typed_argument_is_a_validation_error() {
    let stack = stack(resolver()).await;
    let token = stack.token("alice");
    let body = json!({"query": SEND_PROMPT, "variables": {"input": {"conversationId": "c", "prompt": "hi", "maxTokens": "many"}}});
    let (status, body) = post(&stack, &[("authorization", &token)], &body).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("WrongType")),
        "{body}"
    );
    stack.shutdown().await;
}
