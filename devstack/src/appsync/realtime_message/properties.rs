//! Property tests of the real-time protocol's client side as the server
//! reads it: any text frame and any connection request parse to a message
//! or a refusal, never a panic, and well-formed ones keep every field.
//! Cases: `PROPTEST_CASES` (proptest's default 256).

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::{ClientMessage, header_object, parse};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("type".to_owned()),
                    Just("id".to_owned()),
                    Just("payload".to_owned()),
                    Just("data".to_owned()),
                    Just("extensions".to_owned()),
                    Just("authorization".to_owned()),
                    "[a-z]{1,8}",
                ],
                inner,
                0..5,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Message objects with a known or unknown `type` and random other fields.
fn message() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        Just(json!("connection_init")),
        Just(json!("start")),
        Just(json!("stop")),
        Just(json!("ka")),
        json_value(),
    ];
    (
        kind,
        proptest::option::of(json_value()),
        proptest::option::of(json_value()),
    )
        .prop_map(|(kind, id, payload)| {
            let mut m = serde_json::Map::new();
            m.insert("type".into(), kind);
            if let Some(id) = id {
                m.insert("id".into(), id);
            }
            if let Some(payload) = payload {
                m.insert("payload".into(), payload);
            }
            Value::Object(m)
        })
}

proptest! {
    #[test]
    fn any_text_frame_is_a_message_or_a_refusal(text in prop_oneof![".{0,64}", message().prop_map(|m| m.to_string())]) {
        match parse(&text) {
            ClientMessage::Start { id, .. } => prop_assert!(!id.is_empty()),
            ClientMessage::Refused { message, error_type, .. } => {
                prop_assert!(!message.is_empty() && !error_type.is_empty());
            }
            ClientMessage::Init | ClientMessage::Stop { .. } => {}
        }
    }

    #[test]
    fn a_start_keeps_its_id_data_and_authorization(
        id in ".{1,40}",
        data in ".{0,80}",
        authorization in json_value(),
    ) {
        let text = json!({"type": "start", "id": id, "payload": {"data": data,
            "extensions": {"authorization": authorization}}}).to_string();
        prop_assert_eq!(parse(&text), ClientMessage::Start { id, data, authorization });
    }

    #[test]
    fn any_connection_request_decodes_or_is_none(
        offered in proptest::collection::vec(prop_oneof![Just("graphql-ws".to_owned()), "header-.{0,40}", ".{0,20}"], 0..3),
        header in proptest::option::of(".{0,60}"),
    ) {
        let query: HashMap<String, String> = header.map(|h| ("header".to_owned(), h)).into_iter().collect();
        let _ = header_object(&offered, &query);
    }

    #[test]
    fn an_encoded_header_object_round_trips(object in json_value(), as_protocol in any::<bool>()) {
        let bytes = object.to_string();
        let (offered, query) = if as_protocol {
            (vec!["graphql-ws".to_owned(), format!("header-{}", URL_SAFE_NO_PAD.encode(&bytes))], HashMap::new())
        } else {
            (Vec::new(), HashMap::from([("header".to_owned(), STANDARD.encode(&bytes))]))
        };
        prop_assert_eq!(header_object(&offered, &query), Some(object));
    }
}
