//! Place in the data path: turn driver -> sinks -> **store items**: how the
//! conversations table's items are keyed and shaped. One table holds every
//! kind of item; keys begin with the owner's Cognito `sub`, so a request
//! built from a caller's identity can only ever reach that caller's items.
//!
//! | item         | `pk`              | `sk`                                 |
//! |--------------|-------------------|--------------------------------------|
//! | conversation | `{sub}`           | `CONV#{conversationId}`              |
//! | turn claim   | `{sub}#{convId}`  | `TURN#{turnId}`                      |
//! | message      | `{sub}#{convId}`  | `MSG#{startedAt}#{turnId}#1` (user), `#2` (assistant) |
//! | chunk        | `{sub}#{convId}`  | `CHUNK#{turnId}#{seq, 10 digits}`    |
//! | quota        | `{sub}`           | `QUOTA`                              |
//!
//! Ids never contain `#` (their alphabet is `A-Z a-z 0-9 - _ . :`), so keys
//! split unambiguously. `startedAt` is the turn's start in ISO-8601 UTC with
//! milliseconds (`2026-11-27T16:54:10.123Z`, always 24 characters), so
//! messages sort by time, and a turn's prompt sorts just before its answer.
//! Conversations carry `updatedAt` for the table's `byUpdatedAt` local
//! secondary index; claims and chunks carry `expiresAt` (epoch seconds) for
//! TTL (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/TTL.html>).
//! The API's APPSYNC_JS resolvers (`infra/resolvers/`) read the same shapes.

use std::collections::HashMap;
use std::time::Duration;

use appsync_client::{Chunk, ChunkError, Usage};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::event::TurnIds;

/// An item, attribute name to value.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// How long claims and chunks are kept: long past Lambda's six-hour event age,
/// and long enough for a client to recover a turn it missed.
pub(crate) const ITEM_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Most characters of the first prompt kept as a conversation's title.
pub(crate) const TITLE_CHARS: usize = 80;

/// `MSG#` items: `role` `user` sorts before `assistant` within a turn.
const USER_SUFFIX: &str = "1";
/// See [`USER_SUFFIX`].
const ASSISTANT_SUFFIX: &str = "2";

/// `t` as the table writes times: ISO-8601 UTC with milliseconds.
pub(crate) fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `t + ITEM_TTL` in epoch seconds, the `expiresAt` of claims and chunks.
fn expires_at(t: DateTime<Utc>) -> AttributeValue {
    let secs = t.timestamp().max(0).unsigned_abs() + ITEM_TTL.as_secs();
    AttributeValue::N(secs.to_string())
}

/// The partition of a conversation's turns, messages and chunks: `{sub}#{conversationId}`.
pub(crate) fn conversation_partition(ids: &TurnIds) -> String {
    format!("{}#{}", ids.owner, ids.conversation_id)
}

/// The key of the conversation item: `({sub}, CONV#{conversationId})`.
pub(crate) fn conversation_key(ids: &TurnIds) -> Item {
    key(ids.owner.clone(), format!("CONV#{}", ids.conversation_id))
}

/// The key of `owner`'s quota item: `({sub}, QUOTA)` (its attributes:
/// `infra/resolvers/Function.readQuota.js`).
pub(crate) fn quota_key(owner: &str) -> Item {
    key(owner.to_owned(), "QUOTA".to_owned())
}

/// The claim's key: `({sub}#{conversationId}, TURN#{turnId})`.
pub(crate) fn turn_key(ids: &TurnIds) -> Item {
    key(conversation_partition(ids), format!("TURN#{}", ids.turn_id))
}

/// `sk` of one of a turn's messages.
fn message_sort_key(ids: &TurnIds, started: DateTime<Utc>, suffix: &str) -> String {
    format!("MSG#{}#{}#{suffix}", iso(started), ids.turn_id)
}

/// `sk` of chunk `seq` of turn `turn_id`.
pub(crate) fn chunk_sort_key(turn_id: &str, seq: i64) -> String {
    format!("CHUNK#{turn_id}#{:010}", seq.max(0))
}

fn key(pk: String, sk: String) -> Item {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(pk)),
        ("sk".to_owned(), AttributeValue::S(sk)),
    ])
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// The claim of turn `ids`, started at `started`, its lease running to
/// `lease_until` (epoch milliseconds).
pub(crate) fn claim_item(ids: &TurnIds, started: DateTime<Utc>, lease_until: i64) -> Item {
    let mut item = turn_key(ids);
    item.insert(
        "leaseUntil".into(),
        AttributeValue::N(lease_until.to_string()),
    );
    item.insert("startedAt".into(), s(iso(started)));
    item.insert(
        "claimedAt".into(),
        AttributeValue::N(started.timestamp().to_string()),
    );
    item.insert("expiresAt".into(), expires_at(started));
    item
}

/// The user's message of turn `ids`.
pub(crate) fn prompt_item(ids: &TurnIds, started: DateTime<Utc>, prompt: &str) -> Item {
    let mut item = key(
        conversation_partition(ids),
        message_sort_key(ids, started, USER_SUFFIX),
    );
    item.insert("turnId".into(), s(&ids.turn_id));
    item.insert("role".into(), s("user"));
    item.insert("text".into(), s(prompt));
    item.insert("createdAt".into(), s(iso(started)));
    item
}

/// How a turn's answer ended, as its message records it: the terminal
/// chunk's `stopReason`, `usage` and `error`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AnswerEnd {
    /// `end_turn`, `max_tokens`, `cancelled`, `deadline`, `error`, ...
    pub stop_reason: String,
    /// Token counts, when known.
    pub usage: Option<Usage>,
    /// The error a failed turn showed its user.
    pub error: Option<ChunkError>,
}

