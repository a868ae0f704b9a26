//! `devstack bench`: the coalescing strategies side by side, and the
//! resolver's cold start, memory and size. A table on stdout, or `--json`.
//!
//! Place in the data path: the command line over [`crate::bench`], which
//! measures the whole path (model -> coalescer -> publisher -> AppSync ->
//! subscriber).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::bench::fanout::{self, run_fanout};
use crate::bench::soak::run_soak;
use crate::bench::store::run_store;
use crate::bench::transports;
use crate::bench::users::run_users;
use crate::bench::{BenchConfig, Report, STRATEGIES, run};
use crate::lambda::FunctionCommand;

// `devstack bench`'s flags (a doc comment would become part of `--help`).
#[derive(clap::Args)]
pub(super) struct BenchArgs {
    /// Simulated publish round trips, in milliseconds.
    #[arg(long, value_delimiter = ',', default_value = "0,30")]
    rtt: Vec<u64>,
    /// Strategies to compare (`COALESCE_STRATEGY` values).
    #[arg(long, value_delimiter = ',', default_values_t = STRATEGIES.map(String::from))]
    strategies: Vec<String>,
    /// Output tokens of each turn.
    #[arg(long, default_value_t = 500)]
    tokens: u32,
    /// Measured turns per strategy.
    #[arg(long, default_value_t = 1)]
    turns: usize,
    /// The resolver binary (default: `bootstrap` beside this executable).
    #[arg(long)]
    function: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Instead of the strategies: these numbers of users start a turn at
    /// the same moment (e.g. `10,50`); time to first chunk and cold starts.
    #[arg(long, value_delimiter = ',')]
    users: Vec<usize>,
    /// With `--users`: the function's concurrency limit (default: the
    /// number of users, so that none waits in the queue).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Instead of the strategies: the conversations table's cost, the same
    /// turns (500 and 2,000 tokens, 0 ms round trip) without and with it.
    #[arg(long)]
    store: bool,
    /// Instead of the strategies: one turn to each of these numbers of
    /// subscribers (e.g. `1,100,1000`); each chunk's spread between the first
    /// and the last subscriber, and chunks lost or duplicated.
    #[arg(long, value_delimiter = ',')]
    fanout: Vec<usize>,
    /// Instead of the strategies: USERS:MINUTES (e.g. `4:2`), that many users
    /// in turns for that long while publishes fail and drop, the model
    /// fails mid-answer and users cancel; chunks lost and memory.
    #[arg(long, value_parser = parse_soak)]
    soak: Option<(usize, f64)>,
    /// Instead of the strategies: the same token streams through AppSync,
    /// the function URL and the WebSocket API, side by side; latency,
    /// messages, bytes and cost per transport.
    #[arg(long)]
    transports: bool,
}

/// `USERS:MINUTES`, both positive.
fn parse_soak(s: &str) -> Result<(usize, f64), String> {
    let err = || {
        format!(
            "expected USERS:MINUTES, users positive, minutes above 0 and at most 1440, e.g. 4:2; got {s:?}"
        )
    };
    let (users, minutes) = s.split_once(':').ok_or_else(err)?;
    let users: usize = users.trim().parse().map_err(|_| err())?;
    let minutes: f64 = minutes.trim().parse().map_err(|_| err())?;
    // At most a day: a longer run is no soak of a loopback stack.
    if users == 0 || !(minutes > 0.0 && minutes <= 24.0 * 60.0) {
        return Err(err());
    }
    Ok((users, minutes))
}

/// Runs the bench with `args` against the resolver binary, then prints the
/// report (progress goes to stderr).
pub(super) async fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    super::init_tracing("warn");
    let program = match args.function {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("bootstrap"),
    };
    if !program.exists() {
        anyhow::bail!(
            "no resolver binary at {}: build it first with `cargo build --release -p bedrock-appsync-stream`",
            program.display()
        );
    }
    let config = BenchConfig {
        function: FunctionCommand {
            program,
            args: Vec::new(),
        },
        strategies: args.strategies,
        round_trips: args.rtt.into_iter().map(Duration::from_millis).collect(),
        tokens: args.tokens,
        turns: args.turns.max(1),
    };
    if args.store {
        return run_store_bench(&config, args.json).await;
    }
    if !args.users.is_empty() {
        return run_users_bench(&config, &args.users, args.concurrency, args.json).await;
    }
    if !args.fanout.is_empty() {
        return run_fanout_bench(&config, &args.fanout, args.json).await;
    }
    if let Some((users, minutes)) = args.soak {
        return run_soak_bench(&config, users, minutes, args.json).await;
    }
    if args.transports {
        return run_transports_bench(&config, args.json).await;
    }
    let report = run(&config, |step| eprintln!("bench: {step}")).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("report")?
        );
    } else {
        print_table(&report);
    }
    Ok(())
}

