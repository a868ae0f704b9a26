//! Place in the data path: model -> **coalescer** (the samples' strategies
//! `per-delta`, `fixed-deltas:N`, `chars:N`) -> turn driver -> sink.
//!
//! These strategies decide chunk boundaries as deltas arrive, the way the
//! public samples do in their read loop: a group of deltas closes when the
//! strategy's rule says so, and closed groups are published one at a time in
//! order. A group bigger than the byte bound is split.

use std::collections::VecDeque;
use std::num::NonZeroUsize;

use tokio::time::Instant;

use super::{Coalesce, MAX_CHUNK_BYTES, MIN_CHUNK_BYTES, Piece, split_front};

/// The machinery the grouping strategies share: closed groups waiting to be
/// published, the open group, one publish at a time, and the last piece.
#[derive(Debug, Clone)]
struct Groups {
    max_chunk_bytes: usize,
    closed: VecDeque<String>,
    open: String,
    /// Deltas in `open`.
    open_deltas: usize,
    in_flight: bool,
    finished: bool,
    last_taken: bool,
}

impl Groups {
    fn new(max_chunk_bytes: usize) -> Self {
        Self {
            max_chunk_bytes: max_chunk_bytes.max(MIN_CHUNK_BYTES),
            closed: VecDeque::new(),
            open: String::new(),
            open_deltas: 0,
            in_flight: false,
            finished: false,
            last_taken: false,
        }
    }

    /// Appends a delta to the open group; false if it was ignored.
    fn push(&mut self, delta: &str) -> bool {
        if self.finished || delta.is_empty() {
            return false;
        }
        self.open.push_str(delta);
        self.open_deltas += 1;
        true
    }

    fn close_open(&mut self) {
        if !self.open.is_empty() {
            self.closed.push_back(std::mem::take(&mut self.open));
        }
        self.open_deltas = 0;
    }

    fn finish(&mut self) {
        if !self.finished {
            self.close_open();
            self.finished = true;
        }
    }

    fn take_ready(&mut self) -> Option<Piece> {
        if self.in_flight || self.last_taken {
            return None;
        }
        let text = match self.closed.front_mut() {
            Some(front) => {
                let text = split_front(front, self.max_chunk_bytes);
                if front.is_empty() {
                    self.closed.pop_front();
                }
                text
            }
            None if self.finished => String::new(),
            None => return None,
        };
        let last = self.finished && self.closed.is_empty();
        self.in_flight = true;
        self.last_taken = last;
        Some(Piece { text, last })
    }

    fn ack(&mut self) {
        self.in_flight = false;
    }

    fn pending_bytes(&self) -> usize {
        self.closed.iter().map(String::len).sum::<usize>() + self.open.len()
    }
}

macro_rules! delegate_groups {
    ($ty:ty) => {
        impl Coalesce for $ty {
            fn push(&mut self, delta: &str, _now: Instant) {
                if self.groups.push(delta)
                    && self.closes(&self.groups.open, self.groups.open_deltas)
                {
                    self.groups.close_open();
                }
            }
            fn finish(&mut self) {
                self.groups.finish();
            }
            fn take_ready(&mut self, _now: Instant) -> Option<Piece> {
                self.groups.take_ready()
            }
            fn ack(&mut self, _now: Instant) {
                self.groups.ack();
            }
            fn next_wakeup(&self) -> Option<Instant> {
                None
            }
            fn is_done(&self) -> bool {
                self.groups.last_taken
            }
            fn pending_bytes(&self) -> usize {
                self.groups.pending_bytes()
            }
        }
    };
}

/// Strategy `per-delta`: one publish per delta, as the AWS blog sample and the
/// Amplify AI kit do. Deltas are never merged; only a delta above
/// [`MAX_CHUNK_BYTES`] (never seen in practice) is split.
#[derive(Debug, Clone)]
pub(crate) struct PerDelta {
    groups: Groups,
}

impl PerDelta {
    /// A fresh per-delta state.
    pub(crate) fn new() -> Self {
        Self {
            groups: Groups::new(MAX_CHUNK_BYTES),
        }
    }

    fn closes(&self, _open: &str, _deltas: usize) -> bool {
        true
    }
}

impl Default for PerDelta {
    fn default() -> Self {
        Self::new()
    }
}

delegate_groups!(PerDelta);

