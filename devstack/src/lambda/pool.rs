//! Place in the data path: AppSync --Invoke(Event)--> Lambda's **queue and
//! scaling** -> execution environment -> resolver process.
//!
//! Which environment takes an invocation, as Lambda decides it
//! (<https://docs.aws.amazon.com/lambda/latest/dg/lambda-concurrency.html>,
//! <https://docs.aws.amazon.com/lambda/latest/dg/invocation-async.html>):
//! an idle (warm) environment if there is one, the most recently used first,
//! thawed if frozen; else a new one (a cold start) while fewer than the
//! function's concurrency run; else the event waits in the queue, in order,
//! until an environment is free or the event is older than
//! `MaximumEventAgeInSeconds` (then it is dropped, never run). A synchronous
//! invocation is not queued: at the limit it is throttled
//! (`TooManyRequestsException`). Environments idle longer than the idle time
//! are shut down.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::environment::{self, Ending, Signal};
use super::{Invocation, InvocationReport, LambdaService};

/// The function's execution environments.
#[derive(Default)]
pub(super) struct Pool {
    environments: BTreeMap<u64, Environment>,
    next_id: u64,
}

/// One execution environment, as the service sees it.
pub(super) struct Environment {
    /// Its process, once spawned.
    pub(super) pid: Option<u32>,
    /// Where its invocations go; its Runtime API hands them out on `next`.
    pub(super) deliver: mpsc::UnboundedSender<Invocation>,
    /// The request id of the invocation it holds (given, maybe not yet taken).
    pub(super) holding: Option<String>,
    /// Since when it holds nothing.
    pub(super) idle_since: Instant,
    /// Stopped with `SIGSTOP` while it waits for an invocation.
    pub(super) frozen: bool,
    /// When its process was spawned.
    pub(super) spawned: Instant,
    /// Spawn to its first `invocation/next`, once that came.
    pub(super) init_duration: Option<Duration>,
    /// Whether an invocation has reported [`Self::init_duration`] yet.
    pub(super) init_reported: bool,
    /// Why the service is shutting it down, once it is.
    pub(super) ending: Option<Ending>,
}

impl Pool {
    /// The process ids of the environments that have one.
    pub(super) fn pids(&self) -> Vec<u32> {
        self.environments.values().filter_map(|e| e.pid).collect()
    }

    /// Environment `id`, while it exists.
    pub(super) fn get_mut(&mut self, id: u64) -> Option<&mut Environment> {
        self.environments.get_mut(&id)
    }

    /// Forgets environment `id` (its process has exited).
    pub(super) fn remove(&mut self, id: u64) -> Option<Environment> {
        self.environments.remove(&id)
    }

    /// The warm environment to use: idle, alive, not being shut down; the
    /// most recently used, so that the others can go idle long enough to retire.
    fn warm(&mut self) -> Option<&mut Environment> {
        self.environments
            .values_mut()
            .filter(|e| e.holding.is_none() && e.ending.is_none() && e.pid.is_some())
            .max_by_key(|e| e.idle_since)
    }
}

/// How an invocation was placed.
enum Placement {
    /// A warm environment took it.
    Warm,
    /// A new environment `id` must be started; the invocation waits in its
    /// delivery channel.
    Cold(u64, mpsc::UnboundedReceiver<Invocation>),
}

