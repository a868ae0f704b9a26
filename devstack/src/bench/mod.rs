//! `devstack bench`: every coalescing strategy through the whole path, side by
//! side, on the same recorded-shape token stream, with a simulated publish
//! round trip; and the resolver's cold start, peak memory and binary size.
//!
//! Place in the data path: the whole of it, client --sendPrompt--> AppSync ->
//! Lambda (resolver) -> Bedrock (model) -> coalescer -> publisher -> AppSync
//! -> subscriber, measured at both ends.
//!
//! Each strategy runs in its own stack (the real resolver binary as the Lambda
//! function, `COALESCE_STRATEGY` in its environment), one after another so they
//! do not share the CPU. Emit times come from the Bedrock stand-in, receive
//! times from a real-time subscriber in the same process (one clock).

pub mod fanout;
pub mod measure;
pub mod soak;
pub mod store;
pub mod tcp_floor;
pub mod transports;
pub mod users;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use appsync_client::RealtimeClient;
use appsync_client::{Chunk, ON_CHUNK, send_prompt, send_prompt_variables};
use serde::Serialize;
use serde_json::json;

use crate::lambda::FunctionCommand;
use crate::{Stack, StackConfig};
use measure::{Arrival, added_delays, percentile, turn_cost};

/// The strategies of the public systems, and ours, as `COALESCE_STRATEGY` names them.
pub const STRATEGIES: [&str; 5] = [
    "per-delta",
    "fixed-deltas:6",
    "timer:300",
    "chars:100",
    "adaptive",
];

/// A model's pace.
#[derive(Clone, Debug, Serialize)]
pub struct Scenario {
    /// Short name, as in the report's `scenario` column.
    pub name: &'static str,
    /// What the model does, for the reader.
    pub description: &'static str,
    #[serde(skip)]
    gaps: Option<(Duration, Duration)>,
    #[serde(skip)]
    tokens_per_second: f64,
}

/// The recorded shape of a Claude-class stream, and a fast model.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "recorded",
            description: "1-3 tokens a delta, 20-50 ms between deltas",
            gaps: Some((Duration::from_millis(20), Duration::from_millis(50))),
            tokens_per_second: 0.0,
        },
        Scenario {
            name: "fast",
            description: "1-3 tokens a delta at 500 tokens/s",
            gaps: None,
            tokens_per_second: 500.0,
        },
    ]
}

/// What to run.
pub struct BenchConfig {
    /// The resolver binary, run as the Lambda function.
    pub function: FunctionCommand,
    /// The `COALESCE_STRATEGY` values to compare.
    pub strategies: Vec<String>,
    /// The simulated publish round trips to run each strategy at.
    pub round_trips: Vec<Duration>,
    /// Output tokens of each turn.
    pub tokens: u32,
    /// Measured turns per strategy (after one warm-up turn).
    pub turns: usize,
}

/// One strategy in one scenario at one round trip.
#[derive(Clone, Debug, Serialize)]
pub struct StrategyResult {
    /// The [`Scenario::name`].
    pub scenario: &'static str,
    /// The simulated publish round trip, in milliseconds.
    pub round_trip_ms: u64,
    /// The `COALESCE_STRATEGY` value.
    pub strategy: String,
    /// `publishChunk` mutations per turn, averaged over the measured turns.
    pub mutations_per_turn: f64,
    /// Publish request body bytes per turn, averaged.
    pub bytes_per_turn: f64,
    /// From `sendPrompt` to the first visible text, in milliseconds, averaged.
    pub first_text_ms: f64,
    /// Median added delay per token (emitted by the model to visible to the
    /// subscriber), in milliseconds.
    pub delay_p50_ms: f64,
    /// 95th percentile added delay per token, in milliseconds.
    pub delay_p95_ms: f64,
    /// 99th percentile added delay per token, in milliseconds.
    pub delay_p99_ms: f64,
    /// AppSync's cost of 1000 such turns with one subscriber, in US dollars
    /// (see [`measure::turn_cost`]).
    pub cost_per_1000_turns_usd: f64,
    /// The resolver process's peak resident memory over the run (VmHWM), in MB.
    pub resolver_peak_rss_mb: Option<f64>,
}

/// The resolver binary itself.
#[derive(Clone, Debug, Serialize)]
pub struct ResolverResult {
    /// Process spawn to the first `GET /runtime/invocation/next`, median of runs.
    pub cold_start_ms: f64,
    /// How many cold starts the median is of.
    pub cold_start_runs: usize,
    /// The resolver binary's size in bytes.
    pub binary_bytes: u64,
}

/// Everything `devstack bench` measured (printed as a table or as JSON).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The scenarios run.
    pub scenarios: Vec<Scenario>,
    /// Output tokens of each measured turn.
    pub tokens_per_turn: u32,
    /// Measured turns per strategy, scenario and round trip.
    pub turns_per_strategy: usize,
    /// One result per scenario, round trip and strategy, in run order.
    pub results: Vec<StrategyResult>,
    /// The resolver binary's own numbers.
    pub resolver: ResolverResult,
}

