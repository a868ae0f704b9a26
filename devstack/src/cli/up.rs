//! `devstack up`: every stand-in on one port, until Ctrl-C.

use std::net::SocketAddr;

use crate::{
    DEV_ACCESS_KEY_ID, DEV_API_KEY, DEV_REGION, DEV_SECRET_ACCESS_KEY, Stack, StackConfig,
};

#[derive(clap::Args)]
pub struct UpArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4000")]
    bind: SocketAddr,
    /// Lambda worker processes (concurrent turns).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// The model used when a prompt names none: `smollm2` or `scripted`.
    #[arg(long, default_value = "smollm2")]
    model: String,
    /// Tokens per second of the `scripted` model (0: as fast as possible).
    #[arg(long, default_value_t = 50.0)]
    scripted_rate: f64,
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    super::init_tracing("info");
    let mut config = StackConfig::new(super::self_as_function()?);
    config.bind = args.bind;
    config.workers = args.workers;
    config.default_model = args.model.clone();
    config.cognito_key = Some(crate::cognito::load_or_create_key(&super::key_path())?);
    config.bedrock.scripted_tokens_per_second = args.scripted_rate;
    let stack = Stack::start(config).await?;
    let base = format!("http://{}", stack.addr);
    println!("devstack is up\n");
    println!("  AppSync GraphQL   {}", stack.graphql_url());
    println!("  AppSync real-time {}", stack.realtime_url());
    println!("  Cognito issuer    {}", stack.user_pool.issuer());
    println!(
        "  Cognito JWKS      {}/.well-known/jwks.json",
        stack.user_pool.issuer()
    );
    println!("  Bedrock Runtime   {base}  (AWS_ENDPOINT_URL_BEDROCK_RUNTIME)");
    println!(
        "  Lambda Runtime API {}  ({} workers)",
        stack.addr, args.workers
    );
    println!("  default model     {}\n", args.model);
    println!(
        "  IAM (publisher)   AWS_ACCESS_KEY_ID={DEV_ACCESS_KEY_ID} AWS_SECRET_ACCESS_KEY={DEV_SECRET_ACCESS_KEY} AWS_REGION={DEV_REGION}"
    );
    println!("  API key           {DEV_API_KEY}");
    println!(
        "  user pool / client {} / {}\n",
        stack.user_pool.pool_id(),
        stack.user_pool.client_id()
    );
    println!(
        "  ID token for alice (one hour; more with `devstack token --user NAME`):\n{}\n",
        stack.token("alice")
    );
    println!("Ctrl-C stops it.");
    tokio::signal::ctrl_c().await?;
    stack.shutdown().await;
    Ok(())
}
