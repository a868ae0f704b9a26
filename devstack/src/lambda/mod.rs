//! The Lambda stand-in: the Runtime API and the worker processes that run the
//! resolver.
//!
//! Place in the data path: client --sendPrompt--> AppSync --Invoke(Event)-->
//! **Lambda** -> resolver process --ConverseStream--> Bedrock; resolver
//! --publishChunk--> AppSync -> subscriber.
//!
//! Workers are separate processes talking to the Lambda Runtime API
//! (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>) exactly as
//! `lambda_runtime` does inside Lambda: `GET .../invocation/next` long-polls for
//! an event, then `POST .../invocation/{id}/response` or `.../error`. Each worker
//! is an execution environment with its own Runtime API endpoint
//! ([`environment`]) and handles one invocation at a time; more workers give
//! concurrent turns. A worker that dies fails the invocation it held, which is
//! retried per the async invoke config, and is replaced.
//! Asynchronous (`Event`) invokes queue until a worker is free
//! (<https://docs.aws.amazon.com/lambda/latest/dg/invocation-async.html>).

mod environment;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::sync::{Mutex, broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::{DEV_ACCOUNT_ID, DEV_REGION};

/// The program a worker runs: the resolver, as Lambda would run `bootstrap`.
#[derive(Clone, Debug)]
pub struct FunctionCommand {
    /// The executable (the resolver's `bootstrap`, or `devstack` itself).
    pub program: PathBuf,
    /// Its arguments (e.g. `worker` when `devstack` runs the resolver).
    pub args: Vec<String>,
}

/// How the function is configured, as in a Lambda function's configuration.
#[derive(Clone, Debug)]
pub struct LambdaConfig {
    /// The function's name (`AWS_LAMBDA_FUNCTION_NAME`, and in its ARN).
    pub function_name: String,
    /// What each worker process runs.
    pub command: FunctionCommand,
    /// Worker processes (concurrent executions).
    pub workers: usize,
    /// The function timeout: each invocation's deadline is now + this.
    pub timeout: Duration,
    /// Environment variables of the function, on top of Lambda's own.
    pub environment: Vec<(String, String)>,
    /// Retries of an asynchronous invocation whose function returned an error
    /// (the async invoke config's `MaximumRetryAttempts`; Lambda's default is 2).
    pub max_retry_attempts: u32,
    /// Wait before each retry (Lambda waits about a minute, then two).
    pub retry_delay: Duration,
}

/// How an invocation ended.
#[derive(Clone, Debug)]
pub struct InvocationOutcome {
    /// The invocation's request id (`Lambda-Runtime-Aws-Request-Id`).
    pub request_id: String,
    /// The function's response, or its error object (`errorType`, `errorMessage`).
    pub result: Result<Value, Value>,
}

/// Where a synchronous invocation's answer goes.
type Reply = oneshot::Sender<Result<Value, Value>>;

struct Invocation {
    request_id: String,
    payload: Value,
    reply: Option<Reply>,
    /// 0 for the first delivery, then 1, 2, ... for retries.
    attempt: u32,
}

/// An invocation a worker has taken and not yet answered.
struct InFlight {
    reply: Option<Reply>,
    payload: Value,
    attempt: u32,
    /// The execution environment that took it.
    environment: usize,
}

/// The supervisors of the running execution environments.
struct Environments {
    stop: watch::Sender<bool>,
    supervisors: Vec<JoinHandle<()>>,
}

/// The Lambda service with one function.
#[derive(Clone)]
pub struct LambdaService {
    inner: Arc<Inner>,
}

struct Inner {
    config: LambdaConfig,
    queue: mpsc::UnboundedSender<Invocation>,
    next: Mutex<mpsc::UnboundedReceiver<Invocation>>,
    in_flight: Mutex<HashMap<String, InFlight>>,
    /// Extra copies of each asynchronous event to deliver (Lambda delivers at least once).
    duplicates: std::sync::atomic::AtomicUsize,
    outcomes: broadcast::Sender<InvocationOutcome>,
    metrics: broadcast::Sender<Value>,
    environments: Mutex<Option<Environments>>,
    /// Each environment's process id, while it runs.
    pids: std::sync::Mutex<Vec<Option<u32>>>,
    /// When the workers were spawned, and when the first `next` arrived.
    init: std::sync::Mutex<(Option<std::time::Instant>, Option<std::time::Instant>)>,
}

impl LambdaService {
    /// A service with an empty queue and no workers yet (see [`Self::start_workers`]).
    pub fn new(config: LambdaConfig) -> Self {
        let (queue, next) = mpsc::unbounded_channel();
        let (outcomes, _) = broadcast::channel(1024);
        let (metrics, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(Inner {
                config,
                queue,
                next: Mutex::new(next),
                in_flight: Mutex::new(HashMap::new()),
                outcomes,
                metrics,
                environments: Mutex::new(None),
                pids: std::sync::Mutex::new(Vec::new()),
                init: std::sync::Mutex::new((None, None)),
                duplicates: std::sync::atomic::AtomicUsize::new(0),
            }),
        }
    }

