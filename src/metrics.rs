//! Place in the data path: beside "model -> coalescer -> turn driver -> sink",
//! measuring it: one CloudWatch metrics record per turn.
//!
//! The record is a CloudWatch Embedded Metric Format (EMF) line printed to
//! stdout as its own JSON object; CloudWatch Logs extracts the metrics from it
//! (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>).
//! Namespace `BedrockAppSyncStream`, dimension `Strategy`; the turn id,
//! request id and stop reason ride along as searchable properties.

use std::io::Write;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use crate::vocabulary::StopReason;

/// The CloudWatch namespace of every metric.
pub(crate) const NAMESPACE: &str = "BedrockAppSyncStream";

/// What one turn did, as the turn driver measured it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TurnStats {
    /// From the start of the turn to the first text delta from the model.
    pub time_to_first_token: Option<Duration>,
    /// From the start of the turn to AppSync accepting its first chunk.
    pub time_to_first_publish: Option<Duration>,
    /// Text deltas received from the model.
    pub deltas: u64,
    /// Chunks AppSync accepted (the terminal one included).
    pub chunks_published: u64,
    /// Publish requests beyond the first of each chunk.
    pub publish_retries: u64,
    /// `usage.outputTokens` as Bedrock reported it, if it did.
    pub output_tokens: Option<u64>,
    /// `usage.totalTokens` (input plus output) as Bedrock reported it, if it
    /// did: what the turn counts against its owner's daily tokens.
    pub total_tokens: Option<u64>,
    /// Characters of answer text in the chunks AppSync accepted: what a turn
    /// without Bedrock's usage is charged by, with its input.
    pub answer_chars: u64,
    /// Calls to the conversations table that failed (the turn went on
    /// without them).
    pub store_errors: u64,
    /// `BatchWriteItem` calls that stored the turn's chunks; `None` without
    /// a conversations table.
    pub store_writes: Option<u64>,
    /// Bytes of the chunk items stored (DynamoDB's item size rule); `None`
    /// without a conversations table.
    pub store_bytes: Option<u64>,
}

