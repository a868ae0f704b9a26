//! Place in the data path: handler -> **gate** -> "model -> coalescer -> turn
//! driver -> sink": a repeated delivery of a turn's event must not stream the
//! answer twice.
//!
//! Lambda delivers an asynchronous event at least once and retries one whose
//! invocation failed (<https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html>,
//! <https://docs.aws.amazon.com/lambda/latest/dg/invocation-retries.html>).
//! [`RecentTurns`] remembers the turns started in this execution environment,
//! which Lambda reuses across invocations, so a repeat that lands here is
//! answered with success and nothing is streamed.
//!
//! A repeat that lands in *another* execution environment is not caught by an
//! in-process record. Deploy the function with the asynchronous invocation
//! configuration `MaximumRetryAttempts: 0` (`PutFunctionEventInvokeConfig`,
//! <https://docs.aws.amazon.com/lambda/latest/api/API_PutFunctionEventInvokeConfig.html>),
//! so Lambda never re-runs a turn elsewhere after an error; the resolver
//! reports every failure to the user as a terminal chunk instead. A repeat
//! that lands in another environment is caught by the turn's claim in the
//! conversations table ([`crate::store`]), when the function has one.

use std::collections::{HashSet, VecDeque};

use crate::event::TurnIds;

/// Turns remembered when no capacity is given.
pub(crate) const DEFAULT_CAPACITY: usize = 1024;

/// A bounded record of the most recent turns started in this process, keyed
/// by `(conversationId, turnId, owner)`; the oldest is forgotten first.
#[derive(Debug, Clone)]
pub(crate) struct RecentTurns {
    capacity: usize,
    order: VecDeque<TurnIds>,
    seen: HashSet<(String, String, String)>,
}

fn key(ids: &TurnIds) -> (String, String, String) {
    (
        ids.conversation_id.clone(),
        ids.turn_id.clone(),
        ids.owner.clone(),
    )
}

impl Default for RecentTurns {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl RecentTurns {
    /// A record of at most `capacity` turns (at least 1).
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            order: VecDeque::with_capacity(capacity),
            seen: HashSet::with_capacity(capacity),
        }
    }

    /// Records that the turn `ids` starts now. Returns `false` (and changes
    /// nothing) when it was already started: the event is a repeat.
    pub(crate) fn start(&mut self, ids: &TurnIds) -> bool {
        if !self.seen.insert(key(ids)) {
            return false;
        }
        self.order.push_back(ids.clone());
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&key(&old));
            }
        }
        true
    }

    /// Turns remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(turn: &str, owner: &str) -> TurnIds {
        TurnIds {
            conversation_id: "c".into(),
            turn_id: turn.into(),
            owner: owner.into(),
        }
    }

    #[test]
    fn a_repeat_is_recognised() {
        let mut r = RecentTurns::default();
        assert!(r.start(&ids("t1", "o")));
        assert!(!r.start(&ids("t1", "o")), "the same event again");
        assert!(r.start(&ids("t2", "o")));
        assert!(
            r.start(&ids("t1", "someone-else")),
            "another user's turn with the same id is not a repeat"
        );
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn the_record_is_bounded_and_forgets_the_oldest() {
        let mut r = RecentTurns::new(3);
        for t in ["a", "b", "c", "d"] {
            assert!(r.start(&ids(t, "o")));
        }
        assert_eq!(r.len(), 3);
        assert!(r.start(&ids("a", "o")), "forgotten, so new again");
        assert!(!r.start(&ids("d", "o")), "still remembered");
        assert!(
            RecentTurns::new(0).start(&ids("x", "o")),
            "capacity at least 1"
        );
    }
}
