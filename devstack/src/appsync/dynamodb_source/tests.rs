//! The DynamoDB data source without a server: DynamoDB JSON both ways, the
//! request objects (the project's own resolvers' among them) and the
//! `nextToken`s.
//!
//! Place in the data path: AppSync **resolver request object -> DynamoDB
//! data source** -> local DynamoDB.

use serde_json::json;

use super::*;
use crate::appsync::js::engine::{self, Handler, Outcome};
use crate::appsync::js::template::EMBEDDED_INFRA;

fn value(v: Value) -> AttributeValue {
    match attribute_value(&v, "v") {
        Ok(a) => a,
        Err(e) => panic!("{v}: {e}"),
    }
}

fn refused(v: Value) -> String {
    match attribute_value(&v, "v") {
        Ok(a) => panic!("{v} was accepted as {a:?}"),
        Err(e) => e.to_string(),
    }
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn typed_values_become_sdk_values() {
    assert_eq!(value(json!({"S": "a#b"})), AttributeValue::S("a#b".into()));
    // util.dynamodb writes numbers as JSON numbers; DynamoDB JSON as strings.
    assert_eq!(
        value(json!({"N": 12345})),
        AttributeValue::N("12345".into())
    );
    assert_eq!(value(json!({"N": -1.5})), AttributeValue::N("-1.5".into()));
    assert_eq!(value(json!({"N": "42"})), AttributeValue::N("42".into()));
    assert_eq!(value(json!({"BOOL": false})), AttributeValue::Bool(false));
    assert_eq!(value(json!({"NULL": null})), AttributeValue::Null(true));
    assert_eq!(value(json!({"NULL": true})), AttributeValue::Null(true));
    assert_eq!(
        value(json!({"B": "aGk="})),
        AttributeValue::B(Blob::new(b"hi".to_vec()))
    );
    assert_eq!(
        value(json!({"M": {"n": {"N": 1}, "l": {"L": [{"S": "x"}, {"BOOL": true}]}}})),
        AttributeValue::M(
            [
                ("n".to_owned(), AttributeValue::N("1".into())),
                (
                    "l".to_owned(),
                    AttributeValue::L(vec![
                        AttributeValue::S("x".into()),
                        AttributeValue::Bool(true)
                    ])
                ),
            ]
            .into()
        )
    );
    assert_eq!(
        value(json!({"SS": ["a", "b"]})),
        AttributeValue::Ss(vec!["a".into(), "b".into()])
    );
    assert_eq!(
        value(json!({"NS": [1, "2.5"]})),
        AttributeValue::Ns(vec!["1".into(), "2.5".into()])
    );
}

#[test]
fn malformed_typed_values_are_refused_with_their_path() {
    let e = refused(json!("plain"));
    assert!(e.contains("expected a typed value"), "{e}");
    let e = refused(json!({"S": "a", "N": 1}));
    assert!(e.contains("exactly one type key"), "{e}");
    let e = refused(json!({"X": 1}));
    assert!(e.contains("unknown type X"), "{e}");
    let e = refused(json!({"N": "twelve"}));
    assert!(e.contains("N cannot hold"), "{e}");
    let e = refused(json!({"S": 1}));
    assert!(e.contains("S cannot hold"), "{e}");
    let e = refused(json!({"NULL": false}));
    assert!(e.contains("NULL cannot hold"), "{e}");
    let e = refused(json!({"B": "not base64!"}));
    assert!(e.contains("B cannot hold"), "{e}");
    let e = match item(
        &object(json!({"pk": {"S": "a"}, "sk": {"M": {"x": {"Q": 1}}}})),
        "key",
    ) {
        Ok(i) => panic!("accepted {i:?}"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("key.sk.x"), "{e}");
}

#[test]
fn sdk_values_become_plain_json() {
    let stored: Item = [
        ("text".to_owned(), AttributeValue::S("hi".into())),
        ("seq".to_owned(), AttributeValue::N("7".into())),
        (
            "big".to_owned(),
            AttributeValue::N("18446744073709551615".into()),
        ),
        ("ratio".to_owned(), AttributeValue::N("0.25".into())),
        ("done".to_owned(), AttributeValue::Bool(true)),
        ("gone".to_owned(), AttributeValue::Null(true)),
        (
            "usage".to_owned(),
            AttributeValue::M(
                [
                    ("inputTokens".to_owned(), AttributeValue::N("3".into())),
                    ("totalTokens".to_owned(), AttributeValue::N("5".into())),
                ]
                .into(),
            ),
        ),
        (
            "list".to_owned(),
            AttributeValue::L(vec![
                AttributeValue::S("a".into()),
                AttributeValue::N("1".into()),
            ]),
        ),
        (
            "tags".to_owned(),
            AttributeValue::Ss(vec!["x".into(), "y".into()]),
        ),
        (
            "nums".to_owned(),
            AttributeValue::Ns(vec!["1".into(), "2".into()]),
        ),
        (
            "raw".to_owned(),
            AttributeValue::B(Blob::new(b"hi".to_vec())),
        ),
    ]
    .into();
    assert_eq!(
        plain_item(&stored),
        json!({
            "text": "hi",
            "seq": 7,
            "big": 18_446_744_073_709_551_615_u64,
            "ratio": 0.25,
            "done": true,
            "gone": null,
            "usage": {"inputTokens": 3, "totalTokens": 5},
            "list": ["a", 1],
            "tags": ["x", "y"],
            "nums": [1, 2],
            "raw": "aGk=",
        })
    );
}

#[test]
fn typed_and_plain_round_trip_through_the_sdk_value() {
    let v = json!({"M": {"pk": {"S": "u"}, "n": {"N": "3"}, "l": {"L": [{"NULL": true}]}}});
    assert_eq!(typed(&value(v.clone())), v);
}

#[test]
fn request_objects_parse_by_operation_and_refuse_unknown_fields() {
    let query = parse(&json!({
        "version": "2018-05-29",
        "operation": "Query",
        "query": {"expression": "#pk = :pk", "expressionNames": {"#pk": "pk"},
                  "expressionValues": {":pk": {"S": "u"}}},
        "index": "byUpdatedAt",
        "limit": 10,
        "scanIndexForward": false,
        "consistentRead": true,
        "select": "ALL_ATTRIBUTES",
        "nextToken": "t",
        "filter": {"expression": "#e > :now", "expressionNames": {"#e": "expiresAt"},
                   "expressionValues": {":now": {"N": 1}}},
        "projection": {"expression": "#pk", "expressionNames": {"#pk": "pk"}},
    }));
    match query {
        Ok(Request::Query(q)) => {
            assert_eq!(q.index.as_deref(), Some("byUpdatedAt"));
            assert_eq!(q.limit, Some(10));
            assert_eq!(q.scan_index_forward, Some(false));
        }
        other => panic!("{other:?}"),
    }
    let shape = |v: Value| match parse(&v) {
        Ok(r) => panic!("{v} was accepted as {r:?}"),
        Err(e) => e.to_string(),
    };
    let e = shape(json!({"operation": "Query", "query": {"expression": "x"}, "limits": 1}));
    assert!(e.contains("limits"), "{e}");
    let e = shape(json!({"operation": "TransactWriteItems", "transactItems": []}));
    assert!(e.contains("TransactWriteItems"), "{e}");
    let e = shape(json!({"key": {}}));
    assert!(e.contains("operation"), "{e}");
    let e = shape(json!({"operation": "GetItem"}));
    assert!(e.contains("key"), "{e}");
    let e = shape(json!("GetItem"));
    assert!(e.contains("not an object"), "{e}");
    assert!(matches!(
        parse(&json!({"operation": "BatchDeleteItem", "tables": {"T": [{"pk": {"S": "a"}}]}})),
        Ok(Request::BatchDeleteItem(_))
    ));
}

#[test]
fn a_custom_condition_strategy_is_refused() {
    let put = parse(&json!({
        "operation": "PutItem",
        "key": {"pk": {"S": "a"}},
        "condition": {"expression": "attribute_not_exists(pk)",
                      "conditionalCheckFailedHandler": {"strategy": "Custom", "lambdaArn": "arn"}},
    }));
    let put = match put {
        Ok(Request::PutItem(put)) => put,
        other => panic!("{other:?}"),
    };
    let strategy = put.condition.as_ref().map(Condition::check_strategy);
    assert!(matches!(strategy, Some(Err(RequestError::Unsupported(_)))));
}

#[test]
fn placeholders_of_every_expression_are_merged_and_empty_ones_left_out() {
    let mut p = Placeholders::default();
    p.add(
        &Some([("#pk".to_owned(), "pk".to_owned())].into()),
        &Some(object(json!({":pk": {"S": "u"}}))),
        "query",
    )
    .expect("query placeholders");
    p.add(
        &Some([("#e".to_owned(), "expiresAt".to_owned())].into()),
        &Some(object(json!({":now": {"N": 5}}))),
        "filter",
    )
    .expect("filter placeholders");
    p.add_names(&Some([("#sk".to_owned(), "sk".to_owned())].into()));
    let (names, values) = p.into_parts();
    let names = names.expect("names");
    assert_eq!(names.len(), 3);
    assert_eq!(names.get("#e").map(String::as_str), Some("expiresAt"));
    let values = values.expect("values");
    assert_eq!(values.get(":now"), Some(&AttributeValue::N("5".into())));
    assert_eq!(values.get(":pk"), Some(&AttributeValue::S("u".into())));

    let (names, values) = Placeholders::default().into_parts();
    assert!(names.is_none() && values.is_none());

    let mut bad = Placeholders::default();
    let e = bad
        .add(&None, &Some(object(json!({":v": "plain"}))), "filter")
        .expect_err("a plain value is refused");
    assert!(e.to_string().contains("filter.expressionValues.:v"), "{e}");
}

fn key(pk: &str, sk: &str) -> Item {
    [
        ("pk".to_owned(), AttributeValue::S(pk.into())),
        ("sk".to_owned(), AttributeValue::S(sk.into())),
    ]
    .into()
}

#[test]
fn batch_delete_answers_each_key_in_order_and_nulls_the_unprocessed() {
    let requested: BTreeMap<String, Vec<Item>> = [(
        "T".to_owned(),
        vec![key("u#c", "MSG#1"), key("u#c", "MSG#2"), key("u", "CONV#c")],
    )]
    .into();
    let unprocessed = match DeleteRequest::builder()
        .set_key(Some(key("u#c", "MSG#2")))
        .build()
    {
        Ok(d) => WriteRequest::builder().delete_request(d).build(),
        Err(e) => panic!("{e}"),
    };
    let unprocessed: HashMap<String, Vec<WriteRequest>> =
        [("T".to_owned(), vec![unprocessed])].into();
    assert_eq!(
        batch_delete_result(&requested, Some(&unprocessed)),
        json!({
            "data": {"T": [{"pk": "u#c", "sk": "MSG#1"}, null, {"pk": "u", "sk": "CONV#c"}]},
            "unprocessedKeys": {"T": [{"pk": "u#c", "sk": "MSG#2"}]},
        })
    );
    assert_eq!(
        batch_delete_result(&requested, None)["unprocessedKeys"],
        json!({"T": []})
    );
}

#[test]
fn equal_items_but_for_ignored_attributes_count_as_written() {
    let mut a = key("u", "CONV#c");
    let mut b = a.clone();
    a.insert("version".into(), AttributeValue::N("1".into()));
    b.insert("version".into(), AttributeValue::N("2".into()));
    assert!(!same_except(&a, &b, &[]));
    assert!(same_except(&a, &b, &["version".to_owned()]));
}

fn tokens() -> PageTokens {
    PageTokens { key: [7; 16] }
}

#[test]
fn next_tokens_only_continue_their_own_query() {
    let values = object(json!({":pk": {"S": "alice"}}));
    let scope = Scope {
        table: "T",
        index: Some("byUpdatedAt"),
        expression: "#pk = :pk",
        values: Some(&values),
    };
    let last = key("alice", "CONV#c1");
    let token = tokens().seal(&last, &scope);
    assert_eq!(tokens().open(&token, &scope), Some(last));

    // Another caller's query (other values) or another index: refused.
    let bob = object(json!({":pk": {"S": "bob"}}));
    let other_values = Scope {
        values: Some(&bob),
        ..scope_copy(&scope)
    };
    assert_eq!(tokens().open(&token, &other_values), None);
    let other_index = Scope {
        index: None,
        ..scope_copy(&scope)
    };
    assert_eq!(tokens().open(&token, &other_index), None);
    // Another stack's secret, a changed token, or no token at all: refused.
    assert_eq!(PageTokens { key: [8; 16] }.open(&token, &scope), None);
    let decoded = String::from_utf8(STANDARD.decode(&token).expect("base64")).expect("utf-8");
    let forged = STANDARD.encode(decoded.replace("alice", "bob"));
    assert_eq!(tokens().open(&forged, &scope), None);
    assert_eq!(tokens().open("not a token", &scope), None);
}

fn scope_copy<'a>(s: &Scope<'a>) -> Scope<'a> {
    Scope {
        table: s.table,
        index: s.index,
        expression: s.expression,
        values: s.values,
    }
}

