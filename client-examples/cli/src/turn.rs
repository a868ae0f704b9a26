//! Place in the data path: client --sendPrompt--> AppSync ... AppSync
//! --onChunk--> **subscriber**. One turn: send the prompt, stream its chunks
//! in order until the terminal one, and cancel it on Ctrl-C.

use anyhow::{Context, bail};
use appsync_client::{
    MutationError, TurnAssembler, cancel_turn, send_prompt, send_prompt_variables,
};
use appsync_client::{RealtimeClient, RealtimeError, Subscription};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::describe_errors;
use crate::output::Output;

/// How a turn ended, for the chat loop.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TurnEnd {
    /// The terminal chunk arrived: ask for the next prompt.
    Finished,
    /// Ctrl-C again while the cancellation was on its way: quit now.
    Quit,
}

/// Something that happened while a turn was streaming.
enum Event {
    /// The subscription's next message (`None`: the connection closed).
    Payload(Option<Result<Value, RealtimeError>>),
    /// The user pressed Ctrl-C.
    Interrupt,
}

/// One conversation: the subscription (opened once) and what every turn needs.
pub(crate) struct Session {
    pub http: reqwest::Client,
    pub graphql_url: String,
    /// The user's ID token, sent as the `authorization` header.
    pub token: String,
    pub conversation_id: String,
    pub model_id: Option<String>,
    pub max_tokens: Option<u32>,
    /// The real-time connection, kept to notice when it has closed.
    pub client: RealtimeClient,
    /// `onChunk(conversationId)`, subscribed before the first prompt.
    pub subscription: Subscription,
    pub output: Output,
}

impl Session {
    /// Runs one turn to its terminal chunk. The first Ctrl-C sends
    /// `cancelTurn` (the turn then ends `cancelled`); a second one quits.
    ///
    /// # Errors
    /// `sendPrompt` or `cancelTurn` refused or unreachable, the connection
    /// closed mid-turn, or stdout gone.
    pub(crate) async fn run(
        &mut self,
        prompt: &str,
        interrupts: &mut mpsc::UnboundedReceiver<()>,
    ) -> anyhow::Result<TurnEnd> {
        if self.client.is_closed() {
            bail!("the connection to AppSync has closed; start appsync-chat again");
        }
        // A turn id chosen here tells this turn's chunks from any other's.
        let turn_id = uuid::Uuid::new_v4().to_string();
        self.send(prompt, &turn_id).await?;
        let mut assembler = TurnAssembler::new();
        let mut cancelling = false;
        while assembler.finished().is_none() {
            let event = tokio::select! {
                payload = self.subscription.next() => Event::Payload(payload),
                Some(()) = interrupts.recv() => Event::Interrupt,
            };
            match event {
                Event::Payload(payload) => {
                    if let Err(error) = self.receive(payload, &turn_id, &mut assembler) {
                        self.output.interrupted();
                        return Err(error);
                    }
                }
                Event::Interrupt if cancelling => return Ok(TurnEnd::Quit),
                Event::Interrupt => {
                    cancelling = true;
                    self.cancel(&turn_id).await?;
                }
            }
        }
        Ok(TurnEnd::Finished)
    }

    /// Sends `sendPrompt`; the answer arrives on the subscription.
    async fn send(&self, prompt: &str, turn_id: &str) -> anyhow::Result<()> {
        let variables = send_prompt_variables(
            &self.conversation_id,
            turn_id,
            prompt,
            self.model_id.as_deref(),
            self.max_tokens,
        );
        send_prompt(&self.http, &self.graphql_url, &self.token, variables)
            .await
            .map(drop)
            .map_err(|error| self.explain(error))
    }

    /// Sends `cancelTurn`; the turn's terminal chunk still arrives.
    async fn cancel(&self, turn_id: &str) -> anyhow::Result<()> {
        eprintln!("\n(cancelling; Ctrl-C again to quit)");
        let cancellation = cancel_turn(
            &self.http,
            &self.graphql_url,
            &self.token,
            &self.conversation_id,
            turn_id,
        );
        cancellation
            .await
            .map(drop)
            .map_err(|error| self.explain(error))
    }

    /// Prints the chunks of this turn that are now in order.
    fn receive(
        &self,
        payload: Option<Result<Value, RealtimeError>>,
        turn_id: &str,
        assembler: &mut TurnAssembler,
    ) -> anyhow::Result<()> {
        let Some(payload) = payload else {
            bail!("the connection to AppSync closed before the answer was complete");
        };
        let payload = payload.map_err(|error| match error {
            RealtimeError::Subscription(errors) => {
                anyhow::anyhow!("the subscription failed: {}", describe_errors(&errors))
            }
            other => anyhow::anyhow!("the subscription failed: {other}"),
        })?;
        // Chunks of another turn (e.g. one started in another window) are not ours.
        let Some(chunk) =
            appsync_client::chunk_from_payload(&payload).filter(|c| c.turn_id == turn_id)
        else {
            return Ok(());
        };
        for ready in assembler.push(chunk) {
            self.output
                .chunk(&ready)
                .context("could not write to stdout")?;
        }
        Ok(())
    }

    /// A one-line message for a refused or unreachable mutation.
    fn explain(&self, error: MutationError) -> anyhow::Error {
        match error {
            MutationError::Refused {
                mutation,
                status,
                errors,
            } => anyhow::anyhow!(
                "AppSync refused {mutation} (HTTP {status}): {}",
                describe_errors(&errors)
            ),
            MutationError::Transport(error) => {
                anyhow::anyhow!("could not reach {}: {error}", self.graphql_url)
            }
        }
    }
}
