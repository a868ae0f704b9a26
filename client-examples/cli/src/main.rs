//! Place in the data path: AppSync -> **subscriber**. `appsync-chat`, a
//! terminal chat client: type a prompt, watch the answer stream in.
//!
//! The order that makes streaming reliable, and the shape to copy into any
//! client (web, mobile, terminal):
//! 1. open the real-time WebSocket and subscribe to `onChunk` for the
//!    conversation ONCE, waiting for `start_ack` (`subscribe` does);
//! 2. for each prompt, send `sendPrompt` over HTTP with a turn id chosen here,
//!    so the turn's chunks can be told apart from any other turn's;
//! 3. print that turn's chunks in `seq` order (dropping repeats) until the
//!    terminal chunk (`done: true`);
//! 4. when chunks go missing (the connection is lost and opened again, a `seq`
//!    gap does not fill, the turn goes quiet), fetch them with `turnChunks`
//!    after the last `seq` in order, and push them through the same assembler.
//!
//! Ctrl-C during a turn sends `cancelTurn`; Ctrl-C at the prompt quits.
//! `--conversation ID` continues a conversation (the model is given its
//! earlier turns); `/history` prints it so far (`listMessages`).
//!
//! `--transport function-url --url URL` and `--transport websocket --url
//! URL` use the same relay's other two transports instead (see `direct`):
//! the answer streams back on the request or the connection itself.

mod direct;
mod history;
mod input;
mod link;
mod output;
mod recovery;
mod turn;

use std::process::ExitCode;

use anyhow::Context;
use appsync_client::realtime_url_for;
use clap::Parser;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::link::Link;
use crate::output::Output;
use crate::turn::{Session, TurnEnd};

/// The exit status after Ctrl-C, as shells report a SIGINT (128 + 2).
const INTERRUPTED: u8 = 130;

/// Chat with a model through an AppSync API (or the relay's function URL or
/// WebSocket API), streaming each answer.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The API's GraphQL URL, e.g. https://<id>.appsync-api.<region>.amazonaws.com/graphql
    /// (with the other transports, only for /history).
    #[arg(long, env = "APPSYNC_GRAPHQL_URL")]
    graphql_url: Option<String>,
    /// How prompts and answers travel: `appsync` (sendPrompt and an onChunk
    /// subscription), `function-url` (a POST answered with Server-Sent
    /// Events) or `websocket` (messages on an API Gateway WebSocket API).
    #[arg(long, value_enum, default_value_t = TransportName::Appsync)]
    transport: TransportName,
    /// With `--transport function-url` or `websocket`: the function URL, or
    /// the WebSocket API's URL (wss://<id>.execute-api.<region>.amazonaws.com/<stage>).
    #[arg(long)]
    url: Option<String>,
    /// The API's real-time URL; derived from --graphql-url when absent.
    #[arg(long)]
    realtime_url: Option<String>,
    /// A Cognito user pool ID token (the raw JWT).
    #[arg(long, env = "COGNITO_ID_TOKEN", hide_env_values = true)]
    token: String,
    /// The conversation to talk in, e.g. one to continue (its earlier turns
    /// are given to the model); a new one (a fresh UUID) when absent.
    #[arg(long, visible_alias = "conversation", value_name = "ID")]
    conversation_id: Option<String>,
    /// The Bedrock model id; the API's default when absent.
    #[arg(long)]
    model_id: Option<String>,
    /// Most output tokens per answer (1 to 8192).
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Print every chunk as one JSON line on stdout instead of the text.
    #[arg(long)]
    json: bool,
}

