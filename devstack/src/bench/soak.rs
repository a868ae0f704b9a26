//! `devstack bench --soak USERS:MINUTES`: K users in turns, one after another
//! each, for S minutes, while faults are injected: publishes answered 429,
//! publishes whose connection drops after they took effect, model exceptions
//! mid-answer, and turns cancelled by their user. It ends with the counts that
//! matter: chunks lost, chunks whose text disagrees, and the memory of the
//! devstack and of the function's execution environments, early and at the end.
//!
//! Place in the data path: the whole of it, over time: `sendPrompt` ->
//! AppSync -> Lambda -> Bedrock (scripted, faults) -> coalescer -> publisher
//! (faults) -> AppSync -> subscribers.
//!
//! Each turn is judged by what its subscriber received, with repeats of a
//! `seq` dropped as a client drops them (a publish whose answer was lost is
//! sent again, and AppSync delivers both):
//! - **lost**: a `seq` missing before the terminal chunk, or no terminal chunk;
//! - **conflicting**: a repeated `seq` with other content, or text that is not
//!   the start of the model's answer (the whole of it, for a turn that ended
//!   normally).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use appsync_client::Chunk;
use serde::Serialize;

use super::BenchConfig;
use crate::appsync::faults::PublishFault;
use crate::bedrock::{Fault, StreamException, scripted_answer};
use crate::{Stack, StackConfig};

/// Output tokens of each turn.
const TOKENS: u32 = 60;
/// The scripted model's pace, tokens per second.
const TOKENS_PER_SECOND: f64 = 300.0;
/// Every this many turns of a user, the user cancels the turn after its
/// first chunk.
const CANCEL_EVERY: u64 = 5;
/// How often a fault is injected.
const FAULT_EVERY: Duration = Duration::from_millis(400);
/// How long a turn may take before it counts as lost.
const TURN_TIMEOUT: Duration = Duration::from_secs(60);

/// The soak's counts.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SoakResult {
    /// Users (K), each in turns one after another.
    pub users: usize,
    /// How long the users kept sending, in seconds (S minutes).
    pub seconds: u64,
    /// Turns sent and judged.
    pub turns: u64,
    /// Turns that ended normally (`end_turn`, `max_tokens`).
    pub completed: u64,
    /// Turns that ended with an error chunk (model exception, delivery).
    pub failed: u64,
    /// Turns that ended `cancelled`.
    pub cancelled: u64,
    /// Chunks received, repeats included.
    pub chunks: u64,
    /// Repeats of a `seq` with the same content (a publish sent again after
    /// its answer was lost); a client drops them.
    pub repeats: u64,
    /// Chunks lost (see the module docs): the target is 0.
    pub lost: u64,
    /// Chunks or turns whose text disagrees (see the module docs): the target is 0.
    pub conflicting: u64,
    /// Publishes answered 429.
    pub injected_429s: u64,
    /// Publishes whose connection dropped after they took effect.
    pub injected_drops: u64,
    /// Model streams ended by an exception.
    pub injected_model_exceptions: u64,
    /// The devstack's resident memory after the first tenth of the run, in MB.
    pub devstack_rss_early_mb: f64,
    /// The devstack's resident memory at the end, in MB.
    pub devstack_rss_end_mb: f64,
    /// The execution environments' resident memory (summed) after the first
    /// tenth of the run, in MB.
    pub workers_rss_early_mb: f64,
    /// The same at the end, in MB.
    pub workers_rss_end_mb: f64,
    /// Execution environments running at the end.
    pub environments: usize,
}

/// How one turn went, from its subscriber's side.
#[derive(Default)]
struct Judged {
    ending: Ending,
    chunks: u64,
    repeats: u64,
    lost: u64,
    conflicting: u64,
}

#[derive(Default, PartialEq)]
enum Ending {
    #[default]
    Lost,
    Completed,
    Failed,
    Cancelled,
}

