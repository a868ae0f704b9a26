//! `devstack bench --transports`: the same token streams through the three
//! transports, side by side in one stack: AppSync (`sendPrompt`, an
//! `onChunk` subscription), the function URL (a POST answered with
//! Server-Sent Events) and the API Gateway WebSocket API (a `sendPrompt`
//! message, chunks posted back with `PostToConnection`). Per transport: time
//! to first text, added delay per token (p50, p95, p99), messages and bytes
//! the client received per turn, and the list-price cost of 1,000 turns.
//!
//! Place in the data path: the whole of each: client -> transport -> Lambda
//! (the real functions) -> Bedrock (the `scripted` model at the recorded
//! stream shape) -> coalescer -> transport -> client, measured at both ends
//! on one clock, as the strategy bench does.
//!
//! Prices (us-east-1, arm64; <https://aws.amazon.com/lambda/pricing/>,
//! <https://aws.amazon.com/api-gateway/pricing/>, AppSync's in
//! [`super::measure`]): Lambda $0.20 per million requests and
//! $0.0000133334 per GB-second; API Gateway WebSocket $1.00 per million
//! messages (metered in 32 KB steps, both directions) and $0.25 per million
//! connection-minutes. Every transport's function runs for the whole turn:
//! the AppSync resolver and the WebSocket route function as asynchronous
//! invocations, the function URL's for the whole stream.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use appsync_client::{Chunk, ServerMessage, WebSocketApiClient};
use serde::Serialize;
use serde_json::json;

use super::measure::{added_delays, percentile};
use super::{BenchConfig, one_turn};
use crate::lambda::FunctionCommand;
use crate::{Stack, StackConfig, WebSocketFunctions};

/// Dollars per Lambda request.
pub const LAMBDA_PER_REQUEST: f64 = 0.20 / 1_000_000.0;
/// Dollars per Lambda GB-second (arm64).
pub const LAMBDA_PER_GB_SECOND: f64 = 0.000_013_333_4;
/// Dollars per API Gateway WebSocket message (per 32 KB).
pub const WEBSOCKET_PER_MESSAGE: f64 = 1.0 / 1_000_000.0;
/// Dollars per API Gateway WebSocket connection-minute.
pub const WEBSOCKET_PER_CONNECTION_MINUTE: f64 = 0.25 / 1_000_000.0;
/// API Gateway meters WebSocket messages in steps of this many bytes.
pub const WEBSOCKET_METER_BYTES: usize = 32 * 1024;

/// One transport's numbers.
#[derive(Clone, Debug, Serialize)]
pub struct TransportResult {
    /// `appsync`, `function-url` or `websocket`.
    pub transport: &'static str,
    /// Median time from sending the prompt to the first text, in ms.
    pub first_text_ms: f64,
    /// Added delay per token, in ms.
    pub delay_p50_ms: f64,
    /// 95th percentile.
    pub delay_p95_ms: f64,
    /// 99th percentile.
    pub delay_p99_ms: f64,
    /// Messages the client received per turn.
    pub messages_per_turn: f64,
    /// Bytes the client received per turn (the messages' payloads).
    pub bytes_per_turn: f64,
    /// Dollars per 1,000 turns at list prices (see the module docs).
    pub cost_per_1000_turns_usd: f64,
}

/// What the transports bench reports.
#[derive(Clone, Debug, Serialize)]
pub struct TransportsReport {
    /// Output tokens per turn.
    pub tokens_per_turn: u32,
    /// Measured turns per transport (after one warm-up turn).
    pub turns: usize,
    /// The functions' memory, in MB (the template's `MemorySize`).
    pub memory_mb: u64,
    /// One line per transport.
    pub results: Vec<TransportResult>,
}

/// One turn as a client saw it.
struct Sample {
    first_text: Duration,
    delays: Vec<Duration>,
    messages: Vec<usize>,
    duration: Duration,
    /// What the transport itself charges for the turn (not Lambda).
    transport_cost: f64,
}

/// The functions the bench runs besides the resolver.
pub struct TransportFunctions {
    /// The function URL's function.
    pub url: FunctionCommand,
    /// The WebSocket API's functions.
    pub websocket: WebSocketFunctions,
}

/// Runs `config.turns` turns of `config.tokens` tokens through each
/// transport, in one stack, one after another.
///
/// # Errors
/// A stack that does not start, or a turn that fails.
pub async fn run_transports(
    config: &BenchConfig,
    functions: TransportFunctions,
    progress: impl Fn(&str),
) -> anyhow::Result<TransportsReport> {
    let mut stack_config = StackConfig::new(config.function.clone());
    stack_config.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    stack_config.default_model = "scripted".into();
    stack_config.bedrock.scripted_gaps =
        Some((Duration::from_millis(20), Duration::from_millis(50)));
    stack_config.bedrock.scripted_repeat = true;
    stack_config.function_environment = vec![("RUST_LOG".into(), "warn".into())];
    stack_config.url_function = Some(functions.url);
    stack_config.websocket_functions = Some(functions.websocket);
    let memory_mb = stack_config.function_memory_mb;
    let stack = Stack::start(stack_config).await?;
    let results = measure_all(&stack, config, memory_mb, &progress).await;
    stack.shutdown().await;
    Ok(TransportsReport {
        tokens_per_turn: config.tokens,
        turns: config.turns,
        memory_mb,
        results: results?,
    })
}

