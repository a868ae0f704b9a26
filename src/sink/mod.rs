//! Place in the data path: turn driver -> **sinks** -> subscribers. Where
//! chunks go.
//!
//! [`ChunkSink`] is the one interface between the turn driver and a chunk's
//! destination: the driver numbers chunks and decides when each goes out; a
//! sink delivers one chunk, with whatever retries its transport needs, and
//! reports how it went. The driver never learns what is behind it. The
//! AppSync publisher ([`appsync::Publisher`], SigV4-signed `publishChunk`) is
//! one sink, `sse` (a function URL's Server-Sent Events) and `websocket`
//! (API Gateway `@connections`) are the others; [`Recorded`] puts the turn's
//! record beside any of them.

pub(crate) mod appsync;
mod recorded;
pub(crate) mod sse;
pub(crate) mod websocket;

use std::future::Future;

use appsync_client::Chunk;

/// Why a sink could not deliver a chunk: the sink's own error (for the AppSync
/// publisher, an [`appsync::PublishError`]), boxed so that the driver is the
/// same whatever is behind the seam. For logs, never for users.
pub type SinkError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result of delivering one chunk, retries included.
#[derive(Debug)]
pub struct PublishReport {
    /// Attempts made; `attempts - 1` of them were retries (0 when the chunk
    /// could not even be encoded for the transport).
    pub attempts: u32,
    /// `Ok` once the destination accepted the chunk, else the last attempt's
    /// error.
    pub result: Result<(), SinkError>,
}

/// A destination for a turn's chunks.
///
/// The driver calls [`ChunkSink::publish`] with chunks in `seq` order; at most
/// a couple run at once (the coalescing strategy decides), and a chunk that
/// failed may be offered again with the same `seq` and text, so a sink's
/// receivers must drop repeats by `(turnId, seq)`. A sink never panics on a
/// failure: it reports it, and the driver ends the turn with a terminal
/// `DeliveryError` chunk.
pub trait ChunkSink: Sync {
    /// Delivers one chunk, retries included, and reports how it went.
    fn publish(&self, chunk: &Chunk) -> impl Future<Output = PublishReport> + Send;
}

pub(crate) use recorded::Recorded;

#[cfg(test)]
pub(crate) mod testing;
