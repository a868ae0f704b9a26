//! Property tests of the Lambda event parser: any JSON is parsed or refused
//! with an error, never a panic, and whatever is accepted keeps the limits.
//! Cases: `PROPTEST_CASES` (proptest's default 256).

use proptest::prelude::*;
use serde_json::{Value, json};

use super::{AppSyncEvent, is_valid_id};
use crate::config::Config;
use crate::limits::{MAX_PROMPT_CHARS, MAX_SYSTEM_CHARS, MAX_TOKENS};

fn config() -> Config {
    let lookup =
        |name: &str| (name == "APPSYNC_GRAPHQL_URL").then(|| "http://x/graphql".to_owned());
    Config::from_lookup(lookup).expect("a minimal configuration")
}

/// Any JSON value, nested at most four deep (the payload serde_json parsed
/// first is limited to 128).
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map("[a-zA-Z]{0,10}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A string near an id: mostly a valid one, sometimes too long, empty,
/// outside the alphabet or not a string.
fn id_like() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => "[A-Za-z0-9._:-]{1,128}".prop_map(Value::String),
        1 => "[A-Za-z0-9._:-]{0,130}".prop_map(Value::String),
        1 => ".{0,20}".prop_map(Value::String),
        1 => any_json(),
    ]
}

/// A `sendPrompt` input whose every field may be valid, wrong or missing.
fn input() -> impl Strategy<Value = Value> {
    let text = prop_oneof![
        8 => "[a-zA-Z]{1,40}".prop_map(Value::String),
        1 => ".{0,40}".prop_map(Value::String),
        1 => Just(Value::String(" \t\n".into())),
        1 => (0usize..40_000).prop_map(|n| Value::String("x".repeat(n))),
        1 => any_json(),
    ];
    let max_tokens = prop_oneof![
        4 => Just(Value::Null),
        4 => (1i64..=8192).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any_json(),
    ];
    let temperature = prop_oneof![
        4 => Just(Value::Null),
        4 => (0.0f64..=1.0).prop_map(Value::from),
        1 => any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        1 => any_json(),
    ];
    let model = prop_oneof![8 => Just(Value::Null), 1 => id_like()];
    (
        id_like(),
        id_like(),
        text.clone(),
        text,
        model,
        max_tokens,
        temperature,
    )
        .prop_map(
            |(conversation, turn, prompt, system, model, max_tokens, temperature)| {
                json!({
                    "conversationId": conversation, "turnId": turn, "prompt": prompt,
                    "system": system, "modelId": model, "maxTokens": max_tokens,
                    "temperature": temperature,
                })
            },
        )
}

fn identity() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => "[a-f0-9-]{1,36}".prop_map(|sub| json!({"sub": sub, "issuer": "i", "username": "u",
            "claims": {}, "sourceIp": [], "defaultAuthStrategy": "ALLOW", "groups": null})),
        1 => ".{0,40}".prop_map(|sub| json!({"sub": sub, "issuer": "i", "username": "u",
            "claims": {}, "sourceIp": [], "defaultAuthStrategy": "ALLOW", "groups": null})),
        1 => Just(
            json!({"accountId": "1", "cognitoIdentityPoolId": null, "cognitoIdentityId": null,
            "sourceIp": [], "username": "AIDA", "userArn": "arn:aws:iam::1:user/x",
            "cognitoIdentityAuthType": null, "cognitoIdentityAuthProvider": null})
        ),
        1 => Just(Value::Null),
        1 => any_json(),
    ]
}

proptest! {
    #[test]
    fn any_json_is_parsed_or_refused(value in any_json()) {
        if let Ok(event) = AppSyncEvent::from_value(value) {
            let _ = event.into_turn_request(&config());
        }
    }

    #[test]
    fn an_accepted_prompt_keeps_every_limit(input in input(), identity in identity()) {
        let event = json!({"arguments": {"input": input}, "identity": identity});
        let Ok(event) = AppSyncEvent::from_value(event) else { return Ok(()) };
        match event.into_turn_request(&config()) {
            Ok(turn) => {
                prop_assert!(is_valid_id(&turn.ids.conversation_id));
                prop_assert!(is_valid_id(&turn.ids.turn_id));
                prop_assert!(!turn.ids.owner.is_empty());
                prop_assert!(!turn.prompt.trim().is_empty());
                prop_assert!(turn.prompt.chars().count() <= MAX_PROMPT_CHARS);
                prop_assert!(turn.system.as_ref().is_none_or(|s| s.chars().count() <= MAX_SYSTEM_CHARS));
                prop_assert!((1..=MAX_TOKENS).contains(&turn.max_tokens));
                prop_assert!(turn.temperature.is_none_or(|t| (0.0..=1.0).contains(&t)));
            }
            Err(rejection) => {
                prop_assert!(!rejection.error.to_string().is_empty());
                if let Some(ids) = rejection.ids {
                    prop_assert!(is_valid_id(&ids.conversation_id) && is_valid_id(&ids.turn_id));
                }
            }
        }
    }
}

/// The accepting side of the property above is reached: a fully valid prompt
/// is a turn.
#[test]
fn a_valid_prompt_is_accepted() {
    let event = json!({"arguments": {"input": {"conversationId": "c1", "turnId": "t1",
        "prompt": "hi", "system": null, "modelId": null, "maxTokens": 100, "temperature": 0.5}},
        "identity": {"sub": "7d8ca528", "issuer": "i", "username": "u", "claims": {},
        "sourceIp": [], "defaultAuthStrategy": "ALLOW", "groups": null}});
    let turn = AppSyncEvent::from_value(event)
        .expect("parses")
        .into_turn_request(&config());
    assert!(turn.is_ok(), "{turn:?}");
}
