//! Property tests of every coalescing strategy: for any deltas, any byte
//! bound and any timing of deltas and publishes, the pieces carry the text
//! exactly once and in order, each within the bound, and the turn ends with
//! exactly one last piece. Cases: `PROPTEST_CASES` (proptest's default 256).

use std::num::NonZeroUsize;
use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::Strategy as Generator;
use tokio::time::Instant;

use super::{Piece, Strategy};
use crate::limits::{MAX_CHUNK_BYTES, MIN_CHUNK_BYTES};

/// A delta arriving `gap_ms` after the previous event.
#[derive(Clone, Debug)]
struct Delta {
    text: String,
    gap_ms: u64,
}

fn strategy() -> impl Generator<Value = Strategy> {
    prop_oneof![
        Just(Strategy::Adaptive),
        Just(Strategy::PerDelta),
        (1usize..8).prop_map(|n| Strategy::FixedDeltas(NonZeroUsize::MIN.saturating_add(n - 1))),
        (1u64..200).prop_map(|ms| Strategy::Timer(Duration::from_millis(ms))),
        (1usize..40).prop_map(|n| Strategy::Chars(NonZeroUsize::MIN.saturating_add(n - 1))),
    ]
}

/// Text with ASCII, sentence ends, and two-, three- and four-byte characters.
fn delta() -> impl Generator<Value = Delta> {
    let text = proptest::collection::vec(
        prop_oneof![
            4 => proptest::char::range('a', 'z'),
            1 => Just(' '),
            1 => Just('.'),
            1 => Just('\n'),
            1 => Just('é'),
            1 => Just('€'),
            1 => Just('🦀'),
        ],
        0..24,
    )
    .prop_map(|chars| chars.into_iter().collect::<String>());
    (text, 0u64..120).prop_map(|(text, gap_ms)| Delta { text, gap_ms })
}

/// Drives `strategy` as the turn driver does (take every ready piece, each
/// publish acked when it finishes, wake at `next_wakeup`), with publishes
/// that take the next of `publish_ms` in turn, and returns the pieces.
fn drive(
    strategy: Strategy,
    max_chunk_bytes: usize,
    max_hold_ms: u64,
    deltas: &[Delta],
    publish_ms: &[u64],
) -> Result<Vec<Piece>, TestCaseError> {
    let t0 = Instant::now();
    let mut c = strategy.build(max_chunk_bytes, Duration::from_millis(max_hold_ms), t0);
    let mut pieces = Vec::new();
    let mut in_flight: Vec<Instant> = Vec::new();
    let mut publishes = publish_ms.iter().cycle();
    let mut now = t0;
    let mut next_delta = deltas.iter();
    let mut delta_at = deltas.first().map(|d| t0 + Duration::from_millis(d.gap_ms));
    let mut pending = next_delta.next();
    let mut finished = false;
    for _ in 0..100_000 {
        while let Some(piece) = c.take_ready(now) {
            // The terminal chunk must be the last one AppSync accepts.
            prop_assert!(
                !piece.last || in_flight.is_empty(),
                "the last piece while a publish is in flight"
            );
            let took = Duration::from_millis(*publishes.next().unwrap_or(&0));
            in_flight.push(now + took);
            pieces.push(piece);
        }
        if c.is_done() && in_flight.is_empty() {
            return Ok(pieces);
        }
        // The driver sleeps until the wakeup: one that is already due with
        // nothing ready would make it spin.
        let due = c.next_wakeup().filter(|w| *w <= now);
        prop_assert!(due.is_none(), "a wakeup already due with nothing ready");
        // The earliest of: a publish finishing, the strategy's wakeup, the
        // next delta (or the stream's end once every delta arrived).
        let ack = in_flight.iter().min().copied();
        let wakeup = c.next_wakeup().filter(|w| *w > now);
        let input = if finished {
            None
        } else {
            Some(delta_at.unwrap_or(now))
        };
        let Some(next) = [ack, wakeup, input].into_iter().flatten().min() else {
            return Err(TestCaseError::fail(
                "the turn stalled: nothing left to wait for",
            ));
        };
        now = now.max(next);
        if let Some(i) = in_flight.iter().position(|due| *due <= now) {
            in_flight.swap_remove(i);
            c.ack(now);
        } else if !finished && delta_at.is_none_or(|at| at <= now) {
            match pending {
                Some(delta) => {
                    c.push(&delta.text, now);
                    pending = next_delta.next();
                    delta_at = pending.map(|d| now + Duration::from_millis(d.gap_ms));
                }
                None => {
                    c.finish();
                    finished = true;
                }
            }
        }
    }
    Err(TestCaseError::fail(
        "the turn did not end within 100,000 steps",
    ))
}

proptest! {
    #[test]
    fn pieces_carry_every_delta_once_in_order_within_the_bound(
        strategy in strategy(),
        max_chunk_bytes in 0usize..64,
        max_hold_ms in 1u64..500,
        deltas in proptest::collection::vec(delta(), 0..40),
        publish_ms in proptest::collection::vec(0u64..300, 1..8),
    ) {
        let pieces = drive(strategy, max_chunk_bytes, max_hold_ms, &deltas, &publish_ms)?;
        let sent: String = deltas.iter().map(|d| d.text.as_str()).collect();
        let received: String = pieces.iter().map(|p| p.text.as_str()).collect();
        prop_assert_eq!(received, sent, "text lost, repeated or reordered");

        let bound = match strategy {
            Strategy::PerDelta => MAX_CHUNK_BYTES,
            _ => max_chunk_bytes.max(MIN_CHUNK_BYTES),
        };
        for piece in &pieces {
            // A bound below one character still sends that character whole.
            let one_char = piece.text.chars().count() == 1;
            prop_assert!(piece.text.len() <= bound || one_char, "{} bytes over a bound of {bound}", piece.text.len());
        }
        let (last, earlier) = pieces.split_last().ok_or_else(|| TestCaseError::fail("no pieces"))?;
        prop_assert!(last.last, "the final piece is not marked last");
        prop_assert!(earlier.iter().all(|p| !p.last), "a piece before the end is marked last");
        prop_assert!(earlier.iter().all(|p| !p.text.is_empty()), "an empty piece before the end");
    }
}
