//! Place in the data path: Lambda Runtime API -> `lambda_runtime`'s loop ->
//! **the invocation's end** -> handler -> relay. Keeps an invocation open
//! until the turn it started has ended.
//!
//! A streaming handler returns its response at once and the turn writes to it
//! from a task; `lambda_runtime` ends the invocation when the Runtime API
//! answers the response's POST, and then asks for the next event, at which
//! point Lambda freezes the execution environment
//! (<https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html>).
//! The POST is answered when the body ends, which is the turn's end, except
//! when the connection breaks first: a turn still writing would then be
//! frozen mid-stream with its model stream open, and thawed into the next
//! invocation. So the invocation waits, after the POST, for every turn it
//! started to end: the turn's next write fails, which cancels it and drops
//! the model stream, and only then does the runtime ask for the next event.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use lambda_runtime::LambdaInvocation;
use lambda_runtime::tower::{Layer, Service};
use tokio::sync::Notify;

/// The turns running in this execution environment.
#[derive(Debug, Default)]
pub(crate) struct RunningTurns {
    running: AtomicUsize,
    ended: Notify,
}

/// A running turn; dropping it ends it.
pub(crate) struct TurnGuard(Arc<RunningTurns>);

impl RunningTurns {
    /// Counts a turn as running until the guard is dropped.
    pub(crate) fn start(self: &Arc<Self>) -> TurnGuard {
        self.running.fetch_add(1, Ordering::SeqCst);
        TurnGuard(Arc::clone(self))
    }

    /// Resolves once no turn is running.
    async fn all_ended(&self) {
        loop {
            let ended = self.ended.notified();
            if self.running.load(Ordering::SeqCst) == 0 {
                return;
            }
            ended.await;
        }
    }
}

impl Drop for TurnGuard {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
        self.0.ended.notify_waiters();
    }
}

/// The layer that makes each invocation wait for its turns.
#[derive(Clone)]
pub(crate) struct EndWithTurns(pub(crate) Arc<RunningTurns>);

impl<S> Layer<S> for EndWithTurns {
    type Service = EndWithTurnsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EndWithTurnsService {
            inner,
            turns: Arc::clone(&self.0),
        }
    }
}

/// [`EndWithTurns`] around the runtime's service.
#[derive(Clone)]
pub(crate) struct EndWithTurnsService<S> {
    inner: S,
    turns: Arc<RunningTurns>,
}

type BoxError = lambda_runtime::Error;

impl<S> Service<LambdaInvocation> for EndWithTurnsService<S>
where
    S: Service<LambdaInvocation, Response = (), Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, invocation: LambdaInvocation) -> Self::Future {
        let answered = self.inner.call(invocation);
        let turns = Arc::clone(&self.turns);
        Box::pin(async move {
            let result = answered.await;
            turns.all_ended().await;
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn waits_until_every_turn_has_ended() {
        let turns = Arc::new(RunningTurns::default());
        turns.all_ended().await;
        let first = turns.start();
        let second = turns.start();
        let waiting = tokio::spawn({
            let turns = Arc::clone(&turns);
            async move { turns.all_ended().await }
        });
        drop(first);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drop(second);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("ended")
            .expect("joined");
    }
}
