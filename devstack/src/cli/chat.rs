//! `devstack chat "PROMPT"`: the whole path in one command. Starts a stack
//! in-process, subscribes as the user over the real WebSocket, sends
//! `sendPrompt` over HTTP with the user's JWT, prints the answer as chunks
//! arrive, then one stats line on stderr. With `--conversation ID` it
//! continues a conversation kept in the local DynamoDB (the state directory),
//! so the model sees its earlier turns. With `--transport function-url` the
//! same prompt goes to the function URL instead, and the answer streams back
//! as Server-Sent Events; with `--transport websocket` it goes as a
//! `sendPrompt` message on an API Gateway WebSocket API connection, and the
//! answer comes back as messages on it.
//!
//! Place in the data path: both ends of it; **this command** (client)
//! --sendPrompt--> AppSync -> Lambda (resolver) -> Bedrock -> resolver
//! --publishChunk--> AppSync --onChunk--> **this command** (subscriber); or
//! **this command** --POST--> function URL -> Lambda (function URL function)
//! -> Bedrock, its events back to **this command**; or **this command**
//! --message--> WebSocket API -> Lambda (route function) -> Bedrock
//! --PostToConnection--> WebSocket API --> **this command**.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use appsync_client::{Chunk, ON_CHUNK, TurnAssembler, send_prompt, send_prompt_variables};
use serde_json::json;

use crate::{Stack, StackConfig};

// `devstack chat`'s flags (a doc comment would become part of `--help`).
#[derive(clap::Args)]
pub(super) struct ChatArgs {
    /// What to ask.
    prompt: String,
    /// `smollm2` (a real model, run locally) or `scripted` (deterministic text).
    #[arg(long, default_value = "smollm2")]
    model: String,
    /// The dev user to sign in as.
    #[arg(long, default_value = "alice")]
    user: String,
    /// Most output tokens.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Tokens per second of the `scripted` model.
    #[arg(long, default_value_t = 50.0)]
    scripted_rate: f64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Run this executable as the function (e.g. the `bootstrap` that
    /// `scripts/build-function` builds) instead of the resolver built into
    /// devstack.
    #[arg(long)]
    function: Option<std::path::PathBuf>,
    /// Continue this conversation (its earlier turns go to the model as
    /// history); a new one when absent. The stats line names it.
    #[arg(long)]
    conversation: Option<String>,
    /// How the answer streams back: `appsync` (a subscription),
    /// `function-url` (Server-Sent Events from a Lambda function URL) or
    /// `websocket` (messages on an API Gateway WebSocket API connection).
    #[arg(long, value_enum, default_value_t = Transport::Appsync)]
    transport: Transport,
}

/// The transports `devstack chat` can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Transport {
    /// `sendPrompt` and an `onChunk` subscription.
    Appsync,
    /// A POST to the function URL, answered with Server-Sent Events.
    FunctionUrl,
    /// A `sendPrompt` message on a WebSocket API connection.
    Websocket,
}

/// Starts a stack on a free port, runs the chat, and stops the
/// stack whatever the outcome.
pub(super) async fn run(args: ChatArgs) -> anyhow::Result<()> {
    super::init_tracing("warn");
    let mut config = StackConfig::new(super::function_command(args.function.as_deref())?);
    config.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    config.default_model = args.model.clone();
    config.bedrock.scripted_tokens_per_second = args.scripted_rate;
    config.dynamodb = Some(super::dynamodb_config(None)?);
    match args.transport {
        Transport::Appsync => {}
        Transport::FunctionUrl => config.url_function = Some(super::self_as_url_function()?),
        Transport::Websocket => {
            config.websocket_functions = Some(super::self_as_websocket_functions()?);
        }
    }
    let stack = Stack::start(config).await?;
    let result = async {
        stack
            .bedrock
            .warm(&args.model)
            .await
            .with_context(|| format!("could not load the model `{}`", args.model))?;
        match args.transport {
            Transport::Appsync => chat(&stack, &args).await,
            Transport::FunctionUrl => chat_over_url(&stack, &args).await,
            Transport::Websocket => chat_over_websocket(&stack, &args).await,
        }
    }
    .await;
    stack.shutdown().await;
    result
}

