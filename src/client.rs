//! The subscriber's side of a turn: the GraphQL documents a client sends, the
//! chunk it receives, and the assembler that orders chunks by `seq` and drops
//! repeats. Place in the data path: AppSync -> **subscriber**.
//!
//! The one rule that makes streaming reliable: subscribe (and see `start_ack`)
//! before sending the prompt, order by `seq`, finish on the terminal chunk.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The `onChunk` subscription, selecting every field of `Chunk`.
pub const ON_CHUNK: &str = "subscription OnChunk($conversationId: ID!) {
  onChunk(conversationId: $conversationId) {
    conversationId turnId owner seq text done stopReason
    usage { inputTokens outputTokens totalTokens }
    error { errorType message retryable }
  }
}";

/// The `sendPrompt` mutation.
pub const SEND_PROMPT: &str = "mutation SendPrompt($input: SendPromptInput!) {
  sendPrompt(input: $input) { conversationId turnId owner }
}";

/// The `cancelTurn` mutation: stops one of the caller's running turns.
pub const CANCEL_TURN: &str = "mutation CancelTurn($conversationId: ID!, $turnId: ID!) {
  cancelTurn(conversationId: $conversationId, turnId: $turnId) { conversationId turnId owner }
}";

/// Token counts of a finished turn.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReceivedUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
}

/// Why a turn failed, as a user may see it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReceivedError {
    pub error_type: String,
    pub message: String,
    pub retryable: bool,
}

/// One chunk as a subscriber receives it; serializes back to the schema's
/// camelCase field names.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReceivedChunk {
    pub conversation_id: String,
    pub turn_id: String,
    pub owner: String,
    pub seq: u64,
    pub text: String,
    pub done: bool,
    pub stop_reason: Option<String>,
    pub usage: Option<ReceivedUsage>,
    pub error: Option<ReceivedError>,
}

impl ReceivedChunk {
    /// The chunk inside a `data` payload `{"data":{"onChunk":{...}}}`, if any.
    pub fn from_payload(payload: &Value) -> Option<Self> {
        serde_json::from_value(payload.pointer("/data/onChunk")?.clone()).ok()
    }
}

/// Puts one turn's chunks in `seq` order, drops repeats, and knows when the
/// turn is over.
#[derive(Debug, Default)]
pub struct TurnAssembler {
    next_seq: u64,
    pending: BTreeMap<u64, ReceivedChunk>,
    finished: Option<ReceivedChunk>,
}

impl TurnAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts a chunk of this turn; returns the chunks that are now in order.
    /// A chunk already seen (same `seq`) is dropped.
    pub fn push(&mut self, chunk: ReceivedChunk) -> Vec<ReceivedChunk> {
        if chunk.seq < self.next_seq || self.finished.is_some() {
            return Vec::new();
        }
        self.pending.entry(chunk.seq).or_insert(chunk);
        let mut ready = Vec::new();
        while let Some(next) = self.pending.remove(&self.next_seq) {
            self.next_seq += 1;
            if next.done {
                self.finished = Some(next.clone());
                ready.push(next);
                self.pending.clear();
                break;
            }
            ready.push(next);
        }
        ready
    }

    /// The terminal chunk, once every chunk before it has arrived.
    pub fn finished(&self) -> Option<&ReceivedChunk> {
        self.finished.as_ref()
    }
}

