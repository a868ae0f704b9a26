//! Place in the data path: AppSync --Invoke(Event)--> Lambda -> **execution
//! environment** -> resolver process --ConverseStream--> Bedrock.
//!
//! One execution environment: a process of the function and its own Runtime
//! API endpoint, as every Lambda environment has its own
//! `AWS_LAMBDA_RUNTIME_API`
//! (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>).
//!
//! Its life, as Lambda's
//! (<https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html>):
//! init runs from the spawn until the process first asks for an invocation;
//! while it waits for one it is frozen (`SIGSTOP`), and it is thawed
//! (`SIGCONT`) when it gets one, so whatever it leaves running after a
//! response pauses until then. During an invocation a watchdog enforces the
//! function's timeout and memory size: past either, the process is killed
//! and the invocation fails with `Sandbox.Timedout` or `Runtime.OutOfMemory`;
//! a process that dies on its own fails it with `Runtime.ExitError`. The async
//! invoke config's retries then apply
//! (<https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html>),
//! and the next invocation starts a new environment (a cold start).

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::mpsc;

use super::{Invocation, InvocationReport, LambdaService, forward_logs, lambda_environment};

/// Why the service shut an environment down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ending {
    /// It ran past the function timeout.
    Timeout,
    /// Its resident memory passed the function's memory size.
    OutOfMemory,
    /// It was idle longer than the idle time.
    Retired,
    /// The service stopped.
    Stopped,
}

/// A signal the service sends an environment's process.
#[derive(Clone, Copy, Debug)]
pub(super) enum Signal {
    /// `SIGSTOP`: freeze between invocations.
    Freeze,
    /// `SIGCONT`: thaw for the next invocation.
    Thaw,
    /// `SIGKILL`: shut down (also works on a frozen process).
    Kill,
}

/// Sends `signal` to `pid` (nothing when there is no process yet or it is gone).
pub(super) fn signal(pid: Option<u32>, signal: Signal) {
    use nix::sys::signal::{Signal as Sig, kill};
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    let sig = match signal {
        Signal::Freeze => Sig::SIGSTOP,
        Signal::Thaw => Sig::SIGCONT,
        Signal::Kill => Sig::SIGKILL,
    };
    if let Err(error) = kill(nix::unistd::Pid::from_raw(pid), sig) {
        tracing::debug!(target: "lambda", pid, ?signal, %error, "signal not delivered");
    }
}

/// A memory line of `/proc/{pid}/status` (`VmRSS:`, `VmHWM:`) in kB, on Linux.
pub(crate) fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A memory line of `/proc/{pid}/status` in whole MB, rounded up.
fn status_mb(pid: u32, field: &str) -> Option<u64> {
    status_kb(pid, field).map(|kb| kb.div_ceil(1024))
}

/// The process's peak resident memory so far, in MB.
pub(super) fn peak_memory_mb(pid: u32) -> Option<u64> {
    status_mb(pid, "VmHWM:")
}

/// Spawns environment `id` (reserved in the pool, its first invocation
/// waiting in `deliveries`): binds its Runtime API on a free loopback port,
/// starts the function's process against it, and supervises it. On failure
/// hands `deliveries` back.
pub(super) async fn start(
    service: &LambdaService,
    id: u64,
    deliveries: mpsc::UnboundedReceiver<Invocation>,
) -> Result<(), (std::io::Error, mpsc::UnboundedReceiver<Invocation>)> {
    let listener = match TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await {
        Ok(listener) => listener,
        Err(e) => return Err((e, deliveries)),
    };
    let runtime_api = match listener.local_addr() {
        Ok(addr) => addr.to_string(),
        Err(e) => return Err((e, deliveries)),
    };
    let config = &service.inner.config;
    let mut command = Command::new(&config.command.program);
    command
        .args(&config.command.args)
        .envs(config.environment.iter().cloned())
        .envs(lambda_environment(config, &runtime_api))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return Err((e, deliveries)),
    };
    forward_logs(&mut child, id, &service.inner.metrics);
    let pid = child.id();
    if let Ok(mut pool) = service.inner.pool.lock()
        && let Some(env) = pool.get_mut(id)
    {
        env.pid = pid;
        env.spawned = Instant::now();
    }
    let deliveries = std::sync::Arc::new(tokio::sync::Mutex::new(deliveries));
    let app = super::runtime_api::router(service.clone(), id, deliveries.clone());
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(target: "lambda", error = %e, "a Runtime API server stopped");
        }
    });
    let service = service.clone();
    tokio::spawn(async move {
        let status = child.wait().await;
        server.abort();
        let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
        service.environment_exited(id, &status, &deliveries).await;
    });
    Ok(())
}

impl LambdaService {
    /// Environment `id`'s process asks for its next invocation: its init is
    /// over if this is the first time, and it is frozen unless an invocation
    /// is already waiting for it.
    pub(super) fn waiting_for_next(&self, id: u64) {
        let Ok(mut pool) = self.inner.pool.lock() else {
            return;
        };
        let Some(env) = pool.get_mut(id) else {
            return;
        };
        if env.init_duration.is_none() {
            env.init_duration = Some(env.spawned.elapsed());
        }
        if env.holding.is_none() && self.inner.config.freeze && !env.frozen {
            signal(env.pid, Signal::Freeze);
            env.frozen = true;
        }
    }

