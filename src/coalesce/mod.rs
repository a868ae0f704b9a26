//! Place in the data path: model -> **coalescer** -> turn driver -> sink.
//!
//! Strategies that turn model text deltas into chunk texts. Every strategy is a
//! pure state machine behind the [`Coalesce`] trait, driven by `turn` with
//! tokio; time comes in as an argument, so tests run them on a fake clock.
//!
//! | [`Strategy`] | `COALESCE_STRATEGY` | a chunk is ready when |
//! |---|---|---|
//! | [`Adaptive`] (ours) | `adaptive` | text exists and no publish is in flight (or pending text has waited `max_hold`) |
//! | [`PerDelta`] | `per-delta` | each delta, on its own |
//! | [`FixedDeltas`] | `fixed-deltas:N` | N deltas have arrived |
//! | [`Timer`] | `timer:MS` | the next tick of an MS-millisecond timer |
//! | [`Chars`] | `chars:N` | N characters, or a sentence end `.!?` followed by a space or newline |
//!
//! The last four are the strategies of the public samples this project is
//! compared with (see the bench); they publish one chunk at a time, as those
//! samples do. Every strategy except [`PerDelta`] keeps a chunk within
//! `max_chunk_bytes` UTF-8 bytes without splitting a character.
//!
//! AppSync bills every mutation and every delivered message
//! (<https://aws.amazon.com/appsync/pricing/>) and drops a subscription message
//! above 240 KB (<https://docs.aws.amazon.com/general/latest/gr/appsync.html>);
//! merging bounds the first, the byte bound the second.

mod adaptive;
mod grouped;
mod timer;

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;
use tokio::time::Instant;

pub(crate) use adaptive::Adaptive;
pub(crate) use grouped::{Chars, FixedDeltas, PerDelta};
pub(crate) use timer::Timer;

use crate::limits::{MAX_CHUNK_BYTES, MIN_CHUNK_BYTES};

/// A piece of text ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The chunk text, at most the strategy's byte bound. Empty only on the
    /// last piece of a turn that has nothing left to add.
    pub text: String,
    /// True on the turn's terminal piece: [`Coalesce::finish`] was called and
    /// no text remains after this one.
    pub last: bool,
}

/// A coalescing strategy's state for one turn.
///
/// Usage: [`push`](Coalesce::push) every delta; whenever
/// [`take_ready`](Coalesce::take_ready) returns a piece, publish it and call
/// [`ack`](Coalesce::ack) once that publish has finished (whatever its
/// outcome). Call `take_ready` again after every push, ack, and at
/// [`next_wakeup`](Coalesce::next_wakeup). After the model stream ends, call
/// [`finish`](Coalesce::finish) and keep taking (and acking) until a piece with
/// `last == true` has been taken. The last piece is only handed out when no
/// publish is in flight, so the terminal chunk is the last one AppSync accepts.
pub trait Coalesce: Send + fmt::Debug {
    /// Adds a model delta that arrived at `now`. Empty deltas and deltas after
    /// [`finish`](Coalesce::finish) are ignored.
    fn push(&mut self, delta: &str, now: Instant);

    /// The model stream has ended (or was stopped): no more deltas. From now
    /// on [`take_ready`](Coalesce::take_ready) drains what is pending without
    /// waiting for the strategy's trigger and then yields one piece with
    /// `last == true` (with empty text if nothing is left).
    fn finish(&mut self);

    /// The next piece to publish at `now`, or `None` when the strategy says
    /// wait. Taking a piece counts one publish in flight until
    /// [`ack`](Coalesce::ack).
    fn take_ready(&mut self, now: Instant) -> Option<Piece>;

    /// One publish of a taken piece finished at `now`, whatever its outcome.
    fn ack(&mut self, now: Instant);

    /// When [`take_ready`](Coalesce::take_ready) may next return a piece
    /// without a push, ack or finish (a timer tick, the end of a hold time);
    /// `None` when only new input can change the answer.
    fn next_wakeup(&self) -> Option<Instant>;

    /// True once the piece with `last == true` has been taken.
    fn is_done(&self) -> bool;

    /// UTF-8 bytes pushed and not yet taken.
    fn pending_bytes(&self) -> usize;
}

/// Which coalescing strategy a turn uses: the value of `COALESCE_STRATEGY`.
///
/// Parses from and displays as `adaptive`, `per-delta`, `fixed-deltas:N`,
/// `timer:MS` or `chars:N` (N, MS positive integers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// [`Adaptive`]: publish when idle, merge while busy, bounded hold time.
    #[default]
    Adaptive,
    /// [`PerDelta`]: one publish per delta.
    PerDelta,
    /// [`FixedDeltas`]: one publish per N deltas.
    FixedDeltas(NonZeroUsize),
    /// [`Timer`]: flush what is pending every interval (at least 1 ms).
    Timer(Duration),
    /// [`Chars`]: flush at N characters or a sentence end.
    Chars(NonZeroUsize),
}