async fn measure_all(
    stack: &Stack,
    config: &BenchConfig,
    memory_mb: u64,
    progress: &impl Fn(&str),
) -> anyhow::Result<Vec<TransportResult>> {
    let mut results = Vec::new();
    for transport in ["appsync", "function-url", "websocket"] {
        progress(transport);
        let mut samples = Vec::new();
        // One warm-up turn starts the transport's execution environment.
        for n in 0..=config.turns {
            let tokens = if n == 0 { 5 } else { config.tokens };
            let sample = match transport {
                "appsync" => appsync_turn(stack, tokens).await,
                "function-url" => url_turn(stack, tokens).await,
                _ => websocket_turn(stack, tokens).await,
            }
            .with_context(|| format!("a turn over {transport}"))?;
            if n > 0 {
                samples.push(sample);
            }
        }
        results.push(summarize(transport, &samples, memory_mb));
    }
    Ok(results)
}

fn summarize(transport: &'static str, samples: &[Sample], memory_mb: u64) -> TransportResult {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let delays: Vec<Duration> = samples.iter().flat_map(|s| s.delays.clone()).collect();
    let firsts: Vec<Duration> = samples.iter().map(|s| s.first_text).collect();
    let turns = samples.len().max(1) as f64;
    let messages: usize = samples.iter().map(|s| s.messages.len()).sum();
    let bytes: usize = samples.iter().flat_map(|s| s.messages.iter()).sum();
    let cost: f64 = samples
        .iter()
        .map(|s| s.transport_cost + lambda_cost(s.duration, memory_mb))
        .sum();
    TransportResult {
        transport,
        first_text_ms: ms(percentile(&firsts, 50.0)),
        delay_p50_ms: ms(percentile(&delays, 50.0)),
        delay_p95_ms: ms(percentile(&delays, 95.0)),
        delay_p99_ms: ms(percentile(&delays, 99.0)),
        messages_per_turn: messages as f64 / turns,
        bytes_per_turn: bytes as f64 / turns,
        cost_per_1000_turns_usd: cost / turns * 1000.0,
    }
}

/// One invocation running for `duration` with `memory_mb`, billed per ms.
pub fn lambda_cost(duration: Duration, memory_mb: u64) -> f64 {
    let billed = duration.as_millis() as f64 / 1000.0;
    LAMBDA_PER_REQUEST + billed * memory_mb as f64 / 1024.0 * LAMBDA_PER_GB_SECOND
}

/// API Gateway's charge for a turn: the prompt's message, each message sent
/// (per 32 KB), and the connection for the turn's duration.
pub fn websocket_cost(prompt_bytes: usize, messages: &[usize], duration: Duration) -> f64 {
    let metered = |bytes: &usize| bytes.div_ceil(WEBSOCKET_METER_BYTES).max(1);
    let count: usize = metered(&prompt_bytes) + messages.iter().map(metered).sum::<usize>();
    count as f64 * WEBSOCKET_PER_MESSAGE
        + duration.as_secs_f64() / 60.0 * WEBSOCKET_PER_CONNECTION_MINUTE
}

/// The client's view of a turn's chunks (in arrival order) as a sample.
fn sample(
    stack: &Stack,
    sent: Instant,
    chunks: &[(Instant, Chunk)],
    messages: Vec<usize>,
    transport_cost: f64,
) -> anyhow::Result<Sample> {
    let mut ordered: BTreeMap<i64, (Instant, &Chunk)> = BTreeMap::new();
    for (at, chunk) in chunks {
        if let Some(error) = &chunk.error {
            bail!("the turn failed: {}", error.message);
        }
        ordered.entry(chunk.seq).or_insert((*at, chunk));
    }
    let (arrivals, first_text) = super::arrivals(ordered.values().copied(), sent);
    Ok(Sample {
        first_text: first_text.unwrap_or_default(),
        delays: added_delays(&stack.bedrock.last_emissions(), &arrivals),
        messages,
        duration: sent.elapsed(),
        transport_cost,
    })
}

/// A turn through AppSync: the strategy bench's own turn.
async fn appsync_turn(stack: &Stack, tokens: u32) -> anyhow::Result<Sample> {
    let token = stack.token("bench-appsync");
    let client = stack.connect_as(&token).await?;
    let turn = one_turn(stack, &client, &token, "transports", tokens).await?;
    Ok(Sample {
        first_text: turn.first_text,
        delays: turn.delays,
        transport_cost: turn.cost,
        messages: turn.message_bytes,
        duration: turn.duration,
    })
}

