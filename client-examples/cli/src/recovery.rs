//! Place in the data path: AppSync --onChunk--> **subscriber**, and its safety
//! net, client --turnChunks--> AppSync --> the stored chunks. When a turn
//! should ask `turnChunks` for what the subscription missed: a `seq` gap that
//! nothing fills for [`GAP_WAIT`], or a turn that stays quiet for
//! [`STALL_WAIT`] without its terminal chunk (a reconnection asks at once; the
//! turn does that). And what recovery did, for the turn's status line.

use std::time::Duration;

use tokio::time::Instant;

/// How long a `seq` gap may stay open before the missing chunks are fetched.
/// Chunks are published in order, so a gap that lasts means a lost delivery.
pub(crate) const GAP_WAIT: Duration = Duration::from_millis(500);

/// How long a turn may go without a chunk before the stored chunks are
/// checked (the terminal chunk may be the one that was lost). Asked again
/// every time this passes, until the turn ends.
pub(crate) const STALL_WAIT: Duration = Duration::from_secs(5);

/// The clocks of one turn: when its current gap opened, when it last made
/// progress.
#[derive(Debug)]
pub(crate) struct Watchdog {
    gap_wait: Duration,
    stall_wait: Duration,
    /// When the gap being waited on opened (a later `seq` came first).
    gap_since: Option<Instant>,
    /// The turn's start, its latest chunk, or its latest recovery.
    last_progress: Instant,
}

impl Watchdog {
    /// The clocks of a turn that starts `now`, with [`GAP_WAIT`] and
    /// [`STALL_WAIT`].
    pub(crate) fn new(now: Instant) -> Self {
        Self::with_waits(now, GAP_WAIT, STALL_WAIT)
    }

    /// As [`Watchdog::new`], with other waits.
    pub(crate) fn with_waits(now: Instant, gap_wait: Duration, stall_wait: Duration) -> Self {
        Self {
            gap_wait,
            stall_wait,
            gap_since: None,
            last_progress: now,
        }
    }

    /// A chunk of the turn arrived at `now`; `gap_pending`: the assembler
    /// still holds chunks back for an earlier `seq`. A gap's clock starts when
    /// it opens and keeps running while it stays open.
    pub(crate) fn arrived(&mut self, now: Instant, gap_pending: bool) {
        self.last_progress = now;
        if !gap_pending {
            self.gap_since = None;
        } else if self.gap_since.is_none() {
            self.gap_since = Some(now);
        }
    }

    /// A recovery ran at `now`: both clocks start again (a gap still open
    /// waits another [`GAP_WAIT`]: its chunks may not be stored yet).
    pub(crate) fn recovered(&mut self, now: Instant, gap_pending: bool) {
        self.last_progress = now;
        self.gap_since = gap_pending.then_some(now);
    }

    /// When to look again: the earlier of the gap's and the stall's deadline.
    pub(crate) fn next_check(&self) -> Instant {
        let stall = self.last_progress + self.stall_wait;
        match self.gap_since {
            Some(since) => stall.min(since + self.gap_wait),
            None => stall,
        }
    }

    /// True when a recovery is due at `now`.
    pub(crate) fn due(&self, now: Instant) -> bool {
        now >= self.next_check()
    }
}

/// What recovery did during one turn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// Times the link was opened again.
    pub(crate) reconnects: usize,
    /// Chunks that came from `turnChunks`, not from the subscription.
    pub(crate) chunks: usize,
}

impl Recovered {
    /// `reconnected, 3 missed chunks recovered`; `None` when nothing happened.
    pub(crate) fn note(&self) -> Option<String> {
        let mut parts = Vec::new();
        match self.reconnects {
            0 => {}
            1 => parts.push("reconnected".to_owned()),
            n => parts.push(format!("reconnected {n} times")),
        }
        match self.chunks {
            0 => {}
            1 => parts.push("1 missed chunk recovered".to_owned()),
            n => parts.push(format!("{n} missed chunks recovered")),
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GAP: Duration = Duration::from_millis(500);
    const STALL: Duration = Duration::from_secs(5);

    #[test]
    fn a_quiet_turn_is_checked_after_the_stall_wait_and_again_after_that() {
        let start = Instant::now();
        let mut w = Watchdog::with_waits(start, GAP, STALL);
        assert_eq!(w.next_check(), start + STALL);
        assert!(!w.due(start + STALL - Duration::from_millis(1)));
        let chunk = start + Duration::from_secs(2);
        w.arrived(chunk, false);
        assert!(!w.due(start + STALL), "a chunk moves the stall deadline");
        assert!(w.due(chunk + STALL));
        w.recovered(chunk + STALL, false);
        assert!(!w.due(chunk + STALL));
        assert_eq!(w.next_check(), chunk + STALL + STALL);
    }

    #[test]
    fn a_gap_is_recovered_after_the_gap_wait_unless_it_fills() {
        let start = Instant::now();
        let mut w = Watchdog::with_waits(start, GAP, STALL);
        let opened = start + Duration::from_millis(100);
        w.arrived(opened, true);
        assert_eq!(w.next_check(), opened + GAP);
        // More chunks while the gap stays open do not restart its clock.
        w.arrived(opened + Duration::from_millis(300), true);
        assert!(w.due(opened + GAP));

        // The gap fills in time: nothing is due until the stall wait.
        let mut filled = Watchdog::with_waits(start, GAP, STALL);
        filled.arrived(opened, true);
        let later = opened + Duration::from_millis(200);
        filled.arrived(later, false);
        assert!(!filled.due(opened + GAP));
        assert_eq!(filled.next_check(), later + STALL);

        // A gap still open after a recovery waits another gap wait.
        let recovered_at = opened + GAP;
        w.recovered(recovered_at, true);
        assert!(!w.due(recovered_at));
        assert!(w.due(recovered_at + GAP));
    }

    #[test]
    fn the_note_says_what_recovery_did() {
        assert_eq!(Recovered::default().note(), None);
        let one = Recovered {
            reconnects: 1,
            chunks: 1,
        };
        assert_eq!(
            one.note().as_deref(),
            Some("reconnected, 1 missed chunk recovered")
        );
        let many = Recovered {
            reconnects: 3,
            chunks: 0,
        };
        assert_eq!(many.note().as_deref(), Some("reconnected 3 times"));
        let fetched = Recovered {
            reconnects: 0,
            chunks: 4,
        };
        assert_eq!(fetched.note().as_deref(), Some("4 missed chunks recovered"));
    }
}
