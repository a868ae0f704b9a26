//! Faults the AppSync stand-in can inject into publishes (mutations from an
//! IAM caller, i.e. the resolver's `publishChunk`): a simulated network round
//! trip, throttling and server errors, and a connection dropped after the
//! mutation took effect.
//!
//! Place in the data path: resolver Lambda --publishChunk--> **AppSync
//! (faulty network or service)** -> fan-out -> subscriber.
//!
//! The status bodies are the ones AppSync answers with
//! (<https://docs.aws.amazon.com/appsync/latest/APIReference/CommonErrors.html>).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

/// One injected failure of one publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishFault {
    /// Answer with this HTTP status (429 or 5xx) without executing the mutation.
    Status(u16),
    /// Execute the mutation (subscribers get it), then drop the connection
    /// before the answer is complete: the publisher cannot know it succeeded.
    DropAfterExecute,
}

impl PublishFault {
    /// Parses `429`, `500`, `503` or `drop` (any status from 400 to 599 is
    /// taken); `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "drop" => Some(Self::DropAfterExecute),
            code => code
                .parse()
                .ok()
                .filter(|c| (400..600).contains(c))
                .map(Self::Status),
        }
    }

    /// The error body AppSync sends with a status.
    pub fn body(status: u16) -> Value {
        let (error_type, message) = match status {
            429 => ("TooManyRequestsException", "Rate exceeded"),
            503 => ("ServiceUnavailableException", "Service unavailable"),
            _ => ("InternalFailureException", "An internal failure occurred."),
        };
        json!({"errors": [{"errorType": error_type, "message": message}]})
    }
}

/// The faults waiting for the next publishes, and the simulated round trip.
#[derive(Debug, Default)]
pub struct PublishFaults {
    plan: Mutex<Plan>,
}

#[derive(Debug, Default)]
struct Plan {
    round_trip: Duration,
    queue: VecDeque<PublishFault>,
}

impl PublishFaults {
    /// Every publish is answered this much later (half before it takes effect,
    /// half after), as a network round trip would.
    pub fn set_round_trip(&self, round_trip: Duration) {
        self.lock().round_trip = round_trip;
    }

    /// The simulated round trip set by [`Self::set_round_trip`] (zero by default).
    pub fn round_trip(&self) -> Duration {
        self.lock().round_trip
    }

    /// The next `times` publishes fail with `fault`.
    pub fn push(&self, fault: PublishFault, times: usize) {
        let mut plan = self.lock();
        plan.queue.extend(std::iter::repeat_n(fault, times));
    }

    /// The fault for the publish being handled now, if any.
    pub fn take(&self) -> Option<PublishFault> {
        self.lock().queue.pop_front()
    }

    /// Removes every waiting fault and the round trip.
    pub fn clear(&self) {
        *self.lock() = Plan::default();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the publisher sent: mutations and request bytes (for `devstack bench`).
#[derive(Debug, Default)]
pub struct PublishStats {
    requests: std::sync::atomic::AtomicU64,
    bytes: std::sync::atomic::AtomicU64,
}

impl PublishStats {
    /// Counts one publish of `body_bytes` request body bytes.
    pub fn record(&self, body_bytes: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.requests.fetch_add(1, Relaxed);
        self.bytes.fetch_add(body_bytes as u64, Relaxed);
    }

    /// `(mutations, request body bytes)` so far.
    pub fn totals(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.requests.load(Relaxed), self.bytes.load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_taken_in_order_and_parse_from_flags() {
        let faults = PublishFaults::default();
        faults.push(PublishFault::Status(429), 2);
        faults.push(PublishFault::DropAfterExecute, 1);
        assert_eq!(faults.take(), Some(PublishFault::Status(429)));
        assert_eq!(faults.take(), Some(PublishFault::Status(429)));
        assert_eq!(faults.take(), Some(PublishFault::DropAfterExecute));
        assert_eq!(faults.take(), None);
        assert_eq!(PublishFault::parse("500"), Some(PublishFault::Status(500)));
        assert_eq!(
            PublishFault::parse("drop"),
            Some(PublishFault::DropAfterExecute)
        );
        assert_eq!(PublishFault::parse("nope"), None);
        assert_eq!(
            PublishFault::body(429)["errors"][0]["errorType"],
            "TooManyRequestsException"
        );
    }
}
