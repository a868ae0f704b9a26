//! Place in the data path: handler -> turn driver -> sinks, with the **turn's
//! record** beside them: what one turn leaves in the conversations table. At
//! the start, the user's message and the conversation (written in the
//! background while the model starts); while it streams, its chunks
//! ([`ChunkWriter`]); at the end, once, the assistant's message with the text
//! the user saw and how the turn ended. A cancelled turn keeps its partial
//! text with `stopReason: cancelled`.

use std::time::Duration;

use appsync_client::Chunk;
use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tracing::warn;

use super::{AnswerEnd, ChunkWriter, Store, StoreError, WriterReport};
use crate::event::TurnIds;

/// Longest the end of a turn waits for its chunks and prompt to be written.
const FINISH_LIMIT: Duration = Duration::from_secs(4);

/// One turn's writes to the conversations table.
#[derive(Debug)]
pub(crate) struct TurnRecord {
    store: Store,
    ids: TurnIds,
    started: DateTime<Utc>,
    prompt: JoinHandle<Result<(), StoreError>>,
    writer: ChunkWriter,
    heartbeat: JoinHandle<()>,
}

/// What a turn's record wrote, for the turn's metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RecordReport {
    /// The chunk writer's report.
    pub chunks: WriterReport,
    /// Store calls that failed, the chunk writer's included.
    pub errors: u64,
}

impl TurnRecord {
    /// Starts turn `ids`'s record: writes `prompt` and touches the
    /// conversation in the background, starts the chunk writer, and renews
    /// the claim's `lease` every third of it while the turn runs.
    pub(crate) fn begin(
        store: &Store,
        ids: &TurnIds,
        started: DateTime<Utc>,
        prompt: &str,
        lease: Duration,
    ) -> Self {
        let prompt = {
            let (store, ids, prompt) = (store.clone(), ids.clone(), prompt.to_owned());
            tokio::spawn(async move { store.record_prompt(&ids, started, &prompt).await })
        };
        let heartbeat = {
            let (store, ids) = (store.clone(), ids.clone());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(lease / 3);
                every.tick().await;
                loop {
                    every.tick().await;
                    if let Err(error) = store.renew(&ids, lease).await {
                        warn!(%error, "could not renew the turn's lease");
                    }
                }
            })
        };
        Self {
            heartbeat,
            writer: ChunkWriter::spawn(store.clone()),
            store: store.clone(),
            ids: ids.clone(),
            started,
            prompt,
        }
    }

    /// Queues a published chunk for writing; never waits.
    pub(crate) fn record(&self, chunk: &Chunk) {
        self.writer.record(chunk);
    }

    /// Ends the record: the remaining chunks, then the assistant's message
    /// (text from the recorded chunks; the ending from the terminal chunk, or
    /// `fallback` when the terminal chunk could not be published), then the
    /// claim's `finishedAt`.
    pub(crate) async fn finish(self, model_id: &str, fallback: AnswerEnd) -> RecordReport {
        self.heartbeat.abort();
        let chunks = self.writer.finish(FINISH_LIMIT).await;
        let mut errors = chunks.errors;
        match tokio::time::timeout(FINISH_LIMIT, self.prompt).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => {
                warn!(%error, "could not store the prompt; the conversation's history misses this turn");
                errors += 1;
            }
            Ok(Err(_)) | Err(_) => errors += 1,
        }
        let end = chunks.terminal.as_ref().map_or(fallback, end_of);
        if let Err(error) = self
            .store
            .record_answer(&self.ids, self.started, model_id, &chunks.text, &end)
            .await
        {
            warn!(%error, "could not store the answer; the conversation's history misses this turn");
            errors += 1;
        }
        if let Err(error) = self.store.finish_claim(&self.ids).await {
            warn!(%error, "could not mark the turn finished");
            errors += 1;
        }
        RecordReport { chunks, errors }
    }
}

/// How a turn ended, as its terminal chunk said.
fn end_of(terminal: &Chunk) -> AnswerEnd {
    AnswerEnd {
        stop_reason: terminal
            .stop_reason
            .clone()
            .unwrap_or_else(|| "error".to_owned()),
        usage: terminal.usage.clone(),
        error: terminal.error.clone(),
    }
}
