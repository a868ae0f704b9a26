//! Place in the data path: beside it, where conversations are kept:
//! resolver, and AppSync's DynamoDB data source (the conversations API),
//! --DynamoDB JSON protocol--> **local DynamoDB**. The devstack does
//! not implement DynamoDB: it runs dynalite, a well-kept DynamoDB-protocol
//! server on LevelDB, as a supervised child process (restarted if it dies),
//! keeps its data in the state directory so tables survive a restart, and
//! creates the tables `infra/template.yaml` defines. Any DynamoDB client or
//! SDK works against [`LocalDynamoDb::endpoint`] unchanged
//! (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.LowLevelAPI.html>).

mod install;
mod tables;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use install::{DYNALITE_VERSION, InstallError, ensure_installed};
pub use tables::{
    LocalIndexDefinition, TableDefinition, TableError, ensure_table, tables_from_template,
};

/// How long the server may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the local DynamoDB keeps its data and finds its tables.
#[derive(Debug, Clone)]
pub struct DynamoDbConfig {
    /// The LevelDB directory (created if missing); the same directory on the
    /// next start brings every table and item back. `None` keeps everything
    /// in memory, gone when the server stops (a test's stack).
    pub data_dir: Option<PathBuf>,
    /// Where dynalite is installed (once per version).
    pub cache_dir: PathBuf,
    /// The text of `infra/template.yaml`, whose `AWS::DynamoDB::Table`
    /// resources are created.
    pub template: String,
}

impl DynamoDbConfig {
    /// Tables in memory, those of the compiled-in `infra/template.yaml`,
    /// dynalite installed under `cache_dir`.
    pub fn in_memory(cache_dir: PathBuf) -> Self {
        Self {
            data_dir: None,
            cache_dir,
            template: crate::appsync::js::template::embedded_template().to_owned(),
        }
    }
}

/// Why the local DynamoDB could not start.
#[derive(Debug, Error)]
pub enum DynamoDbError {
    /// dynalite could not be installed.
    #[error(transparent)]
    Install(#[from] InstallError),
    /// The data directory or a port could not be had, or Node could not run.
    #[error("could not start the local DynamoDB: {0}")]
    Io(#[from] std::io::Error),
    /// The server did not answer in time (its output is in the log).
    #[error("the local DynamoDB did not answer within {0:?}")]
    NotReady(Duration),
    /// A table of the template could not be created.
    #[error(transparent)]
    Table(#[from] TableError),
}

/// A running local DynamoDB: dynalite on a loopback port, supervised.
#[derive(Debug)]
pub struct LocalDynamoDb {
    endpoint: String,
    client: Client,
    stop: Option<oneshot::Sender<()>>,
    supervisor: Option<JoinHandle<()>>,
}

impl LocalDynamoDb {
    /// Installs dynalite if needed, starts it on a free loopback port with
    /// its data in `config.data_dir` (or in memory), waits until it answers, and creates the
    /// template's tables that do not exist yet.
    ///
    /// # Errors
    /// [`DynamoDbError`] for each step that fails.
    pub async fn start(config: DynamoDbConfig) -> Result<Self, DynamoDbError> {
        let entry = ensure_installed(&config.cache_dir)?;
        if let Some(dir) = &config.data_dir {
            std::fs::create_dir_all(dir)?;
        }
        let mut server = Server {
            entry,
            port: 0,
            data_dir: config.data_dir.clone(),
        };
        let (child, port) = server.spawn_on_any_port().await?;
        server.port = port;
        let endpoint = format!("http://127.0.0.1:{port}");
        let client = client(&endpoint);
        let (stop, stopped) = oneshot::channel();
        let supervisor = tokio::spawn(server.supervise(child, stopped));
        let dynamodb = Self {
            endpoint,
            client,
            stop: Some(stop),
            supervisor: Some(supervisor),
        };
        dynamodb.wait_ready().await?;
        for table in tables_from_template(&config.template)? {
            ensure_table(&dynamodb.client, &table).await?;
        }
        Ok(dynamodb)
    }

    /// The endpoint URL (`http://127.0.0.1:PORT`), for
    /// `AWS_ENDPOINT_URL_DYNAMODB`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// An SDK client for it, signing with the devstack's IAM user.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Stops the server and waits for it to exit (its data stays on disk).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(supervisor) = self.supervisor.take() {
            let _ = supervisor.await;
        }
    }

    async fn wait_ready(&self) -> Result<(), DynamoDbError> {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            if self.client.list_tables().send().await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(DynamoDbError::NotReady(READY_TIMEOUT))
    }
}

impl Drop for LocalDynamoDb {
    fn drop(&mut self) {
        // The supervisor kills the child when told to stop; a dropped sender
        // tells it too.
        self.stop.take();
    }
}

/// How to run dynalite: through `launch.js`, which listens on `port` (0: any
/// free one) and prints the port it got.
struct Server {
    entry: PathBuf,
    port: u16,
    data_dir: Option<PathBuf>,
}

/// The launcher, given to `node -e`.
const LAUNCHER: &str = include_str!("launch.js");

impl Server {
    fn spawn(&self, stdout: Stdio) -> std::io::Result<Child> {
        Command::new("node")
            .arg("-e")
            .arg(LAUNCHER)
            .arg(&self.entry)
            .arg(self.port.to_string())
            .args(&self.data_dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
    }

    /// Starts the server on a port the OS picks and reads which: the server
    /// binds it itself, so no other process can take it between a choice
    /// here and the bind there (two stacks starting at once could otherwise
    /// end up sharing one server).
    async fn spawn_on_any_port(&self) -> Result<(Child, u16), DynamoDbError> {
        let mut child = self.spawn(Stdio::piped())?;
        let stdout = child.stdout.take().ok_or_else(|| {
            std::io::Error::other("the local DynamoDB's output could not be read")
        })?;
        let mut line = String::new();
        let mut stdout = BufReader::new(stdout);
        let read = stdout.read_line(&mut line);
        match tokio::time::timeout(READY_TIMEOUT, read).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(error.into()),
            Err(_) => return Err(DynamoDbError::NotReady(READY_TIMEOUT)),
        }
        let port = line.trim().parse().map_err(|_| {
            std::io::Error::other("the local DynamoDB exited before it listened (see its output)")
        })?;
        Ok((child, port))
    }

    /// Keeps the server running until `stopped` fires (or its sender is
    /// dropped): a server that exits is started again on the same port and
    /// data, after a pause.
    async fn supervise(self, mut child: Child, mut stopped: oneshot::Receiver<()>) {
        loop {
            tokio::select! {
                _ = &mut stopped => {
                    let _ = child.kill().await;
                    return;
                }
                status = child.wait() => {
                    tracing::warn!(?status, "the local DynamoDB exited; starting it again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    match self.spawn(Stdio::null()) {
                        Ok(next) => child = next,
                        Err(error) => {
                            tracing::error!(%error, "could not restart the local DynamoDB");
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// An SDK client for `endpoint` in the devstack's region, signing with its
/// IAM user.
fn client(endpoint: &str) -> Client {
    let credentials = Credentials::new(
        crate::DEV_ACCESS_KEY_ID,
        crate::DEV_SECRET_ACCESS_KEY,
        None,
        None,
        "devstack",
    );
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(crate::DEV_REGION))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .build();
    Client::from_conf(config)
}