    /// `Invoke` with `InvocationType: Event`: queued, answered at once with the request id.
    pub fn invoke_async(&self, payload: Value) -> String {
        let request_id = uuid::Uuid::new_v4().to_string();
        let copies = self
            .inner
            .duplicates
            .load(std::sync::atomic::Ordering::Relaxed);
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
            });
        }
        request_id
    }

    /// Delivers every later asynchronous event `extra + 1` times, as Lambda's
    /// at-least-once delivery occasionally does (fault injection).
    pub fn set_duplicate_delivery(&self, extra: usize) {
        self.inner
            .duplicates
            .store(extra, std::sync::atomic::Ordering::Relaxed);
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
    /// it, or a `ServiceException` one when the invocation was lost.
    pub async fn invoke(&self, payload: Value) -> Result<Value, Value> {
        let (tx, rx) = oneshot::channel();
        let invocation = Invocation {
            request_id: uuid::Uuid::new_v4().to_string(),
            payload,
            reply: Some(tx),
            attempt: 0,
        };
        self.enqueue(invocation);
        rx.await.unwrap_or_else(|_| {
            Err(json!({"errorType": "ServiceException", "errorMessage": "the invocation was lost"}))
        })
    }

    /// Every invocation's outcome, as it happens (for the CLI and tests).
    pub fn outcomes(&self) -> broadcast::Receiver<InvocationOutcome> {
        self.inner.outcomes.subscribe()
    }

    /// The function's embedded-metric-format records (one JSON object per
    /// line of its output carrying `_aws`), from now on.
    pub fn metrics(&self) -> broadcast::Receiver<Value> {
        self.inner.metrics.subscribe()
    }

    /// Starts the execution environments, each with its own Runtime API
    /// endpoint (see [`environment`]), and supervises them: an environment
    /// whose process dies fails the invocation it held and is replaced.
    ///
    /// # Errors
    ///
    /// The I/O error of binding an endpoint or spawning a worker (e.g. no
    /// such program); environments started before it keep running.
    pub async fn start_workers(&self) -> std::io::Result<()> {
        let workers = self.inner.config.workers;
        let mut environments = self.inner.environments.lock().await;
        if let Ok(mut pids) = self.inner.pids.lock() {
            *pids = vec![None; workers];
        }
        if let Ok(mut init) = self.inner.init.lock() {
            *init = (Some(std::time::Instant::now()), None);
        }
        let (stop, stopped) = watch::channel(false);
        let running = environments.insert(Environments {
            stop,
            supervisors: Vec::new(),
        });
        for index in 0..workers {
            let started = environment::start(self, index).await?;
            running
                .supervisors
                .push(tokio::spawn(environment::supervise(
                    self.clone(),
                    index,
                    started,
                    stopped.clone(),
                )));
        }
        Ok(())
    }

    /// The process ids of the running workers.
    pub async fn worker_pids(&self) -> Vec<u32> {
        self.inner
            .pids
            .lock()
            .map(|pids| pids.iter().flatten().copied().collect())
            .unwrap_or_default()
    }

    fn set_pid(&self, index: usize, pid: Option<u32>) {
        if let Ok(mut pids) = self.inner.pids.lock()
            && let Some(slot) = pids.get_mut(index)
        {
            *slot = pid;
        }
    }

    /// Environment `index`'s process exited with `status`: the invocation it
    /// held fails as Lambda reports it (`Runtime.ExitError`), and is retried
    /// if it was asynchronous and has retries left.
    async fn environment_died(&self, index: usize, status: &str) {
        let held: Vec<String> = self
            .inner
            .in_flight
            .lock()
            .await
            .iter()
            .filter(|(_, f)| f.environment == index)
            .map(|(id, _)| id.clone())
            .collect();
        for request_id in held {
            let error = json!({
                "errorType": "Runtime.ExitError",
                "errorMessage": format!("RequestId: {request_id} Error: Runtime exited with error: {status}"),
            });
            self.finish(&request_id, Err(error)).await;
        }
    }

    /// Cold start: from spawning the workers to the first `invocation/next`
    /// (the init phase of the first worker to be ready).
    pub fn init_duration(&self) -> Option<Duration> {
        let init = self.inner.init.lock().ok()?;
        Some(init.1?.duration_since(init.0?))
    }

    /// Stops the worker processes (no environment is started again).
    pub async fn stop_workers(&self) {
        let Some(environments) = self.inner.environments.lock().await.take() else {
            return;
        };
        let _ = environments.stop.send(true);
        for supervisor in environments.supervisors {
            let _ = supervisor.await;
        }
    }

    /// The Runtime API routes of environment `index`, under `/2018-06-01/runtime`.
    fn environment_router(&self, index: usize) -> Router {
        Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(invocation_response),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(invocation_error),
            )
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(EnvironmentApi {
                service: self.clone(),
                index,
            })
    }

    async fn finish(&self, request_id: &str, result: Result<Value, Value>) -> bool {
        let Some(done) = self.inner.in_flight.lock().await.remove(request_id) else {
            return false;
        };
        match done.reply {
            Some(reply) => {
                let _ = reply.send(result.clone());
            }
            None if result.is_err() && done.attempt < self.inner.config.max_retry_attempts => {
                self.retry_later(request_id, done.payload, done.attempt + 1);
            }
            None => {}
        }
        let _ = self.inner.outcomes.send(InvocationOutcome {
            request_id: request_id.to_owned(),
            result,
        });
        true
    }
}

