//! Place in the data path: turn driver -> sinks -> **chunk writer** -> store.
//! A turn's published chunks written to the conversations table beside
//! publishing, in batches, so a client that missed some can fetch them
//! (`turnChunks`).
//!
//! Publishing never waits for the store: [`ChunkWriter::record`] hands the
//! chunk to a task over an unbounded channel and returns at once. The task
//! collects chunks and writes them with `BatchWriteItem`, at most 25 items per
//! call (<https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchWriteItem.html>),
//! when a batch is full, when the turn's terminal chunk arrives, or
//! [`LINGER`] after the batch's first chunk. Each chunk is written once, so
//! the bytes written grow linearly with the answer. When a write fails the
//! writer stops writing for the rest of the turn (the store is down; the turn
//! goes on) and reports the error.

use std::collections::BTreeMap;
use std::time::Duration;

use appsync_client::Chunk;
use chrono::Utc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::warn;

use super::Store;
use super::items::{Item, chunk_item};

/// Most items in one `BatchWriteItem` call (DynamoDB's limit).
pub(crate) const BATCH_ITEMS: usize = 25;

/// Longest a chunk waits for others to share its write.
pub(crate) const LINGER: Duration = Duration::from_millis(100);

/// What the writer did for one turn.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct WriterReport {
    /// The turn's text: the recorded chunks' texts in `seq` order.
    pub text: String,
    /// The terminal chunk, if it was recorded.
    pub terminal: Option<Chunk>,
    /// `BatchWriteItem` calls made.
    pub writes: u64,
    /// Chunk items written.
    pub items: u64,
    /// Bytes of the items written, by DynamoDB's item size rule (attribute
    /// names plus values).
    pub bytes: u64,
    /// Writes that failed (after the first, the writer stops writing).
    pub errors: u64,
}

/// Writes one turn's chunks in the background.
#[derive(Debug)]
pub(crate) struct ChunkWriter {
    sender: mpsc::UnboundedSender<Chunk>,
    task: JoinHandle<WriterReport>,
    /// The recorded chunks' texts by `seq`, and the terminal chunk: kept here,
    /// not in the task, so the turn's text survives a writer that is cut off.
    seen: std::sync::Mutex<Seen>,
}

/// What [`ChunkWriter::record`] has been given.
#[derive(Debug, Default)]
struct Seen {
    texts: BTreeMap<i64, String>,
    terminal: Option<Chunk>,
}

impl ChunkWriter {
    /// Starts the writer's task on `store`.
    pub(crate) fn spawn(store: Store) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(store, receiver));
        Self {
            sender,
            task,
            seen: std::sync::Mutex::new(Seen::default()),
        }
    }

    /// Queues a published chunk for writing; never waits.
    pub(crate) fn record(&self, chunk: &Chunk) {
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.texts.insert(chunk.seq, chunk.text.clone());
            if chunk.done {
                seen.terminal = Some(chunk.clone());
            }
        }
        // The task only stops after `finish`, so a send cannot fail before it.
        let _ = self.sender.send(chunk.clone());
    }

    /// Writes what is left and reports; gives up waiting after `limit`
    /// (the writer is then stopped, so nothing of it outlives the
    /// invocation, and the report counts one error).
    pub(crate) async fn finish(mut self, limit: Duration) -> WriterReport {
        drop(self.sender);
        let mut report = match tokio::time::timeout(limit, &mut self.task).await {
            Ok(Ok(report)) => report,
            Ok(Err(_)) | Err(_) => {
                self.task.abort();
                warn!("the chunk writer did not finish in time; some chunks may not be stored");
                WriterReport {
                    errors: 1,
                    ..WriterReport::default()
                }
            }
        };
        let seen = self.seen.into_inner().unwrap_or_else(|p| p.into_inner());
        report.text = seen.texts.into_values().collect();
        report.terminal = seen.terminal;
        report
    }
}

/// The writer's task: batch and write (the counts of its report only).
async fn run(store: Store, mut receiver: mpsc::UnboundedReceiver<Chunk>) -> WriterReport {
    let mut report = WriterReport::default();
    let mut batch: Vec<Item> = Vec::new();
    let mut first_at: Option<Instant> = None;
    let mut healthy = true;
    let mut terminal = false;
    loop {
        let next = match first_at {
            Some(at) => tokio::time::timeout_at(at + LINGER, receiver.recv())
                .await
                .ok(),
            None => Some(receiver.recv().await),
        };
        let closed = matches!(next, Some(None));
        let lingered = next.is_none();
        if let Some(Some(chunk)) = next {
            if healthy {
                batch.push(chunk_item(&chunk, Utc::now()));
                first_at.get_or_insert_with(Instant::now);
            }
            terminal |= chunk.done;
        }
        let due = lingered || closed || batch.len() >= BATCH_ITEMS || terminal;
        if due && !batch.is_empty() {
            healthy = write(&store, std::mem::take(&mut batch), &mut report).await;
            first_at = None;
        }
        if closed {
            break;
        }
    }
    report
}

/// One batch; `false` when it failed (the writer then stops writing).
async fn write(store: &Store, batch: Vec<Item>, report: &mut WriterReport) -> bool {
    let count = batch.len() as u64;
    let bytes: u64 = batch.iter().map(item_bytes).sum();
    report.writes += 1;
    match store.write_items(batch).await {
        Ok(()) => {
            report.items += count;
            report.bytes += bytes;
            true
        }
        Err(error) => {
            warn!(%error, "could not store the turn's chunks; recovery of missed chunks is off for this turn");
            report.errors += 1;
            false
        }
    }
}

/// An item's size as DynamoDB counts it: attribute names plus values
/// (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html>),
/// numbers counted by their digits.
pub(crate) fn item_bytes(item: &Item) -> u64 {
    use aws_sdk_dynamodb::types::AttributeValue as V;
    fn value(v: &V) -> usize {
        match v {
            V::S(s) | V::N(s) => s.len(),
            V::Bool(_) | V::Null(_) => 1,
            V::M(m) => 3 + m.iter().map(|(k, v)| k.len() + value(v)).sum::<usize>(),
            V::L(l) => 3 + l.iter().map(value).sum::<usize>(),
            _ => 0,
        }
    }
    item.iter().map(|(k, v)| (k.len() + value(v)) as u64).sum()
}