/// Runs the soak: `users` users for `minutes` minutes on a fresh stack.
///
/// # Errors
/// A stack that does not start, or a user who cannot connect or subscribe.
pub async fn run_soak(
    config: &BenchConfig,
    users: usize,
    minutes: f64,
    progress: impl Fn(&str),
) -> anyhow::Result<SoakResult> {
    let stack = Arc::new(start_stack(config, users).await?);
    let duration = Duration::from_secs_f64(minutes * 60.0);
    let until = Instant::now() + duration;
    progress(&format!("{users} users for {minutes} minutes, with faults"));
    let injected = Arc::new(Injected::default());
    let faults = tokio::spawn(inject_faults(stack.clone(), injected.clone(), until));
    let early = {
        let stack = stack.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration / 10).await;
            memory(&stack)
        })
    };
    let runs = (0..users).map(|user| user_turns(&stack, format!("soak-{user}"), until));
    let judged = futures_util::future::try_join_all(runs).await?;
    let _ = faults.await;
    let (devstack_early, workers_early) = early.await.context("memory sample")?;
    let (devstack_end, workers_end) = memory(&stack);
    let mut result = SoakResult {
        users,
        seconds: duration.as_secs(),
        devstack_rss_early_mb: devstack_early,
        devstack_rss_end_mb: devstack_end,
        workers_rss_early_mb: workers_early,
        workers_rss_end_mb: workers_end,
        environments: stack.lambda.worker_pids().len(),
        injected_429s: injected.status_429.load(Ordering::Relaxed),
        injected_drops: injected.drops.load(Ordering::Relaxed),
        injected_model_exceptions: injected.model_exceptions.load(Ordering::Relaxed),
        ..SoakResult::default()
    };
    for turn in judged.into_iter().flatten() {
        add(&mut result, &turn);
    }
    if let Ok(stack) = Arc::try_unwrap(stack) {
        stack.shutdown().await;
    }
    Ok(result)
}

fn add(result: &mut SoakResult, turn: &Judged) {
    result.turns += 1;
    result.chunks += turn.chunks;
    result.repeats += turn.repeats;
    result.lost += turn.lost;
    result.conflicting += turn.conflicting;
    match turn.ending {
        Ending::Completed => result.completed += 1,
        Ending::Failed => result.failed += 1,
        Ending::Cancelled => result.cancelled += 1,
        Ending::Lost => {}
    }
}

async fn start_stack(config: &BenchConfig, users: usize) -> anyhow::Result<Stack> {
    let mut stack_config = StackConfig::new(config.function.clone());
    stack_config.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    stack_config.concurrency = users;
    stack_config.default_model = "scripted".into();
    stack_config.bedrock.scripted_tokens_per_second = TOKENS_PER_SECOND;
    stack_config.function_environment = vec![("RUST_LOG".into(), "warn".into())];
    // The soak measures the relay, not the quotas: no user runs out of tokens.
    stack_config.api_environment = vec![("QUOTA_DAILY_TOKENS".into(), "1000000000".into())];
    Stack::start(stack_config).await
}

/// Faults injected so far.
#[derive(Default)]
struct Injected {
    status_429: AtomicU64,
    drops: AtomicU64,
    model_exceptions: AtomicU64,
}

/// Until `until`, every [`FAULT_EVERY`] one fault in turn: the next publish
/// answered 429, the next publish dropped after it took effect, or the model
/// streams started in the next moment ending with an exception.
async fn inject_faults(stack: Arc<Stack>, injected: Arc<Injected>, until: Instant) {
    let mut round = 0u64;
    while Instant::now() < until {
        tokio::time::sleep(FAULT_EVERY).await;
        round += 1;
        match round % 3 {
            0 => {
                stack
                    .appsync
                    .publish_faults
                    .push(PublishFault::Status(429), 1);
                injected.status_429.fetch_add(1, Ordering::Relaxed);
            }
            1 => {
                stack
                    .appsync
                    .publish_faults
                    .push(PublishFault::DropAfterExecute, 1);
                injected.drops.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                let before = stack.bedrock.requests_served();
                stack.bedrock.set_fault(Some(Fault::Exception {
                    after_deltas: 3,
                    exception: StreamException::ModelStreamError,
                    message: "injected by the soak".into(),
                }));
                tokio::time::sleep(FAULT_EVERY / 4).await;
                stack.bedrock.set_fault(None);
                let hit = stack.bedrock.requests_served().saturating_sub(before);
                injected.model_exceptions.fetch_add(hit, Ordering::Relaxed);
            }
        }
    }
    stack.appsync.publish_faults.clear();
    stack.bedrock.set_fault(None);
}

