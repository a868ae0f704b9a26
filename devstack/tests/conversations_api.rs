//! The conversations API over real HTTP: client --listConversations /
//! listMessages / turnChunks / deleteConversation--> AppSync **resolvers
//! (infra/resolvers/*.js) --> DynamoDB data source** --> the local DynamoDB
//! (dynalite), holding items in the resolver Lambda's format, seeded here with
//! the AWS SDK.
//!
//! Order and paging, recovery after a seq, deletion in batches, and isolation:
//! every attempt by one user (bob) on another's (alice's) conversations finds
//! nothing or fails, and leaves every item of the table as it was.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use common::*;
use devstack::{CONVERSATIONS_TABLE, Stack};
use serde_json::{Value, json};

type Item = HashMap<String, AttributeValue>;

const LIST_CONVERSATIONS: &str = "query L($limit: Int, $nextToken: String) { \
    listConversations(limit: $limit, nextToken: $nextToken) { \
    items { conversationId title createdAt updatedAt } nextToken } }";

const LIST_MESSAGES: &str = "query M($conversationId: ID!, $limit: Int, $nextToken: String) { \
    listMessages(conversationId: $conversationId, limit: $limit, nextToken: $nextToken) { \
    items { conversationId turnId role text createdAt modelId stopReason \
    usage { inputTokens outputTokens totalTokens } error { errorType message retryable } } \
    nextToken } }";

const TURN_CHUNKS: &str = "query C($conversationId: ID!, $turnId: ID!, $afterSeq: Int, \
    $limit: Int, $nextToken: String) { turnChunks(conversationId: $conversationId, \
    turnId: $turnId, afterSeq: $afterSeq, limit: $limit, nextToken: $nextToken) { \
    items { conversationId turnId owner seq text done stopReason usage { totalTokens } \
    error { errorType } } nextToken } }";

const DELETE: &str = "mutation D($conversationId: ID!) { \
    deleteConversation(conversationId: $conversationId) { conversationId remaining } }";

// ---- the stack and the table --------------------------------------------------

/// A stack with a fresh local DynamoDB and no Lambda workers (no turn runs
/// here: the items are seeded as the resolver Lambda writes them).
async fn start() -> (Stack, PathBuf) {
    let dir = std::env::temp_dir().join(format!("conversations-api-{}", uuid::Uuid::new_v4()));
    let stack = stack_with(resolver(), |c| {
        c.concurrency = 0;
        c.dynamodb = Some(dynamodb_config(&dir));
    })
    .await;
    assert!(stack.dynamodb.is_some(), "the local DynamoDB started");
    (stack, dir)
}

