//! The JS resolvers enforce the same input limits as the Lambda: read their
//! constants from `infra/resolvers/` and compare.

use super::*;

/// The value of `const NAME = <integer>;` in a resolver's source.
fn js_constant(source: &str, name: &str) -> Option<i64> {
    let line = source
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("const {name} =")))?;
    let value = line.split('=').nth(1)?.trim().trim_end_matches(';').trim();
    value.replace('_', "").parse().ok()
}

fn resolver(name: &str) -> String {
    let path = format!("{}/infra/resolvers/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_send_prompt_resolver_enforces_the_same_limits() {
    let js = resolver("Mutation.sendPrompt.js");
    let expected = [
        ("MAX_ID_CHARS", MAX_ID_CHARS as i64),
        ("MAX_PROMPT_CHARS", MAX_PROMPT_CHARS as i64),
        ("MAX_SYSTEM_CHARS", MAX_SYSTEM_CHARS as i64),
        ("MAX_TOKENS", i64::from(MAX_TOKENS)),
    ];
    for (name, value) in expected {
        assert_eq!(js_constant(&js, name), Some(value), "{name}");
    }
}

#[test]
fn the_cancel_turn_resolver_checks_ids_the_same_way() {
    let js = resolver("Mutation.cancelTurn.js");
    assert_eq!(js_constant(&js, "MAX_ID_CHARS"), Some(MAX_ID_CHARS as i64));
}

#[test]
fn a_missing_constant_is_noticed() {
    assert_eq!(js_constant("const A = 1;", "B"), None);
    assert_eq!(js_constant("const A = 32_000;", "A"), Some(32_000));
}

/// The largest message a chunk can become: the subscription `data` message
/// AppSync sends, with text of `MAX_CHUNK_BYTES` control characters (each
/// escaped to six bytes), the longest ids and owner, and an error.
#[test]
fn the_largest_chunk_fits_appsyncs_subscription_message_limit() {
    use appsync_client::{Chunk, ChunkError, Usage};
    let control = "\u{1}";
    let chunk = Chunk {
        conversation_id: "c".repeat(MAX_ID_CHARS),
        turn_id: "t".repeat(MAX_ID_CHARS),
        owner: control.repeat(MAX_OWNER_BYTES),
        seq: i64::MAX,
        text: control.repeat(MAX_CHUNK_BYTES),
        done: true,
        stop_reason: Some(control.repeat(64)),
        usage: Some(Usage {
            input_tokens: i64::MAX,
            output_tokens: i64::MAX,
            total_tokens: i64::MAX,
        }),
        error: Some(ChunkError {
            error_type: control.repeat(64),
            message: control.repeat(256),
            retryable: false,
        }),
    };
    let message = serde_json::json!({
        "id": "00000000-0000-0000-0000-000000000000",
        "type": "data",
        "payload": {"data": {"onChunk": chunk}},
    });
    let bytes = serde_json::to_vec(&message).expect("json").len();
    assert!(
        bytes > 6 * MAX_CHUNK_BYTES,
        "every text byte escaped: {bytes}"
    );
    assert!(bytes <= 240 * 1024, "{bytes} bytes");
}
