//! `devstack bench --users 10,50`: K users start a turn at the same moment.
//! Time to first chunk (median and max) and the cold starts it took, against
//! a lone user's time to first chunk on a warm environment and one measured
//! cold start (spawn and init).
//!
//! Place in the data path: the whole of it, under load: K `sendPrompt`s ->
//! AppSync -> Lambda's queue and scaling (a cold start per environment) ->
//! resolver -> Bedrock (scripted) -> publisher -> AppSync -> K subscribers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio::sync::Barrier;

use super::BenchConfig;
use super::measure::percentile;
use crate::{Stack, StackConfig};

/// Output tokens of each user's turn.
const TOKENS: u32 = 150;
/// The scripted model's pace, tokens per second.
const TOKENS_PER_SECOND: f64 = 50.0;
/// Warm turns of the lone user; their median is the lone user's time.
const LONE_WARM_TURNS: usize = 5;

/// K users starting a turn at once.
#[derive(Clone, Debug, Serialize)]
pub struct UsersResult {
    /// Users (K).
    pub users: usize,
    /// The function's concurrency limit during the run.
    pub concurrency: usize,
    /// Median time to first chunk, in milliseconds (from `sendPrompt` sent).
    pub first_chunk_p50_ms: f64,
    /// Slowest time to first chunk, in milliseconds.
    pub first_chunk_max_ms: f64,
    /// Environments started for the run (every one a cold start).
    pub cold_starts: u64,
    /// A lone user's time to first chunk on a warm environment, in
    /// milliseconds: the median of `LONE_WARM_TURNS` turns.
    pub lone_warm_ms: f64,
    /// A lone user's time to first chunk including a cold start, in milliseconds.
    pub lone_cold_ms: f64,
    /// One cold start: the lone user's environment's init (spawn to its first
    /// `invocation/next`), in milliseconds.
    pub cold_start_ms: f64,
    /// The median init of the K users' environments, in milliseconds: the
    /// cold starts share the machine's cores.
    pub loaded_init_p50_ms: f64,
    /// The bar: twice `lone_warm_ms`, or `lone_warm_ms + cold_start_ms` if larger.
    pub target_ms: f64,
    /// Whether `first_chunk_max_ms` is within the target.
    pub within_target: bool,
}

/// For each K in `users`: a fresh stack whose concurrency is `concurrency`
/// (or K), a lone user's cold then warm turns, then on another fresh stack K
/// users at once.
///
/// # Errors
/// A stack that does not start, or a turn that does not finish.
pub async fn run_users(
    config: &BenchConfig,
    users: &[usize],
    concurrency: Option<usize>,
    progress: impl Fn(&str),
) -> anyhow::Result<Vec<UsersResult>> {
    let mut results = Vec::new();
    for &k in users {
        progress(&format!("{k} users at once"));
        results.push(users_case(config, k, concurrency.unwrap_or(k)).await?);
    }
    Ok(results)
}

async fn start_stack(config: &BenchConfig, concurrency: usize) -> anyhow::Result<Stack> {
    let mut stack_config = StackConfig::new(config.function.clone());
    stack_config.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    stack_config.concurrency = concurrency;
    stack_config.default_model = "scripted".into();
    stack_config.bedrock.scripted_tokens_per_second = TOKENS_PER_SECOND;
    stack_config.function_environment = vec![("RUST_LOG".into(), "warn".into())];
    Stack::start(stack_config).await
}