async fn stop(stack: Stack, dir: PathBuf) {
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn client(stack: &Stack) -> &Client {
    stack
        .dynamodb
        .as_ref()
        .expect("the local DynamoDB started")
        .client()
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn item(pk: &str, sk: &str, attributes: Vec<(&str, AttributeValue)>) -> Item {
    let mut item: Item = [("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))].into();
    item.extend(attributes.into_iter().map(|(k, v)| (k.to_owned(), v)));
    item
}

fn conversation(sub: &str, id: &str, created: &str, updated: &str) -> Item {
    item(
        sub,
        &format!("CONV#{id}"),
        vec![
            ("conversationId", s(id)),
            ("title", s(&format!("title of {id}"))),
            ("createdAt", s(created)),
            ("updatedAt", s(updated)),
        ],
    )
}

fn usage(input: i64, output: i64) -> AttributeValue {
    AttributeValue::M(
        [
            ("inputTokens".to_owned(), n(input)),
            ("outputTokens".to_owned(), n(output)),
            ("totalTokens".to_owned(), n(input + output)),
        ]
        .into(),
    )
}

/// A turn's two messages: the prompt at `started`, the answer (`error` or
/// not) a second later.
fn turn(sub: &str, conv: &str, turn_id: &str, started: &str, error: bool) -> Vec<Item> {
    let pk = format!("{sub}#{conv}");
    let finished = started.replace(":00.000Z", ":01.000Z");
    let mut answer = vec![
        ("turnId", s(turn_id)),
        ("role", s("assistant")),
        ("text", s(&format!("answer of {turn_id}"))),
        ("createdAt", s(&finished)),
        ("modelId", s("scripted")),
    ];
    if error {
        answer.push(("stopReason", s("error")));
        answer.push((
            "error",
            AttributeValue::M(
                [
                    ("errorType".to_owned(), s("ThrottlingException")),
                    ("message".to_owned(), s("Too many requests.")),
                    ("retryable".to_owned(), AttributeValue::Bool(true)),
                ]
                .into(),
            ),
        ));
    } else {
        answer.push(("stopReason", s("end_turn")));
        answer.push(("usage", usage(5, 7)));
    }
    vec![
        item(
            &pk,
            &format!("MSG#{started}#{turn_id}#1"),
            vec![
                ("turnId", s(turn_id)),
                ("role", s("user")),
                ("text", s(&format!("prompt of {turn_id}"))),
                ("createdAt", s(started)),
            ],
        ),
        item(&pk, &format!("MSG#{started}#{turn_id}#2"), answer),
    ]
}

fn claim(sub: &str, conv: &str, turn: &str) -> Item {
    item(
        &format!("{sub}#{conv}"),
        &format!("TURN#{turn}"),
        vec![
            ("claimedAt", n(now_secs())),
            ("expiresAt", n(now_secs() + 86_400)),
        ],
    )
}

/// Chunk `seq` of `turn`; the last (`done`) ends with `end_turn` and usage.
fn chunk(sub: &str, conv: &str, turn: &str, seq: i64, done: bool, expires_at: i64) -> Item {
    let mut attributes = vec![
        ("turnId", s(turn)),
        ("seq", n(seq)),
        ("text", s(&format!("{turn}:{seq} "))),
        ("done", AttributeValue::Bool(done)),
        ("expiresAt", n(expires_at)),
    ];
    if done {
        attributes.push(("stopReason", s("end_turn")));
        attributes.push(("usage", usage(3, 4)));
    }
    item(
        &format!("{sub}#{conv}"),
        &format!("CHUNK#{turn}#{seq:010}"),
        attributes,
    )
}

async fn put(stack: &Stack, items: Vec<Item>) {
    for item in items {
        client(stack)
            .put_item()
            .table_name(CONVERSATIONS_TABLE)
            .set_item(Some(item))
            .send()
            .await
            .expect("seeded");
    }
}

/// Alice: three conversations (updated in the order c-old, c-mid, c-new,
/// created in the opposite one); c-mid has two turns (the second failed),
/// their claims, the second turn's five chunks, a turn `t20` whose keys share
/// the prefix `CHUNK#t2`, and an expired chunk of turn `t-old`.
/// Bob: one conversation, b-1.
async fn seed(stack: &Stack) {
    let alice = devstack::cognito::sub_for("alice");
    let bob = devstack::cognito::sub_for("bob");
    let later = now_secs() + 86_400;
    let mut items = vec![
        conversation(
            &alice,
            "c-old",
            "2026-11-27T12:00:00.000Z",
            "2026-11-27T12:10:00.000Z",
        ),
        conversation(
            &alice,
            "c-mid",
            "2026-11-27T11:00:00.000Z",
            "2026-11-27T12:20:00.000Z",
        ),
        conversation(
            &alice,
            "c-new",
            "2026-11-27T10:00:00.000Z",
            "2026-11-27T12:30:00.000Z",
        ),
        claim(&alice, "c-mid", "t1"),
        claim(&alice, "c-mid", "t2"),
        chunk(&alice, "c-mid", "t20", 0, false, later),
        chunk(&alice, "c-mid", "t20", 1, true, later),
        chunk(&alice, "c-mid", "t-old", 0, true, now_secs() - 10),
        conversation(
            &bob,
            "b-1",
            "2026-11-27T09:00:00.000Z",
            "2026-11-27T09:00:00.000Z",
        ),
    ];
    // The second turn first: the order of writes is not the order of reads.
    items.extend(turn(
        &alice,
        "c-mid",
        "t2",
        "2026-11-27T12:20:00.000Z",
        true,
    ));
    items.extend(turn(
        &alice,
        "c-mid",
        "t1",
        "2026-11-27T11:00:00.000Z",
        false,
    ));
    for seq in (0..5).rev() {
        items.push(chunk(&alice, "c-mid", "t2", seq, seq == 4, later));
    }
    items.extend(turn(&bob, "b-1", "u1", "2026-11-27T09:00:00.000Z", false));
    put(stack, items).await;
}

/// A value as text that does not depend on a map's iteration order.
fn canonical(v: &AttributeValue) -> String {
    match v {
        AttributeValue::M(m) => {
            let sorted: BTreeMap<&String, String> =
                m.iter().map(|(k, v)| (k, canonical(v))).collect();
            format!("M{sorted:?}")
        }
        AttributeValue::L(l) => format!("L{:?}", l.iter().map(canonical).collect::<Vec<_>>()),
        other => format!("{other:?}"),
    }
}

/// Every item of the table, as comparable text, in key order.
async fn snapshot(stack: &Stack) -> Vec<BTreeMap<String, String>> {
    let mut all = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let page = client(stack)
            .scan()
            .table_name(CONVERSATIONS_TABLE)
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .expect("scanned");
        all.extend(page.items().iter().map(|item| {
            item.iter()
                .map(|(k, v)| (k.clone(), canonical(v)))
                .collect::<BTreeMap<_, _>>()
        }));
        match page.last_evaluated_key() {
            Some(key) => start = Some(key.clone()),
            None => break,
        }
    }
    all.sort_by(|a, b| (a.get("pk"), a.get("sk")).cmp(&(b.get("pk"), b.get("sk"))));
    all
}

/// How many items the partition `pk` holds.
async fn partition_len(stack: &Stack, pk: &str) -> usize {
    client(stack)
        .query()
        .table_name(CONVERSATIONS_TABLE)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", s(pk))
        .consistent_read(true)
        .send()
        .await
        .expect("queried")
        .items()
        .len()
}

// ---- GraphQL --------------------------------------------------------------------

async fn graphql(stack: &Stack, user: &str, query: &str, variables: Value) -> Value {
    let token = stack.token(user);
    let (status, body) = post(
        stack,
        &[("authorization", &token)],
        &json!({"query": query, "variables": variables}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The field's value; fails the test on any error.
async fn data(stack: &Stack, user: &str, query: &str, field: &str, variables: Value) -> Value {
    let body = graphql(stack, user, query, variables).await;
    assert!(body.get("errors").is_none(), "{body}");
    body["data"][field].clone()
}

/// The first error's (errorType, message), with the field null.
async fn error(
    stack: &Stack,
    user: &str,
    query: &str,
    field: &str,
    variables: Value,
) -> (String, String) {
    let body = graphql(stack, user, query, variables).await;
    let data_field = body.get("data").map_or(&Value::Null, |d| &d[field]);
    assert!(data_field.is_null(), "{body}");
    let first = &body["errors"][0];
    (
        first["errorType"].as_str().unwrap_or_default().to_owned(),
        first["message"].as_str().unwrap_or_default().to_owned(),
    )
}

fn strings(items: &Value, field: &str) -> Vec<String> {
    items
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| i[field].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn seqs(items: &Value) -> Vec<i64> {
    items
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["seq"].as_i64()).collect())
        .unwrap_or_default()
}

async fn conversation_ids(stack: &Stack, user: &str) -> Vec<String> {
    let page = data(
        stack,
        user,
        LIST_CONVERSATIONS,
        "listConversations",
        json!({}),
    )
    .await;
    strings(&page["items"], "conversationId")
}

// ---- what the owner sees --------------------------------------------------------

#[tokio::test]
async fn list_conversations_is_newest_first_and_pages_with_next_token() {
    let (stack, dir) = start().await;
    seed(&stack).await;

    let all = data(
        &stack,
        "alice",
        LIST_CONVERSATIONS,
        "listConversations",
        json!({}),
    )
    .await;
    assert_eq!(
        strings(&all["items"], "conversationId"),
        ["c-new", "c-mid", "c-old"]
    );
    assert_eq!(all["nextToken"], Value::Null);
    assert_eq!(
        all["items"][1],
        json!({"conversationId": "c-mid", "title": "title of c-mid",
               "createdAt": "2026-11-27T11:00:00.000Z", "updatedAt": "2026-11-27T12:20:00.000Z"})
    );

    let first = data(
        &stack,
        "alice",
        LIST_CONVERSATIONS,
        "listConversations",
        json!({"limit": 2}),
    )
    .await;
    assert_eq!(
        strings(&first["items"], "conversationId"),
        ["c-new", "c-mid"]
    );
    let token = first["nextToken"].as_str().expect("a nextToken").to_owned();
    let second = data(
        &stack,
        "alice",
        LIST_CONVERSATIONS,
        "listConversations",
        json!({"limit": 2, "nextToken": token}),
    )
    .await;
    assert_eq!(strings(&second["items"], "conversationId"), ["c-old"]);
    assert_eq!(second["nextToken"], Value::Null);
    stop(stack, dir).await;
}

#[tokio::test]
async fn list_messages_is_oldest_first_prompt_then_answer() {
    let (stack, dir) = start().await;
    seed(&stack).await;
    let all = data(
        &stack,
        "alice",
        LIST_MESSAGES,
        "listMessages",
        json!({"conversationId": "c-mid"}),
    )
    .await;
    let items = &all["items"];
    let order: Vec<(String, String)> = strings(items, "turnId")
        .into_iter()
        .zip(strings(items, "role"))
        .collect();
    let expected = [
        ("t1", "user"),
        ("t1", "assistant"),
        ("t2", "user"),
        ("t2", "assistant"),
    ]
    .map(|(t, r)| (t.to_owned(), r.to_owned()));
    // Turn claims and chunks share the partition; only MSG# items are messages.
    assert_eq!(order, expected);
    assert!(
        strings(items, "conversationId")
            .iter()
            .all(|c| c == "c-mid")
    );
    assert_eq!(
        items[0],
        json!({"conversationId": "c-mid", "turnId": "t1", "role": "user", "text": "prompt of t1",
               "createdAt": "2026-11-27T11:00:00.000Z", "modelId": null, "stopReason": null,
               "usage": null, "error": null})
    );
    assert_eq!(items[1]["modelId"], "scripted");
    assert_eq!(items[1]["stopReason"], "end_turn");
    assert_eq!(
        items[1]["usage"],
        json!({"inputTokens": 5, "outputTokens": 7, "totalTokens": 12})
    );
    assert_eq!(items[1]["createdAt"], "2026-11-27T11:00:01.000Z");
    assert_eq!(
        items[3]["error"],
        json!({"errorType": "ThrottlingException", "message": "Too many requests.", "retryable": true})
    );
    assert_eq!(items[3]["stopReason"], "error");

    // Pages of three: the fourth message on the second page.
    let first = data(
        &stack,
        "alice",
        LIST_MESSAGES,
        "listMessages",
        json!({"conversationId": "c-mid", "limit": 3}),
    )
    .await;
    assert_eq!(strings(&first["items"], "text").len(), 3);
    let second = data(
        &stack,
        "alice",
        LIST_MESSAGES,
        "listMessages",
        json!({"conversationId": "c-mid", "limit": 3, "nextToken": first["nextToken"]}),
    )
    .await;
    assert_eq!(strings(&second["items"], "text"), ["answer of t2"]);
    assert_eq!(second["nextToken"], Value::Null);
    stop(stack, dir).await;
}

#[tokio::test]
async fn turn_chunks_returns_the_seqs_after_after_seq_in_order() {
    let (stack, dir) = start().await;
    seed(&stack).await;
    let alice = devstack::cognito::sub_for("alice");
    let chunks = |after: Value, limit: Value, token: Value| {
        json!({"conversationId": "c-mid", "turnId": "t2", "afterSeq": after,
               "limit": limit, "nextToken": token})
    };

    let all = data(
        &stack,
        "alice",
        TURN_CHUNKS,
        "turnChunks",
        chunks(Value::Null, Value::Null, Value::Null),
    )
    .await;
    // Not t20's chunks, though their keys begin with CHUNK#t2.
    assert_eq!(seqs(&all["items"]), [0, 1, 2, 3, 4]);
    assert_eq!(
        all["items"][0],
        json!({"conversationId": "c-mid", "turnId": "t2", "owner": alice, "seq": 0,
               "text": "t2:0 ", "done": false, "stopReason": null, "usage": null, "error": null})
    );

    let after = data(
        &stack,
        "alice",
        TURN_CHUNKS,
        "turnChunks",
        chunks(json!(2), Value::Null, Value::Null),
    )
    .await;
    assert_eq!(seqs(&after["items"]), [3, 4]);
    assert_eq!(after["items"][1]["done"], true);
    assert_eq!(after["items"][1]["stopReason"], "end_turn");
    assert_eq!(after["items"][1]["usage"]["totalTokens"], 7);
    let none = data(
        &stack,
        "alice",
        TURN_CHUNKS,
        "turnChunks",
        chunks(json!(4), Value::Null, Value::Null),
    )
    .await;
    assert_eq!(seqs(&none["items"]), Vec::<i64>::new());

    // Pages of two.
    let mut got = Vec::new();
    let mut token = Value::Null;
    for _ in 0..4 {
        let page = data(
            &stack,
            "alice",
            TURN_CHUNKS,
            "turnChunks",
            chunks(Value::Null, json!(2), token),
        )
        .await;
        got.extend(seqs(&page["items"]));
        token = page["nextToken"].clone();
        if token.is_null() {
            break;
        }
    }
    assert_eq!(got, [0, 1, 2, 3, 4]);
    assert!(token.is_null(), "paging ended");

    // A chunk past its expiresAt is not recovered (dynalite has no TTL).
    let expired = data(
        &stack,
        "alice",
        TURN_CHUNKS,
        "turnChunks",
        json!({"conversationId": "c-mid", "turnId": "t-old"}),
    )
    .await;
    assert_eq!(expired["items"], json!([]));
    stop(stack, dir).await;
}

#[tokio::test]
async fn delete_conversation_removes_everything_in_batches() {
    let (stack, dir) = start().await;
    seed(&stack).await;
    let alice = devstack::cognito::sub_for("alice");
    // c-big: 14 turns (28 messages) and 2 claims, more than one call deletes.
    let mut items = vec![conversation(
        &alice,
        "c-big",
        "2026-11-27T08:00:00.000Z",
        "2026-11-27T08:30:00.000Z",
    )];
    for t in 0..14 {
        items.extend(turn(
            &alice,
            "c-big",
            &format!("b{t}"),
            &format!("2026-11-27T08:{t:02}:00.000Z"),
            false,
        ));
    }
    items.push(claim(&alice, "c-big", "b0"));
    items.push(claim(&alice, "c-big", "b1"));
    put(&stack, items).await;
    let partition = format!("{alice}#c-big");
    assert_eq!(partition_len(&stack, &partition).await, 30);
    let others = partition_len(&stack, &format!("{alice}#c-mid")).await;

    let delete = json!({"conversationId": "c-big"});
    let first = data(
        &stack,
        "alice",
        DELETE,
        "deleteConversation",
        delete.clone(),
    )
    .await;
    assert_eq!(first, json!({"conversationId": "c-big", "remaining": true}));
    assert_eq!(partition_len(&stack, &partition).await, 6);
    // The conversation item went with the first batch.
    assert!(
        !conversation_ids(&stack, "alice")
            .await
            .contains(&"c-big".to_owned())
    );

    let second = data(
        &stack,
        "alice",
        DELETE,
        "deleteConversation",
        delete.clone(),
    )
    .await;
    assert_eq!(
        second,
        json!({"conversationId": "c-big", "remaining": false})
    );
    assert_eq!(partition_len(&stack, &partition).await, 0);
    assert_eq!(
        partition_len(&stack, &alice).await,
        3,
        "c-old, c-mid and c-new remain"
    );
    let messages = data(
        &stack,
        "alice",
        LIST_MESSAGES,
        "listMessages",
        json!({"conversationId": "c-big"}),
    )
    .await;
    assert_eq!(messages, json!({"items": [], "nextToken": null}));

    // Nothing left: NotFound.
    let (error_type, message) = error(&stack, "alice", DELETE, "deleteConversation", delete).await;
    assert_eq!(
        (error_type.as_str(), message.as_str()),
        ("NotFound", "Conversation not found")
    );

    // A small conversation goes in one call; the others are untouched.
    let mid = data(
        &stack,
        "alice",
        DELETE,
        "deleteConversation",
        json!({"conversationId": "c-old"}),
    )
    .await;
    assert_eq!(mid, json!({"conversationId": "c-old", "remaining": false}));
    assert_eq!(conversation_ids(&stack, "alice").await, ["c-new", "c-mid"]);
    assert_eq!(
        partition_len(&stack, &format!("{alice}#c-mid")).await,
        others
    );
    stop(stack, dir).await;
}

#[tokio::test]
async fn deleting_a_conversation_that_never_existed_is_not_found() {
    let (stack, dir) = start().await;
    seed(&stack).await;
    let before = snapshot(&stack).await;
    let (error_type, message) = error(
        &stack,
        "alice",
        DELETE,
        "deleteConversation",
        json!({"conversationId": "no-such"}),
    )
    .await;
    assert_eq!(
        (error_type.as_str(), message.as_str()),
        ("NotFound", "Conversation not found")
    );
    assert_eq!(snapshot(&stack).await, before);
    stop(stack, dir).await;
}

#[tokio::test]
async fn an_id_with_a_key_separator_or_a_bad_limit_is_a_validation_error() {
    let (stack, dir) = start().await;
    seed(&stack).await;
    let id_message = "must be 1 to 128 characters of A-Z, a-z, 0-9, '-', '_', '.', ':'.";
    let cases = [
        (
            LIST_MESSAGES,
            "listMessages",
            json!({"conversationId": "a#b"}),
            format!("conversationId {id_message}"),
        ),
        (
            TURN_CHUNKS,
            "turnChunks",
            json!({"conversationId": "c-mid", "turnId": "a#b"}),
            format!("turnId {id_message}"),
        ),
        (
            DELETE,
            "deleteConversation",
            json!({"conversationId": "a#b"}),
            format!("conversationId {id_message}"),
        ),
        (
            DELETE,
            "deleteConversation",
            json!({"conversationId": ""}),
            format!("conversationId {id_message}"),
        ),
        (
            LIST_CONVERSATIONS,
            "listConversations",
            json!({"limit": 0}),
            "limit must be between 1 and 100.".to_owned(),
        ),
        (
            LIST_MESSAGES,
            "listMessages",
            json!({"conversationId": "c-mid", "limit": 101}),
            "limit must be between 1 and 100.".to_owned(),
        ),
        (
            TURN_CHUNKS,
            "turnChunks",
            json!({"conversationId": "c-mid", "turnId": "t2", "afterSeq": -2}),
            "afterSeq must be -1 or more.".to_owned(),
        ),
    ];
    let before = snapshot(&stack).await;
    for (query, field, variables, expected) in cases {
        let got = error(&stack, "alice", query, field, variables.clone()).await;
        assert_eq!(
            got,
            ("ValidationException".to_owned(), expected),
            "{field} {variables}"
        );
    }
    assert_eq!(snapshot(&stack).await, before);
    stop(stack, dir).await;
}

// ---- isolation: bob against alice's conversations ---------------------------------

#[tokio::test]
async fn bob_lists_only_his_own_conversations() {
    let (stack, dir) = start().await;
    seed(&stack).await;
    let before = snapshot(&stack).await;
    assert_eq!(conversation_ids(&stack, "bob").await, ["b-1"]);
    assert_eq!(
        conversation_ids(&stack, "alice").await,
        ["c-new", "c-mid", "c-old"]
    );
    assert_eq!(snapshot(&stack).await, before);
    stop(stack, dir).await;
}

#[tokio::test]
async fn bob_cannot_page_on_with_alices_next_token() {
    let (stack, dir) = start().await;
    seed(&stack).await;
    let before = snapshot(&stack).await;
    let page = data(
        &stack,
        "alice",
        LIST_CONVERSATIONS,
        "listConversations",
        json!({"limit": 1}),
    )
    .await;
    let token = page["nextToken"].clone();
    assert!(token.is_string(), "{page}");
    let body = graphql(
        &stack,
        "bob",
        LIST_CONVERSATIONS,
        json!({"limit": 1, "nextToken": token}),
    )
    .await;
    assert_eq!(body["data"], Value::Null, "{body}");
    assert_eq!(
        body["errors"][0]["errorType"], "DynamoDB:UserIllegalArgumentException",
        "{body}"
    );
    assert_eq!(snapshot(&stack).await, before);
    stop(stack, dir).await;
}

#[tokio::test]
async fn bob_reads_no_messages_of_alices_conversation() {
    let (stack, dir) = start().await;
    seed(&stack).await;
    let before = snapshot(&stack).await;
    let seen = data(
        &stack,
        "bob",
        LIST_MESSAGES,
        "listMessages",
        json!({"conversationId": "c-mid"}),
    )
    .await;
    assert_eq!(seen, json!({"items": [], "nextToken": null}));
    // Alice still reads all four.
    let hers = data(
        &stack,
        "alice",
        LIST_MESSAGES,
        "listMessages",
        json!({"conversationId": "c-mid"}),
    )
    .await;
    assert_eq!(strings(&hers["items"], "text").len(), 4);
    assert_eq!(snapshot(&stack).await, before);
    stop(stack, dir).await;
}

#[tokio::test]
async fn bob_recovers_no_chunks_of_alices_turn() {
    let (stack, dir) = start().await;
    seed(&stack).await;
    let before = snapshot(&stack).await;
    let seen = data(
        &stack,
        "bob",
        TURN_CHUNKS,
        "turnChunks",
        json!({"conversationId": "c-mid", "turnId": "t2"}),
    )
    .await;
    assert_eq!(seen, json!({"items": [], "nextToken": null}));
    let hers = data(
        &stack,
        "alice",
        TURN_CHUNKS,
        "turnChunks",
        json!({"conversationId": "c-mid", "turnId": "t2"}),
    )
    .await;
    assert_eq!(seqs(&hers["items"]), [0, 1, 2, 3, 4]);
    assert_eq!(snapshot(&stack).await, before);
    stop(stack, dir).await;
}

#[tokio::test]
async fn bob_cannot_delete_alices_conversation() {
    let (stack, dir) = start().await;
    seed(&stack).await;
    let before = snapshot(&stack).await;
    let (error_type, message) = error(
        &stack,
        "bob",
        DELETE,
        "deleteConversation",
        json!({"conversationId": "c-mid"}),
    )
    .await;
    assert_eq!(
        (error_type.as_str(), message.as_str()),
        ("NotFound", "Conversation not found")
    );
    // Not one item of the table changed: alice's conversation, messages,
    // claims and chunks, and bob's own.
    assert_eq!(snapshot(&stack).await, before);
    assert_eq!(
        conversation_ids(&stack, "alice").await,
        ["c-new", "c-mid", "c-old"]
    );
    stop(stack, dir).await;
}