/// Takes events from the queue, in order, and places each (see the module
/// doc) until `stop`.
pub(super) async fn dispatch(
    service: LambdaService,
    mut queue: mpsc::UnboundedReceiver<Invocation>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let invocation = tokio::select! {
            invocation = queue.recv() => invocation,
            _ = stop.changed() => return,
        };
        let Some(mut invocation) = invocation else {
            return;
        };
        loop {
            if service.expired(&invocation) {
                service.drop_expired(invocation);
                break;
            }
            match service.place(invocation) {
                Ok(Placement::Warm) => break,
                Ok(Placement::Cold(id, deliveries)) => {
                    // Lambda starts environments side by side; waiting for
                    // each spawn here would queue every later cold start
                    // behind it.
                    let service = service.clone();
                    tokio::spawn(async move { service.cold_start(id, deliveries).await });
                    break;
                }
                Err(waiting) if waiting.reply.is_some() => {
                    service.throttle(waiting);
                    break;
                }
                Err(waiting) => invocation = waiting,
            }
            let expires = invocation.received + service.inner.config.max_event_age;
            tokio::select! {
                _ = service.inner.capacity.notified() => {}
                _ = tokio::time::sleep_until(expires.into()) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

/// Shuts down environments idle longer than the idle time, until `stop`.
pub(super) async fn retire_idle(service: LambdaService, mut stop: watch::Receiver<bool>) {
    let idle_timeout = service.inner.config.idle_timeout;
    let tick = (idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => return,
        }
        let Ok(mut pool) = service.inner.pool.lock() else {
            return;
        };
        for (id, env) in &mut pool.environments {
            let idle = env.holding.is_none() && env.idle_since.elapsed() >= idle_timeout;
            if idle && env.ending.is_none() {
                tracing::info!(target: "lambda", environment = id, "retiring an idle execution environment");
                env.ending = Some(Ending::Retired);
                environment::signal(env.pid, Signal::Kill);
            }
        }
    }
}

impl LambdaService {
    /// Gives `invocation` to a warm environment, or reserves a new one for
    /// it; hands it back when the concurrency limit is reached.
    fn place(&self, invocation: Invocation) -> Result<Placement, Invocation> {
        let Ok(mut pool) = self.inner.pool.lock() else {
            return Err(invocation);
        };
        if let Some(env) = pool.warm() {
            env.holding = Some(invocation.request_id.clone());
            if env.frozen {
                environment::signal(env.pid, Signal::Thaw);
                env.frozen = false;
            }
            return match env.deliver.send(invocation) {
                Ok(()) => Ok(Placement::Warm),
                Err(returned) => Err(returned.0),
            };
        }
        let starting = pool
            .environments
            .values()
            .filter(|e| e.ending.is_none())
            .count();
        if starting >= self.inner.config.concurrency {
            return Err(invocation);
        }
        let id = pool.next_id;
        pool.next_id += 1;
        let (deliver, deliveries) = mpsc::unbounded_channel();
        let holding = Some(invocation.request_id.clone());
        // The receiver is held below, so the send cannot fail.
        let _ = deliver.send(invocation);
        pool.environments.insert(
            id,
            Environment {
                pid: None,
                deliver,
                holding,
                idle_since: Instant::now(),
                frozen: false,
                spawned: Instant::now(),
                init_duration: None,
                init_reported: false,
                ending: None,
            },
        );
        Ok(Placement::Cold(id, deliveries))
    }

    /// Spawns reserved environment `id`; if that fails, the invocation
    /// waiting for it fails as Lambda reports a function that cannot start.
    async fn cold_start(&self, id: u64, deliveries: mpsc::UnboundedReceiver<Invocation>) {
        self.inner
            .cold_starts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err((error, mut deliveries)) = environment::start(self, id, deliveries).await {
            tracing::error!(target: "lambda", environment = id, %error, "could not start an execution environment");
            if let Ok(mut pool) = self.inner.pool.lock() {
                pool.remove(id);
            }
            while let Ok(invocation) = deliveries.try_recv() {
                let error = json!({
                    "errorType": "Runtime.InvalidEntrypoint",
                    "errorMessage": format!("RequestId: {} Error: could not start the function: {error}", invocation.request_id),
                });
                self.complete(invocation, Err(error), InvocationReport::default());
            }
            self.inner.capacity.notify_one();
        }
    }

    /// Environment `id` no longer holds an invocation; returns its peak
    /// resident memory in MB (for the `REPORT` line).
    pub(super) fn release(&self, id: u64) -> Option<u64> {
        let mut pool = self.inner.pool.lock().ok()?;
        let env = pool.get_mut(id)?;
        env.holding = None;
        env.idle_since = Instant::now();
        let peak = env.pid.and_then(environment::peak_memory_mb);
        drop(pool);
        self.inner.capacity.notify_one();
        peak
    }

    fn expired(&self, invocation: &Invocation) -> bool {
        invocation.reply.is_none()
            && invocation.received.elapsed() >= self.inner.config.max_event_age
    }

    /// An event older than `MaximumEventAgeInSeconds` is discarded unrun
    /// (Lambda would send it to an on-failure destination, if one were set).
    fn drop_expired(&self, invocation: Invocation) {
        tracing::warn!(target: "lambda", request_id = %invocation.request_id, "dropping an event older than MaximumEventAgeInSeconds");
        let error = json!({
            "errorType": "EventAgeExceeded",
            "errorMessage": format!(
                "the event waited longer than MaximumEventAgeInSeconds ({} s)",
                self.inner.config.max_event_age.as_secs()
            ),
        });
        let mut invocation = invocation;
        // Never retried: its age is already past the limit.
        invocation.attempt = u32::MAX;
        self.complete(invocation, Err(error), InvocationReport::default());
    }

    /// A synchronous invocation at the concurrency limit fails at once.
    fn throttle(&self, invocation: Invocation) {
        let error = json!({
            "errorType": "TooManyRequestsException",
            "errorMessage": "Rate Exceeded.",
            "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
        });
        self.complete(invocation, Err(error), InvocationReport::default());
    }

    /// Shuts every environment down (the service is stopping).
    pub(super) async fn shut_down_all(&self) {
        let ids: Vec<u64> = match self.inner.pool.lock() {
            Ok(mut pool) => pool
                .environments
                .iter_mut()
                .map(|(id, env)| {
                    env.ending = Some(Ending::Stopped);
                    environment::signal(env.pid, Signal::Kill);
                    *id
                })
                .collect(),
            Err(_) => return,
        };
        // Each supervisor sees its process exit and removes it.
        for _ in 0..200 {
            let left = self
                .inner
                .pool
                .lock()
                .map(|p| ids.iter().any(|id| p.environments.contains_key(id)))
                .unwrap_or(false);
            if !left {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
