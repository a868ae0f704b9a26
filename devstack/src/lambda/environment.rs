//! Place in the data path: AppSync --Invoke(Event)--> Lambda -> **execution
//! environment** -> resolver process --ConverseStream--> Bedrock.
//!
//! One execution environment: a process of the function and its own Runtime
//! API endpoint, as every Lambda environment has its own
//! `AWS_LAMBDA_RUNTIME_API`
//! (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>). Its own
//! endpoint is what tells the service which invocation a process holds, so
//! that when the process dies (killed, out of memory, crashed) the invocation
//! it held fails with `Runtime.ExitError` and the async invoke config's
//! retries apply
//! (<https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html>);
//! a new environment then starts in its place (a cold start).

use std::net::SocketAddr;
use std::process::Stdio;

use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{LambdaService, forward_logs, lambda_environment};

/// A running environment: its process and its Runtime API server.
pub(super) struct Running {
    child: Child,
    server: JoinHandle<()>,
}

/// Starts environment `index`: binds its Runtime API on a free loopback
/// port, then spawns the function's process against it.
pub(super) async fn start(service: &LambdaService, index: usize) -> std::io::Result<Running> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let runtime_api = listener.local_addr()?.to_string();
    let app = service.environment_router(index);
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(target: "lambda", error = %e, "a Runtime API server stopped");
        }
    });
    let config = &service.inner.config;
    let mut command = Command::new(&config.command.program);
    command
        .args(&config.command.args)
        .envs(lambda_environment(config, &runtime_api))
        .envs(config.environment.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            server.abort();
            return Err(e);
        }
    };
    forward_logs(&mut child, index, &service.inner.metrics);
    service.set_pid(index, child.id());
    Ok(Running { child, server })
}

/// Watches environment `index` until `stop`: when its process exits, fails
/// the invocation it held and starts a new environment in its place.
pub(super) async fn supervise(
    service: LambdaService,
    index: usize,
    mut running: Running,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            status = running.child.wait() => {
                running.server.abort();
                service.set_pid(index, None);
                let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                tracing::warn!(target: "lambda", environment = index, %status, "an execution environment died");
                service.environment_died(index, &status).await;
                if *stop.borrow() {
                    return;
                }
                match start(&service, index).await {
                    Ok(next) => running = next,
                    Err(e) => {
                        tracing::error!(target: "lambda", environment = index, error = %e, "could not start an execution environment");
                        return;
                    }
                }
            }
            _ = stop.changed() => {
                let _ = running.child.kill().await;
                running.server.abort();
                service.set_pid(index, None);
                return;
            }
        }
    }
}