/// Runs every strategy in every scenario at every round trip, each in a fresh
/// stack, then measures the resolver's cold start; `progress` hears each step.
///
/// # Errors
///
/// A stack that does not start, a turn that fails or stalls (120 s without a
/// chunk), or a resolver that never asks for an invocation.
pub async fn run(config: &BenchConfig, progress: impl Fn(&str)) -> anyhow::Result<Report> {
    let mut results = Vec::new();
    for scenario in scenarios() {
        for rtt in &config.round_trips {
            for strategy in &config.strategies {
                progress(&format!(
                    "{} · {} ms · {strategy}",
                    scenario.name,
                    rtt.as_millis()
                ));
                results.push(run_strategy(config, &scenario, *rtt, strategy).await?);
            }
        }
    }
    progress("resolver cold start");
    let resolver = resolver_result(&config.function).await?;
    Ok(Report {
        scenarios: scenarios(),
        tokens_per_turn: config.tokens,
        turns_per_strategy: config.turns,
        results,
        resolver,
    })
}

/// What one measured turn gave.
pub(crate) struct TurnSample {
    /// The turn's id (`label-<uuid>`).
    pub(crate) turn_id: String,
    publishes: u64,
    bytes: u64,
    first_text: Duration,
    pub(crate) delays: Vec<Duration>,
    cost: f64,
    /// The size of each message the subscriber received, in bytes.
    message_bytes: Vec<usize>,
    /// From `sendPrompt` to the last chunk.
    duration: Duration,
}

/// One strategy in one scenario at one round trip, in its own stack.
async fn run_strategy(
    config: &BenchConfig,
    scenario: &Scenario,
    rtt: Duration,
    strategy: &str,
) -> anyhow::Result<StrategyResult> {
    let mut stack_config = StackConfig::new(config.function.clone());
    stack_config.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    stack_config.concurrency = 1;
    stack_config.default_model = "scripted".into();
    stack_config.bedrock.scripted_gaps = scenario.gaps;
    stack_config.bedrock.scripted_tokens_per_second = scenario.tokens_per_second;
    stack_config.bedrock.scripted_repeat = true;
    stack_config.function_environment = vec![
        ("COALESCE_STRATEGY".into(), strategy.to_owned()),
        ("RUST_LOG".into(), "warn".into()),
    ];
    let stack = Stack::start(stack_config).await?;
    stack.appsync.publish_faults.set_round_trip(rtt);
    let outcome = measure_turns(&stack, config).await;
    let rss = match stack.lambda.worker_pids().first() {
        Some(pid) => peak_rss_mb(*pid),
        None => None,
    };
    stack.shutdown().await;
    let samples = outcome.with_context(|| format!("strategy {strategy}"))?;
    let n = samples.len() as f64;
    let delays: Vec<Duration> = samples
        .iter()
        .flat_map(|s| s.delays.iter().copied())
        .collect();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(StrategyResult {
        scenario: scenario.name,
        round_trip_ms: rtt.as_millis() as u64,
        strategy: strategy.to_owned(),
        mutations_per_turn: samples.iter().map(|s| s.publishes as f64).sum::<f64>() / n,
        bytes_per_turn: samples.iter().map(|s| s.bytes as f64).sum::<f64>() / n,
        first_text_ms: samples.iter().map(|s| ms(s.first_text)).sum::<f64>() / n,
        delay_p50_ms: ms(percentile(&delays, 50.0)),
        delay_p95_ms: ms(percentile(&delays, 95.0)),
        delay_p99_ms: ms(percentile(&delays, 99.0)),
        cost_per_1000_turns_usd: samples.iter().map(|s| s.cost).sum::<f64>() / n * 1000.0,
        resolver_peak_rss_mb: rss,
    })
}

/// A warm-up turn, then the measured ones, on one subscriber connection.
async fn measure_turns(stack: &Stack, config: &BenchConfig) -> anyhow::Result<Vec<TurnSample>> {
    let token = stack.token("bench");
    let client = stack.connect_as(&token).await?;
    // A warm-up turn: the worker's first invocation, connections, caches.
    one_turn(stack, &client, &token, "warm-up", 5).await?;
    let mut samples = Vec::new();
    for n in 0..config.turns {
        samples.push(one_turn(stack, &client, &token, &format!("turn-{n}"), config.tokens).await?);
    }
    Ok(samples)
}

