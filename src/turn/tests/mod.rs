//! Unit tests of the turn driver, over the test sinks: ordering, merging,
//! byte bounds, every ending, strategies and measurements. Delivery failures
//! are in `delivery`, cancellation and the hold rule in `timing`.

mod delivery;
mod timing;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use appsync_client::Usage;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use super::*;
use crate::chunk::Ending;
use crate::model::{ErrorKind, ModelError, ModelEvent, ModelItem};
use crate::sink::testing::{Gated, Recorder, assert_contiguous};
use crate::vocabulary::ErrorType;

fn ids() -> TurnIds {
    TurnIds::fixture()
}

fn ctx<S>(sink: &S, max_chunk_bytes: usize) -> TurnContext<'_, S> {
    TurnContext {
        sink,
        strategy: Strategy::Adaptive,
        max_chunk_bytes,
        max_hold: Duration::from_secs(1),
        deadline: None,
        started: Instant::now(),
    }
}

/// [`drive`] without cancellation, as a plain result.
async fn drive_plain<S: ChunkSink>(
    ctx: &TurnContext<'_, S>,
    ids: &TurnIds,
    events: ModelEvents,
) -> Result<TurnOutcome, TurnError> {
    drive(ctx, ids, events, std::future::pending()).await.result
}

fn delta(s: &str) -> Result<ModelEvent, ModelError> {
    Ok(ModelEvent::Delta(s.into()))
}

fn stop(s: &str) -> Result<ModelEvent, ModelError> {
    Ok(ModelEvent::Stop {
        stop_reason: s.into(),
    })
}

fn usage(i: i32, o: i32) -> Result<ModelEvent, ModelError> {
    Ok(ModelEvent::Usage {
        input_tokens: i,
        output_tokens: o,
        total_tokens: i + o,
    })
}

fn channel(items: Vec<Result<ModelEvent, ModelError>>) -> ModelEvents {
    let (tx, events) = ModelEvents::channel();
    for item in items {
        tx.send(item).unwrap();
    }
    events
}

#[tokio::test]
async fn first_delta_is_immediate_and_deltas_merge_while_a_publish_is_in_flight() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let permits = Arc::new(Semaphore::new(0));
    let sink = Arc::new(Gated {
        seen: seen_tx,
        permits: Arc::clone(&permits),
    });
    let (tx, rx) = mpsc::unbounded_channel();
    let driver = {
        let sink = Arc::clone(&sink);
        tokio::spawn(async move {
            drive_plain(&ctx(&*sink, 1024), &ids(), ModelEvents::from_receiver(rx)).await
        })
    };

    tx.send(delta("Hel")).unwrap();
    let c0 = seen.recv().await.unwrap();
    assert_eq!((c0.seq, c0.text.as_str(), c0.done), (0, "Hel", false));

    tx.send(delta("lo")).unwrap();
    tx.send(delta(", wor")).unwrap();
    permits.add_permits(1);
    let c1 = seen.recv().await.unwrap();
    assert_eq!((c1.seq, c1.text.as_str(), c1.done), (1, "lo, wor", false));

    tx.send(delta("ld")).unwrap();
    tx.send(stop("end_turn")).unwrap();
    tx.send(usage(4, 3)).unwrap();
    drop(tx);
    permits.add_permits(1);
    let c2 = seen.recv().await.unwrap();
    assert_eq!((c2.seq, c2.text.as_str(), c2.done), (2, "ld", true));
    assert_eq!(c2.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(
        c2.usage,
        Some(Usage {
            input_tokens: 4,
            output_tokens: 3,
            total_tokens: 7
        })
    );
    assert!(c2.error.is_none());
    permits.add_permits(1);
    let outcome = driver.await.unwrap().unwrap();
    assert_eq!(outcome.chunks, 3);
    assert_eq!(outcome.stop_reason, "end_turn");
    assert_eq!(outcome.error_type, None);
}