/// Strategy `fixed-deltas:N`: one publish per N deltas (the
/// bedrock-appsync-streaming sample uses 6), chunks of at most
/// `max_chunk_bytes` UTF-8 bytes.
#[derive(Debug, Clone)]
pub(crate) struct FixedDeltas {
    every: NonZeroUsize,
    groups: Groups,
}

impl FixedDeltas {
    /// Groups of `every` deltas, split above `max_chunk_bytes`.
    pub(crate) fn new(every: NonZeroUsize, max_chunk_bytes: usize) -> Self {
        Self {
            every,
            groups: Groups::new(max_chunk_bytes),
        }
    }

    fn closes(&self, _open: &str, deltas: usize) -> bool {
        deltas >= self.every.get()
    }
}

delegate_groups!(FixedDeltas);

/// Strategy `chars:N`: publish once the open group has N characters or holds a
/// sentence end (`.`, `!` or `?` followed by a space or newline), as the
/// serverless-patterns sample does with 100; chunks of at most
/// `max_chunk_bytes` UTF-8 bytes.
#[derive(Debug, Clone)]
pub(crate) struct Chars {
    min_chars: NonZeroUsize,
    groups: Groups,
}

impl Chars {
    /// Groups of `min_chars` characters or one sentence, split above `max_chunk_bytes`.
    pub(crate) fn new(min_chars: NonZeroUsize, max_chunk_bytes: usize) -> Self {
        Self {
            min_chars,
            groups: Groups::new(max_chunk_bytes),
        }
    }

    fn closes(&self, open: &str, _deltas: usize) -> bool {
        open.chars().count() >= self.min_chars.get() || has_sentence_end(open)
    }
}

delegate_groups!(Chars);

/// True when `text` holds `.`, `!` or `?` followed by a space or a newline.
pub(crate) fn has_sentence_end(text: &str) -> bool {
    text.as_bytes()
        .windows(2)
        .any(|w| matches!(w[0], b'.' | b'!' | b'?') && matches!(w[1], b' ' | b'\n'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    #[test]
    fn sentence_ends_need_a_following_space_or_newline() {
        assert!(has_sentence_end("Hi. there"));
        assert!(has_sentence_end("Done!\n"));
        assert!(has_sentence_end("Why? "));
        assert!(!has_sentence_end("3.14"));
        assert!(!has_sentence_end("end."));
        assert!(!has_sentence_end("a,b c"));
    }

    #[test]
    fn groups_are_published_one_at_a_time_in_order() {
        let t = Instant::now();
        let mut c = FixedDeltas::new(nz(2), 1024);
        for d in ["a", "b", "c", "d", "e"] {
            c.push(d, t);
        }
        assert_eq!(c.take_ready(t).map(|p| p.text).as_deref(), Some("ab"));
        assert_eq!(c.take_ready(t), None, "one publish at a time");
        c.ack(t);
        assert_eq!(c.take_ready(t).map(|p| p.text).as_deref(), Some("cd"));
        c.ack(t);
        assert_eq!(
            c.take_ready(t),
            None,
            "the open group waits for its Nth delta"
        );
        c.finish();
        assert_eq!(
            c.take_ready(t),
            Some(Piece {
                text: "e".into(),
                last: true
            })
        );
        assert!(c.is_done());
    }

    #[test]
    fn per_delta_never_merges_even_when_busy() {
        let t = Instant::now();
        let mut c = PerDelta::new();
        assert_eq!(c.take_ready(t), None);
        c.push("a", t);
        assert_eq!(c.take_ready(t).map(|p| p.text).as_deref(), Some("a"));
        c.push("b", t);
        c.push("c", t);
        c.ack(t);
        assert_eq!(c.take_ready(t).map(|p| p.text).as_deref(), Some("b"));
        c.ack(t);
        assert_eq!(c.take_ready(t).map(|p| p.text).as_deref(), Some("c"));
        assert_eq!(c.pending_bytes(), 0);
    }

    #[test]
    fn chars_closes_at_the_count_or_a_sentence_end() {
        let t = Instant::now();
        let mut c = Chars::new(nz(5), 1024);
        c.push("héllo", t); // 5 characters, 6 bytes
        assert_eq!(c.take_ready(t).map(|p| p.text).as_deref(), Some("héllo"));
        c.ack(t);
        c.push("Hi.", t);
        assert_eq!(c.take_ready(t), None);
        c.push(" Yo", t);
        assert_eq!(c.take_ready(t).map(|p| p.text).as_deref(), Some("Hi. Yo"));
    }
}
