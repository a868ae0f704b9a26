//! Sinks for unit tests of the turn driver and the handler: one that records
//! (and fails on request), one that hands each chunk to the test and waits
//! for its permit.

use std::future::Future;
use std::sync::{Arc, Mutex};

use appsync_client::Chunk;
use tokio::sync::{Semaphore, mpsc};

use super::appsync::PublishError;
use super::{ChunkSink, PublishReport};

/// Records delivered chunks; fails every publish of `fail_seqs`, and one
/// publish of a seq per entry in `fail_once`. Reports `attempts` per publish.
#[derive(Default)]
pub(crate) struct Recorder {
    pub(crate) chunks: Mutex<Vec<Chunk>>,
    pub(crate) fail_seqs: Vec<i64>,
    pub(crate) fail_once: Mutex<Vec<i64>>,
    pub(crate) attempts: u32,
}

impl Recorder {
    /// The chunks delivered so far, in delivery order.
    pub(crate) fn chunks(&self) -> Vec<Chunk> {
        self.chunks.lock().unwrap().clone()
    }
}

impl ChunkSink for Recorder {
    fn publish(&self, chunk: &Chunk) -> impl Future<Output = PublishReport> + Send {
        let once = {
            let mut once = self.fail_once.lock().unwrap();
            match once.iter().position(|s| *s == chunk.seq) {
                Some(i) => {
                    once.remove(i);
                    true
                }
                None => false,
            }
        };
        let result = if once || self.fail_seqs.contains(&chunk.seq) {
            Err(PublishError::Http {
                status: 500,
                errors: vec![],
            }
            .into())
        } else {
            self.chunks.lock().unwrap().push(chunk.clone());
            Ok(())
        };
        let attempts = self.attempts.max(1);
        async move { PublishReport { attempts, result } }
    }
}

/// Hands each chunk to the test and waits for a permit before returning.
pub(crate) struct Gated {
    pub(crate) seen: mpsc::UnboundedSender<Chunk>,
    pub(crate) permits: Arc<Semaphore>,
}

impl ChunkSink for Gated {
    fn publish(&self, chunk: &Chunk) -> impl Future<Output = PublishReport> + Send {
        let _ = self.seen.send(chunk.clone());
        let permits = Arc::clone(&self.permits);
        async move {
            if let Ok(p) = permits.acquire().await {
                p.forget();
            }
            PublishReport {
                attempts: 1,
                result: Ok(()),
            }
        }
    }
}

/// Asserts `chunks` are one whole turn of the fixture ids (`c1`, `t1`, `o1`):
/// `seq` 0, 1, 2, ... and only the last one `done`.
pub(crate) fn assert_contiguous(chunks: &[Chunk]) {
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.seq, i as i64);
        assert_eq!(c.done, i + 1 == chunks.len(), "only the last chunk is done");
        assert_eq!(
            (
                c.conversation_id.as_str(),
                c.turn_id.as_str(),
                c.owner.as_str()
            ),
            ("c1", "t1", "o1")
        );
    }
}

/// A chunk of turn `t` of conversation `c`, owner `o`.
pub(crate) fn chunk(seq: i64, text: &str, done: bool) -> Chunk {
    serde_json::from_value(serde_json::json!({
        "conversationId": "c", "turnId": "t", "owner": "o", "seq": seq,
        "text": text, "done": done, "stopReason": null, "usage": null, "error": null
    }))
    .expect("a chunk")
}
