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

/// Longest the end of a turn may take, all its writes together (the
/// handler's deadline reserve keeps 3 s for the terminal chunk and this).
const FINISH_LIMIT: Duration = Duration::from_secs(3);
/// Longest the end of a turn waits for the chunk writer.
const WRITER_LIMIT: Duration = Duration::from_secs(2);

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
        let TurnRecord {
            store,
            ids,
            started,
            prompt,
            writer,
            heartbeat,
        } = self;
        let prompt_abort = prompt.abort_handle();
        let chunks = writer.finish(WRITER_LIMIT).await;
        let mut errors = chunks.errors;
        let end = chunks.terminal.as_ref().map_or(fallback, end_of);
        let rest = async {
            let mut errors = 0;
            match prompt.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    warn!(%error, "could not store the prompt; the conversation's history misses this turn");
                    errors += 1;
                }
                Err(_) => errors += 1,
            }
            if let Err(error) = store
                .record_answer(&ids, started, model_id, &chunks.text, &end)
                .await
            {
                warn!(%error, "could not store the answer; the conversation's history misses this turn");
                errors += 1;
            }
            if let Err(error) = store.finish_claim(&ids).await {
                warn!(%error, "could not mark the turn finished");
                errors += 1;
            }
            errors
        };
        // The lease is renewed until the record is complete, so that a
        // retry never takes over a turn that is only finishing.
        match tokio::time::timeout(FINISH_LIMIT - WRITER_LIMIT / 2, rest).await {
            Ok(n) => errors += n,
            Err(_) => {
                prompt_abort.abort();
                warn!("the turn's record did not finish in time");
                errors += 1;
            }
        }
        heartbeat.abort();
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
