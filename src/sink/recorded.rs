//! Place in the data path: turn driver -> **recorded sink** -> AppSync
//! publisher, with the turn's record beside it. Every chunk the publisher
//! delivers is then queued for the conversations table, without waiting for
//! it: a publish never waits for the store.

use appsync_client::Chunk;

use super::{ChunkSink, PublishReport};
use crate::store::TurnRecord;

/// A sink that records each chunk its inner sink delivered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recorded<'a, S> {
    /// Where chunks are delivered.
    pub inner: &'a S,
    /// Where delivered chunks are recorded, when the turn has a record.
    pub record: Option<&'a TurnRecord>,
}

impl<S: ChunkSink> ChunkSink for Recorded<'_, S> {
    async fn publish(&self, chunk: &Chunk) -> PublishReport {
        let report = self.inner.publish(chunk).await;
        if let (Ok(()), Some(record)) = (&report.result, self.record) {
            record.record(chunk);
        }
        report
    }
}
