//! Place in the data path: model -> **coalescer** (ours, `adaptive`) -> turn
//! driver -> sink.
//!
//! The policy ("publish when idle"):
//! - the first text goes out the moment it exists;
//! - afterwards at most one publish is in flight per turn, and every delta that
//!   arrives meanwhile is merged into the next chunk, so the chunk rate adapts to
//!   the publish round trip with no timer;
//! - when publishing is slow, text also lingers for a time proportional to the
//!   measured round trip ([`LINGER_ROUND_TRIPS`] times what it exceeds
//!   [`FREE_ROUND_TRIP`], at most [`MAX_LINGER`]): where each publish costs a
//!   network round trip, a chunk should be worth several of them. Near AppSync
//!   (a round trip of a few ms) nothing lingers; at 30 ms, chunks carry about
//!   seven round trips' worth of deltas, cutting mutations (and AppSync's bill)
//!   several-fold for well under the 300 ms a fixed timer adds;
//! - when the publish in flight is slow (AppSync retrying, a stalled
//!   connection) and pending text has waited `max_hold`, a second publish may
//!   start, so one stuck request does not stall the stream (subscribers order
//!   chunks by `seq`);
//! - a chunk holds at most `max_chunk_bytes` UTF-8 bytes and never splits a
//!   character; a delta bigger than that is spread over several chunks.

use std::time::Duration;

use tokio::time::Instant;

use super::{Coalesce, MIN_CHUNK_BYTES, Piece, split_front};
#[cfg(test)]
use crate::config::DEFAULT_MAX_HOLD;

/// How many publish round trips pending text may linger, beyond the free one.
pub(super) const LINGER_ROUND_TRIPS: u32 = 7;

/// A round trip this short costs nothing worth batching for: no linger.
pub(super) const FREE_ROUND_TRIP: Duration = Duration::from_millis(5);

/// The longest any text lingers, whatever the round trip (below the 300 ms a
/// fixed-timer strategy adds).
pub(super) const MAX_LINGER: Duration = Duration::from_millis(250);

/// Weight of the newest sample in the smoothed round trip.
const ROUND_TRIP_SMOOTHING: f64 = 0.3;

/// Most publishes [`Adaptive`] lets run at once: the normal one, plus one
/// started by the hold-time rule.
pub(crate) const MAX_IN_FLIGHT: usize = 2;

/// The publish-when-idle coalescer of one turn (strategy `adaptive`).
///
/// Usage as for every [`Coalesce`]: [`push`](Adaptive::push) every delta;
/// whenever [`take_ready`](Adaptive::take_ready) returns a piece, publish it,
/// then [`ack`](Adaptive::ack) once that publish has finished. After the model
/// stream ends, call [`finish`](Adaptive::finish) and keep taking (and acking)
/// until a piece with `last == true` has been taken.
#[derive(Debug, Clone)]
pub(crate) struct Adaptive {
    max_chunk_bytes: usize,
    max_hold: Duration,
    pending: String,
    /// When the oldest byte of `pending` arrived.
    pending_since: Option<Instant>,
    in_flight: usize,
    /// When each publish in flight started, oldest first.
    started: std::collections::VecDeque<Instant>,
    /// The smoothed publish round trip, once one has finished.
    round_trip: Option<Duration>,
    finished: bool,
    last_taken: bool,
}

impl Adaptive {
    /// A coalescer producing chunks of at most `max_chunk_bytes` UTF-8 bytes
    /// (raised to [`MIN_CHUNK_BYTES`] if smaller), with the
    /// [`DEFAULT_MAX_HOLD`] hold time.
    #[cfg(test)]
    pub(crate) fn new(max_chunk_bytes: usize) -> Self {
        Self::with_max_hold(max_chunk_bytes, DEFAULT_MAX_HOLD)
    }

    /// As [`Adaptive::new`] with hold time `max_hold`: pending text that has
    /// waited this long while a publish is in flight may start a second one.
    pub(crate) fn with_max_hold(max_chunk_bytes: usize, max_hold: Duration) -> Self {
        Self {
            max_chunk_bytes: max_chunk_bytes.max(MIN_CHUNK_BYTES),
            max_hold,
            pending: String::new(),
            pending_since: None,
            in_flight: 0,
            started: std::collections::VecDeque::new(),
            round_trip: None,
            finished: false,
            last_taken: false,
        }
    }