/// Warms the model, subscribes as the user, sends the prompt, and prints the
/// turn's chunks in `seq` order until the terminal one.
async fn chat(stack: &Stack, args: &ChatArgs) -> anyhow::Result<()> {
    let token = stack.token(&args.user);
    let client = stack.connect_as(&token).await?;
    let conversation_id = conversation_id(args);
    let turn_id = uuid::Uuid::new_v4().to_string();
    let mut subscription = client
        .subscribe(ON_CHUNK, json!({"conversationId": conversation_id}))
        .await?;
    // The turn's record (the answer, for the next turn's history) is written
    // after its terminal chunk: wait for the invocation to end before the
    // stack stops.
    let mut outcomes = stack.lambda.outcomes();
    let started = Instant::now();
    let variables = send_prompt_variables(
        &conversation_id,
        &turn_id,
        &args.prompt,
        Some(&args.model),
        args.max_tokens,
    );
    send_prompt(
        &reqwest::Client::new(),
        &stack.graphql_url(),
        &token,
        variables,
    )
    .await?;

    let mut printer = Printer::new(started);
    let deadline = Duration::from_secs(args.timeout);
    while !printer.done() {
        let next = tokio::time::timeout(
            deadline.saturating_sub(started.elapsed()),
            subscription.next(),
        )
        .await
        .context("no answer before the timeout")?;
        let Some(payload) = next else {
            bail!("the subscription ended before the answer did")
        };
        let Some(chunk) =
            appsync_client::chunk_from_payload(&payload?).filter(|c| c.turn_id == turn_id)
        else {
            continue;
        };
        printer.print(chunk)?;
    }
    let printed = printer.finish()?;
    let ended = tokio::time::timeout(Duration::from_secs(10), outcomes.recv()).await;
    if !matches!(ended, Ok(Ok(_))) {
        eprintln!("(the turn may not be stored: its invocation did not end in time)");
    }
    report(&printed, started.elapsed())?;
    eprintln!("continue this conversation with --conversation {conversation_id}");
    Ok(())
}

/// Warms the model, POSTs the prompt to the function URL, and prints the
/// chunks of its event stream in `seq` order until the terminal one.
async fn chat_over_url(stack: &Stack, args: &ChatArgs) -> anyhow::Result<()> {
    let url = stack
        .function_url()
        .context("the stack has no function URL")?;
    chat_direct(stack, args, |token, input, mut printer| async move {
        let http = reqwest::Client::new();
        let mut events = appsync_client::post_prompt(&http, &url, &token, &input).await?;
        while !printer.done() {
            let Some(chunk) = events.next().await? else {
                bail!("the stream ended before the answer did")
            };
            printer.print(chunk)?;
        }
        printer.finish()
    })
    .await
}

/// Warms the model, connects to the WebSocket API, sends the prompt, and
/// prints the chunks that come back in `seq` order until the terminal one.
async fn chat_over_websocket(stack: &Stack, args: &ChatArgs) -> anyhow::Result<()> {
    let url = stack
        .websocket_url()
        .context("the stack has no WebSocket API")?;
    chat_direct(stack, args, |token, input, mut printer| async move {
        let mut client = appsync_client::WebSocketApiClient::connect(&url, &token).await?;
        client.send_prompt(&input).await?;
        while !printer.done() {
            match client.next_message().await? {
                appsync_client::ServerMessage::Chunk(chunk) => printer.print(chunk)?,
                appsync_client::ServerMessage::Error {
                    error_type,
                    message,
                    ..
                } => bail!("the prompt was refused: {message} ({error_type})"),
                _ => {}
            }
        }
        client.close().await?;
        printer.finish()
    })
    .await
}

