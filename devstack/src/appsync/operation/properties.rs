//! Property tests of GraphQL request preparation: any document, operation
//! name and variables against the API's schema end in a prepared operation
//! or GraphQL errors, never a panic; fragment cycles and spread bombs are
//! refused. Cases: `PROPTEST_CASES` (proptest's default 256).

use proptest::prelude::*;
use serde_json::{Value, json};

use super::{GraphQlRequest, prepare};
use crate::appsync::schema::Schema;

fn schema() -> Schema {
    Schema::parse(include_str!("../../../../schema.graphql")).expect("the API's schema parses")
}

/// The schema's names, GraphQL keywords and punctuation.
static WORDS: &[&str] = &[
    "query",
    "mutation",
    "subscription",
    "fragment",
    "on",
    "Query",
    "Mutation",
    "Subscription",
    "Chunk",
    "Turn",
    "ping",
    "sendPrompt",
    "input",
    "conversationId",
    "prompt",
    "turnId",
    "maxTokens",
    "temperature",
    "onChunk",
    "listConversations",
    "items",
    "nextToken",
    "limit",
    "listMessages",
    "turnChunks",
    "afterSeq",
    "seq",
    "text",
    "done",
    "usage",
    "inputTokens",
    "error",
    "message",
    "__typename",
    "$v",
    "$w",
    "F",
    "G",
    "...",
    "{",
    "}",
    "(",
    ")",
    ":",
    "!",
    "[",
    "]",
    "=",
    "@skip",
    "@include",
    "if",
    "true",
    "null",
    "1",
    "-7",
    "2.5e3",
    "\"s\"",
    "\"\"\"block\"\"\"",
    "Int",
    "String",
    "ID",
    "Float",
    "Boolean",
    "SendPromptInput",
    ",",
];

/// Pieces of GraphQL: the schema's names, keywords and punctuation, so that
/// random sequences often parse and reach validation and coercion.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => proptest::sample::select(WORDS).prop_map(str::to_owned),
        1 => "[a-zA-Z_][a-zA-Z0-9_]{0,8}",
        1 => ".{0,4}",
    ]
}

fn document() -> impl Strategy<Value = String> {
    proptest::collection::vec(token(), 0..60).prop_map(|tokens| tokens.join(" "))
}

fn variables() -> impl Strategy<Value = Option<Value>> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,8}".prop_map(Value::String),
    ];
    let value = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let named = proptest::collection::btree_map(
        prop_oneof![Just("v".to_owned()), Just("w".to_owned()), "[a-z]{1,3}"],
        value.clone(),
        0..3,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()));
    prop_oneof![Just(None), named.prop_map(Some), value.prop_map(Some)]
}

proptest! {
    #[test]
    fn any_document_is_prepared_or_refused(
        query in document(),
        variables in variables(),
        operation_name in proptest::option::of(prop_oneof![Just("Q".to_owned()), "[A-Za-z]{0,4}"]),
    ) {
        let schema = schema();
        let request = GraphQlRequest { query, variables, operation_name };
        if let Err(errors) = prepare(&schema, &request) {
            prop_assert!(!errors.is_empty());
            prop_assert!(errors.iter().all(|e| !e.message.is_empty()));
        }
    }

    #[test]
    fn a_fragment_cycle_is_refused_exactly_when_the_operation_reaches_one(
        // Fragment i spreads the fragments listed at i (any of them, itself included).
        spreads in proptest::collection::vec(proptest::collection::vec(0usize..6, 0..4), 1..6),
    ) {
        let mut query = String::from("query { ...F0 }");
        for (i, targets) in spreads.iter().enumerate() {
            let inner: String = targets.iter().map(|t| format!(" ...F{t}")).collect();
            query.push_str(&format!(" fragment F{i} on Query {{ ping{inner} }}"));
        }
        let schema = schema();
        let request = GraphQlRequest { query, variables: Some(json!({})), operation_name: None };
        let refused_as_cycle = prepare(&schema, &request)
            .err()
            .is_some_and(|errors| errors.iter().any(|e| e.message.contains("FragmentCycle")));
        prop_assert_eq!(refused_as_cycle, reaches_cycle(&spreads, 0, &mut Vec::new()));
    }
}

/// Whether spreading fragment `at` (of those defined in `spreads`) reaches a
/// fragment already on `path`.
fn reaches_cycle(spreads: &[Vec<usize>], at: usize, path: &mut Vec<usize>) -> bool {
    if path.contains(&at) {
        return true;
    }
    let Some(targets) = spreads.get(at) else {
        return false;
    };
    path.push(at);
    let found = targets.iter().any(|&t| reaches_cycle(spreads, t, path));
    path.pop();
    found
}

#[test]
fn a_fragment_cycle_is_a_validation_error() {
    let request = GraphQlRequest {
        query: "query { ...A } fragment A on Query { ping ...B } fragment B on Query { ...A }"
            .into(),
        variables: None,
        operation_name: None,
    };
    let errors = prepare(&schema(), &request).expect_err("a cycle is refused");
    assert!(
        errors.iter().any(|e| e.message.contains("FragmentCycle")),
        "{errors:?}"
    );
}

#[test]
fn a_spread_bomb_is_refused() {
    // Each fragment spreads the next twice: 2^20 spreads without a cycle.
    let mut query = String::from("query { ...F0 }");
    for i in 0..20 {
        let next = i + 1;
        query.push_str(&format!(
            " fragment F{i} on Query {{ ...F{next} ...F{next} }}"
        ));
    }
    query.push_str(" fragment F20 on Query { ping }");
    let request = GraphQlRequest {
        query,
        variables: None,
        operation_name: None,
    };
    let errors = prepare(&schema(), &request).expect_err("too many spreads");
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("fragment spreads")),
        "{errors:?}"
    );
}
