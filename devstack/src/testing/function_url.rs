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

/// The events of an SSE body as `(id, data)`, comments skipped, per the
/// WHATWG event stream format (`data:` lines joined with line breaks).
pub fn sse_events(body: &str) -> Vec<(String, String)> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut id = None;
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push(v);
                }
            }
            (!data.is_empty()).then(|| (id.unwrap_or_default(), data.join("\n")))
        })
        .collect()
}

/// The chunks of a whole SSE answer, each event's id checked against the
/// chunk's `seq`.
///
/// # Panics
/// When the stream does not end within [`TURN_TIMEOUT`], or an event is not
/// a chunk.
pub async fn sse_chunks(response: reqwest::Response) -> Vec<Chunk> {
    let body = tokio::time::timeout(TURN_TIMEOUT, response.text())
        .await
        .expect("the stream ends in time")
        .expect("a body");
    sse_events(&body)
        .into_iter()
        .map(|(id, data)| {
            let chunk: Chunk = serde_json::from_str(&data).expect("the chunk's JSON");
            assert_eq!(id, chunk.seq.to_string());
            chunk
        })
        .collect()
}
