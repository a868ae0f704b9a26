//! Place in the data path: the one shape that travels the whole path, resolver
//! -> `publishChunk` -> AppSync -> `onChunk` -> subscriber.
//!
//! A chunk is the schema's `Chunk` (`conversationId, turnId, owner, seq, text,
//! done, stopReason, usage, error`). Its Rust type is generated once, by
//! `graphql_client`, from the schema's `ChunkInput`, which has the same fields;
//! the resolver publishes it and every client reads it back into the same type.

use serde::Deserialize;
use serde_json::Value;

use crate::documents::{ChunkErrorInput, ChunkInput, UsageInput};

/// One chunk of a turn, as published and as received.
///
/// Fields (serde names are the schema's camelCase): `conversation_id`,
/// `turn_id`, `owner` (the user's Cognito `sub`), `seq` (0, 1, 2, ... without
/// gaps within a turn), `text` (UTF-8, possibly empty), `done` (true on the
/// one terminal chunk), `stop_reason` (terminal only: Bedrock's stop reason, or
/// `error`, `deadline`, `cancelled`), `usage` (token counts, terminal only) and
/// `error` (terminal only, when the turn failed).
pub type Chunk = ChunkInput;

/// Token counts of a finished turn (`inputTokens`, `outputTokens`,
/// `totalTokens`), from Bedrock's `metadata` event.
pub type Usage = UsageInput;

/// Why a turn failed, in words safe to show its user: `errorType` (a stable
/// machine-readable name), `message`, and `retryable` (whether sending the
/// prompt again may work).
pub type ChunkError = ChunkErrorInput;

/// The chunk inside an `onChunk` data payload, `{"data":{"onChunk":{...}}}`;
/// `None` when the payload holds no chunk (or not a well-formed one).
pub fn chunk_from_payload(payload: &Value) -> Option<Chunk> {
    Chunk::deserialize(payload.pointer("/data/onChunk")?).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_data_payload_reads_into_the_published_type() {
        let payload = json!({"data": {"onChunk": {"conversationId": "c", "turnId": "t", "owner": "o", "seq": 0,
            "text": "hi", "done": false, "stopReason": null, "usage": null, "error": null}}});
        let chunk = chunk_from_payload(&payload).expect("a chunk");
        assert_eq!(
            (chunk.seq, chunk.text.as_str(), chunk.done),
            (0, "hi", false)
        );
        assert_eq!(
            chunk_from_payload(&json!({"data": {"onChunk": null}})),
            None
        );
    }

    #[test]
    fn a_chunk_serialises_with_the_schema_names_and_back() {
        let chunk = Chunk {
            conversation_id: "c".into(),
            turn_id: "t".into(),
            owner: "o".into(),
            seq: 2,
            text: String::new(),
            done: true,
            stop_reason: Some("end_turn".into()),
            usage: Some(Usage {
                input_tokens: 1,
                output_tokens: 2,
                total_tokens: 3,
            }),
            error: None,
        };
        let value = serde_json::to_value(&chunk).expect("json");
        assert_eq!(value["conversationId"], "c");
        assert_eq!(value["usage"]["totalTokens"], 3);
        let back = chunk_from_payload(&json!({"data": {"onChunk": value}}));
        assert_eq!(back, Some(chunk));
    }
}
