//! Unit tests of the invocation handler: rejections become a terminal chunk,
//! the soft deadline keeps a reserve.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::*;
use crate::coalesce::Strategy;
use crate::event::{TurnIds, ValidationError};
use crate::sink::testing::{Recorder, assert_contiguous};

fn ctx(sink: &Recorder) -> TurnContext<'_, Recorder> {
    TurnContext {
        sink,
        strategy: Strategy::Adaptive,
        max_chunk_bytes: 1024,
        max_hold: Duration::from_secs(1),
        deadline: None,
        started: Instant::now(),
    }
}

fn ids() -> TurnIds {
    TurnIds::fixture()
}

#[tokio::test]
async fn a_rejection_with_ids_is_published_as_a_validation_error_chunk() {
    let sink = Recorder::default();
    let err = reject(
        &ctx(&sink),
        Rejection {
            ids: Some(ids()),
            error: ValidationError::MaxTokensOutOfRange(0),
        },
    )
    .await;
    assert_eq!(err.error_type().as_str(), "ValidationException");
    let chunks = sink.chunks();
    assert_eq!(chunks.len(), 1);
    assert_contiguous(&chunks);
    let e = chunks[0].error.as_ref().unwrap();
    assert_eq!(e.error_type, "ValidationException");
    assert!(!e.retryable);
    assert!(e.message.contains("maxTokens"));

    let sink = Recorder::default();
    reject(
        &ctx(&sink),
        Rejection {
            ids: None,
            error: ValidationError::MissingIdentity,
        },
    )
    .await;
    assert!(sink.chunks().is_empty(), "no ids, no chunk");
}

#[test]
fn soft_deadline_keeps_a_reserve() {
    assert_eq!(soft_deadline(0, SystemTime::now()), None);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
    let before = Instant::now();
    let d = soft_deadline(1_060_000, now).unwrap();
    let left = d - before;
    assert!(
        left <= Duration::from_secs(57) + Duration::from_millis(50),
        "{left:?}"
    );
    assert!(left >= Duration::from_secs(56), "{left:?}");
    // Already past: stop now.
    assert!(soft_deadline(1, now).unwrap() <= Instant::now());
}
