//! The function URL transport through the real path: an HTTP client POSTs
//! to the devstack's function URL, the Lambda stand-in runs this build's
//! `function-url` binary in streaming response mode, and the answer comes
//! back as Server-Sent Events, one per chunk, ending with the terminal
//! chunk. The ID token is checked by the function against the pool's JWKS;
//! a client that leaves does not stop the function, as on AWS; CORS is the
//! URL's.

mod common;

use std::time::Duration;

use common::*;
use devstack::Stack;
use devstack::cognito::{UserPool, new_key, now_secs, sub_for};
use serde_json::{Value, json};

async fn url_stack(adjust: impl FnOnce(&mut devstack::StackConfig)) -> Stack {
    stack_with(resolver(), |c| {
        c.url_function = Some(url_function());
        adjust(c);
    })
    .await
}

/// As [`url_stack`], with a model that writes 20 tokens a second and never
/// runs out of text, so a long turn is still running when the test acts.
async fn paced_url_stack(adjust: impl FnOnce(&mut devstack::StackConfig)) -> Stack {
    url_stack(|c| {
        paced(c);
        adjust(c);
    })
    .await
}

/// The caller's messages of `conversation` once a turn's answer is stored.
async fn stored_turn(
    stack: &Stack,
    token: &str,
    conversation: &str,
) -> Vec<appsync_client::Message> {
    stack
        .stored_answer(token, conversation, Duration::from_secs(10))
        .await
        .expect("the answer is stored")
}

