//! Per-user quotas through the real path: client --sendPrompt--> AppSync
//! **pipeline (readQuota, takeTurnSlot, invokeTurn in infra/resolvers/)**
//! --> the local DynamoDB's quota item, then --Invoke(Event)--> the real
//! `bootstrap`, which gives the turn's slot back when the turn ends.
//!
//! Each limit (turns in flight, daily tokens, conversations kept) refuses a
//! prompt before any Lambda runs; every kind of ending
//! gives the slot back (done, error, deadline, cancel, a repeated prompt, and
//! an environment that died, by expiry); `myQuota` shows a user their own use
//! and nobody else's.

mod common;

use std::time::Duration;

use appsync_client::Chunk;
use aws_sdk_dynamodb::types::AttributeValue;
use common::*;
use devstack::bedrock::{Fault, StreamException};
use devstack::{Stack, StackConfig};
use serde_json::{Value, json};

const MY_QUOTA: &str = "query { myQuota { turnsInFlight maxTurnsInFlight nextSlotFreeAt \
    tokensUsedToday dailyTokens tokensResetAt conversations maxConversations } }";

const DELETE: &str = "mutation D($conversationId: ID!) { \
    deleteConversation(conversationId: $conversationId) { conversationId remaining } }";

/// A stack whose API has these quota variables (ctx.env), as a deployment's
/// parameters set them.
async fn stack_with_quotas(
    variables: &[(&str, &str)],
    adjust: impl FnOnce(&mut StackConfig),
) -> Stack {
    let variables: Vec<(String, String)> = variables
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    stack_with(resolver(), |c| {
        c.api_environment = variables;
        adjust(c);
    })
    .await
}

