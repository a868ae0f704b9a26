//! `devstack bench --fanout 1,100,1000`: one turn to N subscribers of the same
//! conversation. For each chunk, the spread between the first and the last
//! subscriber to receive it (p50, p99, max), and whether every subscriber got
//! every chunk exactly once.
//!
//! Place in the data path: resolver --publishChunk--> AppSync -> **fan-out**
//! -> N real-time connections -> N subscribers. Every subscriber is its own
//! WebSocket connection in this process, read by a task of its own that
//! takes the receive time as soon as a frame is read (one clock for all),
//! before parsing it: the subscribers share the server's two cores, and a
//! client's own work per message would otherwise be measured as spread.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use super::BenchConfig;
use super::measure::{percentile, spread};
use super::tcp_floor::{FloorSpread, tcp_floor};
use crate::{Stack, StackConfig};

/// Output tokens of the turn.
pub const TOKENS: u32 = 1000;
/// The scripted model's pace, tokens per second.
pub const TOKENS_PER_SECOND: f64 = 50.0;
/// How long the turn (sent, fanned out, every terminal chunk read) may take.
const TURN_DEADLINE: Duration = Duration::from_secs(120);

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
    /// The mean size of a message read, bytes.
    pub message_bytes: usize,
    /// The same fan-out over bare TCP (N connections, messages of
    /// `message_bytes` at the turn's pace): the machine's floor.
    pub tcp_floor: FloorSpread,
}

/// For each N in `counts`: a fresh stack, N subscribers, one turn.
///
/// # Errors
/// A stack that does not start, a subscriber that cannot connect or whose
/// subscription ends with an error, a turn that does not end within two
/// minutes, or a bare-TCP floor that cannot bind, connect or read, or does
/// not end within two minutes.
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
    stack_config.bedrock.scripted_repeat = true;
    stack_config.function_environment = vec![("RUST_LOG".into(), "warn".into())];
    let stack = Stack::start(stack_config).await?;
    let result = measure(&stack, n).await;
    stack.shutdown().await;
    let (mut result, gap) = result?;
    let floor = tcp_floor(n, result.message_bytes.max(1), gap);
    result.tcp_floor = tokio::time::timeout(TURN_DEADLINE, floor)
        .await
        .context("the bare-TCP floor did not end within two minutes")??;
    Ok(result)
}