#[test]
fn an_unknown_next_token_is_appsyncs_pagination_error() {
    let (result, error) = invalid_token();
    assert_eq!(result, Value::Null);
    assert_eq!(
        error,
        Some(json!({
            "type": "DynamoDB:UserIllegalArgumentException",
            "message": "Invalid pagination token given.",
        }))
    );
}

// ---- the project's resolvers produce request objects this data source takes --

fn infra_file(path: &str) -> &'static str {
    match EMBEDDED_INFRA.iter().find(|(p, _)| *p == path) {
        Some((_, source)) => source,
        None => panic!("{path} is not in EMBEDDED_INFRA"),
    }
}

fn ctx(args: Value, prev: Value) -> Value {
    json!({
        "args": args,
        "identity": {"sub": "sub-alice"},
        "source": null,
        "stash": {},
        "prev": {"result": prev},
        "info": {"fieldName": "f", "parentTypeName": "Query", "variables": {},
                 "selectionSetList": []},
        "request": {"headers": {}, "domainName": null},
        "env": {"CONVERSATIONS_TABLE": "ConversationsTable"},
    })
}

/// The request object `file`'s request handler returns for `ctx`, parsed.
fn request_of(file: &str, ctx: &Value) -> Request {
    let out = match engine::run(file, infra_file(file), Handler::Request, ctx) {
        Ok(out) => out,
        Err(e) => panic!("{file}: {e}"),
    };
    match out.outcome {
        Outcome::Returned(request) => match parse(&request) {
            Ok(r) => r,
            Err(e) => panic!("{file}: {e}: {request}"),
        },
        other => panic!("{file}: {other:?}"),
    }
}

