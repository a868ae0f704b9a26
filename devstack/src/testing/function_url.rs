//! Place in the data path: client --POST--> function URL --> function URL
//! function --Server-Sent Events--> client, from a test's side: POST a
//! prompt, read the event stream back as chunks.

use appsync_client::Chunk;
use serde_json::Value;

use super::TURN_TIMEOUT;
use crate::Stack;

/// POSTs `body` to `stack`'s function URL, with `token` as its bearer token.
///
/// # Panics
/// When the stack has no function URL or it does not answer.
pub async fn post_to_url(stack: &Stack, token: Option<&str>, body: &Value) -> reqwest::Response {
    let url = stack.function_url().expect("a function URL");
    let mut request = reqwest::Client::new().post(url).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("the function URL answers")
}

/// The chunks of a whole SSE answer, read as a client reads them
/// ([`appsync_client::ChunkEvents`]).
///
/// # Panics
/// When the stream does not end within [`TURN_TIMEOUT`], or an event is not
/// a chunk.
pub async fn sse_chunks(response: reqwest::Response) -> Vec<Chunk> {
    let mut events = appsync_client::ChunkEvents::new(response);
    let mut chunks = Vec::new();
    let read = async {
        while let Some(chunk) = events.next().await.expect("a chunk") {
            chunks.push(chunk);
        }
    };
    tokio::time::timeout(TURN_TIMEOUT, read)
        .await
        .expect("the stream ends in time");
    chunks
}