/// A turn over a transport whose answer comes back on the request or
/// connection that carried the prompt: `answer` gets the user's token, the
/// prompt's input and a printer, and prints the turn within the timeout;
/// then the answer is waited for in the store and reported.
async fn chat_direct<F, Fut>(stack: &Stack, args: &ChatArgs, answer: F) -> anyhow::Result<()>
where
    F: FnOnce(String, serde_json::Value, Printer) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Printed>>,
{
    let token = stack.token(&args.user);
    let conversation_id = conversation_id(args);
    let input = prompt_input(args, &conversation_id);
    let started = Instant::now();
    let deadline = Duration::from_secs(args.timeout);
    let printed = tokio::time::timeout(
        deadline,
        answer(token.clone(), input, Printer::new(started)),
    )
    .await
    .context("no answer before the timeout")??;
    end_streamed(stack, &token, &conversation_id, &printed, started).await
}

/// The prompt's `SendPromptInput` JSON.
fn prompt_input(args: &ChatArgs, conversation_id: &str) -> serde_json::Value {
    let mut input =
        json!({"conversationId": conversation_id, "prompt": args.prompt, "modelId": args.model});
    if let Some(max_tokens) = args.max_tokens {
        input["maxTokens"] = json!(max_tokens);
    }
    input
}

/// After a turn that streamed outside AppSync: waits for its answer to be
/// stored (it is written just after the last chunk) so that --conversation
/// finds it, then reports.
async fn end_streamed(
    stack: &Stack,
    token: &str,
    conversation_id: &str,
    printed: &Printed,
    started: Instant,
) -> anyhow::Result<()> {
    let stored = stack
        .stored_answer(token, conversation_id, Duration::from_secs(10))
        .await;
    if stored.is_none() {
        eprintln!("(the turn may not be stored: its answer was not written in time)");
    }
    report(printed, started.elapsed())?;
    eprintln!("continue this conversation with --conversation {conversation_id}");
    Ok(())
}

/// A new conversation's id, unless the command continues one.
fn conversation_id(args: &ChatArgs) -> String {
    args.conversation
        .clone()
        .unwrap_or_else(|| format!("chat-{}", uuid::Uuid::new_v4().simple()))
}

/// Prints a turn's text as its chunks come in, in `seq` order, whichever
/// transport brought them.
struct Printer {
    assembler: TurnAssembler,
    started: Instant,
    first_chunk: Option<Duration>,
    chunks: usize,
}

/// What a printed turn came to.
struct Printed {
    last: Chunk,
    first_chunk: Option<Duration>,
    chunks: usize,
}

impl Printer {
    fn new(started: Instant) -> Self {
        Self {
            assembler: TurnAssembler::new(),
            started,
            first_chunk: None,
            chunks: 0,
        }
    }

    fn done(&self) -> bool {
        self.assembler.finished().is_some()
    }

    /// Prints whatever `chunk` makes ready.
    fn print(&mut self, chunk: Chunk) -> std::io::Result<()> {
        let mut stdout = std::io::stdout();
        for chunk in self.assembler.push(chunk) {
            self.first_chunk
                .get_or_insert_with(|| self.started.elapsed());
            self.chunks += 1;
            print!("{}", chunk.text);
            stdout.flush()?;
        }
        Ok(())
    }

    /// Ends the line; the terminal chunk and the counts.
    fn finish(self) -> anyhow::Result<Printed> {
        println!();
        Ok(Printed {
            last: self
                .assembler
                .finished()
                .cloned()
                .context("no terminal chunk")?,
            first_chunk: self.first_chunk,
            chunks: self.chunks,
        })
    }
}

/// The stats line on stderr; an error if the turn ended with one.
fn report(printed: &Printed, total: Duration) -> anyhow::Result<()> {
    let Printed {
        last,
        first_chunk: first,
        chunks,
    } = printed;
    let output_tokens = last.usage.as_ref().map(|u| u.output_tokens).unwrap_or(0);
    // Input tokens count the history the model was given, too.
    let input_tokens = last.usage.as_ref().map(|u| u.input_tokens).unwrap_or(0);
    eprintln!(
        "time to first chunk {:.2} s · {chunks} chunks · {input_tokens} input tokens · {output_tokens} output tokens · stop reason {} · total {:.2} s",
        first.unwrap_or_default().as_secs_f64(),
        last.stop_reason.as_deref().unwrap_or("none"),
        total.as_secs_f64(),
    );
    if let Some(error) = &last.error {
        bail!("the turn failed: {} ({})", error.message, error.error_type);
    }
    Ok(())
}