/// The turn's result (its floor not yet measured), and the mean time
/// between its chunks.
async fn measure(stack: &Stack, n: usize) -> anyhow::Result<(FanoutResult, Duration)> {
    let token = stack.token("fanout");
    let conversation = "bench-fanout";
    let mut receivers = Vec::with_capacity(n);
    for _ in 0..n {
        let mut socket = appsync_client::RealtimeSocket::open(
            &stack.realtime_url(),
            &stack.graphql_url(),
            appsync_client::RealtimeAuth::Token(token.clone()),
            appsync_client::HeaderTransport::Subprotocol,
        )
        .await
        .context("connect")?;
        let id = socket
            .start(
                appsync_client::ON_CHUNK,
                serde_json::json!({"conversationId": conversation}),
            )
            .await
            .context("subscribe")?;
        receivers.push((id, tokio::spawn(receive(socket))));
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
    // Sockets close once every subscriber has its terminal chunk: a close
    // handled while the chunk is still being fanned out would be measured.
    let deadline = tokio::time::Instant::now() + TURN_DEADLINE;
    let mut read = Vec::with_capacity(n);
    let mut pending = receivers.into_iter();
    while let Some((id, receiver)) = pending.next() {
        let abort = receiver.abort_handle();
        let joined = tokio::time::timeout_at(deadline, receiver)
            .await
            .context("the turn did not end within its deadline")
            .and_then(|task| task.context("a subscriber task"))
            .and_then(|received| received);
        match joined {
            Ok(frames) => read.push((id, frames)),
            Err(e) => {
                abort.abort();
                pending.for_each(|(_, rest)| rest.abort());
                return Err(e);
            }
        }
    }
    let mut arrivals = Vec::with_capacity(n);
    let (mut messages, mut bytes) = (0, 0);
    for (id, (_socket, frames)) in &read {
        let (seen, data_bytes) = receipts(frames, id)?;
        messages += seen.len();
        bytes += data_bytes;
        arrivals.push(seen);
    }
    drop(read);
    let mut result = summarise(n, &arrivals);
    result.message_bytes = bytes / messages.max(1);
    Ok((result, mean_gap(&arrivals)))
}

/// A message as read, and when.
type Frame = (appsync_client::realtime::Utf8Bytes, Instant);

/// One subscriber's messages until the one that may be its last (the
/// terminal chunk, or the subscription's end), each timed as it is read, and
/// its socket, still open. They are parsed
/// once every subscriber is done, so that no parsing delays another's read.
async fn receive(
    mut socket: appsync_client::RealtimeSocket,
) -> anyhow::Result<(appsync_client::RealtimeSocket, Vec<Frame>)> {
    let mut frames = Vec::new();
    loop {
        // No timer per message (that would be a timer wheel entry per
        // message read): the caller bounds the whole turn.
        let text = socket.next_text().await.context("the connection closed")?;
        let at = Instant::now();
        let last = may_be_last(&text);
        frames.push((text, at));
        if last {
            return Ok((socket, frames));
        }
    }
}

/// A subscriber's receipts, `(seq, when)`, from its frames, and the bytes
/// of the `data` messages that carried them.
///
/// # Errors
/// A message that is not JSON, an `error` or `complete` for the
/// subscription, or frames that do not end with the terminal chunk.
fn receipts(frames: &[Frame], id: &str) -> anyhow::Result<(Vec<(i64, Instant)>, usize)> {
    let mut seen = Vec::with_capacity(frames.len());
    let mut bytes = 0;
    let mut done = false;
    for (text, at) in frames {
        if let Some(chunk) = chunk_of(text, id)? {
            seen.push((chunk.seq, *at));
            bytes += text.len();
            done = chunk.done;
        }
    }
    if !done {
        bail!("the last message read was not the terminal chunk");
    }
    Ok((seen, bytes))
}

/// Whether a message may be the subscription's last, without parsing it:
/// the terminal chunk (the key `done` set to true) or an `error` or
/// `complete` message. The server writes compact JSON, and inside a JSON
/// string every `"` is escaped, so no text can look like these; the parse
/// afterwards checks what it was.
fn may_be_last(text: &str) -> bool {
    [
        r#""done":true"#,
        r#""type":"error""#,
        r#""type":"complete""#,
    ]
    .iter()
    .any(|key| text.contains(key))
}

/// The chunk a `data` message of subscription `id` carries; `None` for any
/// other message (`ka`).
///
/// # Errors
/// An `error` message, or a `data` message with no chunk.
fn chunk_of(text: &str, id: &str) -> anyhow::Result<Option<appsync_client::Chunk>> {
    let message: serde_json::Value = serde_json::from_str(text).context("not JSON")?;
    let kind = message.get("type").and_then(serde_json::Value::as_str);
    let ours = message.get("id").and_then(serde_json::Value::as_str) == Some(id);
    match kind {
        Some("data") if ours => {
            let payload = message
                .get("payload")
                .context("a data message without payload")?;
            appsync_client::chunk_from_payload(payload)
                .map(Some)
                .context("not a chunk")
        }
        Some("error" | "complete") if ours => bail!("the subscription ended: {text}"),
        _ => Ok(None),
    }
}

/// The mean time between the first subscriber's chunks.
fn mean_gap(arrivals: &[Vec<(i64, Instant)>]) -> Duration {
    let Some(first) = arrivals.first() else {
        return Duration::ZERO;
    };
    match (first.first(), first.last()) {
        (Some(start), Some(end)) if first.len() > 1 => {
            (end.1 - start.1) / u32::try_from(first.len() - 1).unwrap_or(u32::MAX)
        }
        _ => Duration::ZERO,
    }
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
        .map(|times| spread(times.iter().copied()))
        .collect();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    FanoutResult {
        message_bytes: 0,
        tcp_floor: FloorSpread::default(),
        subscribers: n,
        chunks: usize::try_from(chunks).unwrap_or_default(),
        spread_p50_ms: ms(percentile(&spreads, 50.0)),
        spread_p99_ms: ms(percentile(&spreads, 99.0)),
        spread_max_ms: spreads.iter().copied().map(ms).fold(0.0, f64::max),
        lost,
        duplicated,
    }
}
