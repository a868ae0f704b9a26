//! Place in the data path: turn driver -> SSE sink -> **the response
//! stream** -> Lambda's streamed response -> function URL -> client. The
//! function's half of Lambda response streaming
//! (<https://docs.aws.amazon.com/lambda/latest/dg/configuration-response-streaming.html>):
//! bytes written here go to the Runtime API as the invocation's chunked
//! response body, behind the HTTP prelude.
//!
//! A client that disconnects is not reported to the function: Lambda keeps
//! the response stream open and the function running to its end, billed for
//! all of it (same page). What the stream does notice is its own end: a
//! write fails once the Runtime API connection is gone (the runtime or the
//! Runtime API broke off, or a local emulator that closes it when its client
//! leaves), and the first failed write marks the stream gone, which cancels
//! the turn and so drops the model stream. An SSE comment (`: ping`) goes out
//! every [`PING_INTERVAL`], so that proxies and browsers keep a stream open
//! through a long silence (the model still reading a long prompt), and so
//! that a broken stream is found then too: `lambda_runtime` forwards the body
//! through a task of its own, which notices a broken connection on its next
//! send, so the failure shows on the write after that. A write the Runtime
//! API does not take within [`WRITE_TIMEOUT`] counts as a broken stream too.
//!
//! Limits, from the same page: a streamed response may be at most
//! [`MAX_RESPONSE_BYTES`] (200 MB); the first 6 MB go at full speed and the
//! rest at up to 2 MB/s. A turn's answer is far below both (at most 8,192
//! tokens, tens of KB), but the stream still refuses to pass the limit:
//! writes stop [`TERMINAL_RESERVE`] short of it, which is kept for the
//! terminal event.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use lambda_runtime::streaming::Sender;
use tokio::sync::{Mutex, Notify};

use crate::sink::SinkError;
use crate::sink::sse::EventWriter;

/// The largest response a streaming function may send through a function
/// URL, in bytes.
pub const MAX_RESPONSE_BYTES: u64 = 200 * 1024 * 1024;
/// Bytes kept back at the end of [`MAX_RESPONSE_BYTES`] for the terminal
/// event.
pub const TERMINAL_RESERVE: u64 = 1024 * 1024;
/// How often the stream sends an SSE comment (`: ping`), whatever else it
/// sends, so that proxies and browsers keep it open through a silence.
pub const PING_INTERVAL: Duration = Duration::from_secs(10);
/// The longest a write may wait for the Runtime API to take it; a stream
/// that does not take bytes for this long is treated as gone.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// One invocation's response stream; clones share it.
#[derive(Clone)]
pub(crate) struct ResponseStream {
    inner: Arc<Inner>,
}

struct Inner {
    sender: Mutex<Option<Sender>>,
    written: AtomicU64,
    full: AtomicBool,
    gone: AtomicBool,
    left: Notify,
    limit: u64,
}

impl ResponseStream {
    /// A stream over `sender` (the Lambda response body's sending half).
    pub(crate) fn new(sender: Sender) -> Self {
        Self::with_limit(sender, MAX_RESPONSE_BYTES)
    }

