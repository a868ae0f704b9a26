//! `devstack bench --transports` through the real path, with short turns:
//! every transport delivers whole turns, and the report's numbers are
//! internally consistent (the WebSocket API and AppSync charge per message,
//! the function URL only Lambda time).
//!
//! Place in the data path: the whole of each transport, client -> AppSync,
//! the function URL or the WebSocket API -> Lambda -> Bedrock -> back, and
//! the bench that times it.

mod common;

use devstack::bench::BenchConfig;
use devstack::bench::transports::{TransportFunctions, run_transports};
use devstack::lambda::FunctionCommand;

fn worker(command: &str) -> FunctionCommand {
    FunctionCommand {
        program: env!("CARGO_BIN_EXE_devstack").into(),
        args: vec![command.into()],
    }
}

#[tokio::test]
async fn every_transport_is_measured_on_whole_turns() {
    let config = BenchConfig {
        function: common::resolver(),
        strategies: Vec::new(),
        round_trips: Vec::new(),
        tokens: 40,
        turns: 1,
    };
    let functions = TransportFunctions {
        url: worker("worker-url"),
        websocket: devstack::WebSocketFunctions {
            function: worker("worker-websocket"),
            authorizer: worker("worker-authorizer"),
        },
    };
    let report = run_transports(&config, functions, |_| {})
        .await
        .expect("the bench runs");
    let names: Vec<&str> = report.results.iter().map(|r| r.transport).collect();
    assert_eq!(names, ["appsync", "function-url", "websocket"]);
    for r in &report.results {
        assert!(
            r.messages_per_turn >= 2.0,
            "text and a terminal chunk: {r:?}"
        );
        assert!(r.bytes_per_turn > 100.0, "{r:?}");
        assert!(r.first_text_ms > 0.0, "{r:?}");
        assert!(r.delay_p50_ms <= r.delay_p99_ms, "{r:?}");
        assert!(r.cost_per_1000_turns_usd > 0.0, "{r:?}");
    }
    let cost = |name: &str| {
        report
            .results
            .iter()
            .find(|r| r.transport == name)
            .map(|r| r.cost_per_1000_turns_usd)
            .unwrap_or_default()
    };
    assert!(cost("function-url") < cost("websocket"), "{report:?}");
    assert!(cost("websocket") < cost("appsync"), "{report:?}");
}