/// Why [`send_prompt`] or [`cancel_turn`] failed.
#[derive(Debug, thiserror::Error)]
pub enum MutationError {
    #[error("could not reach AppSync: {0}")]
    Transport(#[from] reqwest::Error),
    /// AppSync answered with a non-2xx status or `errors` (e.g. a `ValidationException`).
    #[error("{mutation} was refused ({status}): {errors}")]
    Refused {
        mutation: &'static str,
        status: u16,
        errors: Value,
    },
}

/// The error of [`send_prompt`], by its older name.
pub type SendPromptError = MutationError;

/// Sends `sendPrompt` over HTTP as a signed-in user (`token`: the user pool's
/// raw JWT, as AppSync's `Authorization` header takes it). Returns the `Turn`
/// (`{conversationId, turnId, owner}`); subscribe before calling this.
pub async fn send_prompt(
    http: &reqwest::Client,
    graphql_url: &str,
    token: &str,
    variables: Value,
) -> Result<Value, MutationError> {
    mutate(
        http,
        graphql_url,
        token,
        SEND_PROMPT,
        "sendPrompt",
        variables,
    )
    .await
}

/// Sends `cancelTurn` over HTTP as the turn's owner (`token` as for
/// [`send_prompt`]). Returns the `Cancellation`; the turn then ends with a
/// terminal chunk whose `stopReason` is `cancelled`.
pub async fn cancel_turn(
    http: &reqwest::Client,
    graphql_url: &str,
    token: &str,
    conversation_id: &str,
    turn_id: &str,
) -> Result<Value, MutationError> {
    let variables = json!({"conversationId": conversation_id, "turnId": turn_id});
    mutate(
        http,
        graphql_url,
        token,
        CANCEL_TURN,
        "cancelTurn",
        variables,
    )
    .await
}

/// POSTs one mutation with the user's token; returns `data.<field>`.
async fn mutate(
    http: &reqwest::Client,
    graphql_url: &str,
    token: &str,
    query: &str,
    field: &'static str,
    variables: Value,
) -> Result<Value, MutationError> {
    let response = http
        .post(graphql_url)
        .header("authorization", token)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await?;
    let status = response.status().as_u16();
    let body: Value = response.json().await?;
    match body.get("data").and_then(|data| data.get(field)) {
        Some(result) if (200..300).contains(&status) && body.get("errors").is_none() => {
            Ok(result.clone())
        }
        _ => Err(MutationError::Refused {
            mutation: field,
            status,
            errors: body.get("errors").cloned().unwrap_or(Value::Null),
        }),
    }
}

/// The variables of `sendPrompt`.
pub fn send_prompt_variables(
    conversation_id: &str,
    turn_id: &str,
    prompt: &str,
    model_id: Option<&str>,
    max_tokens: Option<u32>,
) -> Value {
    let mut input = json!({"conversationId": conversation_id, "turnId": turn_id, "prompt": prompt});
    if let Some(m) = model_id {
        input["modelId"] = json!(m);
    }
    if let Some(t) = max_tokens {
        input["maxTokens"] = json!(t);
    }
    json!({"input": input})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(seq: u64, text: &str, done: bool) -> ReceivedChunk {
        ReceivedChunk {
            conversation_id: "c".into(),
            turn_id: "t".into(),
            owner: "o".into(),
            seq,
            text: text.into(),
            done,
            stop_reason: done.then(|| "end_turn".into()),
            usage: None,
            error: None,
        }
    }

    #[test]
    fn orders_by_seq_and_drops_repeats() {
        let mut a = TurnAssembler::new();
        assert!(a.push(chunk(1, "b", false)).is_empty());
        let ready: Vec<String> = a
            .push(chunk(0, "a", false))
            .into_iter()
            .map(|c| c.text)
            .collect();
        assert_eq!(ready, ["a", "b"]);
        assert!(a.push(chunk(1, "b", false)).is_empty());
        assert!(a.finished().is_none());
        let last = a.push(chunk(2, "", true));
        assert_eq!(last.len(), 1);
        assert!(a.finished().is_some());
        assert!(a.push(chunk(3, "late", false)).is_empty());
    }

    #[test]
    fn reads_a_data_payload() {
        let payload = json!({"data": {"onChunk": {"conversationId": "c", "turnId": "t", "owner": "o", "seq": 0,
            "text": "hi", "done": false, "stopReason": null, "usage": null, "error": null}}});
        assert_eq!(
            ReceivedChunk::from_payload(&payload),
            Some(chunk(0, "hi", false))
        );
        assert_eq!(
            ReceivedChunk::from_payload(&json!({"data": {"onChunk": null}})),
            None
        );
    }
}
