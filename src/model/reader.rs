//! Place in the data path: **model** -> coalescer: the reader task that owns
//! one turn's ConverseStream and forwards its events, in order, into a
//! channel the turn driver reads. Reading in its own task lets the driver wait
//! on a publish, the deadline and a cancellation at the same time as the
//! model; dropping [`ModelEvents`] aborts the task and with it the stream,
//! which stops the model (and its cost).

use tokio::sync::mpsc::{self, UnboundedReceiver, error::TryRecvError};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::{ModelError, ModelEvent, ModelRequest, ModelStream};
use crate::retry::RetryPolicy;

/// The model reader task; dropping it aborts the task and with it the
/// ConverseStream (dropping the stream closes its connection, which stops the
/// model: <https://docs.aws.amazon.com/bedrock/latest/userguide/conversation-inference-call.html>).
#[derive(Debug)]
pub(super) struct ReaderTask(JoinHandle<()>);

impl Drop for ReaderTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One item of [`ModelEvents`]: a model event, or the error that ends the stream.
pub(crate) type ModelItem = Result<ModelEvent, ModelError>;

/// A turn's model events in order (an `Err` is the last item), and the task
/// producing them: dropping this stops the model.
#[derive(Debug)]
pub(crate) struct ModelEvents {
    rx: UnboundedReceiver<ModelItem>,
    _reader: Option<ReaderTask>,
}

impl ModelEvents {
    /// Events fed by hand, for the driver's unit tests: the stream ends when
    /// every sender is dropped.
    #[cfg(test)]
    pub(crate) fn channel() -> (mpsc::UnboundedSender<ModelItem>, Self) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, Self::from_receiver(rx))
    }

    /// Events from `rx`, with no reader task.
    #[cfg(test)]
    pub(crate) fn from_receiver(rx: UnboundedReceiver<ModelItem>) -> Self {
        Self { rx, _reader: None }
    }

    pub(crate) async fn recv(&mut self) -> Option<ModelItem> {
        self.rx.recv().await
    }

    pub(crate) fn try_recv(&mut self) -> Result<ModelItem, TryRecvError> {
        self.rx.try_recv()
    }
}

/// Starts the ConverseStream in a task that forwards every model event (or
/// the error that ends the stream) into [`ModelEvents`]. A stream that fails
/// retryably before its first event is opened again per `retry`
/// ([`ModelStream::open_first`]); nothing is retried after it. The task logs
/// in the caller's span and stops when the stream ends or the
/// [`ModelEvents`] are dropped.
pub(crate) fn spawn_model_reader(
    client: aws_sdk_bedrockruntime::Client,
    request: ModelRequest,
    retry: RetryPolicy,
) -> ModelEvents {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(
        async move {
            let (mut stream, first) = match ModelStream::open_first(&client, &request, &retry).await
            {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            match first {
                Some(event) => {
                    if tx.send(Ok(event)).is_err() {
                        return;
                    }
                }
                None => return,
            }
            loop {
                match stream.next().await {
                    Ok(Some(event)) => {
                        if tx.send(Ok(event)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        }
        .instrument(tracing::Span::current()),
    );
    ModelEvents {
        rx,
        _reader: Some(ReaderTask(task)),
    }
}
