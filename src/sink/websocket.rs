//! Place in the data path: turn driver -> **WebSocket sink** -> API Gateway
//! `@connections` (`PostToConnection`) -> the client's WebSocket. The
//! [`ChunkSink`] of the API Gateway WebSocket transport.
//!
//! Each chunk goes out as one WebSocket message, the text
//! `{"type":"chunk","chunk":{...}}` whose `chunk` is the object `onChunk`
//! delivers. A chunk's text is at most `MAX_CHUNK_BYTES` (16 KB by
//! default), so a message is mostly one 32 KB frame, billed as one message
//! (API Gateway meters in 32 KB steps); text that JSON escapes heavily can
//! make it larger, which API Gateway sends as several frames, up to its 128
//! KB message limit
//! (<https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-execution-service-websocket-limits-table.html>).
//!
//! A post that fails with `GoneException` means the client has left: the
//! report's error makes the driver end the turn, which drops the model
//! stream, so a client that disconnects stops costing model time.

use std::future::Future;

use appsync_client::Chunk;
use serde_json::json;

use crate::sink::{ChunkSink, PublishReport, SinkError};

/// The text of the message carrying `chunk`.
///
/// # Errors
/// serde's, for a chunk that cannot be written as JSON (it always can).
pub(crate) fn chunk_message(chunk: &Chunk) -> Result<String, serde_json::Error> {
    serde_json::to_string(&json!({"type": "chunk", "chunk": chunk}))
}

/// Where a connection's messages go: API Gateway's `@connections` API for
/// one connection.
pub trait MessagePoster: Sync {
    /// Sends `message` to the connection; fails once the client is gone.
    fn post(&self, message: String) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// The chunks of a turn, as messages on one WebSocket connection.
pub struct WebSocketSink<P> {
    poster: P,
}

impl<P: MessagePoster> WebSocketSink<P> {
    /// A sink that posts every chunk with `poster`.
    pub fn new(poster: P) -> Self {
        Self { poster }
    }
}

impl<P: MessagePoster> ChunkSink for WebSocketSink<P> {
    /// One post per chunk. The SDK retries throttling and transient errors
    /// itself (not counted in `attempts`); what still fails (the client
    /// gone) ends the turn.
    fn publish(&self, chunk: &Chunk) -> impl Future<Output = PublishReport> + Send {
        let message = chunk_message(chunk);
        async move {
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    return PublishReport {
                        attempts: 0,
                        result: Err(error.into()),
                    };
                }
            };
            PublishReport {
                attempts: 1,
                result: self.poster.post(message).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::Value;

    use super::*;
    use crate::sink::testing::chunk;

    #[derive(Default)]
    struct Posted {
        messages: Mutex<Vec<String>>,
        gone: bool,
    }

    impl MessagePoster for &Posted {
        async fn post(&self, message: String) -> Result<(), SinkError> {
            if self.gone {
                return Err("gone".into());
            }
            self.messages.lock().expect("not poisoned").push(message);
            Ok(())
        }
    }

    #[tokio::test]
    async fn each_chunk_is_one_message_holding_the_on_chunk_object() {
        let posted = Posted::default();
        let sink = WebSocketSink::new(&posted);
        let first = chunk(0, "Hello", false);
        let report = sink.publish(&first).await;
        assert!(report.result.is_ok());
        assert_eq!(report.attempts, 1);
        let messages = posted.messages.lock().expect("not poisoned");
        let message: Value = serde_json::from_str(&messages[0]).expect("JSON");
        assert_eq!(message["type"], "chunk");
        assert_eq!(
            message["chunk"],
            serde_json::to_value(&first).expect("JSON")
        );
    }

    #[tokio::test]
    async fn a_client_that_left_fails_the_post() {
        let posted = Posted {
            gone: true,
            ..Posted::default()
        };
        let report = WebSocketSink::new(&posted)
            .publish(&chunk(0, "Hello", false))
            .await;
        assert!(report.result.is_err());
    }
}
