//! Place in the data path: model -> **coalescer** (the samples' `timer:MS`) ->
//! turn driver -> sink.
//!
//! A free-running timer, as the AppSync + Bedrock agent sample runs one (it
//! flushes a queue every 300 ms): ticks fall at `start + k * interval`, and
//! whatever text is pending at a tick is published then, or as soon as the
//! publish before it returns. Chunks hold at most `max_chunk_bytes` UTF-8
//! bytes; text left over by that bound goes out right after, without waiting
//! for the next tick.

use std::time::Duration;

use tokio::time::Instant;

use super::{Coalesce, MIN_CHUNK_BYTES, Piece, split_front};

/// Strategy `timer:MS`.
#[derive(Debug, Clone)]
pub(crate) struct Timer {
    interval: Duration,
    max_chunk_bytes: usize,
    start: Instant,
    pending: String,
    /// The tick at or after which the pending text is due.
    due: Option<Instant>,
    in_flight: bool,
    finished: bool,
    last_taken: bool,
}

impl Timer {
    /// A timer ticking every `interval` (at least 1 ms) from `start`, chunks of
    /// at most `max_chunk_bytes` UTF-8 bytes.
    pub(crate) fn new(interval: Duration, max_chunk_bytes: usize, start: Instant) -> Self {
        Self {
            interval: interval.max(Duration::from_millis(1)),
            max_chunk_bytes: max_chunk_bytes.max(MIN_CHUNK_BYTES),
            start,
            pending: String::new(),
            due: None,
            in_flight: false,
            finished: false,
            last_taken: false,
        }
    }

    /// The first tick at or after `at`.
    fn tick_at_or_after(&self, at: Instant) -> Instant {
        let elapsed = at.saturating_duration_since(self.start).as_nanos();
        let step = self.interval.as_nanos().max(1);
        let ticks = elapsed.div_ceil(step);
        let offset = u64::try_from(ticks.saturating_mul(step)).unwrap_or(u64::MAX);
        self.start + Duration::from_nanos(offset)
    }
}

impl Coalesce for Timer {
    fn push(&mut self, delta: &str, now: Instant) {
        if self.finished || delta.is_empty() {
            return;
        }
        if self.pending.is_empty() {
            self.due = Some(self.tick_at_or_after(now));
        }
        self.pending.push_str(delta);
    }

    fn finish(&mut self) {
        self.finished = true;
    }

    fn take_ready(&mut self, now: Instant) -> Option<Piece> {
        if self.in_flight || self.last_taken {
            return None;
        }
        let ready =
            self.finished || (!self.pending.is_empty() && self.due.is_some_and(|due| now >= due));
        if !ready {
            return None;
        }
        let text = split_front(&mut self.pending, self.max_chunk_bytes);
        if self.pending.is_empty() {
            self.due = None;
        }
        let last = self.finished && self.pending.is_empty();
        self.in_flight = true;
        self.last_taken = last;
        Some(Piece { text, last })
    }

    fn ack(&mut self, _now: Instant) {
        self.in_flight = false;
    }

    fn next_wakeup(&self) -> Option<Instant> {
        if self.finished || self.in_flight {
            return None;
        }
        self.due
    }

    fn is_done(&self) -> bool {
        self.last_taken
    }

    fn pending_bytes(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_waits_for_the_next_tick_of_a_free_running_timer() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let mut c = Timer::new(ms(300), 1024, t);
        c.push("a", t + ms(10));
        assert_eq!(c.next_wakeup(), Some(t + ms(300)));
        assert_eq!(c.take_ready(t + ms(299)), None);
        c.push("b", t + ms(200));
        let p = c.take_ready(t + ms(300)).expect("due at the tick");
        assert_eq!(p.text, "ab");
        assert_eq!(c.next_wakeup(), None, "in flight, nothing pending");
        // Text that arrives during a slow publish is due at the next tick
        // and goes out as soon as the publish returns.
        c.push("c", t + ms(320));
        assert_eq!(c.take_ready(t + ms(700)), None, "one publish at a time");
        c.ack(t);
        assert_eq!(
            c.take_ready(t + ms(700)).map(|p| p.text).as_deref(),
            Some("c")
        );
        c.ack(t);
        // A tick with nothing pending sends nothing; the grid does not move.
        c.push("d", t + ms(1250));
        assert_eq!(c.next_wakeup(), Some(t + ms(1500)));
    }

    #[test]
    fn finish_flushes_without_waiting_for_a_tick() {
        let t = Instant::now();
        let mut c = Timer::new(Duration::from_secs(10), 1024, t);
        c.push("x", t);
        c.finish();
        assert_eq!(
            c.take_ready(t),
            Some(Piece {
                text: "x".into(),
                last: true
            })
        );
    }
}
