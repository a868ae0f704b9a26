//! The Lambda stand-in: one function, its asynchronous event queue, and the
//! execution environments that run it.
//!
//! Place in the data path: client --sendPrompt--> AppSync --Invoke(Event)-->
//! **Lambda** -> execution environment (resolver process) --ConverseStream-->
//! Bedrock; resolver --publishChunk--> AppSync -> subscriber.
//!
//! It behaves as Lambda does where this service is exposed
//! (<https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html>,
//! <https://docs.aws.amazon.com/lambda/latest/dg/lambda-concurrency.html>):
//! an invocation that finds no idle environment starts one (a cold start: the
//! process is spawned, then runs its init until it asks for an invocation),
//! up to the function's concurrency; an environment handles one invocation at
//! a time, is frozen (`SIGSTOP`) while it waits for the next and thawed
//! (`SIGCONT`) when it gets one, and is retired after an idle time. The
//! function's timeout and memory size are enforced: an environment past its
//! deadline or its memory is killed and the invocation fails
//! (`Sandbox.Timedout`, `Runtime.OutOfMemory`), as does one whose process dies
//! (`Runtime.ExitError`). Asynchronous (`Event`) invocations wait in a queue
//! while every environment is busy, are retried per the async invoke config
//! and dropped once older than its `MaximumEventAgeInSeconds`
//! (<https://docs.aws.amazon.com/lambda/latest/dg/invocation-async.html>).
//!
//! # Layout
//! - [`settings`]: the function's configuration, read from `infra/template.yaml`.
//! - `pool`: scaling: which environment takes an invocation, cold starts, the
//!   queue and event age, idle retirement.
//! - `environment`: one execution environment: its process, freeze and thaw,
//!   the timeout and memory watchdog, its death.
//! - `runtime_api`: the Runtime API each environment's process talks to,
//!   buffered and streamed responses.
//! - [`function_url`]: a function URL in `RESPONSE_STREAM` mode in front of
//!   the function.

mod environment;
pub mod function_url;

pub(crate) use environment::status_kb;
mod pool;
mod runtime_api;
pub mod settings;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::{DEV_ACCOUNT_ID, DEV_REGION};

/// The program an execution environment runs: the resolver, as Lambda would
/// run `bootstrap`.
#[derive(Clone, Debug)]
pub struct FunctionCommand {
    /// The executable (the resolver's `bootstrap`, or `devstack` itself).
    pub program: PathBuf,
    /// Its arguments (e.g. `worker` when `devstack` runs the resolver).
    pub args: Vec<String>,
}

/// How the function is configured, as in a Lambda function's configuration
/// and its async invoke config.
#[derive(Clone, Debug)]
pub struct LambdaConfig {
    /// The function's name (`AWS_LAMBDA_FUNCTION_NAME`, and in its ARN).
    pub function_name: String,
    /// What each execution environment runs.
    pub command: FunctionCommand,
    /// The most execution environments at once (the function's reserved
    /// concurrency). 0 throttles every invocation, as Lambda does.
    pub concurrency: usize,
    /// The function timeout: each invocation's deadline is its start + this;
    /// an environment still running it then is killed.
    pub timeout: Duration,
    /// `MemorySize`, in MB: `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, and the
    /// resident memory past which an environment is killed.
    pub memory_size_mb: u64,
    /// Environment variables of the function, on top of Lambda's own.
    pub environment: Vec<(String, String)>,
    /// Retries of an asynchronous invocation that failed (the async invoke
    /// config's `MaximumRetryAttempts`; Lambda's default is 2).
    pub max_retry_attempts: u32,
    /// Wait before the first retry; the n-th waits n times as long (Lambda
    /// waits about a minute, then two).
    pub retry_delay: Duration,
    /// `MaximumEventAgeInSeconds`: an asynchronous event still queued (or due
    /// for a retry) this long after Lambda received it is dropped.
    pub max_event_age: Duration,
    /// An environment idle this long is shut down.
    pub idle_timeout: Duration,
    /// Freeze (`SIGSTOP`) environments between invocations, as Lambda does.
    pub freeze: bool,
}

