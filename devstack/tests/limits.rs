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
    let cases = [
        (
            "an empty prompt",
            json!({"conversationId": "conv-limits", "prompt": ""}),
        ),
        (
            "a blank prompt",
            json!({"conversationId": "conv-limits", "prompt": " \n "}),
        ),
        (
            "an oversized prompt",
            json!({"conversationId": "conv-limits", "prompt": "x".repeat(32_001)}),
        ),
        (
            "an unknown model",
            json!({"conversationId": "conv-limits", "prompt": "hi", "modelId": "no-such-model"}),
        ),
        (
            "maxTokens 0",
            json!({"conversationId": "conv-limits", "prompt": "hi", "maxTokens": 0}),
        ),
        (
            "maxTokens too large",
            json!({"conversationId": "conv-limits", "prompt": "hi", "maxTokens": 100_000}),
        ),
        (
            "temperature above 1",
            json!({"conversationId": "conv-limits", "prompt": "hi", "temperature": 2.5}),
        ),
        (
            "temperature below 0",
            json!({"conversationId": "conv-limits", "prompt": "hi", "temperature": -0.1}),
        ),
        (
            "a malformed conversationId",
            json!({"conversationId": "conv limits!", "prompt": "hi"}),
        ),
        (
            "a malformed turnId",
            json!({"conversationId": "conv-limits", "prompt": "hi", "turnId": "t/../1"}),
        ),
    ];
    for (what, input) in cases {
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
                .is_some_and(|m| !m.is_empty())
        );
    }
    assert_eq!(stack.bedrock.requests_served(), 0, "no model was called");
    let nothing = tokio::time::timeout(Duration::from_millis(300), subscription.next()).await;
    assert!(nothing.is_err(), "no chunk for a refused prompt");
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