fn values_of(e: &Expression) -> Item {
    match e.expression_values.as_ref().map(|v| item(v, "values")) {
        Some(Ok(v)) => v,
        other => panic!("{other:?}"),
    }
}

#[test]
fn list_conversations_queries_the_callers_partition_newest_first() {
    let r = request_of(
        "resolvers/Query.listConversations.js",
        &ctx(json!({"limit": 2, "nextToken": "tok"}), Value::Null),
    );
    let q = match r {
        Request::Query(q) => q,
        other => panic!("{other:?}"),
    };
    assert_eq!(q.index.as_deref(), Some("byUpdatedAt"));
    assert_eq!(q.scan_index_forward, Some(false));
    assert_eq!(q.limit, Some(2));
    assert_eq!(q.next_token.as_deref(), Some("tok"));
    assert_eq!(
        values_of(&q.query).get(":pk"),
        Some(&AttributeValue::S("sub-alice".into()))
    );
}

#[test]
fn list_messages_queries_the_conversations_messages_oldest_first() {
    let r = request_of(
        "resolvers/Query.listMessages.js",
        &ctx(json!({"conversationId": "c-1"}), Value::Null),
    );
    let q = match r {
        Request::Query(q) => q,
        other => panic!("{other:?}"),
    };
    assert_eq!(q.index, None);
    assert_ne!(q.scan_index_forward, Some(false));
    assert_eq!(q.limit, Some(50));
    let values = values_of(&q.query);
    assert_eq!(
        values.get(":pk"),
        Some(&AttributeValue::S("sub-alice#c-1".into()))
    );
    assert_eq!(
        values.get(":prefix"),
        Some(&AttributeValue::S("MSG#".into()))
    );
}

