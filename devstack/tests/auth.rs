//! AppSync's auth over real sockets: publishChunk is IAM only, signatures are
//! recomputed, JWTs are verified, and refusals carry AppSync's error shapes.

mod common;

use appsync_client::RealtimeError;
use common::*;
use serde_json::{Value, json};

const PUBLISH: &str = "mutation P($input: ChunkInput!) { publishChunk(input: $input) { conversationId turnId owner seq text done } }";

fn publish_body(owner: &str) -> Value {
    json!({"query": PUBLISH, "variables": {"input": {
        "conversationId": "conv-forge", "turnId": "t", "owner": owner, "seq": 0, "text": "forged", "done": false}}})
}

#[tokio::test]
async fn publish_chunk_with_a_cognito_token_is_refused() {
    let stack = stack(resolver()).await;
    let token = stack.token("mallory");
    let (status, body) = post(
        &stack,
        &[("authorization", &token)],
        &publish_body("someone"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["publishChunk"], Value::Null, "{body}");
    assert_eq!(body["errors"][0]["errorType"], "Unauthorized");
    assert_eq!(
        body["errors"][0]["message"],
        "Not Authorized to access publishChunk on type Mutation"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn publish_chunk_with_iam_is_delivered_and_a_bad_signature_is_refused() {
    let stack = stack(resolver()).await;
    let token = stack.token("alice");
    let client = connect(&stack, &token).await;
    let mut subscription = subscribe(&client, "conv-forge").await;
    let owner = devstack::cognito::sub_for("alice");
    let body = publish_body(&owner).to_string();

    let bad = iam_headers(&stack, body.as_bytes(), "not-the-secret");
    let bad: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (status, refused) = post(&stack, &bad, &publish_body(&owner)).await;
    assert_eq!(status, 403);
    assert_eq!(
        refused["errors"][0]["errorType"], "InvalidSignatureException",
        "{refused}"
    );

    let good = iam_headers(&stack, body.as_bytes(), devstack::DEV_SECRET_ACCESS_KEY);
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (status, accepted) = post(&stack, &good, &publish_body(&owner)).await;
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["data"]["publishChunk"]["text"], "forged");
    let delivered = subscription.next().await.expect("delivered").expect("data");
    assert_eq!(delivered["data"]["onChunk"]["text"], "forged");
    // Fields the mutation did not select arrive as null.
    assert_eq!(delivered["data"]["onChunk"]["usage"], Value::Null);
    stack.shutdown().await;
}

#[tokio::test]
async fn expired_forged_and_missing_tokens_are_refused_over_http() {
    let stack = stack(resolver()).await;
    let now = devstack::cognito::now_secs();
    let expired = stack.user_pool.mint_id_token("alice", &[], now - 7200);
    let other_key = devstack::cognito::new_key().expect("key");
    let forger = devstack::cognito::UserPool::new(
        &format!("http://{}", stack.addr),
        devstack::DEV_USER_POOL_ID,
        devstack::DEV_CLIENT_ID,
        &other_key,
    );
    let forged = forger.mint_id_token("alice", &[], now);
    let ping = json!({"query": "{ ping }"});

    let (status, body) = post(&stack, &[("authorization", &expired)], &ping).await;
    assert_eq!(
        (status, body["errors"][0]["errorType"].as_str()),
        (401, Some("UnauthorizedException"))
    );
    assert_eq!(body["errors"][0]["message"], "Token has expired.");
    let (status, body) = post(&stack, &[("authorization", &forged)], &ping).await;
    assert_eq!(
        (status, body["errors"][0]["errorType"].as_str()),
        (401, Some("UnauthorizedException"))
    );
    let (status, body) = post(&stack, &[], &ping).await;
    assert_eq!(
        (status, body["errors"][0]["message"].as_str()),
        (401, Some("Valid authorization header not provided."))
    );
    let good = stack.token("alice");
    let (status, body) = post(&stack, &[("authorization", &good)], &ping).await;
    assert_eq!((status, body), (200, json!({"data": {"ping": "ok"}})));
    stack.shutdown().await;
}

#[tokio::test]
async fn a_forged_token_gets_a_connection_error_on_the_socket() {
    let stack = stack(resolver()).await;
    let forger = devstack::cognito::UserPool::new(
        &format!("http://{}", stack.addr),
        devstack::DEV_USER_POOL_ID,
        devstack::DEV_CLIENT_ID,
        &devstack::cognito::new_key().expect("key"),
    );
    let forged = forger.mint_id_token("alice", &[], devstack::cognito::now_secs());
    let refused = stack.connect_as(&forged).await;
    match refused {
        Err(RealtimeError::ConnectionRefused(errors)) => {
            assert_eq!(errors[0]["errorType"], "UnauthorizedException");
            assert_eq!(errors[0]["errorCode"], 401);
        }
        Err(other) => panic!("expected a connection_error, got {other}"),
        Ok(_) => panic!("a forged token connected"),
    }
    stack.shutdown().await;
}