#[tokio::test]
async fn error_before_any_text_publishes_one_terminal_error_chunk() {
    let sink = Recorder::default();
    let err = ModelError::BeforeStream {
        kind: ErrorKind::Throttling,
        detail: "arn:aws:bedrock:secret-internal".into(),
    };
    let outcome = drive_plain(&ctx(&sink, 1024), &ids(), channel(vec![Err(err)]))
        .await
        .unwrap();
    let chunks = sink.chunks();
    assert_eq!(chunks.len(), 1);
    assert_contiguous(&chunks);
    let c = &chunks[0];
    assert_eq!(c.text, "");
    assert_eq!(c.stop_reason.as_deref(), Some("error"));
    let e = c.error.as_ref().unwrap();
    assert_eq!(e.error_type, "ThrottlingException");
    assert!(e.retryable);
    assert!(!e.message.contains("arn:"), "no internals in user messages");
    assert!(c.usage.is_none());
    assert_eq!(outcome.stop_reason, "error");
    assert_eq!(
        outcome.error_type.map(ErrorType::as_str),
        Some("ThrottlingException")
    );
}

#[tokio::test]
async fn mid_stream_error_keeps_the_text_and_ends_with_the_error() {
    let sink = Recorder::default();
    let err = ModelError::MidStream {
        kind: ErrorKind::ModelStreamError,
        detail: "boom".into(),
    };
    drive_plain(
        &ctx(&sink, 1024),
        &ids(),
        channel(vec![delta("par"), delta("tial"), Err(err)]),
    )
    .await
    .unwrap();
    let chunks = sink.chunks();
    assert_contiguous(&chunks);
    let text: String = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(text, "partial");
    let last = chunks.last().unwrap();
    assert_eq!(last.error.as_ref().unwrap().error_type, "ModelStreamError");
    assert_eq!(last.stop_reason.as_deref(), Some("error"));
}

#[tokio::test]
async fn missing_usage_is_reported_as_zeroes() {
    let sink = Recorder::default();
    drive_plain(
        &ctx(&sink, 1024),
        &ids(),
        channel(vec![delta("x"), stop("max_tokens")]),
    )
    .await
    .unwrap();
    let last = sink.chunks().pop().unwrap();
    assert_eq!(last.stop_reason.as_deref(), Some("max_tokens"));
    assert_eq!(
        last.usage,
        Some(Usage {
            input_tokens: 0,
            output_tokens: 0,
            total_tokens: 0
        })
    );
}

#[tokio::test]
async fn a_stream_without_message_stop_is_truncated() {
    let sink = Recorder::default();
    let outcome = drive_plain(&ctx(&sink, 1024), &ids(), channel(vec![delta("x")]))
        .await
        .unwrap();
    assert_eq!(
        outcome.error_type.map(ErrorType::as_str),
        Some("StreamTruncated")
    );
    assert!(sink.chunks().pop().unwrap().error.unwrap().retryable);
}

#[tokio::test]
async fn chunks_respect_the_byte_bound_and_stay_contiguous() {
    let sink = Recorder::default();
    let text = "ab€😀".repeat(20);
    drive_plain(
        &ctx(&sink, 8),
        &ids(),
        channel(vec![
            delta(&text),
            delta("tail"),
            stop("end_turn"),
            usage(1, 2),
        ]),
    )
    .await
    .unwrap();
    let chunks = sink.chunks();
    assert!(chunks.len() > 10);
    assert_contiguous(&chunks);
    assert!(chunks.iter().all(|c| c.text.len() <= 8));
    let joined: String = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(joined, format!("{text}tail"));
}

#[tokio::test]
async fn a_passed_deadline_ends_the_turn_with_stop_reason_deadline() {
    let sink = Recorder::default();
    let (_tx, rx) = mpsc::unbounded_channel();
    let ctx = TurnContext {
        deadline: Some(Instant::now() + Duration::from_millis(20)),
        ..ctx(&sink, 1024)
    };
    let outcome = drive_plain(&ctx, &ids(), ModelEvents::from_receiver(rx))
        .await
        .unwrap();
    assert_eq!(outcome.stop_reason, "deadline");
    let chunks = sink.chunks();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].stop_reason.as_deref(), Some("deadline"));
    assert!(chunks[0].error.is_none());
}