/// Why a `COALESCE_STRATEGY` value is not a [`Strategy`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "unknown coalescing strategy {0:?}: expected adaptive, per-delta, fixed-deltas:N, timer:MS or chars:N with N, MS positive integers"
)]
pub struct StrategyParseError(pub String);

impl FromStr for Strategy {
    type Err = StrategyParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || StrategyParseError(s.to_owned());
        let trimmed = s.trim();
        let (name, arg) = match trimmed.split_once(':') {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (trimmed, None),
        };
        let positive = |a: Option<&str>| {
            a.and_then(|a| a.parse::<usize>().ok())
                .and_then(NonZeroUsize::new)
                .ok_or_else(err)
        };
        match name.to_ascii_lowercase().as_str() {
            "adaptive" if arg.is_none() => Ok(Strategy::Adaptive),
            "per-delta" if arg.is_none() => Ok(Strategy::PerDelta),
            "fixed-deltas" => Ok(Strategy::FixedDeltas(positive(arg)?)),
            "chars" => Ok(Strategy::Chars(positive(arg)?)),
            "timer" => {
                let ms = u64::try_from(positive(arg)?.get()).map_err(|_| err())?;
                Ok(Strategy::Timer(Duration::from_millis(ms)))
            }
            _ => Err(err()),
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::Adaptive => f.write_str("adaptive"),
            Strategy::PerDelta => f.write_str("per-delta"),
            Strategy::FixedDeltas(n) => write!(f, "fixed-deltas:{n}"),
            Strategy::Timer(d) => write!(f, "timer:{}", d.as_millis()),
            Strategy::Chars(n) => write!(f, "chars:{n}"),
        }
    }
}

impl Strategy {
    /// A fresh state machine for one turn that starts at `now`: chunks of at
    /// most `max_chunk_bytes` UTF-8 bytes (raised to [`MIN_CHUNK_BYTES`];
    /// [`PerDelta`] uses [`MAX_CHUNK_BYTES`]); `max_hold` is the
    /// [`Adaptive`] hold time and ignored by the others.
    pub fn build(
        &self,
        max_chunk_bytes: usize,
        max_hold: Duration,
        now: Instant,
    ) -> Box<dyn Coalesce> {
        match *self {
            Strategy::Adaptive => Box::new(Adaptive::with_max_hold(max_chunk_bytes, max_hold)),
            Strategy::PerDelta => Box::new(PerDelta::new()),
            Strategy::FixedDeltas(n) => Box::new(FixedDeltas::new(n, max_chunk_bytes)),
            Strategy::Timer(interval) => Box::new(Timer::new(interval, max_chunk_bytes, now)),
            Strategy::Chars(n) => Box::new(Chars::new(n, max_chunk_bytes)),
        }
    }
}