impl LambdaConfig {
    /// A function named `function_name` running `command`, with Lambda's
    /// defaults where the devstack has no reason to differ: 10 environments,
    /// 3 s timeout, 128 MB, 2 retries (1 s apart here), 6 h event age, 5 min
    /// idle time, frozen between invocations.
    pub fn new(function_name: impl Into<String>, command: FunctionCommand) -> Self {
        Self {
            function_name: function_name.into(),
            command,
            concurrency: 10,
            timeout: Duration::from_secs(3),
            memory_size_mb: 128,
            environment: Vec::new(),
            max_retry_attempts: 2,
            retry_delay: Duration::from_secs(1),
            max_event_age: Duration::from_secs(6 * 3600),
            idle_timeout: Duration::from_secs(300),
            freeze: true,
        }
    }
}

/// How an invocation ended.
#[derive(Clone, Debug)]
pub struct InvocationOutcome {
    /// The invocation's request id (`Lambda-Runtime-Aws-Request-Id`).
    pub request_id: String,
    /// The function's response, or its error object (`errorType`,
    /// `errorMessage`; for an event that was never run, `EventAgeExceeded`).
    pub result: Result<Value, Value>,
    /// What Lambda's `REPORT` log line says of it.
    pub report: InvocationReport,
}

/// The numbers of Lambda's `REPORT` line for one invocation
/// (<https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs.html>).
#[derive(Clone, Debug, Default)]
pub struct InvocationReport {
    /// The execution environment that ran it (`None`: it never ran).
    pub environment: Option<u64>,
    /// From handing the event to the process until its response or error.
    pub duration: Duration,
    /// The environment's init (spawn to its first `invocation/next`), when
    /// this invocation was that environment's first: a cold start.
    pub init_duration: Option<Duration>,
    /// The environment's peak resident memory so far, in MB.
    pub max_memory_used_mb: Option<u64>,
}

/// Where a synchronous invocation's answer goes.
enum Reply {
    /// `Invoke` (`RequestResponse`): the whole response, or the error.
    Buffered(oneshot::Sender<Result<Value, Value>>),
    /// `InvokeWithResponseStream` (and a function URL in `RESPONSE_STREAM`
    /// mode): the response as it streams, or the error before it started.
    Streamed(oneshot::Sender<Result<StreamedResponse, Value>>),
    /// A streamed response that has started: its invoker reads the stream,
    /// and the invocation, being synchronous, is never retried.
    Started,
}

impl Reply {
    /// Hands `result` over: a buffered response to a streamed invocation
    /// arrives as one frame, as Lambda streams a buffered response.
    fn send(self, result: Result<Value, Value>) {
        match self {
            Reply::Buffered(reply) => {
                let _ = reply.send(result);
            }
            Reply::Streamed(reply) => {
                let streamed = result.map(|value| {
                    let (frames, response) = StreamedResponse::channel(None);
                    let _ = frames.try_send(StreamFrame::Data(value.to_string().into()));
                    response
                });
                let _ = reply.send(streamed);
            }
            Reply::Started => {}
        }
    }
}

/// A response the function streams
/// (`Lambda-Runtime-Function-Response-Mode: streaming`,
/// <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-custom.html#runtimes-custom-response-streaming>),
/// as the invoker reads it.
pub struct StreamedResponse {
    /// The `Content-Type` the function gave its response (a function URL's
    /// `application/vnd.awslambda.http-integration-response` starts with the
    /// HTTP prelude).
    pub content_type: Option<String>,
    /// The body's frames, in order; the channel closes when the response
    /// ends. Dropping it tells the function's runtime that the reader left.
    pub frames: mpsc::Receiver<StreamFrame>,
}

impl StreamedResponse {
    /// A response of `content_type` and the sender of its frames.
    fn channel(content_type: Option<String>) -> (mpsc::Sender<StreamFrame>, Self) {
        let (frames, receiver) = mpsc::channel(STREAM_FRAMES_BUFFERED);
        (
            frames,
            Self {
                content_type,
                frames: receiver,
            },
        )
    }
}

/// How many frames of a streamed response wait for a slow reader before the
/// function's writes wait too.
const STREAM_FRAMES_BUFFERED: usize = 16;

