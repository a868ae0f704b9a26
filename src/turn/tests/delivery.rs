//! Unit tests of the turn driver's delivery failures: a chunk that fails gets
//! one more try, the turn ends with a terminal `DeliveryError` chunk, and a
//! Lambda error only when nothing at all reached the user.

use super::*;

#[tokio::test]
async fn a_text_chunk_that_fails_gets_one_more_try_then_a_delivery_error_after_it() {
    let sink = Arc::new(Recorder {
        fail_once: Mutex::new(vec![0]),
        ..Default::default()
    });
    let (_cancel_tx, cancel) = tokio::sync::oneshot::channel();
    let (tx, driver) = spawn_turn(
        Arc::clone(&sink),
        Strategy::Adaptive,
        Duration::from_secs(1),
        cancel,
    );
    tx.send(delta("x")).unwrap();
    let report = driver.await.unwrap();
    assert!(tx.is_closed(), "the model stream was dropped");
    let outcome = report.result.unwrap();
    // seq 0 failed, went through on the last try; the terminal error is seq 1.
    let chunks = sink.chunks();
    assert_contiguous(&chunks);
    assert_eq!(chunks[0].text, "x");
    assert_eq!(
        chunks[1].error.as_ref().unwrap().error_type,
        ErrorType::Delivery.as_str()
    );
    assert!(chunks[1].error.as_ref().unwrap().retryable);
    assert_eq!(
        outcome.error_type.map(ErrorType::as_str),
        Some(ErrorType::Delivery.as_str())
    );
    assert_eq!(outcome.chunks, 2);
}

#[tokio::test]
async fn a_text_chunk_that_keeps_failing_is_replaced_by_the_delivery_error() {
    let sink = Arc::new(Recorder {
        fail_once: Mutex::new(vec![0, 0]),
        ..Default::default()
    });
    let (_cancel_tx, cancel) = tokio::sync::oneshot::channel();
    let (tx, driver) = spawn_turn(
        Arc::clone(&sink),
        Strategy::Adaptive,
        Duration::from_secs(1),
        cancel,
    );
    tx.send(delta("x")).unwrap();
    let outcome = driver.await.unwrap().result.unwrap();
    let chunks = sink.chunks();
    assert_eq!(chunks.len(), 1);
    assert_contiguous(&chunks);
    assert_eq!(chunks[0].text, "x", "the error chunk carries the lost text");
    assert_eq!(
        chunks[0].error.as_ref().unwrap().error_type,
        ErrorType::Delivery.as_str()
    );
    assert_eq!(outcome.chunks, 1);
}

#[tokio::test]
async fn a_terminal_chunk_that_fails_is_replaced_by_the_delivery_error() {
    let sink = Recorder {
        fail_once: Mutex::new(vec![1]),
        ..Default::default()
    };
    // "x" goes out alone as seq 0; "y" ends the turn as seq 1, which fails.
    let outcome = drive_plain(
        &ctx(&sink, 1024),
        &ids(),
        channel(vec![delta("x"), delta("y"), stop("end_turn")]),
    )
    .await
    .unwrap();
    assert_eq!(
        outcome.error_type.map(ErrorType::as_str),
        Some(ErrorType::Delivery.as_str())
    );
    let chunks = sink.chunks();
    assert_eq!(chunks.len(), 2);
    assert_contiguous(&chunks);
    assert_eq!(
        chunks[1].text, "y",
        "the error chunk carries the terminal chunk's text"
    );
    assert_eq!(chunks[1].stop_reason.as_deref(), Some("error"));
    assert!(chunks[1].error.as_ref().unwrap().retryable);
}

#[tokio::test]
async fn a_turn_that_delivers_nothing_returns_a_lambda_error() {
    let sink = Recorder {
        fail_seqs: vec![0],
        ..Default::default()
    };
    let err = drive_plain(&ctx(&sink, 1024), &ids(), channel(vec![delta("x")]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TurnError::Publish { seq: 0, .. }),
        "nothing was delivered"
    );
    assert_eq!(err.error_type(), ErrorType::Delivery);
    assert!(sink.chunks().is_empty());
}

#[tokio::test]
async fn once_text_was_delivered_the_turn_never_returns_a_lambda_error() {
    let sink = Arc::new(Recorder {
        fail_seqs: vec![1],
        ..Default::default()
    });
    let (_cancel_tx, cancel) = tokio::sync::oneshot::channel();
    let (tx, driver) = spawn_turn(
        Arc::clone(&sink),
        Strategy::Adaptive,
        Duration::from_secs(1),
        cancel,
    );
    tx.send(delta("a")).unwrap();
    recorded(&sink, 1).await;
    tx.send(delta("b")).unwrap();
    tx.send(stop("end_turn")).unwrap();
    drop(tx);
    let outcome = driver
        .await
        .unwrap()
        .result
        .expect("no Lambda error after text");
    assert_eq!(
        outcome.error_type.map(ErrorType::as_str),
        Some(ErrorType::Delivery.as_str())
    );
    assert_eq!(sink.chunks().len(), 1, "only seq 0 got through");
}