async fn users_case(
    config: &BenchConfig,
    k: usize,
    concurrency: usize,
) -> anyhow::Result<UsersResult> {
    // One HTTP client for every user: building one per user (it loads the
    // platform's roots) would put the bench's own work inside the timings.
    let http = reqwest::Client::new();
    let lone = start_stack(config, concurrency).await?;
    let lone_outcomes = lone.lambda.outcomes();
    let lone_cold = first_chunk(&http, &lone, "lone".into(), "turn-cold").await;
    let mut lone_warm = Vec::new();
    for turn in 0..LONE_WARM_TURNS {
        let turn = format!("turn-warm-{turn}");
        lone_warm.push(first_chunk(&http, &lone, "lone".into(), &turn).await);
    }
    let lone_init = inits(lone_outcomes, 1).await;
    lone.shutdown().await;
    let lone_cold = lone_cold?;
    let lone_warm: Vec<Duration> = lone_warm.into_iter().collect::<anyhow::Result<_>>()?;

    let stack = start_stack(config, concurrency).await?;
    let outcomes = stack.lambda.outcomes();
    // Every user connects and subscribes first (any failure ends the run
    // before anyone waits); then all send at once.
    let users = (0..k).map(|user| prepare(&stack, format!("user-{user}"), "turn-k"));
    let prepared = futures_util::future::try_join_all(users).await?;
    let barrier = Barrier::new(k);
    let turns: Vec<_> = prepared
        .into_iter()
        .map(|user| send_and_wait(&http, &stack, user, Some(&barrier)))
        .collect();
    let times = futures_util::future::join_all(turns).await;
    let times: Vec<Duration> = times.into_iter().collect::<anyhow::Result<_>>()?;
    let cold_starts = stack.lambda.cold_starts();
    let loaded_inits = inits(outcomes, cold_starts).await;
    stack.shutdown().await;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median_ms = |samples: &[Duration]| {
        if samples.is_empty() {
            0.0
        } else {
            ms(percentile(samples, 50.0))
        }
    };
    let cold_start_ms = median_ms(&lone_init);
    let lone_warm_ms = median_ms(&lone_warm);
    let target_ms = (2.0 * lone_warm_ms).max(lone_warm_ms + cold_start_ms);
    let first_chunk_max_ms = times.iter().copied().map(ms).fold(0.0, f64::max);
    Ok(UsersResult {
        users: k,
        concurrency,
        first_chunk_p50_ms: ms(percentile(&times, 50.0)),
        first_chunk_max_ms,
        cold_starts,
        lone_warm_ms,
        lone_cold_ms: ms(lone_cold),
        cold_start_ms,
        loaded_init_p50_ms: median_ms(&loaded_inits),
        target_ms,
        within_target: first_chunk_max_ms <= target_ms,
    })
}

/// The init durations of the first `cold_starts` environments, each reported
/// with its environment's first invocation.
async fn inits(
    mut outcomes: tokio::sync::broadcast::Receiver<crate::lambda::InvocationOutcome>,
    cold_starts: u64,
) -> Vec<Duration> {
    let mut inits = Vec::new();
    while (inits.len() as u64) < cold_starts {
        match tokio::time::timeout(Duration::from_secs(30), outcomes.recv()).await {
            Ok(Ok(outcome)) => inits.extend(outcome.report.init_duration),
            _ => break,
        }
    }
    inits
}

/// A user subscribed to a conversation of their own, with a prompt ready.
struct Ready {
    token: String,
    /// Kept open for the subscription.
    _client: appsync_client::RealtimeClient,
    subscription: appsync_client::Subscription,
    variables: serde_json::Value,
}

/// `user` connects and subscribes to `bench-{user}`, and readies turn `turn`.
async fn prepare(stack: &Stack, user: String, turn: &str) -> anyhow::Result<Ready> {
    let token = stack.token(&user);
    let client = stack.connect_as(&token).await.context("connect")?;
    let conversation = format!("bench-{user}");
    let subscription = client
        .subscribe(
            appsync_client::ON_CHUNK,
            serde_json::json!({"conversationId": conversation}),
        )
        .await
        .context("subscribe")?;
    let variables = appsync_client::send_prompt_variables(
        &conversation,
        turn,
        "Tell me about cold starts.",
        None,
        Some(TOKENS),
    );
    Ok(Ready {
        token,
        _client: client,
        subscription,
        variables,
    })
}

/// A lone `user`'s turn: [`prepare`], then [`send_and_wait`].
async fn first_chunk(
    http: &reqwest::Client,
    stack: &Stack,
    user: String,
    turn: &str,
) -> anyhow::Result<Duration> {
    let ready = prepare(stack, user, turn).await?;
    send_and_wait(http, stack, ready, None).await
}

/// Waits at `barrier` (when given) for every other user, sends the prompt and
/// waits for its first chunk; returns the time from the send, and lets the
/// turn finish (its environment is busy until then) before returning.
async fn send_and_wait(
    http: &reqwest::Client,
    stack: &Stack,
    ready: Ready,
    barrier: Option<&Barrier>,
) -> anyhow::Result<Duration> {
    let Ready {
        token,
        _client,
        mut subscription,
        variables,
    } = ready;
    if let Some(barrier) = barrier {
        barrier.wait().await;
    }
    let started = Instant::now();
    appsync_client::send_prompt(http, &stack.graphql_url(), &token, variables)
        .await
        .context("sendPrompt")?;
    let mut first = None;
    loop {
        let payload = tokio::time::timeout(Duration::from_secs(120), subscription.next())
            .await
            .context("no chunk within 120 s")?
            .context("the subscription ended")?
            .context("a subscription error")?;
        let chunk = appsync_client::chunk_from_payload(&payload).context("not a chunk")?;
        first.get_or_insert_with(|| started.elapsed());
        if chunk.done {
            break;
        }
    }
    first.context("no chunk")
}