    /// Adds a model delta that arrived at `now`. Empty deltas and deltas after
    /// [`finish`](Adaptive::finish) are ignored.
    pub(crate) fn push(&mut self, delta: &str, now: Instant) {
        if self.finished || delta.is_empty() {
            return;
        }
        if self.pending.is_empty() {
            self.pending_since = Some(now);
        }
        self.pending.push_str(delta);
    }

    /// The next piece to publish, or `None` when nothing is pending (before
    /// `finish`), the last piece was already taken, or a publish is in flight
    /// and the pending text has waited less than the hold time (or
    /// [`MAX_IN_FLIGHT`] publishes are running). After `finish` pieces are
    /// handed out one at a time, with none in flight. Taking a piece counts a
    /// publish in flight until [`ack`](Adaptive::ack).
    pub(crate) fn take_ready(&mut self, now: Instant) -> Option<Piece> {
        if self.last_taken {
            return None;
        }
        let ready = if self.finished {
            self.in_flight == 0
        } else if self.pending.is_empty() {
            false
        } else if self.in_flight == 0 {
            self.pending_since
                .is_none_or(|since| now.saturating_duration_since(since) >= self.linger())
        } else {
            self.in_flight < MAX_IN_FLIGHT
                && self
                    .pending_since
                    .is_some_and(|since| now.saturating_duration_since(since) >= self.max_hold)
        };
        if !ready {
            return None;
        }
        let text = split_front(&mut self.pending, self.max_chunk_bytes);
        if self.pending.is_empty() {
            self.pending_since = None;
        }
        let last = self.finished && self.pending.is_empty();
        self.in_flight += 1;
        self.started.push_back(now);
        self.last_taken = last;
        Some(Piece { text, last })
    }

    /// One publish of a taken piece has finished (whatever its outcome).
    #[cfg(test)]
    pub(crate) fn ack(&mut self) {
        self.ack_at(Instant::now());
    }

    /// As [`ack`](Adaptive::ack), the publish having finished at `now`: its
    /// duration updates the smoothed round trip.
    pub(crate) fn ack_at(&mut self, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(start) = self.started.pop_front() {
            let sample = now.saturating_duration_since(start);
            self.round_trip = Some(match self.round_trip {
                None => sample,
                Some(rt) => {
                    rt.mul_f64(1.0 - ROUND_TRIP_SMOOTHING) + sample.mul_f64(ROUND_TRIP_SMOOTHING)
                }
            });
        }
    }

    /// How long pending text waits for more deltas when the publisher is idle:
    /// [`LINGER_ROUND_TRIPS`] times the round trip beyond [`FREE_ROUND_TRIP`],
    /// at most [`MAX_LINGER`]; zero before the first publish has returned.
    pub(crate) fn linger(&self) -> Duration {
        let Some(rt) = self.round_trip else {
            return Duration::ZERO;
        };
        (rt.saturating_sub(FREE_ROUND_TRIP) * LINGER_ROUND_TRIPS).min(MAX_LINGER)
    }

    /// The model stream has ended: no more deltas. From now on
    /// [`take_ready`](Adaptive::take_ready) drains what is pending and then
    /// yields one piece with `last == true` (with empty text if nothing is left).
    pub(crate) fn finish(&mut self) {
        self.finished = true;
    }

    /// When the hold time of the pending text ends while a publish is in
    /// flight: the moment a second publish may start.
    pub(crate) fn next_wakeup(&self) -> Option<Instant> {
        if self.finished || self.in_flight >= MAX_IN_FLIGHT {
            return None;
        }
        let since = self.pending_since?;
        if self.in_flight == 0 {
            let linger = self.linger();
            return (!linger.is_zero()).then_some(since + linger);
        }
        Some(since + self.max_hold)
    }

    /// True while a taken piece has not been acked.
    #[cfg(test)]
    pub(crate) fn is_in_flight(&self) -> bool {
        self.in_flight > 0
    }

    /// UTF-8 bytes waiting to be taken.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// True once the piece with `last == true` has been taken.
    pub(crate) fn is_done(&self) -> bool {
        self.last_taken
    }
}

