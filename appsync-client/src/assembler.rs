//! Place in the data path: the last hop, AppSync -> `onChunk` -> **subscriber**:
//! what turns the chunks of one turn, as they arrive, into the answer.
//!
//! The rule that makes streaming reliable: subscribe (and see `start_ack`)
//! before sending the prompt, order by `seq`, drop repeats (the resolver
//! resends a chunk with the same `seq` when a publish may or may not have
//! reached AppSync), finish on the terminal chunk (`done: true`). A terminal
//! chunk is never a repeat: one whose `seq` was already seen still ends the
//! turn. It comes from Lambda's retry of a turn whose execution environment
//! died, which ends the turn after the last *stored* chunk and cannot know
//! the few the dead environment published but had not stored yet.
//!
//! And when chunks went missing (a dropped socket, a `seq` gap that does not
//! fill): ask `turnChunks` for everything after [`TurnAssembler::after_seq`]
//! ([`crate::turn_chunks`]) and push it in; what was already here is dropped.

use std::collections::BTreeMap;

use crate::chunk::Chunk;

/// Puts one turn's chunks in `seq` order, drops repeats, and knows when the
/// turn is over.
#[derive(Debug, Default)]
pub struct TurnAssembler {
    next_seq: i64,
    pending: BTreeMap<i64, Chunk>,
    finished: Option<Chunk>,
}

impl TurnAssembler {
    /// An assembler expecting `seq` 0 first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts a chunk of this turn; returns the chunks that are now in order
    /// (possibly none, possibly several). A chunk already seen (same `seq`),
    /// and anything after the terminal chunk, is dropped; a terminal chunk
    /// whose `seq` was already released ends the turn (see the module doc).
    pub fn push(&mut self, chunk: Chunk) -> Vec<Chunk> {
        if self.finished.is_some() {
            return Vec::new();
        }
        if chunk.seq < self.next_seq {
            if !chunk.done {
                return Vec::new();
            }
            self.finished = Some(chunk.clone());
            self.pending.clear();
            return vec![chunk];
        }
        self.pending.entry(chunk.seq).or_insert(chunk);
        let mut ready = Vec::new();
        while let Some(next) = self.pending.remove(&self.next_seq) {
            self.next_seq += 1;
            if next.done {
                self.finished = Some(next.clone());
                ready.push(next);
                self.pending.clear();
                break;
            }
            ready.push(next);
        }
        ready
    }

    /// The terminal chunk, once every chunk before it has arrived.
    pub fn finished(&self) -> Option<&Chunk> {
        self.finished.as_ref()
    }

    /// The highest `seq` up to which every chunk has arrived (and been
    /// released by [`TurnAssembler::push`]); `None` before `seq` 0.
    pub fn contiguous_seq(&self) -> Option<i64> {
        if self.next_seq > 0 {
            Some(self.next_seq - 1)
        } else {
            None
        }
    }

    /// The `afterSeq` with which `turnChunks` answers exactly what is missing:
    /// [`TurnAssembler::contiguous_seq`], or -1 before `seq` 0.
    pub fn after_seq(&self) -> i64 {
        self.next_seq - 1
    }

    /// True while chunks are held back waiting for an earlier `seq` that has
    /// not arrived (a gap); false once it fills, and after the terminal chunk.
    pub fn gap_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// True when a chunk with this `seq` would be new here: the turn is not
    /// over, it is not released yet, and it is not held back already.
    pub fn is_new(&self, seq: i64) -> bool {
        self.finished.is_none() && seq >= self.next_seq && !self.pending.contains_key(&seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(seq: i64, text: &str, done: bool) -> Chunk {
        Chunk {
            conversation_id: "c".into(),
            turn_id: "t".into(),
            owner: "o".into(),
            seq,
            text: text.into(),
            done,
            stop_reason: done.then(|| "end_turn".into()),
            usage: None,
            error: None,
        }
    }

    #[test]
    fn orders_by_seq_and_drops_repeats() {
        let mut a = TurnAssembler::new();
        assert!(a.push(chunk(1, "b", false)).is_empty());
        let ready: Vec<String> = a
            .push(chunk(0, "a", false))
            .into_iter()
            .map(|c| c.text)
            .collect();
        assert_eq!(ready, ["a", "b"]);
        assert!(a.push(chunk(1, "b", false)).is_empty());
        assert!(a.finished().is_none());
        let last = a.push(chunk(2, "", true));
        assert_eq!(last.len(), 1);
        assert!(a.finished().is_some());
        assert!(a.push(chunk(3, "late", false)).is_empty());
    }

    #[test]
    fn a_terminal_chunk_that_repeats_a_seq_still_ends_the_turn() {
        let mut a = TurnAssembler::new();
        assert_eq!(a.push(chunk(0, "a", false)).len(), 1);
        assert_eq!(a.push(chunk(1, "b", false)).len(), 1);
        // A retry stored only seq 0, so it ends the turn at seq 1.
        let ended = a.push(chunk(1, "", true));
        assert_eq!(ended.len(), 1);
        assert!(ended[0].done);
        assert_eq!(a.finished().map(|c| c.seq), Some(1));
        assert!(a.push(chunk(2, "late", false)).is_empty());
        assert!(a.push(chunk(1, "", true)).is_empty(), "only one ending");
    }

    #[test]
    fn reports_the_contiguous_seq_and_a_pending_gap() {
        let mut a = TurnAssembler::new();
        assert_eq!((a.contiguous_seq(), a.after_seq()), (None, -1));
        assert!(!a.gap_pending());
        assert!(a.is_new(0));
        assert_eq!(a.push(chunk(0, "a", false)).len(), 1);
        assert_eq!((a.contiguous_seq(), a.after_seq()), (Some(0), 0));
        // 1 and 2 are missing; 3 is held.
        assert!(a.push(chunk(3, "d", false)).is_empty());
        assert!(a.gap_pending());
        assert_eq!(a.after_seq(), 0);
        assert!(!a.is_new(0) && a.is_new(1) && !a.is_new(3));
        // Recovery pushes 1 to 4 (3 again): each released once, in order.
        let released: Vec<i64> = [
            chunk(1, "b", false),
            chunk(2, "c", false),
            chunk(3, "d", false),
        ]
        .into_iter()
        .flat_map(|c| a.push(c))
        .map(|c| c.seq)
        .collect();
        assert_eq!(released, [1, 2, 3]);
        assert!(!a.gap_pending());
        assert_eq!(a.contiguous_seq(), Some(3));
        assert_eq!(a.push(chunk(4, "", true)).len(), 1);
        assert_eq!(a.after_seq(), 4);
        assert!(!a.is_new(5));
    }
}
