//! The `devstack` command line: `up`, `chat`, `bench`, `token`, and the
//! hidden `worker` that runs the resolver as a Lambda execution environment
//! runs `bootstrap`.
//!
//! Place in the data path: outside it; `up` starts the whole path (client ->
//! AppSync -> Lambda (resolver) -> Bedrock -> resolver -> AppSync ->
//! subscriber), `chat` and `bench` drive it end to end as a client and a
//! subscriber, `worker` is the resolver inside Lambda.

mod bench;
mod chat;
mod up;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::lambda::FunctionCommand;

// The command line: one subcommand. (Plain comments on the clap types: a doc
// comment would become part of `--help`.)
#[derive(Parser)]
#[command(
    name = "devstack",
    version,
    about = "A local AppSync, Cognito, Lambda and Bedrock for bedrock-appsync-stream"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every stand-in on one port and print the endpoints, dev credentials and a token.
    Up(up::UpArgs),
    /// Start a stack in-process, send one prompt as a user, and print the answer as it streams.
    Chat(chat::ChatArgs),
    /// Compare the coalescing strategies through the whole path; measure the resolver.
    Bench(bench::BenchArgs),
    /// Print a valid Cognito ID token for a dev user of a stack started with `devstack up`.
    Token(TokenArgs),
    /// Run the resolver against the Lambda Runtime API in `AWS_LAMBDA_RUNTIME_API`.
    #[command(hide = true)]
    Worker,
    /// Run the function URL function against the Lambda Runtime API in `AWS_LAMBDA_RUNTIME_API`.
    #[command(hide = true)]
    WorkerUrl,
    /// Run the WebSocket API's route function against the Lambda Runtime API.
    #[command(hide = true)]
    WorkerWebsocket,
    /// Run the WebSocket API's `$connect` authorizer against the Lambda Runtime API.
    #[command(hide = true)]
    WorkerAuthorizer,
}

#[derive(clap::Args)]
struct TokenArgs {
    /// The dev user's name (its `sub` is derived from it).
    #[arg(long, default_value = "alice")]
    user: String,
    /// Cognito groups to put in the token.
    #[arg(long, value_delimiter = ',')]
    groups: Vec<String>,
    /// The stack's base URL (the token's issuer is `{endpoint}/us-east-1_devstack`).
    #[arg(long, default_value = "http://127.0.0.1:4000")]
    endpoint: String,
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("devstack: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Worker => bedrock_appsync_stream::run()
                .await
                .map_err(|e| anyhow::anyhow!(e.to_string())),
            Command::WorkerUrl => bedrock_appsync_stream::function_url::run()
                .await
                .map_err(|e| anyhow::anyhow!(e.to_string())),
            Command::WorkerWebsocket => bedrock_appsync_stream::websocket::run()
                .await
                .map_err(|e| anyhow::anyhow!(e.to_string())),
            Command::WorkerAuthorizer => bedrock_appsync_stream::websocket::authorizer::run()
                .await
                .map_err(|e| anyhow::anyhow!(e.to_string())),
            Command::Up(args) => up::run(args).await,
            Command::Chat(args) => chat::run(args).await,
            Command::Bench(args) => bench::run_bench(args).await,
            Command::Token(args) => token(args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("devstack: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `devstack token`: prints an ID token for `args.user`, signed with the
/// pool key `devstack up` keeps, so the running stack accepts it.
fn token(args: TokenArgs) -> anyhow::Result<()> {
    let key = crate::cognito::load_or_create_key(&key_path())?;
    let pool = crate::cognito::UserPool::new(
        &args.endpoint,
        crate::DEV_USER_POOL_ID,
        crate::DEV_CLIENT_ID,
        &key,
    );
    println!(
        "{}",
        pool.mint_id_token(&args.user, &args.groups, crate::cognito::now_secs())
    );
    Ok(())
}

/// The pool key kept in the state directory, so tokens outlive a restart.
fn key_path() -> PathBuf {
    crate::state_dir().join("cognito-pool-key.pem")
}

/// The text of `infra_dir`'s template, else of the built-in copy of `infra/`.
fn template_text(infra_dir: Option<&Path>) -> anyhow::Result<String> {
    use crate::appsync::js::template::TEMPLATE_FILE;
    match infra_dir {
        Some(dir) => std::fs::read_to_string(dir.join(TEMPLATE_FILE))
            .with_context(|| format!("could not read {}", dir.join(TEMPLATE_FILE).display())),
        None => Ok(crate::appsync::js::template::embedded_template().to_owned()),
    }
}

/// The function configured as `infra_dir`'s template (else the built-in
/// one) configures it.
fn apply_template(config: &mut crate::StackConfig, infra_dir: Option<&Path>) -> anyhow::Result<()> {
    let template = template_text(infra_dir)?;
    let settings = crate::lambda::settings::function_settings(&template)
        .context("the template's function cannot run in the devstack")?;
    config.apply_function_settings(&settings);
    Ok(())
}

/// The local DynamoDB of `up` and `chat`: its data in the state directory
/// (so conversations survive a restart), dynalite installed in the cache, the
/// tables of `infra_dir`'s template, else of the built-in copy of `infra/`.
fn dynamodb_config(infra_dir: Option<&Path>) -> anyhow::Result<crate::dynamodb::DynamoDbConfig> {
    Ok(crate::dynamodb::DynamoDbConfig {
        data_dir: Some(crate::state_dir().join("dynamodb")),
        cache_dir: crate::state_dir(),
        template: template_text(infra_dir)?,
    })
}

/// `program` (a built `bootstrap`) as the function, else this executable
/// re-run as one (`devstack worker`).
fn function_command(program: Option<&Path>) -> anyhow::Result<FunctionCommand> {
    match program {
        Some(program) => {
            anyhow::ensure!(
                program.is_file(),
                "{} is not a file (build it with scripts/build-function)",
                program.display()
            );
            Ok(FunctionCommand {
                program: std::path::absolute(program)?,
                args: Vec::new(),
            })
        }
        None => self_as_function(),
    }
}

/// This executable, re-run as a Lambda execution environment's process.
fn self_as_function() -> anyhow::Result<FunctionCommand> {
    Ok(FunctionCommand {
        program: std::env::current_exe()?,
        args: vec!["worker".into()],
    })
}

/// This executable, re-run as the function URL function's execution
/// environment (`devstack worker-url`).
fn self_as_url_function() -> anyhow::Result<FunctionCommand> {
    Ok(FunctionCommand {
        program: std::env::current_exe()?,
        args: vec!["worker-url".into()],
    })
}

/// This executable, re-run as the WebSocket API's functions (`devstack
/// worker-websocket`, `devstack worker-authorizer`).
fn self_as_websocket_functions() -> anyhow::Result<crate::WebSocketFunctions> {
    let program = std::env::current_exe()?;
    Ok(crate::WebSocketFunctions {
        function: FunctionCommand {
            program: program.clone(),
            args: vec!["worker-websocket".into()],
        },
        authorizer: FunctionCommand {
            program,
            args: vec!["worker-authorizer".into()],
        },
    })
}

/// Logs to stderr at `default` unless `RUST_LOG` says otherwise.
fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
