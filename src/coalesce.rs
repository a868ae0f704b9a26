//! Place in the data path: model -> **coalescer** -> publisher -> AppSync -> subscriber.
//!
//! Turns model text deltas into chunk texts. The policy ("publish when idle"):
//! - the first text goes out the moment it exists;
//! - afterwards at most one publish is in flight per turn, and every delta that
//!   arrives meanwhile is merged into the next chunk, so the chunk rate adapts to
//!   the publish round trip with no timer;
//! - a chunk holds at most `max_chunk_bytes` UTF-8 bytes and never splits a
//!   character; a delta bigger than that is spread over several chunks.
//!
//! AppSync bills every mutation and every delivered message
//! (<https://aws.amazon.com/appsync/pricing/>) and drops a subscription message
//! above 240 KB (<https://docs.aws.amazon.com/general/latest/gr/appsync.html>);
//! merging bounds the first, the byte bound the second.
//!
//! [`Coalescer`] is a pure state machine; `turn` drives it with tokio.

/// A piece of text ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The chunk text, at most `max_chunk_bytes` UTF-8 bytes. Empty only on the
    /// last piece of a turn that has nothing left to add.
    pub text: String,
    /// True on the turn's terminal piece: [`Coalescer::finish`] was called and no
    /// text remains after this one.
    pub last: bool,
}

/// The publish-when-idle coalescer of one turn.
///
/// Usage: [`push`](Coalescer::push) every delta; whenever the publisher is idle,
/// call [`take_ready`](Coalescer::take_ready) and publish what it returns, then
/// [`ack`](Coalescer::ack) once that publish has finished. After the model stream
/// ends, call [`finish`](Coalescer::finish) and keep taking (and acking) until a
/// piece with `last == true` has been taken.
#[derive(Debug, Clone)]
pub struct Coalescer {
    max_chunk_bytes: usize,
    pending: String,
    in_flight: bool,
    finished: bool,
    last_taken: bool,
}

impl Coalescer {
    /// Smallest usable bound: one UTF-8 character.
    pub const MIN_CHUNK_BYTES: usize = 4;

    /// A coalescer producing chunks of at most `max_chunk_bytes` UTF-8 bytes
    /// (raised to [`Coalescer::MIN_CHUNK_BYTES`] if smaller).
    pub fn new(max_chunk_bytes: usize) -> Self {
        Self {
            max_chunk_bytes: max_chunk_bytes.max(Self::MIN_CHUNK_BYTES),
            pending: String::new(),
            in_flight: false,
            finished: false,
            last_taken: false,
        }
    }

    /// Adds a model delta to the pending text. Empty deltas and deltas after
    /// [`finish`](Coalescer::finish) are ignored.
    pub fn push(&mut self, delta: &str) {
        if !self.finished {
            self.pending.push_str(delta);
        }
    }

    /// The next piece to publish, or `None` when a publish is in flight, nothing
    /// is pending (before `finish`), or the last piece was already taken.
    /// Taking a piece marks a publish in flight until [`ack`](Coalescer::ack).
    pub fn take_ready(&mut self) -> Option<Piece> {
        if self.in_flight || self.last_taken {
            return None;
        }
        if self.pending.is_empty() && !self.finished {
            return None;
        }
        let text = self.split_front();
        let last = self.finished && self.pending.is_empty();
        self.in_flight = true;
        self.last_taken = last;
        Some(Piece { text, last })
    }

    /// The publish of the last taken piece has finished (whatever its outcome):
    /// the publisher is idle again.
    pub fn ack(&mut self) {
        self.in_flight = false;
    }

    /// The model stream has ended: no more deltas. From now on
    /// [`take_ready`](Coalescer::take_ready) drains what is pending and then
    /// yields one piece with `last == true` (with empty text if nothing is left).
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// True while a taken piece has not been acked.
    pub fn is_in_flight(&self) -> bool {
        self.in_flight
    }