    /// Environment `id` takes `invocation`: it is in flight from now, with
    /// its deadline watched. Returns the request id, the payload and the
    /// deadline; when the environment is gone, the invocation fails as its
    /// end would have failed it, and `None`.
    pub(super) fn hand_over(
        &self,
        id: u64,
        mut invocation: Invocation,
    ) -> Option<(String, Value, SystemTime)> {
        let found = self.inner.pool.lock().ok().and_then(|mut pool| {
            let env = pool.get_mut(id)?;
            let init = (!env.init_reported).then_some(env.init_duration).flatten();
            env.init_reported = true;
            Some((env.pid, init))
        });
        let Some((pid, init_duration)) = found else {
            let error = ended_error(
                &invocation.request_id,
                None,
                "the environment is gone",
                Duration::ZERO,
            );
            self.complete(invocation, Err(error), InvocationReport::default());
            return None;
        };
        let timeout = self.inner.config.timeout;
        let started = Instant::now();
        let in_flight = super::InFlight {
            reply: invocation.reply.take(),
            payload: invocation.payload.clone(),
            attempt: invocation.attempt,
            received: invocation.received,
            environment: id,
            started,
            init_duration,
        };
        let request_id = invocation.request_id;
        if let Ok(mut f) = self.inner.in_flight.lock() {
            f.insert(request_id.clone(), in_flight);
        }
        if let Some(pid) = pid {
            let watched = request_id.clone();
            tokio::spawn(watchdog(self.clone(), id, pid, watched, started + timeout));
        }
        Some((request_id, invocation.payload, SystemTime::now() + timeout))
    }

    fn is_in_flight(&self, request_id: &str) -> bool {
        self.inner
            .in_flight
            .lock()
            .map(|f| f.contains_key(request_id))
            .unwrap_or(false)
    }

    /// Kills environment `id` for `ending` (the supervisor then fails what it held).
    fn shut_down(&self, id: u64, ending: Ending) {
        if let Ok(mut pool) = self.inner.pool.lock()
            && let Some(env) = pool.get_mut(id)
        {
            env.ending.get_or_insert(ending);
            signal(env.pid, Signal::Kill);
        }
    }

    /// Environment `id`'s process exited with `status`: it leaves the pool,
    /// and each invocation it held or had waiting fails as Lambda reports
    /// it, then is retried if it was asynchronous and has retries left.
    async fn environment_exited(
        &self,
        id: u64,
        status: &str,
        deliveries: &tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    ) {
        let removed = self.inner.pool.lock().ok().and_then(|mut p| p.remove(id));
        let ending = removed.as_ref().and_then(|e| e.ending);
        match ending {
            Some(Ending::Retired | Ending::Stopped) => {
                tracing::debug!(target: "lambda", environment = id, %status, "an execution environment shut down");
            }
            _ => {
                tracing::warn!(target: "lambda", environment = id, %status, ?ending, "an execution environment ended");
            }
        }
        let held: Vec<String> = self
            .inner
            .in_flight
            .lock()
            .map(|f| {
                f.iter()
                    .filter(|(_, f)| f.environment == id)
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default();
        for request_id in held {
            self.finish(
                id,
                &request_id,
                Err(ended_error(
                    &request_id,
                    ending,
                    status,
                    self.inner.config.timeout,
                )),
            );
        }
        // Invocations given to it that it never took (it died in init).
        let mut waiting = deliveries.lock().await;
        while let Ok(invocation) = waiting.try_recv() {
            let error = ended_error(&invocation.request_id, ending, status, Duration::ZERO);
            self.complete(invocation, Err(error), InvocationReport::default());
        }
        self.inner.capacity.notify_one();
    }
}

/// The error object Lambda reports for an invocation whose environment ended.
fn ended_error(request_id: &str, ending: Option<Ending>, status: &str, timeout: Duration) -> Value {
    match ending {
        Some(Ending::Timeout) => json!({
            "errorType": "Sandbox.Timedout",
            "errorMessage": format!("RequestId: {request_id} Error: Task timed out after {:.2} seconds", timeout.as_secs_f64()),
        }),
        Some(Ending::OutOfMemory) => json!({
            "errorType": "Runtime.OutOfMemory",
            "errorMessage": format!("RequestId: {request_id} Error: Runtime exited with error: signal: killed"),
        }),
        _ => json!({
            "errorType": "Runtime.ExitError",
            "errorMessage": format!("RequestId: {request_id} Error: Runtime exited with error: {status}"),
        }),
    }
}

/// Watches one invocation until it ends: past `deadline`, or with more
/// resident memory than the function's memory size, the environment is
/// killed. Polls every 50 ms (memory can only be read, not capped, without
/// privileges this stand-in does not assume).
async fn watchdog(
    service: LambdaService,
    id: u64,
    pid: u32,
    request_id: String,
    deadline: Instant,
) {
    let memory_size = service.inner.config.memory_size_mb;
    loop {
        if !service.is_in_flight(&request_id) {
            return;
        }
        if status_mb(pid, "VmRSS:").is_some_and(|rss| rss > memory_size) {
            tracing::warn!(target: "lambda", environment = id, %request_id, memory_size, "the function ran out of memory");
            service.shut_down(id, Ending::OutOfMemory);
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            tracing::warn!(target: "lambda", environment = id, %request_id, "the invocation timed out");
            service.shut_down(id, Ending::Timeout);
            return;
        }
        tokio::time::sleep((deadline - now).min(Duration::from_millis(50))).await;
    }
}
