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