/// `--transports`: the three transports side by side, their functions
/// being this executable's `worker-url`, `worker-websocket` and
/// `worker-authorizer`.
async fn run_transports_bench(config: &BenchConfig, json: bool) -> anyhow::Result<()> {
    let functions = transports::TransportFunctions {
        url: super::self_as_url_function()?,
        websocket: super::self_as_websocket_functions()?,
    };
    let progress = |step: &str| eprintln!("bench: {step}");
    let report = transports::run_transports(config, functions, progress).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        transports::print_table(&report);
    }
    Ok(())
}

/// `--store`: the store comparison, on a local DynamoDB in a fresh
/// temporary directory.
async fn run_store_bench(config: &BenchConfig, json: bool) -> anyhow::Result<()> {
    let mut dynamodb = super::dynamodb_config(None)?;
    let data_dir = std::env::temp_dir().join(format!("devstack-bench-{}", uuid::Uuid::new_v4()));
    dynamodb.data_dir = Some(data_dir.clone());
    let results = run_store(config, &dynamodb, |step| eprintln!("bench: {step}")).await;
    let _ = std::fs::remove_dir_all(&data_dir);
    let results = results?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&results).context("report")?
        );
        return Ok(());
    }
    println!(
        "{} measured turn(s) each, adaptive strategy, recorded stream shape, 0 ms publish round trip\n",
        config.turns
    );
    println!(
        "{:>7} {:>6} {:>9} {:>9} {:>14} {:>14}",
        "tokens", "store", "p50 ms", "p99 ms", "writes/turn", "bytes/turn"
    );
    let or_dash = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
    for r in &results {
        println!(
            "{:>7} {:>6} {:>9.1} {:>9.1} {:>14} {:>14}",
            r.tokens,
            if r.store { "on" } else { "off" },
            r.delay_p50_ms,
            r.delay_p99_ms,
            or_dash(r.writes_per_turn),
            or_dash(r.bytes_per_turn),
        );
    }
    Ok(())
}

/// `--fanout`: one turn to N subscribers, one line per N.
async fn run_fanout_bench(
    config: &BenchConfig,
    counts: &[usize],
    json: bool,
) -> anyhow::Result<()> {
    let results = run_fanout(config, counts, |step| eprintln!("bench: {step}")).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&results).context("report")?
        );
        return Ok(());
    }
    println!(
        "one turn of {} tokens at {} tokens/s (scripted), every subscriber its own connection;",
        fanout::TOKENS,
        fanout::TOKENS_PER_SECOND
    );
    println!(
        "bare TCP: the same connections, messages and pace with no WebSocket or AppSync (the floor)\n"
    );
    println!(
        "{:>11} {:>7} {:>14} {:>14} {:>14} {:>6} {:>11} {:>9} {:>13} {:>13}",
        "subscribers",
        "chunks",
        "spread p50 ms",
        "spread p99 ms",
        "spread max ms",
        "lost",
        "duplicated",
        "msg bytes",
        "bare TCP p50",
        "bare TCP p99"
    );
    for r in &results {
        println!(
            "{:>11} {:>7} {:>14.2} {:>14.2} {:>14.2} {:>6} {:>11} {:>9} {:>13.2} {:>13.2}",
            r.subscribers,
            r.chunks,
            r.spread_p50_ms,
            r.spread_p99_ms,
            r.spread_max_ms,
            r.lost,
            r.duplicated,
            r.message_bytes,
            r.tcp_floor.p50_ms,
            r.tcp_floor.p99_ms
        );
    }
    Ok(())
}