/// The transports `--transport` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum TransportName {
    /// AppSync: sendPrompt, and the answer on an onChunk subscription.
    Appsync,
    /// A Lambda function URL answering with Server-Sent Events.
    FunctionUrl,
    /// An API Gateway WebSocket API.
    Websocket,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match chat(args).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("appsync-chat: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// One conversation, over whichever transport.
enum Chat {
    /// AppSync.
    Appsync(Box<Session>),
    /// The function URL or the WebSocket API.
    Direct {
        session: Box<direct::DirectSession>,
        /// For `/history`, when given.
        graphql_url: Option<String>,
    },
}

impl Chat {
    fn conversation_id(&self) -> &str {
        match self {
            Chat::Appsync(session) => &session.conversation_id,
            Chat::Direct { session, .. } => &session.conversation_id,
        }
    }

    async fn run(
        &mut self,
        prompt: &str,
        interrupts: &mut mpsc::UnboundedReceiver<()>,
    ) -> anyhow::Result<TurnEnd> {
        match self {
            Chat::Appsync(session) => session.run(prompt, interrupts).await,
            Chat::Direct { session, .. } => session.run(prompt, interrupts).await,
        }
    }

    async fn history(&self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let source = match self {
            Chat::Appsync(s) => history::HistorySource {
                http: &s.http,
                graphql_url: &s.graphql_url,
                token: &s.token,
                conversation_id: &s.conversation_id,
                json: s.output.json,
            },
            Chat::Direct {
                session,
                graphql_url: Some(graphql_url),
            } => history::HistorySource {
                http: &http,
                graphql_url,
                token: &session.token,
                conversation_id: &session.conversation_id,
                json: session.output.json,
            },
            Chat::Direct { .. } => {
                eprintln!("(/history reads the conversation through AppSync: give --graphql-url)");
                return Ok(());
            }
        };
        history::show(source).await
    }
}

/// Connects (and over AppSync subscribes) once, then runs one turn per line
/// of stdin.
async fn chat(args: Args) -> anyhow::Result<ExitCode> {
    // Listen for Ctrl-C first, so it never kills the program mid-turn.
    let mut interrupts = input::interrupts();
    let continued = args.conversation_id.is_some();
    let conversation_id = args
        .conversation_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let output = Output { json: args.json };
    let mut chat = match args.transport {
        TransportName::Appsync => Chat::Appsync(Box::new(
            appsync_session(&args, conversation_id, output).await?,
        )),
        other => {
            let url = args
                .url
                .clone()
                .context("--transport function-url and websocket need --url")?;
            let transport = match other {
                TransportName::Websocket => direct::Transport::WebSocket(Box::new(
                    appsync_client::WebSocketApiClient::connect(&url, &args.token).await?,
                )),
                _ => direct::Transport::FunctionUrl {
                    http: reqwest::Client::new(),
                    url,
                },
            };
            Chat::Direct {
                session: Box::new(direct::DirectSession {
                    transport,
                    token: args.token.clone(),
                    conversation_id,
                    model_id: args.model_id.clone(),
                    max_tokens: args.max_tokens,
                    output,
                }),
                graphql_url: args.graphql_url.clone(),
            }
        }
    };
    eprintln!("{}", output::opening(chat.conversation_id(), continued));
    let ended = converse(&mut chat, &mut interrupts).await;
    eprintln!("{}", output::closing(chat.conversation_id()));
    ended
}

/// The AppSync session: the real-time link, subscribed before any prompt.
async fn appsync_session(
    args: &Args,
    conversation_id: String,
    output: Output,
) -> anyhow::Result<Session> {
    let graphql_url = args
        .graphql_url
        .clone()
        .context("--graphql-url (or APPSYNC_GRAPHQL_URL) is required")?;
    let realtime_url = match &args.realtime_url {
        Some(url) => url.clone(),
        None => realtime_url_for(&graphql_url)
            .with_context(|| format!("{graphql_url} is not an http(s) URL"))?,
    };
    let link = Link::open(
        realtime_url,
        graphql_url.clone(),
        args.token.clone(),
        conversation_id.clone(),
    )
    .await?;
    Ok(Session {
        http: reqwest::Client::new(),
        graphql_url,
        token: args.token.clone(),
        conversation_id,
        model_id: args.model_id.clone(),
        max_tokens: args.max_tokens,
        link,
        output,
    })
}

/// The prompt loop: one turn per line of stdin, `/history` on request,
/// until end of input or Ctrl-C.
async fn converse(
    chat: &mut Chat,
    interrupts: &mut mpsc::UnboundedReceiver<()>,
) -> anyhow::Result<ExitCode> {
    let mut prompts = input::prompts();
    loop {
        input::show_prompt();
        let line = tokio::select! {
            line = prompts.recv() => line,
            Some(()) = interrupts.recv() => return Ok(ExitCode::from(INTERRUPTED)),
        };
        // End of input: the conversation is over.
        let Some(line) = line else {
            return Ok(ExitCode::SUCCESS);
        };
        let prompt = line.trim();
        if prompt.is_empty() {
            continue;
        }
        if prompt == history::COMMAND {
            chat.history().await?;
            continue;
        }
        if chat.run(prompt, interrupts).await? == TurnEnd::Quit {
            return Ok(ExitCode::from(INTERRUPTED));
        }
    }
}

/// AppSync's `errors` array as `Type: message; Type: message`.
pub fn describe_errors(errors: &Value) -> String {
    let Some(list) = errors.as_array().filter(|list| !list.is_empty()) else {
        return errors.to_string();
    };
    list.iter()
        .map(|e| {
            let kind = e.get("errorType").and_then(Value::as_str);
            let message = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message");
            match kind {
                Some(kind) => format!("{kind}: {message}"),
                None => message.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}
