//! `devstack bench --fanout` through the real path, with few subscribers:
//! every subscriber gets every chunk of the turn exactly once, each timed as
//! it was read, and the bare-TCP floor is measured beside it.
//!
//! Place in the data path: resolver --publishChunk--> AppSync -> **fan-out**
//! -> N real-time connections -> N subscribers, and the bench that times it.

mod common;

use devstack::bench::BenchConfig;
use devstack::bench::fanout::run_fanout;

#[tokio::test]
async fn every_subscriber_gets_every_chunk_once() {
    let config = BenchConfig {
        function: common::resolver(),
        strategies: Vec::new(),
        round_trips: Vec::new(),
        tokens: 0,
        turns: 1,
    };
    let results = run_fanout(&config, &[20], |_| {})
        .await
        .expect("the fan-out runs");
    for result in &results {
        assert!(result.chunks > 10, "a long turn in many chunks: {result:?}");
        assert_eq!((result.lost, result.duplicated), (0, 0), "{result:?}");
        assert!(result.message_bytes > 100, "{result:?}");
        assert!(result.spread_p50_ms <= result.spread_p99_ms, "{result:?}");
        assert!(result.spread_p99_ms <= result.spread_max_ms, "{result:?}");
    }
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].subscribers, 20);
    assert!(results[0].tcp_floor.p99_ms > 0.0, "{:?}", results[0]);
}