/// The devstack's and the environments' resident memory, in MB.
fn memory(stack: &Stack) -> (f64, f64) {
    let mb = |pid: u32| crate::lambda::status_kb(pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0;
    let workers = stack.lambda.worker_pids().into_iter().map(mb).sum();
    (mb(std::process::id()), workers)
}

/// One user's turns, one after another, until `until`.
async fn user_turns(stack: &Stack, user: String, until: Instant) -> anyhow::Result<Vec<Judged>> {
    let http = reqwest::Client::new();
    let token = stack.token(&user);
    let client = stack.connect_as(&token).await.context("connect")?;
    let conversation = format!("soak-{user}");
    let mut subscription = client
        .subscribe(
            appsync_client::ON_CHUNK,
            serde_json::json!({"conversationId": conversation}),
        )
        .await
        .context("subscribe")?;
    let mut judged = Vec::new();
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let turn = format!("turn-{n}");
        let prompt = format!("Soak turn {n}.");
        let variables = appsync_client::send_prompt_variables(
            &conversation,
            &turn,
            &prompt,
            None,
            Some(TOKENS),
        );
        appsync_client::send_prompt(&http, &stack.graphql_url(), &token, variables)
            .await
            .context("sendPrompt")?;
        let cancel = n
            .is_multiple_of(CANCEL_EVERY)
            .then_some((&http, &conversation));
        let chunks = receive_turn(stack, &token, &mut subscription, &turn, cancel).await;
        judged.push(judge(&chunks, &scripted_answer(&prompt, Some(TOKENS)).0));
    }
    Ok(judged)
}

/// The chunks of `turn` up to its terminal chunk (or the timeout); with
/// `cancel`, the turn is cancelled after its first chunk.
async fn receive_turn(
    stack: &Stack,
    token: &str,
    subscription: &mut appsync_client::Subscription,
    turn: &str,
    mut cancel: Option<(&reqwest::Client, &String)>,
) -> Vec<Chunk> {
    let deadline = tokio::time::Instant::now() + TURN_TIMEOUT;
    let mut chunks = Vec::new();
    loop {
        let next = tokio::time::timeout_at(deadline, subscription.next()).await;
        let Ok(Some(Ok(payload))) = next else {
            return chunks;
        };
        let Some(chunk) = appsync_client::chunk_from_payload(&payload) else {
            continue;
        };
        if chunk.turn_id != turn {
            continue;
        }
        if let Some((http, conversation)) = cancel.take() {
            let url = stack.graphql_url();
            let _ = appsync_client::cancel_turn(http, &url, token, conversation, turn).await;
        }
        let done = chunk.done;
        chunks.push(chunk);
        if done {
            return chunks;
        }
    }
}

/// Judges a turn's chunks against the model's whole answer.
fn judge(chunks: &[Chunk], answer: &str) -> Judged {
    let mut judged = Judged {
        chunks: chunks.len() as u64,
        ..Judged::default()
    };
    let mut by_seq: BTreeMap<i64, &Chunk> = BTreeMap::new();
    for chunk in chunks {
        match by_seq.get(&chunk.seq) {
            Some(seen) if *seen == chunk => judged.repeats += 1,
            Some(_) => judged.conflicting += 1,
            None => {
                by_seq.insert(chunk.seq, chunk);
            }
        }
    }
    let Some(terminal) = by_seq.values().find(|c| c.done).copied() else {
        judged.lost = (by_seq.len() as u64).max(1);
        return judged;
    };
    judged.lost = (0..=terminal.seq)
        .filter(|seq| !by_seq.contains_key(seq))
        .count() as u64;
    let text: String = by_seq.values().map(|c| c.text.as_str()).collect();
    judged.ending = match (terminal.error.is_some(), terminal.stop_reason.as_deref()) {
        (true, _) => Ending::Failed,
        (false, Some("cancelled")) => Ending::Cancelled,
        _ => Ending::Completed,
    };
    let whole = judged.ending == Ending::Completed;
    if (whole && text != answer) || !answer.starts_with(&text) {
        judged.conflicting += 1;
    }
    judged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(seq: i64, text: &str, done: bool) -> Chunk {
        Chunk {
            conversation_id: "c".into(),
            turn_id: "t".into(),
            owner: "o".into(),
            seq,
            text: text.into(),
            done,
            stop_reason: done.then(|| "end_turn".to_owned()),
            usage: None,
            error: None,
        }
    }

    #[test]
    fn a_whole_turn_with_a_repeat_is_neither_lost_nor_conflicting() {
        let chunks = [
            chunk(0, "a", false),
            chunk(0, "a", false),
            chunk(1, "b", true),
        ];
        let judged = judge(&chunks, "ab");
        assert_eq!((judged.repeats, judged.lost, judged.conflicting), (1, 0, 0));
    }

    #[test]
    fn a_gap_is_lost_and_wrong_text_conflicts() {
        let judged = judge(&[chunk(0, "a", false), chunk(2, "c", true)], "abc");
        assert_eq!((judged.lost, judged.conflicting), (1, 1));
        let judged = judge(&[chunk(0, "a", false), chunk(0, "x", false)], "a");
        assert_eq!((judged.lost, judged.conflicting), (1, 1));
        let judged = judge(&[chunk(0, "x", true)], "abc");
        assert_eq!((judged.lost, judged.conflicting), (0, 1));
    }
}
