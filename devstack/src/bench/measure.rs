//! The arithmetic of `devstack bench`: added delay per token (subscriber
//! visible time minus model emit time), percentiles, and AppSync cost.
//! Place in the data path: measured end to end, model -> ... -> **subscriber**.
//!
//! Prices are AppSync's list prices (<https://aws.amazon.com/appsync/pricing/>):
//! $4.00 per million query and mutation operations, $2.00 per million
//! real-time updates (metered in 5 KB increments per subscriber), $0.08 per
//! million connection-minutes.

use std::time::{Duration, Instant};

use crate::bedrock::scripted::Emission;

/// Dollars per query or mutation operation.
pub const PRICE_PER_OPERATION: f64 = 4.0 / 1_000_000.0;
/// Dollars per real-time update (per 5 KB, per subscriber).
pub const PRICE_PER_UPDATE: f64 = 2.0 / 1_000_000.0;
/// Dollars per connection-minute.
pub const PRICE_PER_CONNECTION_MINUTE: f64 = 0.08 / 1_000_000.0;
/// Real-time updates are metered in increments of this many bytes.
pub const UPDATE_METER_BYTES: usize = 5 * 1024;

/// One chunk as the subscriber saw it, in `seq` order.
#[derive(Clone, Copy, Debug)]
pub struct Arrival {
    /// When the chunk arrived.
    pub at: Instant,
    /// The answer's length in bytes once this chunk is appended.
    pub end_bytes: usize,
}

/// The added delay of every token: when the text it belongs to became visible
/// (its chunk and every chunk before it had arrived) minus when the model
/// emitted it. A delta of `n` tokens contributes `n` samples.
pub fn added_delays(emissions: &[Emission], arrivals: &[Arrival]) -> Vec<Duration> {
    let mut visible = Vec::with_capacity(arrivals.len());
    let mut latest: Option<Instant> = None;
    for a in arrivals {
        let at = latest.map_or(a.at, |l| l.max(a.at));
        latest = Some(at);
        visible.push((at, a.end_bytes));
    }
    let mut delays = Vec::new();
    let mut k = 0;
    for e in emissions {
        while k < visible.len() && visible[k].1 < e.end_bytes {
            k += 1;
        }
        let Some((seen, _)) = visible.get(k) else {
            break;
        };
        let delay = seen.saturating_duration_since(e.at);
        delays.extend(std::iter::repeat_n(delay, e.tokens as usize));
    }
    delays
}

/// The `p`-th percentile (0 to 100) by nearest rank; zero for no samples.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The time between the earliest and the latest of `times` (zero for none):
/// how far apart the readers of one message got it.
pub fn spread(times: impl Iterator<Item = Instant> + Clone) -> Duration {
    match (times.clone().min(), times.max()) {
        (Some(first), Some(last)) => last - first,
        _ => Duration::ZERO,
    }
}

/// AppSync's cost of one turn with one subscriber: the `sendPrompt` and every
/// publish as operations, each delivered message as updates, and the
/// subscriber's connection for the turn's duration.
pub fn turn_cost(publishes: u64, message_bytes: &[usize], duration: Duration) -> f64 {
    let operations = (publishes + 1) as f64 * PRICE_PER_OPERATION;
    let updates: usize = message_bytes
        .iter()
        .map(|b| b.div_ceil(UPDATE_METER_BYTES).max(1))
        .sum();
    let minutes = duration.as_secs_f64() / 60.0;
    operations + updates as f64 * PRICE_PER_UPDATE + minutes * PRICE_PER_CONNECTION_MINUTE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_count_each_token_from_emit_to_in_order_visibility() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let emissions = [
            Emission {
                at: ms(0),
                end_bytes: 5,
                tokens: 1,
            },
            Emission {
                at: ms(10),
                end_bytes: 9,
                tokens: 2,
            },
            Emission {
                at: ms(20),
                end_bytes: 12,
                tokens: 1,
            },
        ];
        // Chunk 0 (bytes 0..5) arrives at 3 ms, chunk 1 (bytes 5..12) at 25 ms.
        let arrivals = [
            Arrival {
                at: ms(3),
                end_bytes: 5,
            },
            Arrival {
                at: ms(25),
                end_bytes: 12,
            },
        ];
        let d = added_delays(&emissions, &arrivals);
        assert_eq!(
            d,
            vec![
                Duration::from_millis(3),
                Duration::from_millis(15),
                Duration::from_millis(15),
                Duration::from_millis(5)
            ]
        );
    }

    #[test]
    fn a_chunk_is_visible_only_once_every_earlier_chunk_is() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let emissions = [
            Emission {
                at: ms(0),
                end_bytes: 1,
                tokens: 1,
            },
            Emission {
                at: ms(1),
                end_bytes: 2,
                tokens: 1,
            },
        ];
        let arrivals = [
            Arrival {
                at: ms(50),
                end_bytes: 1,
            },
            Arrival {
                at: ms(2),
                end_bytes: 2,
            },
        ];
        let d = added_delays(&emissions, &arrivals);
        assert_eq!(
            d,
            vec![Duration::from_millis(50), Duration::from_millis(49)]
        );
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&s, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&s, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&[], 95.0), Duration::ZERO);
    }

    #[test]
    fn cost_counts_operations_updates_and_connection_time() {
        let c = turn_cost(9, &[100; 10], Duration::ZERO);
        assert!((c - (10.0 * 4e-6 + 10.0 * 2e-6)).abs() < 1e-12);
        let big = turn_cost(0, &[11 * 1024], Duration::from_secs(60));
        assert!((big - (4e-6 + 3.0 * 2e-6 + 0.08e-6)).abs() < 1e-12);
    }
}
