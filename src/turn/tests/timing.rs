//! Unit tests of the turn driver's timing: a cancellation takes effect within
//! one delta and drops the model stream, and a stuck publish lets held text
//! out after the hold time.

use super::*;

#[tokio::test]
async fn a_cancellation_stops_the_turn_within_one_delta() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let permits = Arc::new(Semaphore::new(0));
    let sink = Arc::new(Gated {
        seen: seen_tx,
        permits: Arc::clone(&permits),
    });
    let (cancel_tx, cancel) = tokio::sync::oneshot::channel();
    let (tx, driver) = spawn_turn(sink, Strategy::Adaptive, Duration::from_secs(60), cancel);

    tx.send(delta("one")).unwrap();
    let c0 = seen.recv().await.unwrap();
    assert_eq!((c0.seq, c0.text.as_str()), (0, "one"));
    // Held behind the publish in flight.
    tx.send(delta(" two")).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    cancel_tx.send(()).unwrap();
    // Everything after the cancellation is never read.
    let _ = tx.send(delta(" three"));
    let _ = tx.send(delta(" four"));
    tokio::time::timeout(Duration::from_secs(5), async {
        while !tx.is_closed() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the model stream is dropped at once, before the publish returns");
    permits.add_permits(10);
    let c1 = seen.recv().await.unwrap();
    let outcome = driver.await.unwrap().result.unwrap();
    assert_eq!((c1.seq, c1.text.as_str(), c1.done), (1, " two", true));
    assert_eq!(c1.stop_reason.as_deref(), Some("cancelled"));
    assert_eq!(c1.usage, None, "Bedrock reported no usage");
    assert!(c1.error.is_none());
    assert_eq!(outcome.stop_reason, "cancelled");
    assert_eq!(outcome.chunks, 2);
    assert!(seen.try_recv().is_err(), "nothing after the terminal chunk");
}

#[tokio::test]
async fn a_cancellation_between_queued_deltas_takes_effect_before_the_next() {
    let sink = Recorder::default();
    let (tx, events) = ModelEvents::channel();
    for d in ["a", "b", "c", "d"] {
        tx.send(delta(d)).unwrap();
    }
    // The driver polls the cancel signal: (1) before reading "a", which it
    // publishes alone; (2) while that publish completes; (3) before
    // reading "b"; (4) before reading "c", queued behind "b". It fires there.
    let mut polls = 0;
    let cancel = std::future::poll_fn(move |_| {
        polls += 1;
        if polls >= 4 {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    });
    let report = drive(&ctx(&sink, 1024), &ids(), events, cancel).await;
    assert_eq!(report.result.unwrap().stop_reason, "cancelled");
    let chunks = sink.chunks();
    assert_contiguous(&chunks);
    let text: String = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(text, "ab", "c and d were never read");
    assert_eq!(report.stats.deltas, 2);
    assert!(tx.is_closed());
}

#[tokio::test]
async fn a_cancellation_before_any_text_ends_with_one_empty_cancelled_chunk() {
    let sink = Recorder::default();
    let (_tx, events) = ModelEvents::channel();
    let report = drive(&ctx(&sink, 1024), &ids(), events, std::future::ready(())).await;
    assert_eq!(report.result.unwrap().stop_reason, "cancelled");
    let chunks = sink.chunks();
    assert_eq!(chunks.len(), 1);
    assert_eq!((chunks[0].text.as_str(), chunks[0].done), ("", true));
    assert_eq!(chunks[0].stop_reason.as_deref(), Some("cancelled"));
}

#[tokio::test]
async fn a_stuck_publish_lets_held_text_go_out_after_the_hold_time() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let permits = Arc::new(Semaphore::new(0));
    let sink = Arc::new(Gated {
        seen: seen_tx,
        permits: Arc::clone(&permits),
    });
    let (_cancel_tx, cancel) = tokio::sync::oneshot::channel();
    let hold = Duration::from_millis(60);
    let (tx, driver) = spawn_turn(sink, Strategy::Adaptive, hold, cancel);
    tx.send(delta("A")).unwrap();
    assert_eq!(seen.recv().await.unwrap().text, "A");
    let held_at = Instant::now();
    tx.send(delta("B")).unwrap();
    let c1 = seen.recv().await.unwrap();
    assert_eq!(
        (c1.seq, c1.text.as_str()),
        (1, "B"),
        "a second publish while the first is stuck"
    );
    assert!(
        held_at.elapsed() >= hold - Duration::from_millis(5),
        "{:?}",
        held_at.elapsed()
    );
    tx.send(stop("end_turn")).unwrap();
    drop(tx);
    permits.add_permits(10);
    let last = seen.recv().await.unwrap();
    assert_eq!((last.seq, last.done), (2, true));
    let outcome = driver.await.unwrap().result.unwrap();
    assert_eq!(outcome.chunks, 3);
}
