//! Place in the data path: client --POST--> Lambda function URL --Server-Sent
//! Events--> **this client**; or client --message--> API Gateway WebSocket
//! API --PostToConnection--> **this client**. The other two transports of
//! the same relay (`--transport function-url`, `--transport websocket`):
//! the answer comes back on the request (the SSE stream) or the connection
//! that carried the prompt, so there is nothing to subscribe to first.
//!
//! Every chunk goes through a `TurnAssembler`, as over AppSync, so the
//! answer is printed once and in order. Ctrl-C during a turn cancels it
//! (`POST /cancel` on the function URL, a `cancelTurn` message on the
//! WebSocket API) once its first chunk has named it; a second Ctrl-C quits.
//! A function URL's client that leaves does not stop the model; a WebSocket
//! client that leaves does.

use anyhow::{Context, bail};
use appsync_client::{ChunkEvents, ServerMessage, TurnAssembler, WebSocketApiClient};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::output::Output;
use crate::recovery::Recovered;
use crate::turn::TurnEnd;

/// Where prompts go.
pub(crate) enum Transport {
    /// A Lambda function URL: one POST per prompt.
    FunctionUrl {
        /// The HTTP client.
        http: reqwest::Client,
        /// The function URL.
        url: String,
    },
    /// An API Gateway WebSocket API: one connection for the conversation.
    WebSocket(Box<WebSocketApiClient>),
}

/// One conversation over a function URL or a WebSocket API.
pub(crate) struct DirectSession {
    pub(crate) transport: Transport,
    pub(crate) token: String,
    pub(crate) conversation_id: String,
    pub(crate) model_id: Option<String>,
    pub(crate) max_tokens: Option<u32>,
    pub(crate) output: Output,
}

/// Where a streaming turn's chunks come from.
enum Stream<'a> {
    Events(ChunkEvents),
    Messages(&'a mut WebSocketApiClient),
}

impl DirectSession {
    /// The `SendPromptInput` JSON of `prompt`.
    fn input(&self, prompt: &str) -> Value {
        let mut input = json!({"conversationId": self.conversation_id, "prompt": prompt});
        if let Some(model) = &self.model_id {
            input["modelId"] = json!(model);
        }
        if let Some(max_tokens) = self.max_tokens {
            input["maxTokens"] = json!(max_tokens);
        }
        input
    }

    /// Runs one turn to its terminal chunk; see the module docs.
    ///
    /// # Errors
    /// The prompt refused, the transport unreachable or broken, stdout gone.
    pub(crate) async fn run(
        &mut self,
        prompt: &str,
        interrupts: &mut mpsc::UnboundedReceiver<()>,
    ) -> anyhow::Result<TurnEnd> {
        let input = self.input(prompt);
        let turn = Turn {
            token: self.token.clone(),
            conversation_id: self.conversation_id.clone(),
            url: match &self.transport {
                Transport::FunctionUrl { http, url } => Some((http.clone(), url.clone())),
                Transport::WebSocket(_) => None,
            },
        };
        let mut stream = match &mut self.transport {
            Transport::FunctionUrl { http, url } => {
                let events = appsync_client::post_prompt(http, url, &self.token, &input).await?;
                Stream::Events(events)
            }
            Transport::WebSocket(client) => {
                client.send_prompt(&input).await?;
                Stream::Messages(client)
            }
        };
        let mut assembler = TurnAssembler::new();
        let mut turn_id: Option<String> = None;
        let mut cancelling = false;
        while assembler.finished().is_none() {
            let next = tokio::select! {
                chunk = next_chunk(&mut stream) => Some(chunk?),
                Some(()) = interrupts.recv() => None,
            };
            let Some(chunk) = next else {
                if cancelling {
                    return Ok(TurnEnd::Quit);
                }
                cancelling = true;
                eprintln!("\n(cancelling; Ctrl-C again to quit)");
                match &turn_id {
                    Some(id) => turn.cancel(&mut stream, id).await?,
                    None => eprintln!("(the answer has not started; Ctrl-C again to quit)"),
                }
                continue;
            };
            turn_id.get_or_insert_with(|| chunk.turn_id.clone());
            for ready in assembler.push(chunk) {
                self.output
                    .chunk(&ready, &Recovered::default())
                    .context("could not write to stdout")?;
            }
        }
        Ok(TurnEnd::Finished)
    }
}

/// What cancelling a running turn needs.
struct Turn {
    token: String,
    conversation_id: String,
    /// The function URL and its client, on that transport.
    url: Option<(reqwest::Client, String)>,
}

impl Turn {
    /// Asks the transport to stop turn `turn_id`.
    async fn cancel(&self, stream: &mut Stream<'_>, turn_id: &str) -> anyhow::Result<()> {
        match (stream, &self.url) {
            (Stream::Messages(client), _) => {
                client.cancel_turn(&self.conversation_id, turn_id).await?;
            }
            (Stream::Events(_), Some((http, url))) => {
                let cancel = format!("{}/cancel", url.trim_end_matches('/'));
                let body = json!({"conversationId": self.conversation_id, "turnId": turn_id});
                let response = http
                    .post(&cancel)
                    .bearer_auth(&self.token)
                    .json(&body)
                    .send()
                    .await
                    .with_context(|| format!("could not reach {cancel}"))?;
                if !response.status().is_success() {
                    bail!("the cancellation was refused ({})", response.status());
                }
            }
            (Stream::Events(_), None) => {}
        }
        Ok(())
    }
}

/// The turn's next chunk from `stream`.
async fn next_chunk(stream: &mut Stream<'_>) -> anyhow::Result<appsync_client::Chunk> {
    match stream {
        Stream::Events(events) => events
            .next()
            .await?
            .context("the stream ended before the answer did"),
        Stream::Messages(client) => loop {
            match client.next_message().await? {
                ServerMessage::Chunk(chunk) => return Ok(chunk),
                ServerMessage::Error {
                    error_type,
                    message,
                    ..
                } => bail!("the prompt was refused: {message} ({error_type})"),
                _ => {}
            }
        },
    }
}
