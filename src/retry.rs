//! Place in the data path: shared by **model** (re-opening a ConverseStream that
//! failed before its first event) and the AppSync **sink** (re-sending a chunk)
//! of "model -> coalescer -> turn driver -> sink".
//!
//! Exponential backoff with "equal jitter", as AWS recommends:
//! <https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/>
//! and <https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html>.

use std::time::Duration;

/// Retry policy for retryable failures: `max_attempts` tries in all; before
/// try `n + 1` wait a random time in `[d/2, d]` with
/// `d = min(base_delay * 2^(n-1), max_delay)` ("equal jitter").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Tries in all, at least 1.
    pub max_attempts: u32,
    /// Backoff before the second try (before jitter).
    pub base_delay: Duration,
    /// Upper bound of any backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, 50 ms base, 1 s cap: the publisher's policy.
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based), jittered with `random`
    /// (any value; [`random_u64`] in production, fixed values in tests).
    pub(crate) fn delay(&self, attempt: u32, random: u64) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let full = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let full_ms = u64::try_from(full.as_millis()).unwrap_or(u64::MAX);
        let half = full_ms / 2;
        let span = (full_ms - half).saturating_add(1);
        Duration::from_millis(half + random % span)
    }

    /// True when a failure of attempt `attempt` (1-based) may be followed by another.
    pub(crate) fn may_retry(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }
}

/// Random bits for jitter, taken from a v4 UUID: good enough for spreading
/// retries, no extra dependency.
pub(crate) fn random_u64() -> u64 {
    let bits = uuid::Uuid::new_v4().as_u128();
    (bits as u64) ^ ((bits >> 64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_a_cap() {
        let p = RetryPolicy::default();
        for random in [0, 7, u64::MAX] {
            let d1 = p.delay(1, random).as_millis();
            let d2 = p.delay(2, random).as_millis();
            let d3 = p.delay(3, random).as_millis();
            assert!((25..=50).contains(&d1), "{d1}");
            assert!((50..=100).contains(&d2), "{d2}");
            assert!((100..=200).contains(&d3), "{d3}");
            assert!(p.delay(30, random) <= p.max_delay);
        }
    }

    #[test]
    fn attempts_are_bounded() {
        let p = RetryPolicy::default();
        assert!(p.may_retry(1) && p.may_retry(3));
        assert!(!p.may_retry(4));
    }
}
