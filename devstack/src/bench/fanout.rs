//! `devstack bench --fanout 1,100,1000`: one turn to N subscribers of the same
//! conversation. For each chunk, the spread between the first and the last
//! subscriber to receive it (p50, p99, max), and whether every subscriber got
//! every chunk exactly once.
//!
//! Place in the data path: resolver --publishChunk--> AppSync -> **fan-out**
//! -> N real-time connections -> N subscribers. Every subscriber is its own
//! WebSocket connection in this process, so a receive time is taken by a
//! task of its own as soon as its frame is read (one clock for all).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use super::BenchConfig;
use super::measure::percentile;
use crate::{Stack, StackConfig};

/// Output tokens of the turn.
const TOKENS: u32 = 200;
/// The scripted model's pace, tokens per second.
const TOKENS_PER_SECOND: f64 = 50.0;

/// One turn fanned out to `subscribers`.
#[derive(Clone, Debug, Serialize)]
pub struct FanoutResult {
    /// Subscribers (N), each on its own connection.
    pub subscribers: usize,
    /// Chunks of the turn (its terminal chunk included): the terminal
    /// chunk's `seq` + 1.
    pub chunks: usize,
    /// Median over chunks of (last receive - first receive), milliseconds.
    pub spread_p50_ms: f64,
    /// 99th percentile of the same, milliseconds.
    pub spread_p99_ms: f64,
    /// Largest spread, milliseconds.
    pub spread_max_ms: f64,
    /// Chunks (`seq` 0 to the terminal one) a subscriber never received,
    /// summed over subscribers.
    pub lost: usize,
    /// Chunks some subscriber received more than once (summed).
    pub duplicated: usize,
}

/// For each N in `counts`: a fresh stack, N subscribers, one turn.
///
/// # Errors
/// A stack that does not start, a subscriber that cannot connect, or a turn
/// that does not end within two minutes.
pub async fn run_fanout(
    config: &BenchConfig,
    counts: &[usize],
    progress: impl Fn(&str),
) -> anyhow::Result<Vec<FanoutResult>> {
    let mut results = Vec::new();
    for &n in counts {
        progress(&format!("one turn to {n} subscribers"));
        results.push(fanout_case(config, n).await?);
    }
    Ok(results)
}

async fn fanout_case(config: &BenchConfig, n: usize) -> anyhow::Result<FanoutResult> {
    if n == 0 {
        bail!("a fan-out needs at least one subscriber");
    }
    let mut stack_config = StackConfig::new(config.function.clone());
    stack_config.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    stack_config.default_model = "scripted".into();
    stack_config.bedrock.scripted_tokens_per_second = TOKENS_PER_SECOND;
    stack_config.function_environment = vec![("RUST_LOG".into(), "warn".into())];
    let stack = Stack::start(stack_config).await?;
    let result = measure(&stack, n).await;
    stack.shutdown().await;
    result
}

async fn measure(stack: &Stack, n: usize) -> anyhow::Result<FanoutResult> {
    let token = stack.token("fanout");
    let conversation = "bench-fanout";
    let mut receivers = Vec::with_capacity(n);
    for _ in 0..n {
        let client = stack.connect_as(&token).await.context("connect")?;
        let subscription = client
            .subscribe(
                appsync_client::ON_CHUNK,
                serde_json::json!({"conversationId": conversation}),
            )
            .await
            .context("subscribe")?;
        receivers.push(tokio::spawn(receive(client, subscription)));
    }
    let variables = appsync_client::send_prompt_variables(
        conversation,
        "turn-fanout",
        "Tell me about fan-out.",
        None,
        Some(TOKENS),
    );
    appsync_client::send_prompt(
        &reqwest::Client::new(),
        &stack.graphql_url(),
        &token,
        variables,
    )
    .await
    .context("sendPrompt")?;
    let mut arrivals = Vec::with_capacity(n);
    for receiver in receivers {
        arrivals.push(receiver.await.context("a subscriber task")??);
    }
    Ok(summarise(n, &arrivals))
}

/// One subscriber's receipts, `(seq, when)`, until the terminal chunk.
async fn receive(
    client: appsync_client::RealtimeClient,
    mut subscription: appsync_client::Subscription,
) -> anyhow::Result<Vec<(i64, Instant)>> {
    let mut seen = Vec::new();
    loop {
        let payload = tokio::time::timeout(Duration::from_secs(120), subscription.next())
            .await
            .context("no chunk within 120 s")?
            .context("the subscription ended")?
            .context("a subscription error")?;
        let at = Instant::now();
        let chunk = appsync_client::chunk_from_payload(&payload).context("not a chunk")?;
        seen.push((chunk.seq, at));
        if chunk.done {
            break;
        }
    }
    drop(client);
    Ok(seen)
}

fn summarise(n: usize, arrivals: &[Vec<(i64, Instant)>]) -> FanoutResult {
    let mut by_seq: BTreeMap<i64, Vec<Instant>> = BTreeMap::new();
    let mut duplicated = 0;
    for receipts in arrivals {
        let mut own = std::collections::BTreeSet::new();
        for &(seq, at) in receipts {
            if !own.insert(seq) {
                duplicated += 1;
            }
            by_seq.entry(seq).or_default().push(at);
        }
    }
    // Chunks are numbered 0, 1, 2, ... up to the terminal one, which every
    // subscriber waited for: a number nobody received is lost for all.
    let chunks: i64 = by_seq.keys().next_back().map_or(0, |last| last + 1);
    let lost = arrivals
        .iter()
        .map(|receipts| {
            let own: std::collections::BTreeSet<i64> = receipts.iter().map(|r| r.0).collect();
            (0..chunks).filter(|seq| !own.contains(seq)).count()
        })
        .sum();
    let spreads: Vec<Duration> = by_seq
        .values()
        .map(|times| {
            let first = times.iter().min().copied();
            let last = times.iter().max().copied();
            match (first, last) {
                (Some(first), Some(last)) => last - first,
                _ => Duration::ZERO,
            }
        })
        .collect();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    FanoutResult {
        subscribers: n,
        chunks: usize::try_from(chunks).unwrap_or_default(),
        spread_p50_ms: ms(percentile(&spreads, 50.0)),
        spread_p99_ms: ms(percentile(&spreads, 99.0)),
        spread_max_ms: spreads.iter().copied().map(ms).fold(0.0, f64::max),
        lost,
        duplicated,
    }
}