/// `--soak`: the soak's counts, one per line.
async fn run_soak_bench(
    config: &BenchConfig,
    users: usize,
    minutes: f64,
    json: bool,
) -> anyhow::Result<()> {
    let r = run_soak(config, users, minutes, |step| eprintln!("bench: {step}")).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r).context("report")?);
        return Ok(());
    }
    println!(
        "{} users in turns for {} s, 60 tokens a turn (scripted), every 5th turn cancelled\n",
        r.users, r.seconds
    );
    println!(
        "turns {} (completed {}, failed {} of which {} by the injected model exception, cancelled {}) · prompts refused {}",
        r.turns, r.completed, r.failed, r.model_exceptions, r.cancelled, r.refused
    );
    println!(
        "chunks {} · repeats {} (dropped by clients) · lost {} · conflicting {}",
        r.chunks, r.repeats, r.lost, r.conflicting
    );
    println!(
        "faults: publishes 429 {} · dropped after effect {} · model exception windows {}",
        r.injected_429s, r.injected_drops, r.model_fault_windows
    );
    println!(
        "memory (RSS MB, after the first tenth -> end): devstack {:.1} -> {:.1} · {} environments {:.1} -> {:.1}",
        r.devstack_rss_early_mb,
        r.devstack_rss_end_mb,
        r.environments,
        r.workers_rss_early_mb,
        r.workers_rss_end_mb
    );
    Ok(())
}

/// `--users`: K users at once, one line per K.
async fn run_users_bench(
    config: &BenchConfig,
    users: &[usize],
    concurrency: Option<usize>,
    json: bool,
) -> anyhow::Result<()> {
    let results = run_users(config, users, concurrency, |step| {
        eprintln!("bench: {step}")
    })
    .await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&results).context("report")?
        );
        return Ok(());
    }
    println!("each user: own connection and conversation, 150 tokens at 50 tokens/s (scripted)\n");
    println!(
        "{:>6} {:>6} {:>10} {:>10} {:>6} {:>10} {:>10} {:>10} {:>12} {:>10} {:>7}",
        "users",
        "limit",
        "p50 ms",
        "max ms",
        "cold",
        "lone ms",
        "lone cold",
        "init ms",
        "loaded init",
        "target ms",
        "within"
    );
    for r in &results {
        println!(
            "{:>6} {:>6} {:>10.1} {:>10.1} {:>6} {:>10.1} {:>10.1} {:>10.1} {:>12.1} {:>10.1} {:>7}",
            r.users,
            r.concurrency,
            r.first_chunk_p50_ms,
            r.first_chunk_max_ms,
            r.cold_starts,
            r.lone_warm_ms,
            r.lone_cold_ms,
            r.cold_start_ms,
            r.loaded_init_p50_ms,
            r.target_ms,
            if r.within_target { "yes" } else { "no" },
        );
    }
    Ok(())
}

/// The report as a table: one line per scenario, round trip and strategy.
fn print_table(report: &Report) {
    println!(
        "{} tokens a turn, {} measured turn(s) per strategy, one subscriber\n",
        report.tokens_per_turn, report.turns_per_strategy
    );
    for s in &report.scenarios {
        println!("  {:<9} {}", s.name, s.description);
    }
    println!();
    println!(
        "{:<9} {:>4} {:<15} {:>9} {:>9} {:>10} {:>9} {:>9} {:>9} {:>10} {:>7}",
        "scenario",
        "rtt",
        "strategy",
        "mutations",
        "KB",
        "first ms",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "$/1k turns",
        "RSS MB"
    );
    for r in &report.results {
        println!(
            "{:<9} {:>4} {:<15} {:>9.1} {:>9.1} {:>10.1} {:>9.1} {:>9.1} {:>9.1} {:>10.4} {:>7}",
            r.scenario,
            r.round_trip_ms,
            r.strategy,
            r.mutations_per_turn,
            r.bytes_per_turn / 1024.0,
            r.first_text_ms,
            r.delay_p50_ms,
            r.delay_p95_ms,
            r.delay_p99_ms,
            r.cost_per_1000_turns_usd,
            r.resolver_peak_rss_mb
                .map_or("-".into(), |m| format!("{m:.1}")),
        );
    }
    let resolver = &report.resolver;
    println!(
        "\nresolver: cold start {:.1} ms (median of {}, spawn to first invocation/next) · binary {:.1} MB",
        resolver.cold_start_ms,
        resolver.cold_start_runs,
        resolver.binary_bytes as f64 / 1_048_576.0
    );
}