/// The prompt's input for a bench turn of `tokens` tokens.
fn input(tokens: u32) -> serde_json::Value {
    let conversation = format!("bench-{}", uuid::Uuid::new_v4().simple());
    json!({"conversationId": conversation, "prompt": "Benchmark the relay.", "maxTokens": tokens})
}

/// A turn through the function URL: each event's bytes as received.
async fn url_turn(stack: &Stack, tokens: u32) -> anyhow::Result<Sample> {
    let url = stack.function_url().context("no function URL")?;
    let token = stack.token("bench-url");
    let sent = Instant::now();
    let mut events =
        appsync_client::post_prompt(&reqwest::Client::new(), &url, &token, &input(tokens)).await?;
    let (mut chunks, mut messages) = (Vec::new(), Vec::new());
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(120), events.next())
        .await
        .context("the turn stalled")??
    {
        let at = Instant::now();
        let data = serde_json::to_string(&chunk)?.len();
        messages.push(format!("id: {}\ndata: \n\n", chunk.seq).len() + data);
        chunks.push((at, chunk));
    }
    sample(stack, sent, &chunks, messages, 0.0)
}

/// A turn through the WebSocket API: each message's bytes as received.
async fn websocket_turn(stack: &Stack, tokens: u32) -> anyhow::Result<Sample> {
    let url = stack.websocket_url().context("no WebSocket API")?;
    let token = stack.token("bench-websocket");
    let mut client = WebSocketApiClient::connect(&url, &token).await?;
    let prompt = json!({"action": "sendPrompt", "input": input(tokens)});
    let sent = Instant::now();
    client.send(&prompt).await?;
    let (mut chunks, mut messages) = (Vec::new(), Vec::new());
    loop {
        let message = tokio::time::timeout(Duration::from_secs(120), client.next_message())
            .await
            .context("the turn stalled")??;
        let at = Instant::now();
        match message {
            ServerMessage::Chunk(chunk) => {
                let bytes = serde_json::to_string(&json!({"type": "chunk", "chunk": chunk}))?;
                messages.push(bytes.len());
                let done = chunk.done;
                chunks.push((at, chunk));
                if done {
                    break;
                }
            }
            ServerMessage::Error { message, .. } => bail!("the prompt was refused: {message}"),
            _ => {}
        }
    }
    let duration = sent.elapsed();
    client.close().await?;
    let cost = websocket_cost(prompt.to_string().len(), &messages, duration);
    sample(stack, sent, &chunks, messages, cost)
}

/// The report as a table, then the transports' limits and auth models.
pub fn print_table(report: &TransportsReport) {
    println!(
        "{} tokens a turn, {} measured turn(s) per transport, recorded stream shape, functions at {} MB\n",
        report.tokens_per_turn, report.turns, report.memory_mb
    );
    println!(
        "{:<13} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9} {:>11}",
        "transport", "first ms", "p50 ms", "p95 ms", "p99 ms", "msgs", "KB", "$/1k turns"
    );
    for r in &report.results {
        println!(
            "{:<13} {:>9.1} {:>8.1} {:>8.1} {:>8.1} {:>9.1} {:>9.1} {:>11.4}",
            r.transport,
            r.first_text_ms,
            r.delay_p50_ms,
            r.delay_p95_ms,
            r.delay_p99_ms,
            r.messages_per_turn,
            r.bytes_per_turn / 1024.0,
            r.cost_per_1000_turns_usd,
        );
    }
    println!("\n{LIMITS}");
}

/// The transports' auth models and limits, as AWS documents them.
pub const LIMITS: &str = "\
transport     auth                                   message / response           connection
appsync       Cognito JWT on every operation;         240 KB per subscription      24 h; keep-alive
              resolver publishes with IAM (SigV4)     message, 5 KB metering       every 60 s
function-url  none at the URL (AuthType NONE); the    200 MB streamed response,    the function's
              function checks the ID token (JWKS)     6 MB at full speed, then      timeout (15 min)
                                                      2 MB/s; 6 MB request
websocket     Lambda REQUEST authorizer on $connect   128 KB message, 32 KB        2 h; 10 min idle
              (token in the query string); routes     frames, 32 KB metering
              carry its identity";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_is_billed_per_request_and_per_gb_second() {
        let one_second = lambda_cost(Duration::from_secs(1), 1024);
        assert!((one_second - (0.2e-6 + 0.000_013_333_4)).abs() < 1e-12);
        let quarter = lambda_cost(Duration::from_secs(4), 256);
        assert!((quarter - one_second).abs() < 1e-12);
    }

    #[test]
    fn websocket_messages_are_metered_in_32_kb_steps_plus_connection_time() {
        let c = websocket_cost(100, &[10, 32 * 1024, 32 * 1024 + 1], Duration::ZERO);
        assert!((c - 5.0 * 1e-6).abs() < 1e-12, "1 + 1 + 1 + 2 messages");
        let minute = websocket_cost(1, &[], Duration::from_secs(60));
        assert!((minute - (1e-6 + 0.25e-6)).abs() < 1e-12);
    }
}