    /// As [`Self::new`], with `limit` in place of [`MAX_RESPONSE_BYTES`].
    pub(crate) fn with_limit(sender: Sender, limit: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                sender: Mutex::new(Some(sender)),
                written: AtomicU64::new(0),
                full: AtomicBool::new(false),
                gone: AtomicBool::new(false),
                left: Notify::new(),
                limit,
            }),
        }
    }

    /// Resolves once a write has failed: the client is gone.
    pub(crate) async fn gone(&self) {
        loop {
            let notified = self.inner.left.notified();
            if self.inner.gone.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    /// Ends the response now; later writes from any clone fail.
    pub(crate) async fn finish(&self) {
        self.inner.sender.lock().await.take();
    }

    /// Cuts the response short, so the Runtime API sees it fail rather than
    /// end (for a turn that panicked: no terminal event was written).
    pub(crate) async fn abort(&self) {
        if let Some(sender) = self.inner.sender.lock().await.take() {
            sender.abort();
        }
    }

    /// Sends an SSE comment every [`PING_INTERVAL`] until the stream is gone
    /// or finished.
    pub(crate) async fn keep_alive(&self) {
        loop {
            tokio::time::sleep(PING_INTERVAL).await;
            if self.send(Bytes::from_static(b": ping\n\n")).await.is_err() {
                return;
            }
        }
    }

    /// Writes `bytes`, within the limit.
    async fn send(&self, bytes: Bytes) -> Result<(), SinkError> {
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        let written = self.inner.written.load(Ordering::SeqCst);
        let room = if self.inner.full.load(Ordering::SeqCst) {
            self.inner.limit
        } else {
            self.inner.limit.saturating_sub(TERMINAL_RESERVE)
        };
        if written.saturating_add(len) > room {
            self.inner.full.store(true, Ordering::SeqCst);
            return Err("the response reached Lambda's streamed response size limit".into());
        }
        let mut sender = self.inner.sender.lock().await;
        let Some(sender) = sender.as_mut() else {
            return Err("the response has ended".into());
        };
        match tokio::time::timeout(WRITE_TIMEOUT, sender.send_data(bytes)).await {
            Ok(Ok(())) => {
                self.inner.written.fetch_add(len, Ordering::SeqCst);
                Ok(())
            }
            Ok(Err(error)) => {
                self.mark_gone();
                Err(format!("the response stream has gone: {error}").into())
            }
            Err(_) => {
                self.mark_gone();
                Err("the response stream took no bytes in time".into())
            }
        }
    }
}

impl ResponseStream {
    fn mark_gone(&self) {
        self.inner.gone.store(true, Ordering::SeqCst);
        self.inner.left.notify_waiters();
    }
}

impl EventWriter for ResponseStream {
    async fn write(&self, bytes: Bytes) -> Result<(), SinkError> {
        self.send(bytes).await
    }

    /// The terminal event is the last: the body ends with it, so the client
    /// is done while the turn's record is still being written.
    async fn end(&self) {
        self.finish().await;
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    #[tokio::test]
    async fn writes_reach_the_body_until_it_is_dropped_then_the_stream_is_gone() {
        let (sender, body) = lambda_runtime::streaming::channel();
        let stream = ResponseStream::new(sender);
        let mut frames = body;
        let writer = stream.clone();
        let write = tokio::spawn(async move { writer.write(Bytes::from_static(b"a")).await });
        assert_eq!(
            frames.next().await.and_then(Result::ok),
            Some(Bytes::from_static(b"a"))
        );
        assert!(write.await.expect("joined").is_ok());
        drop(frames);
        assert!(stream.write(Bytes::from_static(b"b")).await.is_err());
        tokio::time::timeout(Duration::from_secs(1), stream.gone())
            .await
            .expect("marked gone");
    }

    #[tokio::test]
    async fn the_limit_keeps_room_for_the_terminal_event() {
        let (sender, body) = lambda_runtime::streaming::channel();
        let stream = ResponseStream::with_limit(sender, TERMINAL_RESERVE + 10);
        let reader = tokio::spawn(async move {
            let mut body = body;
            let mut bytes = Vec::new();
            while let Some(Ok(frame)) = body.next().await {
                bytes.extend_from_slice(&frame);
            }
            bytes
        });
        assert!(stream.write(Bytes::from(vec![b'x'; 10])).await.is_ok());
        assert!(stream.write(Bytes::from_static(b"y")).await.is_err());
        // The terminal event fits in the reserve.
        assert!(stream.write(Bytes::from(vec![b'z'; 100])).await.is_ok());
        stream.finish().await;
        drop(stream);
        assert_eq!(reader.await.expect("joined").len(), 110);
    }
}