/// One piece of a streamed response.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamFrame {
    /// Response bytes.
    Data(bytes::Bytes),
    /// The function failed mid-stream: its
    /// `Lambda-Runtime-Function-Error-Type` and the decoded
    /// `Lambda-Runtime-Function-Error-Body`. The last frame.
    Error {
        /// e.g. `Runtime.StreamError`.
        error_type: String,
        /// The error's message.
        message: String,
    },
}

/// An event on its way to an environment.
struct Invocation {
    request_id: String,
    payload: Value,
    reply: Option<Reply>,
    /// 0 for the first delivery, then 1, 2, ... for retries.
    attempt: u32,
    /// When Lambda accepted the event; its age counts from here, across retries.
    received: Instant,
}

/// An invocation an environment has taken and not yet answered.
struct InFlight {
    reply: Option<Reply>,
    payload: Value,
    attempt: u32,
    received: Instant,
    /// The execution environment that took it.
    environment: u64,
    /// When it was handed over.
    started: Instant,
    /// Set on the environment's first invocation.
    init_duration: Option<Duration>,
}

/// The background tasks of a started service.
struct Running {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// The Lambda service with one function.
#[derive(Clone)]
pub struct LambdaService {
    inner: Arc<Inner>,
}

struct Inner {
    config: LambdaConfig,
    queue: mpsc::UnboundedSender<Invocation>,
    /// The queue's far end, until the dispatcher takes it.
    queued: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Invocation>>>,
    in_flight: std::sync::Mutex<HashMap<String, InFlight>>,
    /// Extra copies of each asynchronous event to deliver (Lambda delivers at least once).
    duplicates: AtomicUsize,
    outcomes: broadcast::Sender<InvocationOutcome>,
    metrics: broadcast::Sender<Value>,
    pool: std::sync::Mutex<pool::Pool>,
    /// Signalled when an environment becomes free or goes away.
    capacity: Notify,
    cold_starts: AtomicU64,
    running: tokio::sync::Mutex<Option<Running>>,
}

impl LambdaService {
    /// A service with an empty queue and no environments; nothing runs
    /// until [`Self::start`].
    pub fn new(config: LambdaConfig) -> Self {
        let (queue, queued) = mpsc::unbounded_channel();
        let (outcomes, _) = broadcast::channel(1024);
        let (metrics, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(Inner {
                config,
                queue,
                queued: std::sync::Mutex::new(Some(queued)),
                in_flight: std::sync::Mutex::new(HashMap::new()),
                duplicates: AtomicUsize::new(0),
                outcomes,
                metrics,
                pool: std::sync::Mutex::new(pool::Pool::default()),
                capacity: Notify::new(),
                cold_starts: AtomicU64::new(0),
                running: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The function's configuration.
    pub fn config(&self) -> &LambdaConfig {
        &self.inner.config
    }

    /// `Invoke` with `InvocationType: Event`: queued, answered at once with the request id.
    pub fn invoke_async(&self, payload: Value) -> String {
        let request_id = uuid::Uuid::new_v4().to_string();
        let copies = self.inner.duplicates.load(Ordering::Relaxed);
        for copy in 0..=copies {
            let id = if copy == 0 {
                request_id.clone()
            } else {
                uuid::Uuid::new_v4().to_string()
            };
            self.enqueue(Invocation {
                request_id: id,
                payload: payload.clone(),
                reply: None,
                attempt: 0,
                received: Instant::now(),
            });
        }
        request_id
    }

    /// Delivers every later asynchronous event `extra + 1` times, as Lambda's
    /// at-least-once delivery occasionally does (fault injection).
    pub fn set_duplicate_delivery(&self, extra: usize) {
        self.inner.duplicates.store(extra, Ordering::Relaxed);
    }

    fn enqueue(&self, invocation: Invocation) {
        // The receiver lives as long as the service.
        let _ = self.inner.queue.send(invocation);
    }

    /// `Invoke` with `InvocationType: RequestResponse`: waits for the function's answer.
    ///
    /// # Errors
    ///
    /// The function's error object (`errorType`, `errorMessage`) as it posted
    /// it; `TooManyRequestsException` when every environment is busy at the
    /// concurrency limit (Lambda throttles a synchronous call rather than
    /// queue it); `ServiceException` when the invocation was lost.
    pub async fn invoke(&self, payload: Value) -> Result<Value, Value> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(Invocation {
            request_id: uuid::Uuid::new_v4().to_string(),
            payload,
            reply: Some(Reply::Buffered(tx)),
            attempt: 0,
            received: Instant::now(),
        });
        rx.await.unwrap_or_else(|_| Err(lost()))
    }

    /// `InvokeWithResponseStream`
    /// (<https://docs.aws.amazon.com/lambda/latest/api/API_InvokeWithResponseStream.html>):
    /// waits until the function starts its response, then hands it over as
    /// it streams. A function that answers without streaming arrives as one
    /// frame.
    ///
    /// # Errors
    /// As [`Self::invoke`], for an invocation that failed before its
    /// response started.
    pub async fn invoke_with_response_stream(
        &self,
        payload: Value,
    ) -> Result<StreamedResponse, Value> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(Invocation {
            request_id: uuid::Uuid::new_v4().to_string(),
            payload,
            reply: Some(Reply::Streamed(tx)),
            attempt: 0,
            received: Instant::now(),
        });
        rx.await.unwrap_or_else(|_| Err(lost()))
    }

    /// The streamed reply of invocation `request_id` that `environment`
    /// holds, taken as its response starts; `None` when the invoker wants
    /// the response whole (or there is no such invocation).
    fn start_stream(
        &self,
        environment: u64,
        request_id: &str,
        content_type: Option<String>,
    ) -> Option<mpsc::Sender<StreamFrame>> {
        let mut in_flight = self.inner.in_flight.lock().ok()?;
        let held = in_flight.get_mut(request_id)?;
        if held.environment != environment || !matches!(held.reply, Some(Reply::Streamed(_))) {
            return None;
        }
        let Some(Reply::Streamed(reply)) = held.reply.replace(Reply::Started) else {
            return None;
        };
        let (frames, response) = StreamedResponse::channel(content_type);
        reply.send(Ok(response)).ok()?;
        Some(frames)
    }

    /// Every invocation's outcome, as it happens (for the CLI, bench and tests).
    pub fn outcomes(&self) -> broadcast::Receiver<InvocationOutcome> {
        self.inner.outcomes.subscribe()
    }

    /// The function's embedded-metric-format records (one JSON object per
    /// line of its output carrying `_aws`), from now on.
    pub fn metrics(&self) -> broadcast::Receiver<Value> {
        self.inner.metrics.subscribe()
    }

    /// Starts taking invocations from the queue (see the module doc). No
    /// environment starts until an invocation needs one.
    pub async fn start(&self) {
        let mut running = self.inner.running.lock().await;
        if running.is_some() {
            return;
        }
        let Some(queued) = self.inner.queued.lock().ok().and_then(|mut q| q.take()) else {
            return;
        };
        let (stop, stopped) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(pool::dispatch(self.clone(), queued, stopped.clone())),
            tokio::spawn(pool::retire_idle(self.clone(), stopped)),
        ];
        *running = Some(Running { stop, tasks });
    }

    /// Stops taking invocations and shuts every environment down.
    pub async fn stop(&self) {
        let Some(running) = self.inner.running.lock().await.take() else {
            return;
        };
        let _ = running.stop.send(true);
        for task in running.tasks {
            let _ = task.await;
        }
        self.shut_down_all().await;
    }

    /// The process ids of the running execution environments (frozen or not).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.inner
            .pool
            .lock()
            .map(|pool| pool.pids())
            .unwrap_or_default()
    }