/// One turn's metrics record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TurnMetrics<'a> {
    /// The coalescing strategy (`adaptive`, `fixed-deltas:6`, ...): the dimension.
    pub strategy: &'a str,
    /// The turn's `turnId`, a searchable property (not a dimension).
    pub turn_id: &'a str,
    /// The Lambda request id.
    pub request_id: &'a str,
    /// The terminal chunk's `stopReason`.
    pub stop_reason: &'a StopReason,
    /// The measurements.
    pub stats: &'a TurnStats,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl TurnMetrics<'_> {
    /// The EMF object for this turn at `timestamp_ms` (milliseconds since the
    /// Unix epoch):
    /// `{"_aws":{"Timestamp":ms,"CloudWatchMetrics":[{"Namespace":"BedrockAppSyncStream",
    /// "Dimensions":[["Strategy"]],"Metrics":[{"Name":...,"Unit":...}, ...]}]},
    /// "Strategy":..., <metric>: <value>, ..., "turnId":..., "requestId":..., "stopReason":...}`.
    ///
    /// Metrics: `TimeToFirstToken` and `TimeToFirstPublish` (Milliseconds;
    /// left out when the turn had no token or no accepted chunk), `Deltas`,
    /// `ChunksPublished`, `PublishRetries` (Count), `OutputTokens` (Count; left
    /// out when Bedrock reported no usage), `StoreErrors` (Count; left out
    /// when the conversations table answered every call), `StoreWrites`
    /// (Count) and `StoreBytes` (Bytes) of the turn's chunks (left out
    /// without a conversations table).
    pub(crate) fn to_emf(&self, timestamp_ms: u64) -> Value {
        let s = self.stats;
        let metrics: [(&str, &str, Option<u64>); 9] = [
            (
                "TimeToFirstToken",
                "Milliseconds",
                s.time_to_first_token.map(millis),
            ),
            (
                "TimeToFirstPublish",
                "Milliseconds",
                s.time_to_first_publish.map(millis),
            ),
            ("Deltas", "Count", Some(s.deltas)),
            ("ChunksPublished", "Count", Some(s.chunks_published)),
            ("PublishRetries", "Count", Some(s.publish_retries)),
            ("OutputTokens", "Count", s.output_tokens),
            (
                "StoreErrors",
                "Count",
                Some(s.store_errors).filter(|n| *n > 0),
            ),
            ("StoreWrites", "Count", s.store_writes),
            ("StoreBytes", "Bytes", s.store_bytes),
        ];
        let mut root = Map::new();
        let mut definitions = Vec::new();
        root.insert("Strategy".into(), json!(self.strategy));
        for (name, unit, value) in metrics {
            if let Some(v) = value {
                definitions.push(json!({"Name": name, "Unit": unit}));
                root.insert(name.into(), json!(v));
            }
        }
        root.insert("turnId".into(), json!(self.turn_id));
        root.insert("requestId".into(), json!(self.request_id));
        root.insert("stopReason".into(), json!(self.stop_reason));
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Strategy"]],
                    "Metrics": definitions,
                }]
            }),
        );
        Value::Object(root)
    }

    /// Prints the EMF object, stamped now, as one line on stdout.
    pub(crate) fn emit(&self) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(millis)
            .unwrap_or_default();
        let line = self.to_emf(now).to_string();
        let mut out = std::io::stdout().lock();
        // A lost metrics line must not fail the turn.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_emf_line_has_the_exact_documented_shape() {
        let stats = TurnStats {
            time_to_first_token: Some(Duration::from_micros(412_700)),
            time_to_first_publish: Some(Duration::from_millis(431)),
            deltas: 175,
            chunks_published: 21,
            publish_retries: 2,
            output_tokens: Some(480),
            total_tokens: Some(600),
            answer_chars: 2_000,
            store_errors: 0,
            store_writes: None,
            store_bytes: None,
        };
        let m = TurnMetrics {
            strategy: "adaptive",
            turn_id: "t1",
            request_id: "r1",
            stop_reason: &StopReason::Model("end_turn".into()),
            stats: &stats,
        };
        assert_eq!(
            m.to_emf(1_700_000_000_123),
            json!({
                "_aws": {
                    "Timestamp": 1_700_000_000_123u64,
                    "CloudWatchMetrics": [{
                        "Namespace": "BedrockAppSyncStream",
                        "Dimensions": [["Strategy"]],
                        "Metrics": [
                            {"Name": "TimeToFirstToken", "Unit": "Milliseconds"},
                            {"Name": "TimeToFirstPublish", "Unit": "Milliseconds"},
                            {"Name": "Deltas", "Unit": "Count"},
                            {"Name": "ChunksPublished", "Unit": "Count"},
                            {"Name": "PublishRetries", "Unit": "Count"},
                            {"Name": "OutputTokens", "Unit": "Count"}
                        ]
                    }]
                },
                "Strategy": "adaptive",
                "TimeToFirstToken": 412,
                "TimeToFirstPublish": 431,
                "Deltas": 175,
                "ChunksPublished": 21,
                "PublishRetries": 2,
                "OutputTokens": 480,
                "turnId": "t1",
                "requestId": "r1",
                "stopReason": "end_turn"
            })
        );
        // One line, one JSON object.
        let line = m.to_emf(0).to_string();
        assert!(!line.contains('\n'));
    }

    #[test]
    fn metrics_without_a_value_are_left_out() {
        let stats = TurnStats {
            chunks_published: 1,
            ..TurnStats::default()
        };
        let v = TurnMetrics {
            strategy: "per-delta",
            turn_id: "t",
            request_id: "r",
            stop_reason: &StopReason::Error,
            stats: &stats,
        }
        .to_emf(5);
        let names: Vec<&str> = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Deltas", "ChunksPublished", "PublishRetries"]);
        assert!(v.get("TimeToFirstToken").is_none());
        assert!(v.get("OutputTokens").is_none());
        assert_eq!(v["Deltas"], 0);
    }

    #[test]
    fn store_errors_are_a_metric_only_when_there_were_some() {
        let stats = TurnStats {
            store_errors: 1,
            ..TurnStats::default()
        };
        let v = TurnMetrics {
            strategy: "adaptive",
            turn_id: "t",
            request_id: "r",
            stop_reason: &StopReason::Model("end_turn".into()),
            stats: &stats,
        }
        .to_emf(5);
        assert_eq!(v["StoreErrors"], 1);
        let names = v["_aws"]["CloudWatchMetrics"][0]["Metrics"].to_string();
        assert!(names.contains("StoreErrors"), "{names}");
    }
}