async fn my_quota(stack: &Stack, token: &str) -> Value {
    let (status, body) = post(
        stack,
        &[("authorization", token)],
        &json!({"query": MY_QUOTA}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    body["data"]["myQuota"].clone()
}

/// Waits until the user of `token` has `n` turns in flight, as `myQuota` says.
async fn until_in_flight(stack: &Stack, token: &str, n: i64) -> Value {
    let deadline = tokio::time::Instant::now() + TURN_TIMEOUT;
    loop {
        let quota = my_quota(stack, token).await;
        if quota["turnsInFlight"] == n {
            return quota;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {n} in flight: {quota}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The quota item of `user`, as stored.
async fn quota_item(
    stack: &Stack,
    user: &str,
) -> Option<std::collections::HashMap<String, AttributeValue>> {
    stack
        .dynamodb
        .as_ref()
        .expect("the local DynamoDB started")
        .client()
        .get_item()
        .table_name(devstack::CONVERSATIONS_TABLE)
        .key("pk", AttributeValue::S(devstack::cognito::sub_for(user)))
        .key("sk", AttributeValue::S("QUOTA".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
}

/// The turn ids holding a slot in `user`'s quota item.
async fn slots(stack: &Stack, user: &str) -> Vec<String> {
    let item = quota_item(stack, user).await.expect("a quota item");
    let mut turns: Vec<String> = item
        .get("slots")
        .and_then(|s| s.as_m().ok())
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    turns.sort();
    turns
}

fn refusal(body: &Value) -> (&str, &Value) {
    let error = &body["errors"][0];
    assert!(body["data"]["sendPrompt"].is_null(), "{body}");
    (error["errorType"].as_str().unwrap_or(""), error)
}

/// Waits for the next invocation to end and returns its result.
async fn next_outcome(
    outcomes: &mut tokio::sync::broadcast::Receiver<devstack::lambda::InvocationOutcome>,
) -> Result<Value, Value> {
    tokio::time::timeout(TURN_TIMEOUT, outcomes.recv())
        .await
        .expect("the invocation ends")
        .expect("an outcome")
        .result
}

/// A turn started as the user of `token` in `conversation`, subscribed to
/// before it is sent: the connection, the subscription, and the Lambda
/// outcomes from before the send.
struct Started {
    _client: appsync_client::RealtimeClient,
    subscription: appsync_client::Subscription,
    outcomes: tokio::sync::broadcast::Receiver<devstack::lambda::InvocationOutcome>,
}

async fn start_turn(
    stack: &Stack,
    token: &str,
    (conversation, turn): (&str, &str),
    max_tokens: u32,
) -> Started {
    let client = connect(stack, token).await;
    let subscription = subscribe(&client, conversation).await;
    let outcomes = stack.lambda.outcomes();
    let body = send_prompt(
        stack,
        token,
        conversation,
        turn,
        "Tell me more.",
        Some(max_tokens),
    )
    .await;
    assert!(body.get("errors").is_none(), "{body}");
    Started {
        _client: client,
        subscription,
        outcomes,
    }
}

/// One whole turn as the user of `token`; its chunks once its invocation ended.
async fn whole_turn(stack: &Stack, token: &str, conversation: &str, turn: &str) -> Vec<Chunk> {
    let Started {
        mut subscription,
        mut outcomes,
        ..
    } = start_turn(stack, token, (conversation, turn), 20).await;
    let chunks = collect_turn(&mut subscription, turn).await;
    next_outcome(&mut outcomes)
        .await
        .expect("the turn succeeded");
    chunks
}

/// Nothing more reaches the Lambda stand-in or the model within a second.
async fn assert_nothing_invoked(
    stack: &Stack,
    outcomes: &mut tokio::sync::broadcast::Receiver<devstack::lambda::InvocationOutcome>,
    served: u64,
) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        matches!(
            outcomes.try_recv(),
            Err(tokio::sync::broadcast::error::TryRecvError::Empty)
        ),
        "a refused prompt invoked the function"
    );
    assert_eq!(
        stack.bedrock.requests_served(),
        served,
        "a refused prompt reached the model"
    );
}

#[tokio::test]
async fn a_prompt_past_the_turns_in_flight_is_refused_before_any_lambda_runs() {
    let stack = stack_with_quotas(&[("QUOTA_MAX_TURNS_IN_FLIGHT", "1")], |c| {
        c.bedrock.scripted_tokens_per_second = 20.0;
    })
    .await;
    let token = stack.token("alice");
    let Started {
        mut subscription,
        mut outcomes,
        ..
    } = start_turn(&stack, &token, ("conv-q", "turn-1"), 100).await;
    let quota = until_in_flight(&stack, &token, 1).await;
    assert_eq!(quota["maxTurnsInFlight"], 1);
    assert!(quota["nextSlotFreeAt"].is_string(), "{quota}");

    let second = send_prompt(&stack, &token, "conv-q", "turn-2", "And another.", Some(40)).await;
    let (error_type, error) = refusal(&second);
    assert_eq!(error_type, "TooManyTurns", "{second}");
    assert_eq!(
        error["message"],
        "You have 1 answers in progress, the most you can have at once. Send again when one has finished."
    );
    assert_eq!(error["errorInfo"]["limit"], 1, "{second}");
    assert_eq!(
        error["errorInfo"]["resetAt"], quota["nextSlotFreeAt"],
        "{second}"
    );
    assert_eq!(slots(&stack, "alice").await, ["conv-q#turn-1"]);

    // The same turn id in another conversation is another turn: no way past
    // the limit.
    let elsewhere = send_prompt(&stack, &token, "conv-other", "turn-1", "Again.", Some(40)).await;
    assert_eq!(refusal(&elsewhere).0, "TooManyTurns", "{elsewhere}");

    // Another user has their own slots.
    let bob = stack.token("bob");
    let bobs = send_prompt(&stack, &bob, "conv-b", "turn-b", "Hello.", Some(5)).await;
    assert!(bobs.get("errors").is_none(), "{bobs}");
    assert_eq!(
        my_quota(&stack, &token).await["turnsInFlight"],
        1,
        "bob's turn is not alice's"
    );
    next_outcome(&mut outcomes).await.expect("bob's turn");

    collect_turn(&mut subscription, "turn-1").await;
    next_outcome(&mut outcomes).await.expect("the first turn");
    // Alice's first turn and bob's: the refused one reached nothing.
    assert_nothing_invoked(&stack, &mut outcomes, 2).await;
    until_in_flight(&stack, &token, 0).await;
    let third = send_prompt(&stack, &token, "conv-q", "turn-3", "Now?", Some(5)).await;
    assert!(
        third.get("errors").is_none(),
        "a freed slot takes a turn: {third}"
    );
    next_outcome(&mut outcomes).await.expect("the third turn");
    stack.shutdown().await;
}

#[tokio::test]
async fn prompts_sent_at_once_never_take_more_slots_than_the_limit() {
    let stack = stack_with_quotas(&[("QUOTA_MAX_TURNS_IN_FLIGHT", "3")], |c| {
        c.bedrock.scripted_tokens_per_second = 10.0;
    })
    .await;
    let token = stack.token("alice");
    let turns: Vec<String> = (0..8).map(|i| format!("turn-{i}")).collect();
    let sends = turns
        .iter()
        .map(|turn| send_prompt(&stack, &token, "conv-r", turn, "At once?", Some(100)));
    let bodies = futures_util::future::join_all(sends).await;
    let accepted = bodies
        .iter()
        .filter(|body| body.get("errors").is_none())
        .count();
    assert_eq!(accepted, 3, "exactly the limit: {bodies:?}");
    for refused in bodies.iter().filter(|body| body.get("errors").is_some()) {
        assert_eq!(refusal(refused).0, "TooManyTurns", "{refused}");
    }
    assert_eq!(slots(&stack, "alice").await.len(), 3);
    stack.shutdown().await;
}

#[tokio::test]
async fn a_prompt_past_the_daily_tokens_is_refused_until_midnight_utc() {
    let stack = stack_with_quotas(&[("QUOTA_DAILY_TOKENS", "10")], |c| {
        c.bedrock.scripted_tokens_per_second = 400.0;
    })
    .await;
    let token = stack.token("alice");
    let chunks = whole_turn(&stack, &token, "conv-t", "turn-1").await;
    let total = chunks
        .iter()
        .find_map(|c| c.usage.as_ref())
        .expect("usage on the terminal chunk")
        .total_tokens;
    assert!(total > 10, "the first turn goes past the budget");
    let quota = until_in_flight(&stack, &token, 0).await;
    assert_eq!(
        quota["tokensUsedToday"], total,
        "Bedrock's usage is counted: {quota}"
    );
    assert_eq!(quota["dailyTokens"], 10);
    let midnight = (chrono::Utc::now().date_naive() + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(quota["tokensResetAt"], midnight.as_str());

    let served = stack.bedrock.requests_served();
    let mut outcomes = stack.lambda.outcomes();
    let body = send_prompt(&stack, &token, "conv-t", "turn-2", "More?", Some(5)).await;
    let (error_type, error) = refusal(&body);
    assert_eq!(error_type, "QuotaExceeded", "{body}");
    assert_eq!(
        error["message"],
        format!("You have used today's 10 tokens. Your quota resets at {midnight}.").as_str()
    );
    assert_eq!(
        error["errorInfo"],
        json!({"limit": 10, "resetAt": midnight}),
        "{body}"
    );
    assert_nothing_invoked(&stack, &mut outcomes, served).await;

    // Bob's day is his own.
    let bob = stack.token("bob");
    whole_turn(&stack, &bob, "conv-bob", "turn-b").await;
    stack.shutdown().await;
}

#[tokio::test]
async fn a_users_group_gets_its_limits() {
    let stack = stack_with_quotas(
        &[
            ("QUOTA_MAX_TURNS_IN_FLIGHT", "1"),
            ("QUOTA_DAILY_TOKENS", "100"),
            ("QUOTA_GROUPS", "trial:5:100,premium:2:1000, team:lead:3:50"),
        ],
        |c| c.bedrock.scripted_tokens_per_second = 20.0,
    )
    .await;
    let now = devstack::cognito::now_secs();
    let premium = stack
        .user_pool
        .mint_id_token("carol", &["premium".into(), "trial".into()], now);
    let quota = my_quota(&stack, &premium).await;
    assert_eq!(
        quota["maxTurnsInFlight"], 5,
        "the most generous of each limit: {quota}"
    );
    assert_eq!(quota["dailyTokens"], 1000, "{quota}");
    let lead = stack
        .user_pool
        .mint_id_token("dan", &["team:lead".into()], now);
    let quota = my_quota(&stack, &lead).await;
    assert_eq!(
        (
            quota["maxTurnsInFlight"].clone(),
            quota["dailyTokens"].clone()
        ),
        (json!(3), json!(50))
    );
    let plain = stack
        .user_pool
        .mint_id_token("erin", &["unlisted".into()], now);
    let quota = my_quota(&stack, &plain).await;
    assert_eq!(
        (
            quota["maxTurnsInFlight"].clone(),
            quota["dailyTokens"].clone()
        ),
        (json!(1), json!(100))
    );

    let premium = stack
        .user_pool
        .mint_id_token("fay", &["premium".into()], now);
    for turn in ["turn-1", "turn-2"] {
        let body = send_prompt(&stack, &premium, "conv-g", turn, "Long, please.", Some(100)).await;
        assert!(body.get("errors").is_none(), "{body}");
    }
    let body = send_prompt(&stack, &premium, "conv-g", "turn-3", "A third?", Some(100)).await;
    assert_eq!(
        refusal(&body).0,
        "TooManyTurns",
        "the group's limit: {body}"
    );
    assert_eq!(refusal(&body).1["errorInfo"]["limit"], 2, "{body}");
    stack.shutdown().await;
}

#[tokio::test]
async fn my_quota_is_the_callers_own_and_needs_a_user() {
    let stack = stack_with_quotas(&[], |c| c.bedrock.scripted_tokens_per_second = 400.0).await;
    let alice = stack.token("alice");
    whole_turn(&stack, &alice, "conv-m", "turn-1").await;
    let mine = until_in_flight(&stack, &alice, 0).await;
    assert!(mine["tokensUsedToday"].as_i64().unwrap_or(0) > 0, "{mine}");
    assert_eq!(
        mine["maxTurnsInFlight"], 3,
        "the template's default: {mine}"
    );
    assert_eq!(mine["dailyTokens"], 200_000, "{mine}");
    assert_eq!(
        (
            mine["conversations"].clone(),
            mine["maxConversations"].clone()
        ),
        (json!(1), json!(1000)),
        "{mine}"
    );
    let bob = stack.token("bob");
    let his = my_quota(&stack, &bob).await;
    assert_eq!(his["tokensUsedToday"], 0, "{his}");
    assert_eq!(his["conversations"], 0, "{his}");
    assert_eq!(his["turnsInFlight"], 0, "{his}");
    assert!(
        quota_item(&stack, "bob").await.is_none(),
        "reading makes no item"
    );

    let (status, body) = post(
        &stack,
        &[("authorization", "not-a-token")],
        &json!({"query": MY_QUOTA}),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    stack.shutdown().await;
}

// ---- conversations kept ---------------------------------------------------------

/// Deletes `conversation` as the user of `token` until nothing remains; the
/// error type when the first call fails.
async fn delete_conversation(stack: &Stack, token: &str, conversation: &str) -> Option<String> {
    loop {
        let (status, body) = post(
            stack,
            &[("authorization", token)],
            &json!({"query": DELETE, "variables": {"conversationId": conversation}}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        if let Some(error_type) = body["errors"][0]["errorType"].as_str() {
            return Some(error_type.to_owned());
        }
        if body["data"]["deleteConversation"]["remaining"] == false {
            return None;
        }
    }
}

#[tokio::test]
async fn a_prompt_that_would_start_a_conversation_past_the_limit_is_refused() {
    let stack = stack_with_quotas(&[("QUOTA_MAX_CONVERSATIONS", "2")], |c| {
        c.bedrock.scripted_tokens_per_second = 400.0;
    })
    .await;
    let token = stack.token("alice");
    whole_turn(&stack, &token, "conv-1", "turn-1").await;
    whole_turn(&stack, &token, "conv-2", "turn-1").await;
    let quota = until_in_flight(&stack, &token, 0).await;
    assert_eq!(
        (
            quota["conversations"].clone(),
            quota["maxConversations"].clone()
        ),
        (json!(2), json!(2))
    );

    let served = stack.bedrock.requests_served();
    let mut outcomes = stack.lambda.outcomes();
    let body = send_prompt(&stack, &token, "conv-3", "turn-1", "A third?", Some(5)).await;
    let (error_type, error) = refusal(&body);
    assert_eq!(error_type, "TooManyConversations", "{body}");
    assert_eq!(
        error["message"],
        "You have 2 conversations, the most you can keep. Delete one to start another."
    );
    assert_eq!(
        error["errorInfo"],
        json!({"limit": 2, "resetAt": null}),
        "{body}"
    );
    assert_nothing_invoked(&stack, &mut outcomes, served).await;

    // A conversation kept takes more turns; bob's conversations are his own.
    whole_turn(&stack, &token, "conv-1", "turn-2").await;
    let bob = stack.token("bob");
    whole_turn(&stack, &bob, "conv-3", "turn-b").await;
    // Bob cannot delete alice's conversation, nor free her count.
    assert_eq!(
        delete_conversation(&stack, &bob, "conv-2").await.as_deref(),
        Some("NotFound")
    );
    assert_eq!(my_quota(&stack, &token).await["conversations"], 2);

    // Deleting one makes room for another; deleting it again is NotFound.
    assert_eq!(delete_conversation(&stack, &token, "conv-2").await, None);
    assert_eq!(my_quota(&stack, &token).await["conversations"], 1);
    whole_turn(&stack, &token, "conv-3", "turn-1").await;
    assert_eq!(
        delete_conversation(&stack, &token, "conv-2")
            .await
            .as_deref(),
        Some("NotFound")
    );
    assert_eq!(my_quota(&stack, &bob).await["conversations"], 1);
    stack.shutdown().await;
}

/// A delete that finishes while a turn of the conversation still runs takes
/// it out of the count; the turn's ending, which stores it again, puts it
/// back, so deleting mid-turn is no way past the limit.
#[tokio::test]
async fn a_conversation_deleted_mid_turn_counts_again_when_the_turn_stores_it() {
    let stack = stack_with_quotas(&[("QUOTA_MAX_CONVERSATIONS", "1")], |c| {
        c.bedrock.scripted_tokens_per_second = 20.0;
    })
    .await;
    let token = stack.token("alice");
    let Started {
        mut subscription,
        mut outcomes,
        ..
    } = start_turn(&stack, &token, ("conv-d", "turn-1"), 40).await;
    until_in_flight(&stack, &token, 1).await;
    assert_eq!(delete_conversation(&stack, &token, "conv-d").await, None);
    assert_eq!(my_quota(&stack, &token).await["conversations"], 0);
    collect_turn(&mut subscription, "turn-1").await;
    next_outcome(&mut outcomes).await.expect("the turn ends");
    let quota = until_in_flight(&stack, &token, 0).await;
    assert_eq!(quota["conversations"], 1, "{quota}");
    let body = send_prompt(&stack, &token, "conv-e", "turn-1", "Another?", Some(5)).await;
    assert_eq!(refusal(&body).0, "TooManyConversations", "{body}");
    stack.shutdown().await;
}

#[tokio::test]
async fn a_conversation_counted_but_never_stored_can_be_deleted() {
    let stack = stack_with_quotas(&[("QUOTA_MAX_CONVERSATIONS", "1")], |_| {}).await;
    let token = stack.token("alice");
    // What a conversation whose only turn never wrote anything leaves: its
    // id in the set, and no items.
    stack
        .dynamodb
        .as_ref()
        .expect("the local DynamoDB started")
        .client()
        .update_item()
        .table_name(devstack::CONVERSATIONS_TABLE)
        .key("pk", AttributeValue::S(devstack::cognito::sub_for("alice")))
        .key("sk", AttributeValue::S("QUOTA".into()))
        .update_expression("ADD conversations :ghost")
        .expression_attribute_values(":ghost", AttributeValue::Ss(vec!["conv-ghost".into()]))
        .send()
        .await
        .expect("UpdateItem");
    let body = send_prompt(&stack, &token, "conv-new", "turn-1", "Hello?", Some(5)).await;
    assert_eq!(refusal(&body).0, "TooManyConversations", "{body}");

    assert_eq!(
        delete_conversation(&stack, &token, "conv-ghost").await,
        None
    );
    assert_eq!(my_quota(&stack, &token).await["conversations"], 0);
    whole_turn(&stack, &token, "conv-new", "turn-1").await;
    stack.shutdown().await;
}

#[tokio::test]
async fn new_conversations_at_once_never_go_past_the_limit() {
    let stack = stack_with_quotas(
        &[
            ("QUOTA_MAX_CONVERSATIONS", "2"),
            ("QUOTA_MAX_TURNS_IN_FLIGHT", "10"),
        ],
        |c| c.bedrock.scripted_tokens_per_second = 10.0,
    )
    .await;
    let token = stack.token("alice");
    let conversations: Vec<String> = (0..6).map(|i| format!("conv-{i}")).collect();
    let sends = conversations
        .iter()
        .map(|conversation| send_prompt(&stack, &token, conversation, "turn-1", "Hi?", Some(50)));
    let bodies = futures_util::future::join_all(sends).await;
    let accepted = bodies
        .iter()
        .filter(|body| body.get("errors").is_none())
        .count();
    let kept = quota_item(&stack, "alice")
        .await
        .and_then(|item| item.get("conversations").cloned())
        .and_then(|set| set.as_ss().ok().cloned())
        .unwrap_or_default();
    assert!(
        (1..=2).contains(&accepted) && kept.len() == accepted,
        "accepted {accepted}, kept {kept:?}: {bodies:?}"
    );
    stack.shutdown().await;
}

// ---- every ending gives the slot back -----------------------------------------

/// Sends a turn as alice with one slot, reads it to its terminal chunk and the
/// end of its invocation, and checks that the slot is given back.
async fn assert_slot_returned(stack: &Stack, turn: &str, max_tokens: u32) -> Vec<Chunk> {
    let token = stack.token("alice");
    let Started {
        mut subscription,
        mut outcomes,
        ..
    } = start_turn(stack, &token, ("conv-e", turn), max_tokens).await;
    let chunks = collect_turn(&mut subscription, turn).await;
    next_outcome(&mut outcomes)
        .await
        .expect("the invocation succeeds");
    assert_eq!(
        slots(stack, "alice").await,
        Vec::<String>::new(),
        "the slot is back"
    );
    until_in_flight(stack, &token, 0).await;
    chunks
}

fn one_slot(c: &mut StackConfig) {
    c.api_environment = vec![("QUOTA_MAX_TURNS_IN_FLIGHT".into(), "1".into())];
}

#[tokio::test]
async fn a_turn_that_fails_gives_its_slot_back() {
    let stack = stack_with(resolver(), |c| {
        one_slot(c);
        c.bedrock.scripted_tokens_per_second = 400.0;
        c.bedrock.fault = Some(Fault::Exception {
            after_deltas: 3,
            exception: StreamException::ModelStreamError,
            message: "the model failed".into(),
        });
    })
    .await;
    let chunks = assert_slot_returned(&stack, "turn-f", 50).await;
    let last = chunks.last().expect("a terminal chunk");
    assert!(last.error.is_some(), "{last:?}");
    let quota = my_quota(&stack, &stack.token("alice")).await;
    assert!(
        quota["tokensUsedToday"].as_i64().unwrap_or(0) > 0,
        "a turn cut short after it answered is charged an estimate: {quota}"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn a_turn_cut_short_at_the_deadline_gives_its_slot_back() {
    let stack = stack_with(resolver(), |c| {
        one_slot(c);
        c.function_timeout = Duration::from_secs(5);
        c.bedrock.scripted_tokens_per_second = 20.0;
    })
    .await;
    let chunks = assert_slot_returned(&stack, "turn-d", 2000).await;
    assert_eq!(
        chunks.last().and_then(|c| c.stop_reason.as_deref()),
        Some("deadline")
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn a_cancelled_turn_gives_its_slot_back() {
    let stack = stack_with(resolver(), |c| {
        one_slot(c);
        c.bedrock.scripted_tokens_per_second = 20.0;
    })
    .await;
    let token = stack.token("alice");
    let Started {
        mut subscription,
        mut outcomes,
        ..
    } = start_turn(&stack, &token, ("conv-e", "turn-c"), 500).await;
    cancel_after_first_chunk(&stack, &token, &mut subscription, ("conv-e", "turn-c")).await;
    next_outcome(&mut outcomes)
        .await
        .expect("the invocation succeeds");
    assert_eq!(slots(&stack, "alice").await, Vec::<String>::new());
    let quota = until_in_flight(&stack, &token, 0).await;
    assert!(
        quota["tokensUsedToday"].as_i64().unwrap_or(0) > 0,
        "a cancelled turn is charged what it streamed: {quota}"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn a_repeated_prompt_takes_no_second_slot_and_gives_back_what_it_took() {
    let stack = stack_with(resolver(), |c| {
        one_slot(c);
        c.bedrock.scripted_tokens_per_second = 40.0;
        // The repeat waits out the first delivery's lease before it reads
        // the claim again: a short one keeps the test short.
        c.function_environment
            .push(("CLAIM_LEASE_SECONDS".into(), "3".into()));
    })
    .await;
    let token = stack.token("alice");
    let Started {
        mut subscription,
        mut outcomes,
        ..
    } = start_turn(&stack, &token, ("conv-e", "turn-r"), 40).await;
    until_in_flight(&stack, &token, 1).await;
    // The same turn again while it runs: accepted, on the slot it holds.
    let again = send_prompt(&stack, &token, "conv-e", "turn-r", "Once.", Some(40)).await;
    assert!(again.get("errors").is_none(), "{again}");
    collect_turn(&mut subscription, "turn-r").await;
    let ends = [
        next_outcome(&mut outcomes).await,
        next_outcome(&mut outcomes).await,
    ];
    let duplicates = ends
        .iter()
        .filter(|end| end.as_ref().is_ok_and(|v| v["duplicate"] == true))
        .count();
    assert_eq!(duplicates, 1, "{ends:?}");
    assert_eq!(slots(&stack, "alice").await, Vec::<String>::new());

    // And again after it ended: the repeat takes the slot, streams nothing,
    // and gives it back.
    let late = send_prompt(&stack, &token, "conv-e", "turn-r", "Once.", Some(40)).await;
    assert!(late.get("errors").is_none(), "{late}");
    let end = next_outcome(&mut outcomes)
        .await
        .expect("the repeat succeeds");
    assert_eq!(end["duplicate"], true, "{end}");
    assert_eq!(slots(&stack, "alice").await, Vec::<String>::new());
    until_in_flight(&stack, &token, 0).await;
    stack.shutdown().await;
}

#[tokio::test]
async fn a_slot_whose_environment_died_frees_itself_by_expiry() {
    let stack = stack_with(resolver(), |c| {
        c.api_environment = vec![
            ("QUOTA_MAX_TURNS_IN_FLIGHT".into(), "1".into()),
            ("TURN_SLOT_SECONDS".into(), "10".into()),
        ];
        // No retry ends the turn: only the slot's expiry frees it.
        c.max_retry_attempts = 0;
        c.concurrency = 1;
        c.bedrock.scripted_tokens_per_second = 400.0;
        c.bedrock.fault = Some(Fault::Stall { after_deltas: 4 });
    })
    .await;
    let token = stack.token("alice");
    let Started {
        mut subscription, ..
    } = start_turn(&stack, &token, ("conv-k", "turn-k"), 50).await;
    next_chunk(
        &mut subscription,
        tokio::time::Instant::now() + TURN_TIMEOUT,
    )
    .await;
    let pid = stack.lambda.worker_pids()[0];
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());

    let body = send_prompt(&stack, &token, "conv-k", "turn-next", "Hello?", Some(5)).await;
    assert_eq!(refusal(&body).0, "TooManyTurns", "still held: {body}");
    until_in_flight(&stack, &token, 0).await;
    stack.bedrock.set_fault(None);
    let body = send_prompt(&stack, &token, "conv-k", "turn-next", "Hello?", Some(5)).await;
    assert!(
        body.get("errors").is_none(),
        "the expired slot is free: {body}"
    );
    let held = slots(&stack, "alice").await;
    assert!(
        !held.contains(&"conv-k#turn-k".to_owned()),
        "the expired slot is gone: {held:?}"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn a_turn_that_ends_gives_its_slot_back_and_counts_bedrocks_usage() {
    let stack = stack_with(resolver(), |c| {
        one_slot(c);
        c.bedrock.scripted_tokens_per_second = 400.0;
    })
    .await;
    let first = assert_slot_returned(&stack, "turn-1", 20).await;
    let second = assert_slot_returned(&stack, "turn-2", 20).await;
    let total: i64 = [first, second]
        .iter()
        .filter_map(|chunks| chunks.last().and_then(|c| c.usage.as_ref()))
        .map(|u| u.total_tokens)
        .sum();
    let quota = my_quota(&stack, &stack.token("alice")).await;
    assert_eq!(quota["tokensUsedToday"], total, "{quota}");
    stack.shutdown().await;
}

#[tokio::test]
async fn a_turn_that_ends_on_a_new_day_counts_for_that_day() {
    let stack = stack_with(resolver(), |c| {
        one_slot(c);
        c.bedrock.scripted_tokens_per_second = 40.0;
    })
    .await;
    let token = stack.token("alice");
    let Started {
        mut subscription,
        mut outcomes,
        ..
    } = start_turn(&stack, &token, ("conv-n", "turn-n"), 40).await;
    // While it runs, the item's day becomes an earlier one with its count,
    // as when a turn started before midnight ends after it.
    stack
        .dynamodb
        .as_ref()
        .expect("the local DynamoDB started")
        .client()
        .update_item()
        .table_name(devstack::CONVERSATIONS_TABLE)
        .key("pk", AttributeValue::S(devstack::cognito::sub_for("alice")))
        .key("sk", AttributeValue::S("QUOTA".into()))
        .update_expression("SET quotaDay = :then, tokensUsed = :lots")
        .expression_attribute_values(":then", AttributeValue::S("2000-01-01".into()))
        .expression_attribute_values(":lots", AttributeValue::N("99999".into()))
        .send()
        .await
        .expect("UpdateItem");
    let chunks = collect_turn(&mut subscription, "turn-n").await;
    next_outcome(&mut outcomes)
        .await
        .expect("the turn succeeds");
    let total = chunks
        .last()
        .and_then(|c| c.usage.as_ref())
        .expect("usage")
        .total_tokens;
    let quota = until_in_flight(&stack, &token, 0).await;
    assert_eq!(
        quota["tokensUsedToday"], total,
        "today's count starts from this turn: {quota}"
    );
    stack.shutdown().await;
}
