//! `devstack up`: every stand-in on one port (and again over HTTPS on a
//! second, with the web chat page), until Ctrl-C.
//!
//! Place in the data path: it starts all of it (client -> AppSync -> Lambda
//! (resolver) -> Bedrock -> resolver -> AppSync -> subscriber), with the
//! publish and model faults its flags ask for, and prints where each part
//! listens.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

use crate::appsync::faults::PublishFault;
use crate::bedrock::{Fault, StreamException};
use crate::{
    DEV_ACCESS_KEY_ID, DEV_API_KEY, DEV_REGION, DEV_SECRET_ACCESS_KEY, Stack, StackConfig,
};

// `devstack up`'s flags (a doc comment would become part of `--help`).
#[derive(clap::Args)]
pub(super) struct UpArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4000")]
    bind: SocketAddr,
    /// The most Lambda execution environments at once (concurrent turns);
    /// default: the template's ReservedConcurrentExecutions, else 10.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Run this executable as the function (e.g. the `bootstrap` that
    /// `scripts/build-function` builds) instead of the resolver built into
    /// devstack.
    #[arg(long)]
    function: Option<PathBuf>,
    /// The model used when a prompt names none: `smollm2` or `scripted`.
    #[arg(long, default_value = "smollm2")]
    model: String,
    /// Tokens per second of the `scripted` model (0: as fast as possible).
    #[arg(long, default_value_t = 50.0)]
    scripted_rate: f64,
    /// Simulated round trip of every publish (`publishChunk`), in milliseconds.
    #[arg(long, default_value_t = 0)]
    publish_rtt_ms: u64,
    /// Fail the first publishes: `429`, `500`, `503` or `drop`, with `xN` for N of them (e.g. `429x3`).
    #[arg(long, value_delimiter = ',')]
    publish_fault: Vec<String>,
    /// Fail every ConverseStream: `throttle` (429 before the stream),
    /// `exception:NAME@N` (NAME one of throttling, modelStreamError, internalServer,
    /// serviceUnavailable, validation, after N deltas), `truncate@N`, `disconnect@N`, `stall@N`.
    #[arg(long)]
    model_fault: Option<String>,
    /// Run the schema's resolvers from this `infra/` directory (its
    /// `template.yaml` and `resolvers/*.js`) instead of the copy built in, so
    /// an edited resolver takes effect on restart without a rebuild.
    #[arg(long)]
    infra_dir: Option<std::path::PathBuf>,
    /// Where the HTTPS listener (API, `wss://` and the web page) listens. Its
    /// certificate is made on first use and kept in the state directory.
    #[arg(long, default_value = "127.0.0.1:4443")]
    tls_bind: SocketAddr,
    /// The built web chat to serve at `/` of the HTTPS listener.
    #[arg(long, default_value = "client-examples/web/dist")]
    web_dir: PathBuf,
    /// Where the function URL (the same relay answered with Server-Sent
    /// Events) listens.
    #[arg(long, default_value = "127.0.0.1:4001")]
    function_url_bind: SocketAddr,
    /// Where the API Gateway WebSocket API (the same relay over
    /// `@connections`) listens.
    #[arg(long, default_value = "127.0.0.1:4002")]
    websocket_bind: SocketAddr,
}

