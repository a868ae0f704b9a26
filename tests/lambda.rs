//! The resolver as Lambda runs it, over the real path: environments that are
//! frozen between invocations, start on demand up to the concurrency limit
//! and retire when idle, are killed at the function timeout (the retry then
//! ends the turn), and a cancellation that still works after a freeze longer
//! than AppSync's keep-alive window.

mod common;

use std::time::{Duration, Instant};

use appsync_client::{CANCEL_TURN, Chunk};
use common::*;
use devstack::Stack;
use devstack::bedrock::scripted_answer;
use serde_json::json;

const PROMPT: &str = "Tell me about execution environments.";

/// The state letter of `/proc/{pid}/stat` (`T`: stopped, `S`/`R`: running).
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) S ...`: the state follows the last `)`.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn text_of(chunks: &[Chunk]) -> String {
    let mut sorted = chunks.to_vec();
    sorted.sort_by_key(|c| c.seq);
    sorted.iter().map(|c| c.text.as_str()).collect()
}

/// Sends a prompt and waits for its whole turn on `subscription`.
async fn turn(
    stack: &Stack,
    token: &str,
    subscription: &mut appsync_client::Subscription,
    conversation: &str,
    turn: &str,
) -> Vec<Chunk> {
    send_prompt(stack, token, conversation, turn, PROMPT, Some(20)).await;
    collect_turn(subscription, turn).await
}

/// Waits until `done` holds, polling every 20 ms; false after `within`.
async fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

#[tokio::test]
async fn an_environment_is_frozen_between_invocations_and_thawed_for_the_next() {
    let stack = stack_with(resolver(), |c| c.bedrock.scripted_tokens_per_second = 0.0).await;
    // The template's variables reach the function, under the devstack's own.
    let environment = &stack.lambda.config().environment;
    let var = |name: &str| {
        environment
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(var("DEFAULT_MAX_TOKENS"), Some("1024"));
    assert_eq!(var("COALESCE_STRATEGY"), Some("adaptive"));
    assert_eq!(var("BEDROCK_MODEL_ID"), Some("scripted"));
    assert_eq!(stack.lambda.config().memory_size_mb, 256);
    assert_eq!(stack.lambda.config().timeout, Duration::from_secs(300));

    let token = stack.token("alice");
    let client = connect(&stack, &token).await;
    let mut subscription = subscribe(&client, "conv-freeze").await;
    assert!(
        stack.lambda.worker_pids().is_empty(),
        "no environment before the first invocation"
    );
    let first = turn(&stack, &token, &mut subscription, "conv-freeze", "turn-1").await;
    assert_eq!(text_of(&first), scripted_answer(PROMPT, Some(20)).0);

    let pids = stack.lambda.worker_pids();
    assert_eq!(pids.len(), 1);
    let pid = pids[0];
    assert!(
        eventually(Duration::from_secs(5), || process_state(pid) == Some('T')).await,
        "the environment is frozen after its response: {:?}",
        process_state(pid)
    );
    // Nothing of the turn was left running into the freeze: its onCancel
    // subscription was stopped before the response.
    assert_eq!(stack.appsync.pubsub.listening_for("cancelTurn"), 0);

    let second = turn(&stack, &token, &mut subscription, "conv-freeze", "turn-2").await;
    assert_eq!(text_of(&second), scripted_answer(PROMPT, Some(20)).0);
    assert_eq!(
        stack.lambda.worker_pids(),
        [pid],
        "the warm environment was reused"
    );
    assert_eq!(stack.lambda.cold_starts(), 1);
    assert!(eventually(Duration::from_secs(5), || process_state(pid) == Some('T')).await);
    stack.shutdown().await;
}

#[tokio::test]
async fn environments_scale_up_to_the_limit_and_retire_when_idle() {
    const USERS: usize = 5;
    const LIMIT: usize = 3;
    let stack = stack_with(resolver(), |c| {
        c.concurrency = LIMIT;
        c.idle_timeout = Duration::from_secs(2);
        c.bedrock.scripted_tokens_per_second = 40.0;
        // One user's five turns at once: past the default quota of three.
        c.api_environment = vec![("QUOTA_MAX_TURNS_IN_FLIGHT".into(), "10".into())];
    })
    .await;
    let token = stack.token("alice");
    let client = connect(&stack, &token).await;
    let mut subscriptions = Vec::new();
    for user in 0..USERS {
        subscriptions.push(subscribe(&client, &format!("conv-scale-{user}")).await);
    }
    for user in 0..USERS {
        let conversation = format!("conv-scale-{user}");
        send_prompt(&stack, &token, &conversation, "turn-s", PROMPT, Some(20)).await;
    }
    let expected = scripted_answer(PROMPT, Some(20)).0;
    for subscription in &mut subscriptions {
        let chunks = collect_turn(subscription, "turn-s").await;
        assert_eq!(text_of(&chunks), expected);
    }
    // Three environments started for five turns: two waited in the queue.
    assert_eq!(stack.lambda.cold_starts(), LIMIT as u64);

    // Idle for longer than the idle time: every environment is shut down,
    // and the next turn starts a new one.
    assert!(
        eventually(Duration::from_secs(10), || stack
            .lambda
            .worker_pids()
            .is_empty())
        .await,
        "idle environments retire: {:?}",
        stack.lambda.worker_pids()
    );
    let chunks = turn(
        &stack,
        &token,
        &mut subscriptions[0],
        "conv-scale-0",
        "turn-t",
    )
    .await;
    assert_eq!(text_of(&chunks), expected);
    assert_eq!(stack.lambda.cold_starts(), LIMIT as u64 + 1);
    stack.shutdown().await;
}

#[tokio::test]
async fn never_more_environments_than_the_limit() {
    let stack = stack_with(resolver(), |c| {
        c.concurrency = 2;
        c.bedrock.scripted_tokens_per_second = 40.0;
        // One user's four turns at once: past the default quota of three.
        c.api_environment = vec![("QUOTA_MAX_TURNS_IN_FLIGHT".into(), "10".into())];
    })
    .await;
    let token = stack.token("alice");
    let client = connect(&stack, &token).await;
    let mut subscription = subscribe(&client, "conv-limit").await;
    for turn in ["turn-a", "turn-b", "turn-c", "turn-d"] {
        send_prompt(&stack, &token, "conv-limit", turn, PROMPT, Some(20)).await;
    }
    let mut most = 0;
    let mut finished = 0;
    let until = tokio::time::Instant::now() + TURN_TIMEOUT;
    while finished < 4 {
        most = most.max(stack.lambda.worker_pids().len());
        if next_chunk(&mut subscription, until).await.done {
            finished += 1;
        }
    }
    assert!(most <= 2, "{most} environments ran at once");
    assert_eq!(stack.lambda.cold_starts(), 2);
    stack.shutdown().await;
}

#[tokio::test]
async fn an_event_older_than_its_maximum_age_is_dropped_unrun() {
    let stack = stack_with(resolver(), |c| {
        c.concurrency = 1;
        c.max_event_age = Duration::from_secs(1);
        c.bedrock.scripted_tokens_per_second = 10.0;
    })
    .await;
    let token = stack.token("alice");
    let client = connect(&stack, &token).await;
    let mut busy = subscribe(&client, "conv-busy").await;
    let mut late = subscribe(&client, "conv-late").await;
    let mut outcomes = stack.lambda.outcomes();
    send_prompt(&stack, &token, "conv-busy", "turn-busy", PROMPT, Some(20)).await;
    send_prompt(&stack, &token, "conv-late", "turn-late", PROMPT, Some(20)).await;
    // The only environment is busy for about two seconds: the second event
    // ages out in the queue.
    let dropped = tokio::time::timeout(Duration::from_secs(10), outcomes.recv())
        .await
        .expect("an outcome")
        .expect("outcome");
    let error = dropped.result.expect_err("dropped");
    assert_eq!(error["errorType"], "EventAgeExceeded");
    assert!(dropped.report.environment.is_none(), "it never ran");
    collect_turn(&mut busy, "turn-busy").await;
    let nothing = tokio::time::timeout(Duration::from_secs(1), late.next()).await;
    assert!(nothing.is_err(), "the dropped turn published: {nothing:?}");
    assert_eq!(stack.lambda.cold_starts(), 1);
    stack.shutdown().await;
}

#[tokio::test]
async fn a_hung_turn_is_killed_at_the_timeout_and_its_retry_ends_it_interrupted() {
    let data = std::env::temp_dir().join(format!("lambda-timeout-{}", uuid::Uuid::new_v4()));
    let stack = stack_with(resolver(), |c| {
        c.function_timeout = Duration::from_secs(6);
        c.bedrock.scripted_tokens_per_second = 20.0;
        c.dynamodb = Some(dynamodb_config(&data));
        c.function_environment
            .push(("CLAIM_LEASE_SECONDS".into(), "3".into()));
    })
    .await;
    let token = stack.token("alice");
    let client = connect(&stack, &token).await;
    let mut subscription = subscribe(&client, "conv-hung").await;
    let mut outcomes = stack.lambda.outcomes();
    send_prompt(&stack, &token, "conv-hung", "turn-h", PROMPT, Some(200)).await;
    let until = tokio::time::Instant::now() + TURN_TIMEOUT;
    let mut chunks = vec![next_chunk(&mut subscription, until).await];
    // The process hangs mid-turn (stopped from outside, as a stuck process
    // would be): only Lambda's timeout can end it.
    let pid = stack.lambda.worker_pids()[0];
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(stopped.success());
    let hung_at = Instant::now();

    let timed_out = tokio::time::timeout(Duration::from_secs(15), outcomes.recv())
        .await
        .expect("the invocation ends")
        .expect("outcome");
    let error = timed_out.result.expect_err("timed out");
    assert_eq!(error["errorType"], "Sandbox.Timedout", "{error}");
    assert!(
        error["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("Task timed out after 6.00 seconds")),
        "{error}"
    );
    assert!(hung_at.elapsed() < Duration::from_secs(7));
    assert!(
        eventually(Duration::from_secs(2), || !stack
            .lambda
            .worker_pids()
            .contains(&pid))
        .await,
        "the timed-out environment is gone"
    );

    // The retry (a new environment) finds the turn's claim, waits out its
    // lease, and ends the turn for its subscriber. The process hung within
    // the chunk writer's linger, so the ending may repeat a `seq` it already
    // published: the assembler still finishes on it.
    while !chunks.last().is_some_and(|c| c.done) {
        chunks.push(next_chunk(&mut subscription, until).await);
    }
    let mut assembler = appsync_client::TurnAssembler::new();
    for chunk in chunks.clone() {
        assembler.push(chunk);
    }
    let last = assembler.finished().expect("the turn ended on screen");
    let error = last.error.as_ref().expect("an error");
    assert_eq!(error.error_type, "Interrupted");
    assert!(error.retryable);
    assert_eq!(chunks.iter().filter(|c| c.done).count(), 1);
    assert_eq!(stack.lambda.cold_starts(), 2);
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn an_environment_over_its_memory_size_is_killed() {
    let stack = stack_with(resolver(), |c| {
        // Less than any process of the resolver holds once it runs.
        c.function_memory_mb = 1;
        c.max_retry_attempts = 0;
    })
    .await;
    let token = stack.token("alice");
    let mut outcomes = stack.lambda.outcomes();
    send_prompt(&stack, &token, "conv-oom", "turn-oom", PROMPT, Some(20)).await;
    let outcome = tokio::time::timeout(Duration::from_secs(15), outcomes.recv())
        .await
        .expect("the invocation ends")
        .expect("outcome");
    let error = outcome.result.expect_err("killed");
    assert_eq!(error["errorType"], "Runtime.OutOfMemory", "{error}");
    assert!(outcome.report.max_memory_used_mb.is_none_or(|mb| mb > 1));
    stack.shutdown().await;
}

#[tokio::test]
async fn cancellation_works_after_a_freeze_longer_than_the_keep_alive_window() {
    let stack = stack_with(resolver(), |c| {
        c.appsync.connection_timeout_ms = 1_500;
        c.appsync.keep_alive = Duration::from_millis(500);
        c.bedrock.scripted_tokens_per_second = 20.0;
    })
    .await;
    let token = stack.token("alice");
    let client = connect(&stack, &token).await;
    let mut subscription = subscribe(&client, "conv-thaw").await;
    // The first turn opens the environment's kept onCancel connection.
    send_prompt(&stack, &token, "conv-thaw", "turn-1", PROMPT, Some(20)).await;
    let listening = || stack.appsync.pubsub.connections_listening_for("cancelTurn");
    assert!(eventually(Duration::from_secs(3), || listening().len() == 1).await);
    let kept = listening()[0];
    collect_turn(&mut subscription, "turn-1").await;
    let pid = stack.lambda.worker_pids()[0];
    assert!(eventually(Duration::from_secs(5), || process_state(pid) == Some('T')).await);
    // Frozen for twice the connection timeout.
    tokio::time::sleep(Duration::from_secs(3)).await;

    send_prompt(&stack, &token, "conv-thaw", "turn-2", PROMPT, Some(4000)).await;
    let until = tokio::time::Instant::now() + TURN_TIMEOUT;
    let first = next_chunk(&mut subscription, until).await;
    assert!(!first.done);
    assert_eq!(
        stack.lambda.worker_pids(),
        [pid],
        "the thawed environment runs it"
    );
    // The turn listens for cancellation once its onCancel subscription is
    // up, on a new connection: the kept one outlived its keep-alive window
    // while frozen (Lambda may have purged it), so it was not trusted.
    assert!(
        eventually(Duration::from_secs(3), || listening().len() == 1).await,
        "the thawed turn subscribed to onCancel"
    );
    assert_ne!(
        listening()[0],
        kept,
        "a fresh connection after the long freeze"
    );
    let body = json!({"query": CANCEL_TURN, "variables": {"conversationId": "conv-thaw", "turnId": "turn-2"}});
    let (status, body) = post(&stack, &[("authorization", &token)], &body).await;
    assert_eq!(status, 200, "{body}");
    let cancelled_at = Instant::now();
    let last = loop {
        let chunk = next_chunk(&mut subscription, until).await;
        if chunk.done {
            break chunk;
        }
    };
    assert_eq!(last.stop_reason.as_deref(), Some("cancelled"), "{last:?}");
    assert!(cancelled_at.elapsed() < Duration::from_secs(2));
    stack.shutdown().await;
}
