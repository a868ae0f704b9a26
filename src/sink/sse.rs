//! Place in the data path: turn driver -> **SSE writer** -> a function URL's
//! streamed response -> the client's `EventSource` or fetch reader. The
//! [`ChunkSink`] of the function URL transport.
//!
//! Each chunk goes out as one Server-Sent Event
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation>):
//! `id:` is the chunk's `seq`, so a reconnecting `EventSource` sends it back
//! as `Last-Event-ID`; `data:` is the chunk as JSON, the same object
//! `onChunk` delivers. JSON escapes every line break inside a string, so the
//! object is always one `data:` line. The terminal chunk (`done: true`) is
//! the stream's last event.
//!
//! A write that fails means the response stream is gone (the client left):
//! the report's error makes the driver end the turn, which drops the model
//! stream, so a disconnected client stops costing model time.

use std::future::Future;

use appsync_client::Chunk;
use bytes::Bytes;

use crate::sink::{ChunkSink, PublishReport, SinkError};

/// The bytes of one event carrying `chunk`: `id: <seq>`, `data: <chunk
/// JSON>`, and the blank line that dispatches it.
///
/// # Errors
/// A chunk that cannot be written as JSON (it always can; the error is
/// serde's).
pub(crate) fn event(chunk: &Chunk) -> Result<Bytes, serde_json::Error> {
    let data = serde_json::to_string(chunk)?;
    Ok(Bytes::from(format!("id: {}\ndata: {data}\n\n", chunk.seq)))
}

/// Where an SSE response's bytes go: the streamed response body of the
/// invocation. A write fails once the reader is gone.
pub trait EventWriter: Sync {
    /// Writes `bytes` to the response, in order with earlier writes.
    fn write(&self, bytes: Bytes) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Ends the response after the terminal event (nothing by default).
    fn end(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// The chunks of a turn, as Server-Sent Events on `writer`.
pub struct SseSink<W> {
    writer: W,
}

impl<W: EventWriter> SseSink<W> {
    /// A sink that writes every chunk to `writer`.
    pub fn new(writer: W) -> Self {
        Self { writer }
    }
}

impl<W: EventWriter> ChunkSink for SseSink<W> {
    /// One write per chunk and no retries: a stream either takes the bytes
    /// or has ended, and a repeat could not reach a reader that left. The
    /// terminal chunk's write ends the stream.
    async fn publish(&self, chunk: &Chunk) -> PublishReport {
        let bytes = match event(chunk) {
            Ok(bytes) => bytes,
            Err(e) => {
                return PublishReport {
                    attempts: 0,
                    result: Err(Box::new(e)),
                };
            }
        };
        let result = self.writer.write(bytes).await;
        if result.is_ok() && chunk.done {
            self.writer.end().await;
        }
        PublishReport {
            attempts: 1,
            result,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::sink::testing::chunk;

    /// The writes made, or a closed stream.
    struct Written {
        bytes: Mutex<Vec<u8>>,
        closed: bool,
    }

    impl EventWriter for Written {
        async fn write(&self, bytes: Bytes) -> Result<(), SinkError> {
            if self.closed {
                return Err("the response stream has ended".into());
            }
            self.bytes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(&bytes);
            Ok(())
        }
    }

    /// The events of an SSE stream as the WHATWG algorithm reads them:
    /// `(id, data)` per blank-line-terminated block.
    fn parse(stream: &str) -> Vec<(String, String)> {
        stream
            .split("\n\n")
            .filter(|block| !block.is_empty())
            .map(|block| {
                let mut id = String::new();
                let mut data = Vec::new();
                for line in block.split('\n') {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push(v);
                    }
                }
                (id, data.join("\n"))
            })
            .collect()
    }

    #[tokio::test]
    async fn each_chunk_is_one_event_with_its_seq_as_id_and_its_json_as_data() {
        let sink = SseSink::new(Written {
            bytes: Mutex::new(Vec::new()),
            closed: false,
        });
        let chunks = [
            chunk(0, "line one\nline two\r\n\n", false),
            chunk(1, "data: id: \u{2028}", false),
            chunk(2, "", true),
        ];
        for c in &chunks {
            let report = sink.publish(c).await;
            assert!(report.result.is_ok());
            assert_eq!(report.attempts, 1);
        }
        let written = sink.writer.bytes.into_inner().expect("not poisoned");
        let events = parse(&String::from_utf8(written).expect("UTF-8"));
        assert_eq!(events.len(), chunks.len());
        for (c, (id, data)) in chunks.iter().zip(events) {
            assert_eq!(id, c.seq.to_string());
            let back: Chunk = serde_json::from_str(&data).expect("the chunk's JSON");
            assert_eq!(&back, c);
        }
    }

    #[tokio::test]
    async fn a_write_to_an_ended_stream_is_a_failed_delivery() {
        let sink = SseSink::new(Written {
            bytes: Mutex::new(Vec::new()),
            closed: true,
        });
        let report = sink.publish(&chunk(0, "hi", false)).await;
        assert!(report.result.is_err());
    }
}