/// Starts the stack with `args`, prints its endpoints and credentials, and
/// serves until Ctrl-C.
pub(super) async fn run(args: UpArgs) -> anyhow::Result<()> {
    super::init_tracing("info");
    let mut config = StackConfig::new(super::function_command(args.function.as_deref())?);
    config.bind = args.bind;
    super::apply_template(&mut config, args.infra_dir.as_deref())?;
    if let Some(concurrency) = args.concurrency {
        config.concurrency = concurrency;
    }
    let concurrency = config.concurrency;
    config.default_model = args.model.clone();
    config.cognito_key = Some(crate::cognito::load_or_create_key(&super::key_path())?);
    config.bedrock.scripted_tokens_per_second = args.scripted_rate;
    config.bedrock.fault = args
        .model_fault
        .as_deref()
        .map(parse_model_fault)
        .transpose()?;
    config.dynamodb = Some(super::dynamodb_config(args.infra_dir.as_deref())?);
    config.infra_dir = args.infra_dir;
    config.url_function = Some(super::self_as_url_function()?);
    config.function_url_bind = args.function_url_bind;
    config.websocket_functions = Some(super::self_as_websocket_functions()?);
    config.websocket_bind = args.websocket_bind;
    let tls_dir = crate::state_dir().join("tls");
    config.tls = Some(crate::tls::DevCertificate::load_or_create(&tls_dir)?);
    config.tls_bind = args.tls_bind;
    let web_page = args.web_dir.join("index.html").is_file();
    config.web_dir = web_page.then(|| args.web_dir.clone());
    let stack = Stack::start(config).await?;
    stack
        .appsync
        .publish_faults
        .set_round_trip(std::time::Duration::from_millis(args.publish_rtt_ms));
    for spec in &args.publish_fault {
        let (fault, times) = spec.split_once('x').unwrap_or((spec, "1"));
        let fault = PublishFault::parse(fault)
            .with_context(|| format!("unknown publish fault {spec:?}"))?;
        stack.appsync.publish_faults.push(
            fault,
            times
                .parse()
                .with_context(|| format!("bad count in {spec:?}"))?,
        );
    }
    let base = format!("http://{}", stack.addr);
    println!("devstack is up\n");
    println!("  AppSync GraphQL   {}", stack.graphql_url());
    println!("  AppSync real-time {}", stack.realtime_url());
    let tls = stack.tls_addr.context("the HTTPS listener did not start")?;
    println!("  over HTTPS        https://{tls}/graphql  wss://{tls}/graphql/realtime");
    println!(
        "  its CA            {}",
        crate::tls::DevCertificate::ca_path(&tls_dir).display()
    );
    if let Some(url) = stack.function_url() {
        println!(
            "  Function URL      {url}  (POST, Server-Sent Events; try: curl -N -H \"authorization: Bearer $TOKEN\" -d '{{\"conversationId\":\"c1\",\"prompt\":\"Hi\"}}' -H content-type:application/json {url})"
        );
    }
    if let Some(url) = stack.websocket_url() {
        println!(
            "  WebSocket API     {url}?token=$TOKEN  (send {{\"action\":\"sendPrompt\",\"input\":{{\"conversationId\":\"c1\",\"prompt\":\"Hi\"}}}})"
        );
    }
    println!("  Cognito issuer    {}", stack.user_pool.issuer());
    println!(
        "  Cognito JWKS      {}/.well-known/jwks.json",
        stack.user_pool.issuer()
    );
    println!("  Bedrock Runtime   {base}  (AWS_ENDPOINT_URL_BEDROCK_RUNTIME)");
    println!("  Lambda            up to {concurrency} execution environments, started on demand");
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
    if web_page {
        println!(
            "  Web chat          https://{tls}/?user=alice  (the certificate is the devstack's own: trust its CA or accept the warning)\n"
        );
    } else {
        println!(
            "  Web chat          not served: no {} (build it: cd client-examples/web && npm install && npm run build)\n",
            args.web_dir.join("index.html").display()
        );
    }
    println!("Ctrl-C stops it.");
    tokio::signal::ctrl_c().await?;
    stack.shutdown().await;
    Ok(())
}

/// Parses `--model-fault`.
fn parse_model_fault(spec: &str) -> anyhow::Result<Fault> {
    let (kind, after) = spec.split_once('@').unwrap_or((spec, "0"));
    let after_deltas: u32 = after
        .parse()
        .with_context(|| format!("bad delta count in {spec:?}"))?;
    let message = "Injected by devstack.".to_owned();
    Ok(match kind {
        "throttle" => Fault::Reject {
            status: 429,
            code: "ThrottlingException".into(),
            message: "Too many requests, please wait before trying again.".into(),
        },
        "truncate" => Fault::Truncate { after_deltas },
        "disconnect" => Fault::Disconnect { after_deltas },
        "stall" => Fault::Stall { after_deltas },
        other => {
            let name = other
                .strip_prefix("exception:")
                .with_context(|| format!("unknown model fault {spec:?}"))?;
            let exception = match name {
                "throttling" => StreamException::Throttling,
                "modelStreamError" => StreamException::ModelStreamError,
                "internalServer" => StreamException::InternalServer,
                "serviceUnavailable" => StreamException::ServiceUnavailable,
                "validation" => StreamException::Validation,
                _ => anyhow::bail!("unknown exception {name:?}"),
            };
            Fault::Exception {
                after_deltas,
                exception,
                message,
            }
        }
    })
}