    /// How many environments have been started (cold starts) so far.
    pub fn cold_starts(&self) -> u64 {
        self.inner.cold_starts.load(Ordering::Relaxed)
    }

    /// The invocation `request_id` that `environment` holds has ended: the
    /// environment is free again, and the caller, Lambda's retries and the
    /// outcome stream learn the result. False when `environment` does not
    /// hold such an invocation.
    fn finish(&self, environment: u64, request_id: &str, result: Result<Value, Value>) -> bool {
        let Some(done) = self.inner.in_flight.lock().ok().and_then(|mut f| {
            let held = f.get(request_id)?.environment == environment;
            if held { f.remove(request_id) } else { None }
        }) else {
            return false;
        };
        let max_memory_used_mb = self.release(done.environment);
        let report = InvocationReport {
            environment: Some(done.environment),
            duration: done.started.elapsed(),
            init_duration: done.init_duration,
            max_memory_used_mb,
        };
        let invocation = Invocation {
            request_id: request_id.to_owned(),
            payload: done.payload,
            reply: done.reply,
            attempt: done.attempt,
            received: done.received,
        };
        self.complete(invocation, result, report);
        true
    }

    /// Hands `result` to the caller, or retries a failed event, and
    /// publishes the outcome with Lambda's `REPORT` numbers.
    fn complete(
        &self,
        invocation: Invocation,
        result: Result<Value, Value>,
        report: InvocationReport,
    ) {
        log_report(
            &invocation.request_id,
            &report,
            self.inner.config.memory_size_mb,
        );
        match invocation.reply {
            Some(reply) => reply.send(result.clone()),
            None if result.is_err()
                && invocation.attempt < self.inner.config.max_retry_attempts =>
            {
                self.retry_later(
                    &invocation.request_id,
                    invocation.payload,
                    invocation.attempt + 1,
                    invocation.received,
                );
            }
            None => {}
        }
        let _ = self.inner.outcomes.send(InvocationOutcome {
            request_id: invocation.request_id,
            result,
            report,
        });
    }