#[tokio::test]
async fn a_prompt_streams_back_as_server_sent_events_ending_with_the_terminal_chunk() {
    let stack = url_stack(|_| {}).await;
    let alice = stack.token("alice");
    let prompt = "Tell me about function URLs.";
    let response = post_to_url(
        &stack,
        Some(&alice),
        &json!({"conversationId": "url-1", "prompt": prompt}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().ok(),
        Some("text/event-stream")
    );
    let chunks = sse_chunks(response).await;
    let last = chunks.last().expect("chunks");
    assert!(last.done, "{last:?}");
    assert_eq!(last.stop_reason.as_deref(), Some("end_turn"));
    for (seq, chunk) in chunks.iter().enumerate() {
        assert_eq!(chunk.seq, i64::try_from(seq).expect("small"));
        assert_eq!(chunk.owner, sub_for("alice"));
        assert_eq!(chunk.conversation_id, "url-1");
        assert_eq!(chunk.turn_id, last.turn_id);
    }
    let text: String = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(text, devstack::bedrock::scripted_answer(prompt, None).0);
    stack.shutdown().await;
}

#[tokio::test]
async fn missing_forged_and_expired_tokens_and_bad_requests_are_refused_before_any_model_call() {
    let stack = url_stack(|_| {}).await;
    let body = json!({"conversationId": "url-2", "prompt": "hello"});
    let forger = UserPool::new(
        &format!("http://{}", stack.addr),
        devstack::DEV_USER_POOL_ID,
        devstack::DEV_CLIENT_ID,
        &new_key().expect("an RSA key"),
    );
    let forged = forger.mint_id_token("alice", &[], now_secs());
    let expired = stack
        .user_pool
        .mint_id_token("alice", &[], now_secs() - 2 * 3600);
    for (token, status) in [
        (None, 401),
        (Some("not-a-token"), 401),
        (Some(forged.as_str()), 401),
        (Some(expired.as_str()), 401),
    ] {
        let response = post_to_url(&stack, token, &body).await;
        assert_eq!(response.status(), status, "{token:?}");
        assert_eq!(
            response.headers()["www-authenticate"].to_str().ok(),
            Some("Bearer")
        );
        let refusal: Value = response.json().await.expect("a JSON refusal");
        assert_eq!(refusal["errorType"], "UnauthorizedException", "{refusal}");
    }
    let alice = stack.token("alice");
    for (body, why) in [
        (json!({"prompt": "no conversation"}), "missing field"),
        (
            json!({"conversationId": "bad id!", "prompt": "p"}),
            "conversationId",
        ),
        (json!({"conversationId": "c", "prompt": "  "}), "prompt"),
        (
            json!({"conversationId": "c", "prompt": "p", "modelId": "anthropic.claude-v2"}),
            "not available",
        ),
    ] {
        let response = post_to_url(&stack, Some(&alice), &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let refusal: Value = response.json().await.expect("a JSON refusal");
        assert_eq!(refusal["errorType"], "ValidationException", "{refusal}");
        let message = refusal["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{message}");
    }
    let url = stack.function_url().expect("a function URL");
    let get = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&alice)
        .send()
        .await
        .expect("an answer");
    assert_eq!(get.status(), 405);
    assert_eq!(stack.bedrock.requests_served(), 0);
    stack.shutdown().await;
}

#[tokio::test]
async fn a_conversation_id_reaches_only_the_callers_own_conversation() {
    let stack = url_stack(|_| {}).await;
    let (alice, bob) = (stack.token("alice"), stack.token("bob"));
    let said = "Alice's private question";
    let response = post_to_url(
        &stack,
        Some(&alice),
        &json!({"conversationId": "shared-id", "prompt": said}),
    )
    .await;
    assert!(sse_chunks(response).await.last().is_some_and(|c| c.done));
    let response = post_to_url(
        &stack,
        Some(&bob),
        &json!({"conversationId": "shared-id", "prompt": "Bob's question"}),
    )
    .await;
    let bobs = sse_chunks(response).await;
    assert!(bobs.iter().all(|c| c.owner == sub_for("bob")));
    let bobs_text: String = bobs.iter().map(|c| c.text.as_str()).collect();
    assert!(!bobs_text.contains("Alice"), "{bobs_text}");

    // Each sees only their own turn of "shared-id" through AppSync too.
    for (token, own, other) in [
        (&alice, said, "Bob's question"),
        (&bob, "Bob's question", said),
    ] {
        let messages = stored_turn(&stack, token, "shared-id").await;
        assert!(messages.iter().any(|m| m.text == own), "{messages:?}");
        assert!(!messages.iter().any(|m| m.text == other), "{messages:?}");
    }
    stack.shutdown().await;
}

/// As on AWS, a client that leaves is not reported to the function: the turn
/// runs to its end, its answer is stored whole, and the invocation lasts
/// (and is billed) until then.
#[tokio::test]
async fn a_client_that_disconnects_does_not_stop_the_function_as_on_aws() {
    let stack = paced_url_stack(|_| {}).await;
    let lambda = stack
        .function_url
        .as_ref()
        .expect("a function URL")
        .lambda
        .clone();
    let mut outcomes = lambda.outcomes();
    let alice = stack.token("alice");
    let prompt = "Talk for a while.";
    let mut response = post_to_url(
        &stack,
        Some(&alice),
        &json!({"conversationId": "url-3", "prompt": prompt, "maxTokens": 40}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let first = tokio::time::timeout(TURN_TIMEOUT, response.chunk())
        .await
        .expect("a first event in time");
    assert!(first.is_ok_and(|b| b.is_some()));
    drop(response);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(stack.bedrock.active_generations() > 0, "the model goes on");

    let outcome = tokio::time::timeout(TURN_TIMEOUT, outcomes.recv())
        .await
        .expect("the invocation ends")
        .expect("an outcome");
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    let messages = stored_turn(&stack, &alice, "url-3").await;
    let answer = messages
        .into_iter()
        .find(appsync_client::Message::is_answer)
        .expect("the answer");
    assert_eq!(answer.stop_reason.as_deref(), Some("max_tokens"));
    assert_eq!(
        answer.text,
        devstack::bedrock::scripted_answer(prompt, Some(40)).0
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn cors_is_the_urls_own_preflights_are_answered_without_the_function() {
    let stack = url_stack(|c| {
        c.function_url_cors.allow_origins = vec!["https://app.example".into()];
    })
    .await;
    let url = stack.function_url().expect("a function URL");
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let allowed = preflight("https://app.example").await.expect("an answer");
    assert_eq!(allowed.status(), 200);
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        header(&allowed, "access-control-allow-origin").as_deref(),
        Some("https://app.example")
    );
    assert_eq!(
        header(&allowed, "access-control-allow-methods").as_deref(),
        Some("POST")
    );
    let refused = preflight("https://evil.example").await.expect("an answer");
    assert_eq!(header(&refused, "access-control-allow-origin"), None);

    let response = http
        .post(&url)
        .header("origin", "https://app.example")
        .bearer_auth(stack.token("alice"))
        .json(&json!({"conversationId": "url-4", "prompt": "hi"}))
        .send()
        .await
        .expect("an answer");
    assert_eq!(
        header(&response, "access-control-expose-headers").as_deref(),
        Some("content-type")
    );
    assert!(sse_chunks(response).await.last().is_some_and(|c| c.done));
    assert_eq!(
        stack.function_url.as_ref().map(|u| u.lambda.cold_starts()),
        Some(1)
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn a_model_error_after_the_first_byte_ends_the_stream_with_a_terminal_error_event() {
    let stack = url_stack(|_| {}).await;
    stack
        .bedrock
        .set_fault(Some(devstack::bedrock::Fault::Exception {
            after_deltas: 3,
            exception: devstack::bedrock::StreamException::ModelStreamError,
            message: "internal detail that must not reach the user".into(),
        }));
    let response = post_to_url(
        &stack,
        Some(&stack.token("alice")),
        &json!({"conversationId": "url-5", "prompt": "Tell me a story."}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let chunks = sse_chunks(response).await;
    let last = chunks.last().expect("chunks");
    assert!(last.done, "{last:?}");
    assert_eq!(last.stop_reason.as_deref(), Some("error"));
    let error = last.error.as_ref().expect("the error");
    assert_eq!(error.error_type, "ModelStreamError");
    assert!(!error.message.contains("internal detail"), "{error:?}");
    assert!(chunks.len() > 1, "text came before the error: {chunks:?}");
    stack.shutdown().await;
}

/// Starts a turn of 4,000 tokens in `conversation` (over three minutes at
/// the stack's 20 a second) and returns its events after its first chunk.
async fn start_long_turn(
    stack: &Stack,
    token: &str,
    conversation: &str,
) -> (appsync_client::ChunkEvents, appsync_client::Chunk) {
    let input = json!({"conversationId": conversation, "prompt": "Talk for a long time.", "maxTokens": 4000});
    let response = post_to_url(stack, Some(token), &input).await;
    assert_eq!(response.status(), 200);
    let mut events = appsync_client::ChunkEvents::new(response);
    let first = tokio::time::timeout(TURN_TIMEOUT, events.next())
        .await
        .expect("a first chunk in time")
        .expect("a chunk")
        .expect("not ended");
    (events, first)
}

/// `POST /cancel` of `turn_id` in `conversation` as `token`'s user.
async fn cancel(stack: &Stack, token: &str, conversation: &str, turn_id: &str) -> Value {
    let url = format!("{}cancel", stack.function_url().expect("a function URL"));
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(token)
        .json(&json!({"conversationId": conversation, "turnId": turn_id}))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON")
}

/// `events` to their end; the last chunk.
async fn drain(
    events: &mut appsync_client::ChunkEvents,
    mut last: appsync_client::Chunk,
) -> appsync_client::Chunk {
    while let Some(chunk) = tokio::time::timeout(TURN_TIMEOUT, events.next())
        .await
        .expect("the stream ends in time")
        .expect("a chunk")
    {
        last = chunk;
    }
    last
}

/// `POST /cancel` stops the caller's own turn, from another request (so
/// another execution environment): the stream ends `cancelled` and the
/// model stops. Another user's cancellation of it reaches nothing.
#[tokio::test]
async fn the_owner_cancels_a_streaming_turn_and_the_model_stops() {
    let stack = paced_url_stack(|_| {}).await;
    let (alice, bob) = (stack.token("alice"), stack.token("bob"));
    let (mut events, first) = start_long_turn(&stack, &alice, "url-6").await;
    let turn_id = first.turn_id.clone();
    assert_eq!(
        cancel(&stack, &bob, "url-6", &turn_id).await,
        json!({"cancelled": false})
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        stack.bedrock.active_generations() > 0,
        "bob stopped nothing"
    );
    assert_eq!(
        cancel(&stack, &alice, "url-6", &turn_id).await,
        json!({"cancelled": true})
    );
    let last = drain(&mut events, first).await;
    assert!(last.done, "{last:?}");
    assert_eq!(last.stop_reason.as_deref(), Some("cancelled"));
    assert_model_stops(&stack, Duration::from_secs(5)).await;
    stack.shutdown().await;
}

/// The function URL takes the same in-flight slots as `sendPrompt`, on the
/// same quota item: past the limit a prompt is refused with `429
/// TooManyTurns` before any model call, and the slot is given back when the
/// turn ends.
#[tokio::test]
async fn turns_in_flight_are_limited_as_on_appsync() {
    let stack = paced_url_stack(|c| {
        c.api_environment = vec![("QUOTA_MAX_TURNS_IN_FLIGHT".into(), "1".into())];
    })
    .await;
    let alice = stack.token("alice");
    let (mut events, first) = start_long_turn(&stack, &alice, "url-7").await;
    let served = stack.bedrock.requests_served();

    let second = json!({"conversationId": "url-7", "prompt": "And another.", "maxTokens": 10});
    let refused = post_to_url(&stack, Some(&alice), &second).await;
    assert_eq!(refused.status(), 429);
    let refusal: Value = refused.json().await.expect("a JSON refusal");
    assert_eq!(refusal["errorType"], "TooManyTurns", "{refusal}");
    assert_eq!(stack.bedrock.requests_served(), served);
    // Bob has slots of his own.
    let bobs = post_to_url(&stack, Some(&stack.token("bob")), &second).await;
    assert_eq!(bobs.status(), 200);
    assert!(sse_chunks(bobs).await.last().is_some_and(|c| c.done));

    // Once alice's turn ends, its slot is free again.
    let turn_id = first.turn_id.clone();
    cancel(&stack, &alice, "url-7", &turn_id).await;
    drain(&mut events, first).await;
    stored_turn(&stack, &alice, "url-7").await;
    let again = post_to_url(&stack, Some(&alice), &second).await;
    assert_eq!(again.status(), 200);
    assert!(sse_chunks(again).await.last().is_some_and(|c| c.done));
    stack.shutdown().await;
}