/// The assistant's message of turn `ids`: written once, when the turn ends.
pub(crate) fn answer_item(
    ids: &TurnIds,
    started: DateTime<Utc>,
    finished: DateTime<Utc>,
    model_id: &str,
    text: &str,
    end: &AnswerEnd,
) -> Item {
    let mut item = key(
        conversation_partition(ids),
        message_sort_key(ids, started, ASSISTANT_SUFFIX),
    );
    item.insert("turnId".into(), s(&ids.turn_id));
    item.insert("role".into(), s("assistant"));
    item.insert("text".into(), s(text));
    item.insert("createdAt".into(), s(iso(finished)));
    item.insert("modelId".into(), s(model_id));
    item.insert("stopReason".into(), s(&end.stop_reason));
    if let Some(usage) = &end.usage {
        item.insert("usage".into(), usage_value(usage));
    }
    if let Some(error) = &end.error {
        item.insert("error".into(), error_value(error));
    }
    item
}

/// One published chunk, for recovery (`turnChunks`). The owner and
/// conversation are in the key; the API fills them back in.
pub(crate) fn chunk_item(chunk: &Chunk, written: DateTime<Utc>) -> Item {
    let ids = TurnIds {
        conversation_id: chunk.conversation_id.clone(),
        turn_id: chunk.turn_id.clone(),
        owner: chunk.owner.clone(),
    };
    let mut item = key(
        conversation_partition(&ids),
        chunk_sort_key(&chunk.turn_id, chunk.seq),
    );
    item.insert("turnId".into(), s(&chunk.turn_id));
    item.insert("seq".into(), AttributeValue::N(chunk.seq.to_string()));
    item.insert("text".into(), s(&chunk.text));
    item.insert("done".into(), AttributeValue::Bool(chunk.done));
    item.insert("expiresAt".into(), expires_at(written));
    if let Some(reason) = &chunk.stop_reason {
        item.insert("stopReason".into(), s(reason));
    }
    if let Some(usage) = &chunk.usage {
        item.insert("usage".into(), usage_value(usage));
    }
    if let Some(error) = &chunk.error {
        item.insert("error".into(), error_value(error));
    }
    item
}

fn usage_value(usage: &Usage) -> AttributeValue {
    let n = |v: i64| AttributeValue::N(v.to_string());
    AttributeValue::M(HashMap::from([
        ("inputTokens".to_owned(), n(usage.input_tokens)),
        ("outputTokens".to_owned(), n(usage.output_tokens)),
        ("totalTokens".to_owned(), n(usage.total_tokens)),
    ]))
}

fn error_value(error: &ChunkError) -> AttributeValue {
    AttributeValue::M(HashMap::from([
        ("errorType".to_owned(), s(&error.error_type)),
        ("message".to_owned(), s(&error.message)),
        (
            "retryable".to_owned(),
            AttributeValue::Bool(error.retryable),
        ),
    ]))
}

/// A conversation's title: the first prompt's first [`TITLE_CHARS`]
/// characters, whitespace collapsed.
pub(crate) fn title_of(prompt: &str) -> String {
    let collapsed = prompt.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.chars().take(TITLE_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(millis).expect("in range")
    }

    #[test]
    fn keys_begin_with_the_owner() {
        let ids = TurnIds::fixture();
        let pk = |item: &Item| item["pk"].as_s().expect("S").clone();
        let sk = |item: &Item| item["sk"].as_s().expect("S").clone();
        assert_eq!(pk(&turn_key(&ids)), "o1#c1");
        assert_eq!(sk(&turn_key(&ids)), "TURN#t1");
        assert_eq!(pk(&conversation_key(&ids)), "o1");
        assert_eq!(sk(&conversation_key(&ids)), "CONV#c1");
        let prompt = prompt_item(&ids, at(1_700_000_000_123), "hi");
        assert_eq!(pk(&prompt), "o1#c1");
        assert_eq!(sk(&prompt), "MSG#2023-11-14T22:13:20.123Z#t1#1");
    }

    #[test]
    fn times_have_a_fixed_width_so_keys_sort_by_time() {
        assert_eq!(iso(at(1_700_000_000_000)), "2023-11-14T22:13:20.000Z");
        assert!(iso(at(1_700_000_000_000)) < iso(at(1_700_000_000_001)));
        assert!(chunk_sort_key("t", 9) < chunk_sort_key("t", 10));
        assert_eq!(chunk_sort_key("t", 7), "CHUNK#t#0000000007");
    }

    #[test]
    fn a_prompt_sorts_before_its_answer() {
        let ids = TurnIds::fixture();
        let started = at(5);
        let end = AnswerEnd {
            stop_reason: "end_turn".into(),
            usage: None,
            error: None,
        };
        let prompt = prompt_item(&ids, started, "q");
        let answer = answer_item(&ids, started, at(9), "m", "a", &end);
        assert!(prompt["sk"].as_s().expect("S") < answer["sk"].as_s().expect("S"));
        assert_eq!(answer["stopReason"].as_s().expect("S"), "end_turn");
        assert!(!answer.contains_key("usage"));
    }

    #[test]
    fn a_title_is_the_start_of_the_first_prompt() {
        assert_eq!(title_of("  What is\n\n Rust? "), "What is Rust?");
        assert_eq!(title_of(&"é".repeat(200)).chars().count(), TITLE_CHARS);
    }
}