    /// Requeues a failed asynchronous event with the same request id, as
    /// Lambda's retries do.
    fn retry_later(&self, request_id: &str, payload: Value, attempt: u32, received: Instant) {
        let service = self.clone();
        let request_id = request_id.to_owned();
        let delay = self.inner.config.retry_delay * attempt;
        tracing::info!(target: "lambda", %request_id, attempt, "retrying the asynchronous invocation");
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            service.enqueue(Invocation {
                request_id,
                payload,
                reply: None,
                attempt,
                received,
            });
        });
    }
}

/// The error of an invocation whose answer never came.
fn lost() -> Value {
    json!({"errorType": "ServiceException", "errorMessage": "the invocation was lost"})
}

/// Lambda's `REPORT` line, as the function's log shows it.
fn log_report(request_id: &str, report: &InvocationReport, memory_size_mb: u64) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let init = report
        .init_duration
        .map(|d| format!(" Init Duration: {:.2} ms", ms(d)))
        .unwrap_or_default();
    let used = report
        .max_memory_used_mb
        .map(|mb| format!(" Max Memory Used: {mb} MB"))
        .unwrap_or_default();
    tracing::info!(
        target: "lambda",
        "REPORT RequestId: {request_id} Duration: {:.2} ms Billed Duration: {} ms Memory Size: {memory_size_mb} MB{used}{init}",
        ms(report.duration),
        ms(report.duration).ceil() as u64,
    );
}

/// The variables Lambda sets for every function (the `lambda_runtime` crate reads them).
fn lambda_environment(config: &LambdaConfig, runtime_api: &str) -> Vec<(String, String)> {
    let name = &config.function_name;
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.clone()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            config.memory_size_mb.to_string(),
        ),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "devstack".into()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_rust".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The function's ARN in the devstack's own account and region, as Lambda
/// puts it in `Lambda-Runtime-Invoked-Function-Arn`.
fn function_arn(function_name: &str) -> String {
    format!("arn:aws:lambda:{DEV_REGION}:{DEV_ACCOUNT_ID}:function:{function_name}")
}

/// An environment's stdout and stderr become the function's log, line by
/// line. Embedded-metric-format lines among them are also sent to `metrics`,
/// as CloudWatch Logs extracts them
/// (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>).
fn forward_logs(child: &mut Child, environment: u64, metrics: &broadcast::Sender<Value>) {
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward_lines(out, environment, metrics.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward_lines(err, environment, metrics.clone()));
    }
}

async fn forward_lines(
    stream: impl tokio::io::AsyncRead + Unpin,
    environment: u64,
    metrics: broadcast::Sender<Value>,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "lambda", environment, "{line}");
        if line.starts_with('{')
            && let Ok(record) = serde_json::from_str::<Value>(&line)
            && record.get("_aws").is_some()
        {
            let _ = metrics.send(record);
        }
    }
}