/// Removes and returns the longest prefix of `pending` that has at most
/// `max_bytes` bytes (at least one character) and ends on a character boundary.
fn split_front(pending: &mut String, max_bytes: usize) -> String {
    if pending.len() <= max_bytes {
        return std::mem::take(pending);
    }
    let mut cut = max_bytes;
    while cut > 0 && !pending.is_char_boundary(cut) {
        cut -= 1;
    }
    if cut == 0 {
        // A bound below one character: take the first character whole.
        cut = pending
            .char_indices()
            .nth(1)
            .map_or(pending.len(), |(i, _)| i);
    }
    let rest = pending.split_off(cut);
    std::mem::replace(pending, rest)
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_parse_and_display_round_trip() {
        let cases = [
            ("adaptive", Strategy::Adaptive),
            ("per-delta", Strategy::PerDelta),
            (
                "fixed-deltas:6",
                Strategy::FixedDeltas(NonZeroUsize::new(6).unwrap()),
            ),
            ("timer:300", Strategy::Timer(Duration::from_millis(300))),
            (
                "chars:100",
                Strategy::Chars(NonZeroUsize::new(100).unwrap()),
            ),
        ];
        for (text, strategy) in cases {
            assert_eq!(text.parse::<Strategy>(), Ok(strategy));
            assert_eq!(strategy.to_string(), text);
        }
        assert_eq!(" Adaptive ".parse::<Strategy>(), Ok(Strategy::Adaptive));
        assert_eq!(Strategy::default(), Strategy::Adaptive);
    }

    #[test]
    fn bad_strategies_are_errors_that_name_the_choices() {
        for bad in [
            "",
            "fast",
            "timer",
            "timer:0",
            "timer:-5",
            "chars:x",
            "fixed-deltas:",
            "adaptive:3",
            "per-delta:1",
        ] {
            let err = bad.parse::<Strategy>().unwrap_err();
            assert!(err.to_string().contains("fixed-deltas:N"), "{bad}: {err}");
        }
    }

    #[test]
    fn split_front_never_splits_a_character() {
        let mut s = "a€b".to_owned();
        assert_eq!(split_front(&mut s, 2), "a");
        assert_eq!(split_front(&mut s, 2), "€", "a bound below one character");
        assert_eq!(split_front(&mut s, 2), "b");
        assert!(s.is_empty());
    }

    /// Runs `strategy` over deltas pushed 10 ms apart (at 10, 20, ... ms) with
    /// instant publishes (each taken piece is acked at once), honouring
    /// wakeups, and returns the pieces.
    fn run(strategy: Strategy, max_chunk_bytes: usize, deltas: &[&str]) -> Vec<(String, bool)> {
        let t0 = Instant::now();
        let mut c = strategy.build(max_chunk_bytes, crate::config::DEFAULT_MAX_HOLD, t0);
        let mut out = Vec::new();
        let mut now = t0;
        for d in deltas {
            now += Duration::from_millis(10);
            while let Some(wakeup) = c.next_wakeup().filter(|w| *w <= now) {
                while let Some(p) = c.take_ready(wakeup) {
                    out.push((p.text, p.last));
                    c.ack(wakeup);
                }
            }
            c.push(d, now);
            while let Some(p) = c.take_ready(now) {
                out.push((p.text, p.last));
                c.ack(now);
            }
        }
        c.finish();
        while let Some(p) = c.take_ready(now) {
            out.push((p.text, p.last));
            c.ack(now);
        }
        assert!(c.is_done());
        out
    }

    fn texts(pieces: &[(String, bool)]) -> Vec<&str> {
        pieces.iter().map(|(t, _)| t.as_str()).collect()
    }

    const DELTAS: [&str; 7] = ["Hi", " there", ".", " How", " are", " you", "?"];

    /// One spelling of each strategy.
    const EVERY_STRATEGY: [&str; 5] = [
        "adaptive",
        "per-delta",
        "fixed-deltas:3",
        "timer:45",
        "chars:8",
    ];

    #[test]
    fn every_strategy_keeps_the_text_and_ends_with_one_last_piece() {
        for s in EVERY_STRATEGY {
            let strategy: Strategy = s.parse().unwrap();
            let pieces = run(strategy, 1024, &DELTAS);
            assert_eq!(texts(&pieces).concat(), DELTAS.concat(), "{s}");
            let lasts: Vec<bool> = pieces.iter().map(|(_, l)| *l).collect();
            assert_eq!(lasts.iter().filter(|l| **l).count(), 1, "{s}");
            assert_eq!(lasts.last(), Some(&true), "{s}");
        }
    }

    #[test]
    fn each_strategy_chunks_the_same_deltas_its_own_way() {
        let run = |s: &str| run(s.parse().unwrap(), 1024, &DELTAS);
        // Instant publishes: adaptive sends each delta the moment it exists.
        assert_eq!(
            texts(&run("adaptive")),
            ["Hi", " there", ".", " How", " are", " you", "?", ""]
        );
        assert_eq!(
            texts(&run("per-delta")),
            ["Hi", " there", ".", " How", " are", " you", "?", ""]
        );
        assert_eq!(
            texts(&run("fixed-deltas:3")),
            ["Hi there.", " How are you", "?"]
        );
        // Ticks at 45, 90 ms; deltas at 10, 20, ..., 70 ms; the end flushes.
        assert_eq!(texts(&run("timer:45")), ["Hi there. How", " are you?"]);
        // 8 characters, or ". " seen.
        assert_eq!(
            texts(&run("chars:8")),
            ["Hi there", ". How", " are you", "?"]
        );
    }

    #[test]
    fn all_but_per_delta_respect_the_byte_bound() {
        let big = "é".repeat(20); // 40 bytes
        for s in ["adaptive", "fixed-deltas:2", "timer:5", "chars:1000"] {
            let pieces = run(s.parse().unwrap(), 8, &[&big, "x"]);
            assert!(pieces.iter().all(|(t, _)| t.len() <= 8), "{s}: {pieces:?}");
            assert_eq!(texts(&pieces).concat(), format!("{big}x"), "{s}");
        }
        let pieces = run(Strategy::PerDelta, 8, &[&big, "x"]);
        assert_eq!(texts(&pieces), [big.as_str(), "x", ""]);
    }

    #[test]
    fn no_deltas_still_yield_one_empty_last_piece() {
        for s in EVERY_STRATEGY {
            assert_eq!(
                run(s.parse().unwrap(), 64, &[]),
                [(String::new(), true)],
                "{s}"
            );
        }
    }
}