/// Subscribes, sends the prompt, and collects every chunk of the turn with
/// its arrival time (waiting for any missing `seq` after the terminal chunk).
pub(crate) async fn one_turn(
    stack: &Stack,
    client: &RealtimeClient,
    token: &str,
    label: &str,
    tokens: u32,
) -> anyhow::Result<TurnSample> {
    // A fresh turn id every time: a turn id is claimed once, for good, in
    // the conversations table (which may outlive this stack).
    let turn_id = format!("{label}-{}", uuid::Uuid::new_v4().simple());
    let conversation = format!("bench-{turn_id}");
    let mut subscription = client
        .subscribe(ON_CHUNK, json!({"conversationId": conversation}))
        .await?;
    let (publishes_before, bytes_before) = stack.appsync.publish_stats.totals();
    let variables = send_prompt_variables(
        &conversation,
        &turn_id,
        "Benchmark the relay.",
        None,
        Some(tokens),
    );
    let sent = Instant::now();
    send_prompt(
        &reqwest::Client::new(),
        &stack.graphql_url(),
        token,
        variables,
    )
    .await?;
    let mut chunks: BTreeMap<i64, (Instant, Chunk)> = BTreeMap::new();
    let mut message_bytes = Vec::new();
    let done_seq = loop {
        let next = tokio::time::timeout(Duration::from_secs(120), subscription.next())
            .await
            .context("the turn stalled")?;
        let payload = next.context("the subscription ended")??;
        let at = Instant::now();
        message_bytes.push(payload.to_string().len() + 40);
        let chunk = appsync_client::chunk_from_payload(&payload).context("not a chunk")?;
        if let Some(error) = &chunk.error {
            bail!("the turn failed: {}", error.message);
        }
        let (seq, done) = (chunk.seq, chunk.done);
        chunks.entry(seq).or_insert((at, chunk));
        if done {
            break seq;
        }
    };
    while i64::try_from(chunks.len()).unwrap_or(i64::MAX) <= done_seq {
        let payload = subscription
            .next()
            .await
            .context("a chunk went missing")??;
        if let Some(chunk) = appsync_client::chunk_from_payload(&payload) {
            chunks.entry(chunk.seq).or_insert((Instant::now(), chunk));
        }
    }
    let duration = sent.elapsed();
    let (publishes_after, bytes_after) = stack.appsync.publish_stats.totals();
    let (arrivals, first_text) = arrivals(chunks.values().map(|(at, c)| (*at, c)), sent);
    let emissions = stack.bedrock.last_emissions();
    let publishes = publishes_after - publishes_before;
    Ok(TurnSample {
        turn_id,
        publishes,
        bytes: bytes_after - bytes_before,
        first_text: first_text.unwrap_or_default(),
        delays: added_delays(&emissions, &arrivals),
        cost: turn_cost(publishes, &message_bytes, duration),
        message_bytes,
        duration,
    })
}

/// Chunks in `seq` order with their arrival times, as arrivals (the answer's
/// length after each), and when the first text became visible after `sent`
/// (its chunk and every earlier one had arrived).
pub(crate) fn arrivals<'a>(
    chunks: impl Iterator<Item = (Instant, &'a Chunk)>,
    sent: Instant,
) -> (Vec<Arrival>, Option<Duration>) {
    let (mut end, mut arrivals, mut first_text) = (0, Vec::new(), None);
    for (at, chunk) in chunks {
        end += chunk.text.len();
        arrivals.push(Arrival { at, end_bytes: end });
        if !chunk.text.is_empty() && first_text.is_none() {
            let visible = arrivals.iter().map(|a| a.at).max().unwrap_or(at);
            first_text = Some(visible.duration_since(sent));
        }
    }
    (arrivals, first_text)
}

/// The cold start, measured on fresh stacks (median of five).
async fn resolver_result(function: &FunctionCommand) -> anyhow::Result<ResolverResult> {
    let mut runs = Vec::new();
    for _ in 0..5 {
        let mut config = StackConfig::new(function.clone());
        config.bind = SocketAddr::from(([127, 0, 0, 1], 0));
        config.concurrency = 1;
        config.max_retry_attempts = 0;
        let stack = Stack::start(config).await?;
        // The first invocation starts the environment (an empty event, which
        // the resolver refuses at once): its report carries the init.
        let mut outcomes = stack.lambda.outcomes();
        stack.lambda.invoke_async(serde_json::json!({}));
        let init = tokio::time::timeout(Duration::from_secs(10), outcomes.recv())
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|outcome| outcome.report.init_duration);
        stack.shutdown().await;
        runs.push(init.context("the resolver never asked for an invocation")?);
    }
    let median = percentile(&runs, 50.0);
    let binary_bytes = std::fs::metadata(&function.program)
        .map(|m| m.len())
        .unwrap_or(0);
    Ok(ResolverResult {
        cold_start_ms: median.as_secs_f64() * 1000.0,
        cold_start_runs: runs.len(),
        binary_bytes,
    })
}

/// VmHWM of a process, in MB (Linux).
fn peak_rss_mb(pid: u32) -> Option<f64> {
    crate::lambda::status_kb(pid, "VmHWM:").map(|kb| kb as f64 / 1024.0)
}