    /// UTF-8 bytes waiting to be taken.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// True once the piece with `last == true` has been taken.
    pub fn is_done(&self) -> bool {
        self.last_taken
    }

    /// Removes and returns the longest prefix of `pending` that fits the byte
    /// bound and ends on a character boundary.
    fn split_front(&mut self) -> String {
        if self.pending.len() <= self.max_chunk_bytes {
            return std::mem::take(&mut self.pending);
        }
        let mut cut = self.max_chunk_bytes;
        while !self.pending.is_char_boundary(cut) {
            cut -= 1;
        }
        let rest = self.pending.split_off(cut);
        std::mem::replace(&mut self.pending, rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(text: &str, last: bool) -> Option<Piece> {
        Some(Piece {
            text: text.into(),
            last,
        })
    }

    #[test]
    fn first_delta_goes_out_immediately() {
        let mut c = Coalescer::new(16);
        assert_eq!(c.take_ready(), None, "nothing pending yet");
        c.push("Hel");
        assert_eq!(c.take_ready(), piece("Hel", false));
        assert!(c.is_in_flight());
    }

    #[test]
    fn deltas_arriving_while_busy_are_merged_into_the_next_chunk() {
        let mut c = Coalescer::new(1024);
        c.push("A");
        assert_eq!(c.take_ready(), piece("A", false));
        c.push("B");
        c.push("C");
        assert_eq!(c.take_ready(), None, "one publish in flight at most");
        c.push("D");
        c.ack();
        assert_eq!(c.take_ready(), piece("BCD", false));
        c.ack();
        assert_eq!(c.take_ready(), None, "idle and nothing pending");
        c.push("E");
        assert_eq!(c.take_ready(), piece("E", false), "idle again: immediate");
    }

    #[test]
    fn empty_deltas_do_not_make_chunks() {
        let mut c = Coalescer::new(8);
        c.push("");
        assert_eq!(c.take_ready(), None);
    }

    #[test]
    fn chunks_respect_the_byte_bound() {
        let mut c = Coalescer::new(4);
        c.push("abcdefghij");
        let mut out = Vec::new();
        while let Some(p) = c.take_ready() {
            assert!(p.text.len() <= 4);
            out.push(p.text);
            c.ack();
        }
        assert_eq!(out, ["abcd", "efgh", "ij"]);
    }

    #[test]
    fn a_huge_delta_is_split_into_several_chunks() {
        let mut c = Coalescer::new(16 * 1024);
        let big = "x".repeat(40_000);
        c.push(&big);
        c.finish();
        let mut out = Vec::new();
        while let Some(p) = c.take_ready() {
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
            let mut c = Coalescer::new(bound);
            c.push(text);
            c.finish();
            let mut joined = String::new();
            while let Some(p) = c.take_ready() {
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
        let mut c = Coalescer::new(1);
        c.push("😀😀");
        assert_eq!(c.take_ready(), piece("😀", false));
    }

    #[test]
    fn finish_drains_pending_text_and_marks_the_last_piece() {
        let mut c = Coalescer::new(1024);
        c.push("a");
        assert_eq!(c.take_ready(), piece("a", false));
        c.push("b");
        c.finish();
        assert_eq!(c.take_ready(), None, "still in flight");
        c.ack();
        assert_eq!(c.take_ready(), piece("b", true));
        c.ack();
        assert!(c.is_done());
        assert_eq!(c.take_ready(), None, "nothing after the last piece");
        c.push("late");
        assert_eq!(c.pending_bytes(), 0, "deltas after finish are ignored");
    }

    #[test]
    fn finish_with_nothing_pending_yields_an_empty_last_piece() {
        let mut c = Coalescer::new(1024);
        c.finish();
        assert_eq!(c.take_ready(), piece("", true));
        c.ack();
        assert_eq!(c.take_ready(), None);

        let mut c = Coalescer::new(1024);
        c.push("all");
        assert_eq!(c.take_ready(), piece("all", false));
        c.ack();
        c.finish();
        assert_eq!(c.take_ready(), piece("", true));
    }
}