impl LambdaService {
    /// Requeues a failed asynchronous event with the same request id, as
    /// Lambda's retries do.
    fn retry_later(&self, request_id: &str, payload: Value, attempt: u32) {
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
            });
        });
    }
}

/// The variables Lambda sets for every function (the `lambda_runtime` crate reads them).
fn lambda_environment(config: &LambdaConfig, runtime_api: &str) -> Vec<(String, String)> {
    let name = &config.function_name;
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.clone()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
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

/// A worker's stdout and stderr become the function's log, line by line.
/// Embedded-metric-format lines among them are also sent to `metrics`, as
/// CloudWatch Logs extracts them
/// (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>).
fn forward_logs(child: &mut Child, worker: usize, metrics: &broadcast::Sender<Value>) {
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward_lines(out, worker, metrics.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward_lines(err, worker, metrics.clone()));
    }
}

async fn forward_lines(
    stream: impl tokio::io::AsyncRead + Unpin,
    worker: usize,
    metrics: broadcast::Sender<Value>,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "lambda", worker, "{line}");
        if line.starts_with('{')
            && let Ok(record) = serde_json::from_str::<Value>(&line)
            && record.get("_aws").is_some()
        {
            let _ = metrics.send(record);
        }
    }
}

/// One environment's view of the service: what its Runtime API serves.
#[derive(Clone)]
struct EnvironmentApi {
    service: LambdaService,
    index: usize,
}

/// `GET /runtime/invocation/next`: long-polls for the next event and hands it
/// over with the headers `lambda_runtime` reads (request id, deadline, ARN,
/// trace id).
async fn next_invocation(State(api): State<EnvironmentApi>) -> Response {
    let service = api.service;
    if let Ok(mut init) = service.inner.init.lock() {
        init.1.get_or_insert_with(std::time::Instant::now);
    }
    let invocation = {
        let mut next = service.inner.next.lock().await;
        next.recv().await
    };
    let Some(invocation) = invocation else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let timeout = service.inner.config.timeout;
    let deadline = SystemTime::now() + timeout;
    let deadline_ms = deadline
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let in_flight = InFlight {
        reply: invocation.reply,
        payload: invocation.payload.clone(),
        attempt: invocation.attempt,
        environment: api.index,
    };
    service
        .inner
        .in_flight
        .lock()
        .await
        .insert(invocation.request_id.clone(), in_flight);
    let arn = function_arn(&service.inner.config.function_name);
    let mut headers = HeaderMap::new();
    let pairs = [
        (
            "lambda-runtime-aws-request-id",
            invocation.request_id.clone(),
        ),
        ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
        ("lambda-runtime-invoked-function-arn", arn),
        (
            "lambda-runtime-trace-id",
            format!(
                "Root=1-{:08x}-{}",
                deadline_ms as u32,
                uuid::Uuid::new_v4().simple()
            ),
        ),
        ("content-type", "application/json".into()),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    (headers, invocation.payload.to_string()).into_response()
}

/// `POST /runtime/invocation/{id}/response`: the function's result.
async fn invocation_response(
    State(api): State<EnvironmentApi>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    accepted(api.service.finish(&id, Ok(value)).await)
}

/// `POST /runtime/invocation/{id}/error`: the function failed this invocation.
async fn invocation_error(
    State(api): State<EnvironmentApi>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| json!({"errorType": "Unhandled", "errorMessage": ""}));
    tracing::warn!(target: "lambda", request_id = %id, error = %value, "invocation failed");
    accepted(api.service.finish(&id, Err(value)).await)
}

/// `POST /runtime/init/error`: the function failed before its first invocation.
async fn init_error(body: Bytes) -> Response {
    tracing::error!(target: "lambda", error = %String::from_utf8_lossy(&body), "function init failed");
    (StatusCode::ACCEPTED, axum::Json(json!({"status": "OK"}))).into_response()
}

/// 202, or 400 `InvalidRequestID` for an id no worker was given.
fn accepted(known: bool) -> Response {
    if known {
        (StatusCode::ACCEPTED, axum::Json(json!({"status": "OK"}))).into_response()
    } else {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"}),
            ),
        )
            .into_response()
    }
}
