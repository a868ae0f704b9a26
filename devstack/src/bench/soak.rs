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
//! Each turn is judged at the end of the run by everything its subscriber
//! received (late repeats of an earlier turn included), with repeats of a
//! `seq` dropped as a client drops them (a publish whose answer was lost is
//! sent again, and AppSync delivers both):
//! - **lost**: a `seq` missing before the terminal chunk, or no terminal chunk;
//! - **conflicting**: a repeated `seq` with other content, or text that is not
//!   the start of the model's answer (the whole of it, for a turn that ended
//!   normally).

use std::collections::{BTreeMap, HashMap};
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
/// Turns a user has finished before the oldest is judged: late repeats of a
/// turn come within milliseconds, well before.
const JUDGE_LAG: usize = 3;
/// How long each user keeps reading after their last turn, for late repeats.
const DRAIN: Duration = Duration::from_secs(1);
/// The error type of a turn ended by the injected model exception.
const INJECTED_ERROR_TYPE: &str = "ModelStreamError";

/// The soak's counts.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SoakResult {
    /// Users (K), each in turns one after another.
    pub users: usize,
    /// How long the users kept sending, in seconds (S minutes).
    pub seconds: u64,
    /// Turns sent and judged.
    pub turns: u64,
    /// Prompts `sendPrompt` refused (not judged; a quota slot still held by
    /// a turn that never ended would do it).
    pub refused: u64,
    /// Turns that ended normally (`end_turn`, `max_tokens`).
    pub completed: u64,
    /// Turns that ended with an error chunk (model exception, delivery).
    pub failed: u64,
    /// Of those, turns ended by the injected model exception.
    pub model_exceptions: u64,
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
    /// Moments (of a quarter of the fault interval) in which every model
    /// stream that started ended with an exception after 3 deltas.
    pub model_fault_windows: u64,
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
    injected: bool,
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
    let runs = futures_util::future::try_join_all(runs).await?;
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
        model_fault_windows: injected.model_windows.load(Ordering::Relaxed),
        ..SoakResult::default()
    };
    for (judged, refused) in runs {
        result.refused += refused;
        for turn in &judged {
            add(&mut result, turn);
        }
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
    result.model_exceptions += u64::from(turn.injected);
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
    model_windows: AtomicU64,
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
                stack.bedrock.set_fault(Some(Fault::Exception {
                    after_deltas: 3,
                    exception: StreamException::ModelStreamError,
                    message: "injected by the soak".into(),
                }));
                tokio::time::sleep(FAULT_EVERY / 4).await;
                stack.bedrock.set_fault(None);
                injected.model_windows.fetch_add(1, Ordering::Relaxed);
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

/// One user's turns, one after another, until `until`: each judged, and the
/// prompts refused.
async fn user_turns(
    stack: &Stack,
    user: String,
    until: Instant,
) -> anyhow::Result<(Vec<Judged>, u64)> {
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
    let mut received: HashMap<String, Vec<Chunk>> = HashMap::new();
    let mut answers = std::collections::VecDeque::new();
    let mut judged = Vec::new();
    let mut refused = 0;
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
        let url = stack.graphql_url();
        let sent = appsync_client::send_prompt(&http, &url, &token, variables).await;
        if sent.is_err() {
            refused += 1;
            tokio::time::sleep(FAULT_EVERY).await;
            continue;
        }
        let cancel = n.is_multiple_of(CANCEL_EVERY).then(|| Cancel {
            http: &http,
            url: stack.graphql_url(),
            token: &token,
            conversation: &conversation,
        });
        let deadline = tokio::time::Instant::now() + TURN_TIMEOUT;
        receive(
            &mut subscription,
            &mut received,
            deadline,
            Some((&turn, cancel)),
        )
        .await;
        answers.push_back((turn, scripted_answer(&prompt, Some(TOKENS)).0));
        // Judged a few turns late, so late repeats count, and dropped then,
        // so the bench's own memory (in the devstack's process) stays flat.
        while answers.len() > JUDGE_LAG {
            judge_oldest(&mut answers, &mut received, &mut judged);
        }
    }
    let drained = tokio::time::Instant::now() + DRAIN;
    receive(&mut subscription, &mut received, drained, None).await;
    while !answers.is_empty() {
        judge_oldest(&mut answers, &mut received, &mut judged);
    }
    Ok((judged, refused))
}

/// Judges the oldest turn not yet judged, and forgets its chunks.
fn judge_oldest(
    answers: &mut std::collections::VecDeque<(String, String)>,
    received: &mut HashMap<String, Vec<Chunk>>,
    judged: &mut Vec<Judged>,
) {
    if let Some((turn, answer)) = answers.pop_front() {
        let chunks = received.remove(&turn).unwrap_or_default();
        judged.push(judge(&chunks, &answer));
    }
}

/// A cancel to send after a turn's first chunk.
struct Cancel<'a> {
    http: &'a reqwest::Client,
    url: String,
    token: &'a str,
    conversation: &'a str,
}

/// Reads chunks into `received` by turn until `deadline`, or, with `until`,
/// until that turn's terminal chunk (cancelling it after its first chunk when
/// asked).
async fn receive(
    subscription: &mut appsync_client::Subscription,
    received: &mut HashMap<String, Vec<Chunk>>,
    deadline: tokio::time::Instant,
    mut until: Option<(&str, Option<Cancel<'_>>)>,
) {
    loop {
        let next = tokio::time::timeout_at(deadline, subscription.next()).await;
        let Ok(Some(Ok(payload))) = next else {
            return;
        };
        let Some(chunk) = appsync_client::chunk_from_payload(&payload) else {
            continue;
        };
        let ends = chunk.done;
        let turn = chunk.turn_id.clone();
        received.entry(turn.clone()).or_default().push(chunk);
        let Some((awaited, cancel)) = until.as_mut() else {
            continue;
        };
        if turn != *awaited {
            continue;
        }
        if let Some(c) = cancel.take() {
            let _ =
                appsync_client::cancel_turn(c.http, &c.url, c.token, c.conversation, awaited).await;
        }
        if ends {
            return;
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
        // The terminal chunk, and any gap before the last chunk that came.
        let last = by_seq.keys().next_back().copied().unwrap_or(-1);
        judged.lost = 1 + (0..=last).filter(|seq| !by_seq.contains_key(seq)).count() as u64;
        return judged;
    };
    judged.injected = terminal
        .error
        .as_ref()
        .is_some_and(|e| e.error_type == INJECTED_ERROR_TYPE);
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