/// Drives a turn in a task over a channel the test feeds.
fn spawn_turn<S: ChunkSink + Send + 'static>(
    sink: Arc<S>,
    strategy: Strategy,
    max_hold: Duration,
    cancel: tokio::sync::oneshot::Receiver<()>,
) -> (
    UnboundedSender<ModelItem>,
    tokio::task::JoinHandle<TurnReport>,
) {
    let (tx, events) = ModelEvents::channel();
    let driver = tokio::spawn(async move {
        let ctx = TurnContext {
            strategy,
            max_hold,
            ..ctx(&*sink, 1024)
        };
        let cancel = async move {
            // A dropped sender means "never".
            if cancel.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        drive(&ctx, &ids(), events, cancel).await
    });
    (tx, driver)
}

/// Waits until `sink` has recorded `n` chunks.
async fn recorded(sink: &Recorder, n: usize) {
    let wait = async {
        while sink.chunks().len() < n {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .expect("chunks in time");
}

#[tokio::test]
async fn other_strategies_run_through_the_same_driver() {
    async fn texts(strategy: &str) -> Vec<String> {
        let mut items: Vec<_> = ["a", "b", "c", "d", "e"].into_iter().map(delta).collect();
        items.push(stop("end_turn"));
        let sink = Recorder::default();
        let ctx = TurnContext {
            strategy: strategy.parse().unwrap(),
            ..ctx(&sink, 1024)
        };
        drive_plain(&ctx, &ids(), channel(items)).await.unwrap();
        let chunks = sink.chunks();
        assert_contiguous(&chunks);
        chunks.into_iter().map(|c| c.text).collect()
    }
    assert_eq!(texts("fixed-deltas:2").await, ["ab", "cd", "e"]);
    assert_eq!(texts("per-delta").await, ["a", "b", "c", "d", "e"]);
    assert_eq!(texts("chars:3").await, ["abc", "de"]);
    // The first delta goes out alone at once; the rest, queued behind it,
    // are merged.
    assert_eq!(texts("adaptive").await, ["a", "bcde"]);
    assert_eq!(texts("timer:60000").await, ["abcde"], "the end flushes");
}

#[tokio::test]
async fn the_driver_measures_the_turn() {
    let sink = Recorder {
        attempts: 3,
        ..Default::default()
    };
    let report = drive(
        &ctx(&sink, 1024),
        &ids(),
        channel(vec![delta("a"), delta("b"), stop("end_turn"), usage(5, 7)]),
        std::future::pending(),
    )
    .await;
    report.result.unwrap();
    let s = report.stats;
    assert_eq!(s.deltas, 2);
    assert_eq!(
        s.chunks_published, 2,
        "\"a\" alone, then \"b\" with the end"
    );
    assert_eq!(s.publish_retries, 4);
    assert_eq!(s.output_tokens, Some(7));
    assert!(s.time_to_first_token.is_some() && s.time_to_first_publish.is_some());
    assert!(s.time_to_first_token <= s.time_to_first_publish);
}

#[test]
fn outcome_serialises_to_the_documented_shape() {
    let o = TurnOutcome::ended(
        &ids(),
        3,
        &Ending::Completed {
            stop_reason: "end_turn".into(),
            usage: Usage {
                input_tokens: 0,
                output_tokens: 0,
                total_tokens: 0,
            },
        },
    );
    assert_eq!(
        serde_json::to_value(&o).unwrap(),
        serde_json::json!({"conversationId": "c1", "turnId": "t1", "chunks": 3, "stopReason": "end_turn"})
    );
    assert_eq!(
        serde_json::to_value(TurnOutcome::duplicate(&ids())).unwrap(),
        serde_json::json!({"conversationId": "c1", "turnId": "t1", "chunks": 0,
                           "stopReason": "duplicate", "duplicate": true})
    );
}