impl Coalesce for Adaptive {
    fn push(&mut self, delta: &str, now: Instant) {
        Adaptive::push(self, delta, now);
    }
    fn finish(&mut self) {
        Adaptive::finish(self);
    }
    fn take_ready(&mut self, now: Instant) -> Option<Piece> {
        Adaptive::take_ready(self, now)
    }
    fn ack(&mut self, now: Instant) {
        Adaptive::ack_at(self, now);
    }
    fn next_wakeup(&self) -> Option<Instant> {
        Adaptive::next_wakeup(self)
    }
    fn is_done(&self) -> bool {
        Adaptive::is_done(self)
    }
    fn pending_bytes(&self) -> usize {
        Adaptive::pending_bytes(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed instant: these tests do not depend on time.
    fn t0() -> Instant {
        thread_local!(static T0: Instant = Instant::now());
        T0.with(|t| *t)
    }

    fn piece(text: &str, last: bool) -> Option<Piece> {
        Some(Piece {
            text: text.into(),
            last,
        })
    }

    #[test]
    fn first_delta_goes_out_immediately() {
        let mut c = Adaptive::new(16);
        assert_eq!(c.take_ready(t0()), None, "nothing pending yet");
        c.push("Hel", t0());
        assert_eq!(c.take_ready(t0()), piece("Hel", false));
        assert!(c.is_in_flight());
    }

    #[test]
    fn deltas_arriving_while_busy_are_merged_into_the_next_chunk() {
        let mut c = Adaptive::new(1024);
        c.push("A", t0());
        assert_eq!(c.take_ready(t0()), piece("A", false));
        c.push("B", t0());
        c.push("C", t0());
        assert_eq!(c.take_ready(t0()), None, "one publish in flight at most");
        c.push("D", t0());
        c.ack();
        assert_eq!(c.take_ready(t0()), piece("BCD", false));
        c.ack();
        assert_eq!(c.take_ready(t0()), None, "idle and nothing pending");
        c.push("E", t0());
        assert_eq!(
            c.take_ready(t0()),
            piece("E", false),
            "idle again: immediate"
        );
    }

    #[test]
    fn empty_deltas_do_not_make_chunks() {
        let mut c = Adaptive::new(8);
        c.push("", t0());
        assert_eq!(c.take_ready(t0()), None);
    }

    #[test]
    fn chunks_respect_the_byte_bound() {
        let mut c = Adaptive::new(4);
        c.push("abcdefghij", t0());
        let mut out = Vec::new();
        while let Some(p) = c.take_ready(t0()) {
            assert!(p.text.len() <= 4);
            out.push(p.text);
            c.ack();
        }
        assert_eq!(out, ["abcd", "efgh", "ij"]);
    }

    #[test]
    fn a_huge_delta_is_split_into_several_chunks() {
        let mut c = Adaptive::new(16 * 1024);
        let big = "x".repeat(40_000);
        c.push(&big, t0());
        c.finish();
        let mut out = Vec::new();
        while let Some(p) = c.take_ready(t0()) {
            out.push((p.text.len(), p.last));
            c.ack();
        }
        assert_eq!(out, [(16_384, false), (16_384, false), (7_232, true)]);
    }

    #[test]
    fn multibyte_characters_are_never_split() {
        // 'é' is 2 bytes, '€' 3, '😀' 4.
        for bound in 4..=9 {
            let text = "é€😀aé😀€😀😀b€";
            let mut c = Adaptive::new(bound);
            c.push(text, t0());
            c.finish();
            let mut joined = String::new();
            while let Some(p) = c.take_ready(t0()) {
                assert!(p.text.len() <= bound, "bound {bound}: {:?}", p.text);
                assert!(!p.text.is_empty() || p.last);
                joined.push_str(&p.text);
                c.ack();
            }
            assert_eq!(joined, text, "bound {bound}");
        }
    }

    #[test]
    fn bound_below_one_character_is_raised() {
        let mut c = Adaptive::new(1);
        c.push("😀😀", t0());
        assert_eq!(c.take_ready(t0()), piece("😀", false));
    }

    #[test]
    fn finish_drains_pending_text_and_marks_the_last_piece() {
        let mut c = Adaptive::new(1024);
        c.push("a", t0());
        assert_eq!(c.take_ready(t0()), piece("a", false));
        c.push("b", t0());
        c.finish();
        assert_eq!(c.take_ready(t0()), None, "still in flight");
        c.ack();
        assert_eq!(c.take_ready(t0()), piece("b", true));
        c.ack();
        assert!(c.is_done());
        assert_eq!(c.take_ready(t0()), None, "nothing after the last piece");
        c.push("late", t0());
        assert_eq!(c.pending_bytes(), 0, "deltas after finish are ignored");
    }

    #[test]
    fn finish_with_nothing_pending_yields_an_empty_last_piece() {
        let mut c = Adaptive::new(1024);
        c.finish();
        assert_eq!(c.take_ready(t0()), piece("", true));
        c.ack();
        assert_eq!(c.take_ready(t0()), None);

        let mut c = Adaptive::new(1024);
        c.push("all", t0());
        assert_eq!(c.take_ready(t0()), piece("all", false));
        c.ack();
        c.finish();
        assert_eq!(c.take_ready(t0()), piece("", true));
    }

    #[test]
    fn a_slow_publish_lets_held_text_start_a_second_one_after_the_hold_time() {
        let t = t0();
        let ms = Duration::from_millis;
        let mut c = Adaptive::with_max_hold(1024, ms(1000));
        c.push("A", t);
        assert_eq!(c.take_ready(t), piece("A", false));
        assert_eq!(c.next_wakeup(), None, "nothing pending");
        c.push("B", t + ms(100));
        c.push("C", t + ms(600));
        assert_eq!(
            c.next_wakeup(),
            Some(t + ms(1100)),
            "the hold time runs from the oldest pending byte"
        );
        assert_eq!(
            c.take_ready(t + ms(1099)),
            None,
            "still within the hold time"
        );
        assert_eq!(c.take_ready(t + ms(1100)), piece("BC", false));
        c.push("D", t + ms(1200));
        assert_eq!(
            c.take_ready(t + ms(5000)),
            None,
            "at most MAX_IN_FLIGHT publishes at once"
        );
        assert_eq!(c.next_wakeup(), None);
        c.ack();
        assert_eq!(c.take_ready(t + ms(5000)), piece("D", false));
        c.ack();
        c.ack();
        assert!(!c.is_in_flight());
    }

    #[test]
    fn the_last_piece_waits_for_every_publish_in_flight() {
        let t = t0();
        let ms = Duration::from_millis;
        let mut c = Adaptive::with_max_hold(1024, ms(10));
        c.push("A", t);
        assert_eq!(c.take_ready(t), piece("A", false));
        c.push("B", t);
        assert_eq!(c.take_ready(t + ms(10)), piece("B", false));
        c.push("C", t + ms(11));
        c.finish();
        assert_eq!(c.take_ready(t + ms(100)), None);
        c.ack();
        assert_eq!(c.take_ready(t + ms(100)), None, "one still in flight");
        c.ack();
        assert_eq!(c.take_ready(t + ms(100)), piece("C", true));
        assert!(c.is_done());
    }

    #[test]
    fn text_lingers_in_proportion_to_a_slow_round_trip() {
        let t = t0();
        let ms = |n: u64| Duration::from_millis(n);
        let mut c = Adaptive::new(1024);
        c.push("a", t);
        assert_eq!(
            c.take_ready(t),
            piece("a", false),
            "the first text goes at once"
        );
        c.ack_at(t + ms(35));
        assert_eq!(c.linger(), ms(30 * LINGER_ROUND_TRIPS as u64));
        c.push("b", t + ms(40));
        assert_eq!(c.take_ready(t + ms(41)), None, "lingering for more deltas");
        assert_eq!(c.next_wakeup(), Some(t + ms(40) + c.linger()));
        c.push("c", t + ms(90));
        assert_eq!(c.take_ready(t + ms(40) + c.linger()), piece("bc", false));
    }

    #[test]
    fn a_fast_round_trip_never_lingers_and_the_linger_is_capped() {
        let t = t0();
        let ms = |n: u64| Duration::from_millis(n);
        let mut c = Adaptive::new(1024);
        c.push("a", t);
        c.take_ready(t);
        c.ack_at(t + ms(4));
        assert_eq!(c.linger(), Duration::ZERO);
        c.push("b", t + ms(5));
        assert_eq!(c.take_ready(t + ms(5)), piece("b", false));
        assert_eq!(c.next_wakeup(), None);
        c.ack_at(t + ms(2005));
        assert_eq!(
            c.linger(),
            MAX_LINGER,
            "a 2 s round trip lingers at most MAX_LINGER"
        );
    }
}
