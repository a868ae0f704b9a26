//! Place in the data path: the last hop, AppSync -> `onChunk` -> **subscriber**:
//! what turns the chunks of one turn, as they arrive, into the answer.
//!
//! The rule that makes streaming reliable: subscribe (and see `start_ack`)
//! before sending the prompt, order by `seq`, drop repeats (the resolver
//! resends a chunk with the same `seq` when a publish may or may not have
//! reached AppSync), finish on the terminal chunk (`done: true`).

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
    /// and anything after the terminal chunk, is dropped.
    pub fn push(&mut self, chunk: Chunk) -> Vec<Chunk> {
        if chunk.seq < self.next_seq || self.finished.is_some() {
            return Vec::new();
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
}
