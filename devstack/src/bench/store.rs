//! `devstack bench --store`: what the conversations table costs a turn. The
//! same turns with the store and without it, at a 0 ms publish round trip:
//! the added delay per token (the store must not add to it: chunks are
//! written beside publishing), and the writes and bytes the store took per
//! turn (which must grow linearly with the answer).
//!
//! Place in the data path: the whole of it, with the resolver's chunk writer
//! -> DynamoDB (dynalite) beside publisher -> AppSync -> subscriber.
//! Writes and bytes come from the resolver's own metrics record
//! (`StoreWrites`, `StoreBytes`), read from its log as CloudWatch would.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use super::measure::percentile;
use super::{BenchConfig, one_turn};
use crate::{Stack, StackConfig};

/// The answer lengths the store is measured at.
pub const STORE_TOKENS: [u32; 2] = [500, 2000];

/// One answer length, with or without the store.
#[derive(Clone, Debug, Serialize)]
pub struct StoreResult {
    /// Output tokens per turn.
    pub tokens: u32,
    /// Whether the conversations table was on.
    pub store: bool,
    /// Median added delay per token, in milliseconds.
    pub delay_p50_ms: f64,
    /// 99th percentile added delay per token, in milliseconds.
    pub delay_p99_ms: f64,
    /// `BatchWriteItem` calls per turn for the turn's chunks, averaged.
    pub writes_per_turn: Option<f64>,
    /// Bytes of chunk items written per turn (DynamoDB's item size rule), averaged.
    pub bytes_per_turn: Option<f64>,
}

/// Every [`STORE_TOKENS`] length without and with the store, each in a
/// fresh stack, the `adaptive` strategy, the recorded stream shape.
///
/// # Errors
/// A stack or local DynamoDB that does not start, or a turn that fails.
pub async fn run_store(
    config: &BenchConfig,
    dynamodb: &crate::dynamodb::DynamoDbConfig,
    progress: impl Fn(&str),
) -> anyhow::Result<Vec<StoreResult>> {
    let mut results = Vec::new();
    for tokens in STORE_TOKENS {
        for store in [false, true] {
            progress(&format!(
                "store {} · {tokens} tokens",
                if store { "on" } else { "off" }
            ));
            results.push(store_case(config, dynamodb, tokens, store).await?);
        }
    }
    Ok(results)
}

async fn store_case(
    config: &BenchConfig,
    dynamodb: &crate::dynamodb::DynamoDbConfig,
    tokens: u32,
    store: bool,
) -> anyhow::Result<StoreResult> {
    let mut stack_config = StackConfig::new(config.function.clone());
    stack_config.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    stack_config.concurrency = 1;
    stack_config.default_model = "scripted".into();
    stack_config.bedrock.scripted_gaps =
        Some((Duration::from_millis(20), Duration::from_millis(50)));
    stack_config.bedrock.scripted_repeat = true;
    stack_config.function_environment = vec![("RUST_LOG".into(), "warn".into())];
    if store {
        stack_config.dynamodb = Some(dynamodb.clone());
    } else {
        // The API keeps its quotas in its (in-memory) table; the function
        // gets none, stores nothing, and so gives no slot back: the bench's
        // turns, one after another, must not run out of slots.
        stack_config
            .function_environment
            .push(("CONVERSATIONS_TABLE".into(), String::new()));
        stack_config.api_environment = vec![("QUOTA_MAX_TURNS_IN_FLIGHT".into(), "1000000".into())];
    }
    let stack = Stack::start(stack_config).await?;
    if store && stack.dynamodb.is_none() {
        stack.shutdown().await;
        anyhow::bail!("the local DynamoDB did not start");
    }
    let measured = measure(&stack, config, tokens).await;
    stack.shutdown().await;
    let (delays, records) = measured.with_context(|| format!("store {store}, {tokens} tokens"))?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let average = |name: &str| -> Option<f64> {
        let values: Vec<f64> = records
            .iter()
            .filter_map(|r| r.get(name).and_then(Value::as_f64))
            .collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    };
    Ok(StoreResult {
        tokens,
        store,
        delay_p50_ms: ms(percentile(&delays, 50.0)),
        delay_p99_ms: ms(percentile(&delays, 99.0)),
        writes_per_turn: average("StoreWrites"),
        bytes_per_turn: average("StoreBytes"),
    })
}

/// A warm-up turn, then the measured ones: their added delays, and the
/// resolver's metrics record of each.
async fn measure(
    stack: &Stack,
    config: &BenchConfig,
    tokens: u32,
) -> anyhow::Result<(Vec<Duration>, Vec<Value>)> {
    let token = stack.token("bench");
    let client = stack.connect_as(&token).await?;
    one_turn(stack, &client, &token, "warm-up", 5).await?;
    let mut delays = Vec::new();
    let mut records = Vec::new();
    for n in 0..config.turns {
        let mut metrics = stack.lambda.metrics();
        let label = format!("store-{tokens}-{n}");
        let sample = one_turn(stack, &client, &token, &label, tokens).await?;
        records.push(metrics_of(&mut metrics, &sample.turn_id).await?);
        delays.extend(sample.delays);
    }
    Ok((delays, records))
}

/// The metrics record of turn `turn_id`, which the resolver prints after
/// the turn's record is written.
async fn metrics_of(
    metrics: &mut tokio::sync::broadcast::Receiver<Value>,
    turn_id: &str,
) -> anyhow::Result<Value> {
    let wait = async {
        loop {
            match metrics.recv().await {
                Ok(record) if record.get("turnId").and_then(Value::as_str) == Some(turn_id) => {
                    return Ok(record);
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => return Err(anyhow::anyhow!("no metrics record: {e}")),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .context("no metrics record for the turn")?
}