#[test]
fn turn_chunks_asks_for_the_seqs_after_after_seq() {
    let r = request_of(
        "resolvers/Query.turnChunks.js",
        &ctx(
            json!({"conversationId": "c-1", "turnId": "t-1", "afterSeq": 41}),
            Value::Null,
        ),
    );
    let q = match r {
        Request::Query(q) => q,
        other => panic!("{other:?}"),
    };
    let values = values_of(&q.query);
    assert_eq!(
        values.get(":from"),
        Some(&AttributeValue::S("CHUNK#t-1#0000000042".into()))
    );
    assert_eq!(
        values.get(":to"),
        Some(&AttributeValue::S("CHUNK#t-1#9999999999".into()))
    );
    assert!(q.filter.is_some(), "expired chunks are filtered out");
}

#[test]
fn delete_conversation_functions_query_keys_then_batch_delete_them() {
    let r = request_of(
        "resolvers/Function.findConversationKeys.js",
        &ctx(json!({"conversationId": "c-1"}), json!({})),
    );
    let q = match r {
        Request::Query(q) => q,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        values_of(&q.query).get(":pk"),
        Some(&AttributeValue::S("sub-alice#c-1".into()))
    );
    assert!(q.projection.is_some());

    let found = json!({"keys": [{"pk": "sub-alice#c-1", "sk": "MSG#x#t#1"}], "remaining": false});
    let r = request_of(
        "resolvers/Function.deleteConversationKeys.js",
        &ctx(json!({"conversationId": "c-1"}), found),
    );
    let b = match r {
        Request::BatchDeleteItem(b) => b,
        other => panic!("{other:?}"),
    };
    let keys = b
        .tables
        .get("ConversationsTable")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        Value::Array(keys.into_iter().map(Value::Object).collect()),
        json!([
            {"pk": {"S": "sub-alice#c-1"}, "sk": {"S": "MSG#x#t#1"}},
            {"pk": {"S": "sub-alice"}, "sk": {"S": "CONV#c-1"}},
        ])
    );

    // Nothing in the partition: a DeleteItem of the conversation tells
    // whether it existed.
    let r = request_of(
        "resolvers/Function.deleteConversationKeys.js",
        &ctx(
            json!({"conversationId": "c-1"}),
            json!({"keys": [], "remaining": false}),
        ),
    );
    assert!(matches!(r, Request::DeleteItem(_)), "{r:?}");
}
