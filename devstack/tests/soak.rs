//! A short soak through the real path (`devstack bench --soak`, bounded to
//! seconds here): users in turns while publishes fail and drop, the model
//! fails mid-answer and users cancel. Whatever the faults, no chunk is lost
//! and no text disagrees with the model's answer.

mod common;

use devstack::bench::BenchConfig;
use devstack::bench::soak::run_soak;

#[tokio::test]
async fn faults_lose_no_chunk_and_change_no_text() {
    let config = BenchConfig {
        function: common::resolver(),
        strategies: Vec::new(),
        round_trips: Vec::new(),
        tokens: 0,
        turns: 1,
    };
    let result = run_soak(&config, 2, 0.25, |_| {})
        .await
        .expect("the soak runs");
    assert!(result.turns >= 10, "{result:?}");
    assert!(
        result.injected_429s > 0 && result.injected_drops > 0 && result.model_exceptions > 0,
        "every kind of fault was injected: {result:?}"
    );
    assert!(
        result.completed > 0 && result.failed > 0 && result.cancelled > 0,
        "every kind of ending happened: {result:?}"
    );
    assert_eq!(
        (result.lost, result.conflicting, result.refused),
        (0, 0, 0),
        "{result:?}"
    );
}
