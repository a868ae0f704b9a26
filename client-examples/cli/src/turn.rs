//! Place in the data path: client --sendPrompt--> AppSync ... AppSync
//! --onChunk--> **subscriber**. One turn: send the prompt, stream its chunks
//! in order until the terminal one, cancel it on Ctrl-C, and recover what the
//! subscription missed from `turnChunks` (client --turnChunks--> AppSync -->
//! the stored chunks): after the link is opened again, when a `seq` gap does
//! not fill, and when the turn goes quiet before its terminal chunk. Every
//! chunk, live or recovered, goes through one `TurnAssembler`, so the answer
//! is printed exactly once, in order.

use anyhow::Context;
use appsync_client::{
    Chunk, MutationError, RealtimeError, TurnAssembler, cancel_turn, chunk_from_payload,
    send_prompt, send_prompt_variables, turn_chunks,
};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::describe_errors;
use crate::link::Link;
use crate::output::Output;
use crate::recovery::{Recovered, Watchdog};

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
    /// The watchdog's next check is due.
    Check,
}

/// One conversation: the link (opened once, again when lost) and what every
/// turn needs.
pub(crate) struct Session {
    pub(crate) http: reqwest::Client,
    pub(crate) graphql_url: String,
    /// The user's ID token, sent as the `authorization` header.
    pub(crate) token: String,
    pub(crate) conversation_id: String,
    pub(crate) model_id: Option<String>,
    pub(crate) max_tokens: Option<u32>,
    /// The connection and `onChunk(conversationId)`, subscribed before the
    /// first prompt.
    pub(crate) link: Link,
    pub(crate) output: Output,
}

/// One running turn: what has arrived, and when to recover.
struct Turn {
    id: String,
    assembler: TurnAssembler,
    watchdog: Watchdog,
    recovered: Recovered,
    /// A failed `turnChunks` has been reported (once a turn is enough).
    recovery_failed: bool,
}

impl Session {
    /// Runs one turn to its terminal chunk. The first Ctrl-C sends
    /// `cancelTurn` (the turn then ends `cancelled`); a second one quits.
    ///
    /// # Errors
    /// `sendPrompt` or `cancelTurn` refused or unreachable, the connection
    /// lost and not opened again, a subscription error, or stdout gone.
    pub(crate) async fn run(
        &mut self,
        prompt: &str,
        interrupts: &mut mpsc::UnboundedReceiver<()>,
    ) -> anyhow::Result<TurnEnd> {
        if self.link.is_closed() {
            // Lost while waiting for this prompt: no turn was streaming.
            self.link.reconnect().await?;
        }
        // A turn id chosen here tells this turn's chunks from any other's.
        let id = uuid::Uuid::new_v4().to_string();
        self.send(prompt, &id).await?;
        let mut turn = Turn {
            id,
            assembler: TurnAssembler::new(),
            watchdog: Watchdog::new(Instant::now()),
            recovered: Recovered::default(),
            recovery_failed: false,
        };
        let mut cancelling = false;
        while turn.assembler.finished().is_none() {
            let check = turn.watchdog.next_check();
            let event = tokio::select! {
                payload = self.link.next() => Event::Payload(payload),
                Some(()) = interrupts.recv() => Event::Interrupt,
                () = tokio::time::sleep_until(check) => Event::Check,
            };
            let step = match event {
                Event::Payload(Some(payload)) => self.receive(payload, &mut turn),
                Event::Payload(None) => self.resume(&mut turn).await,
                Event::Check if turn.watchdog.due(Instant::now()) => self.recover(&mut turn).await,
                Event::Check => Ok(()),
                Event::Interrupt if cancelling => return Ok(TurnEnd::Quit),
                Event::Interrupt => {
                    cancelling = true;
                    self.cancel(&turn.id).await
                }
            };
            if let Err(error) = step {
                self.output.interrupted();
                return Err(error);
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

    /// Takes one subscription message: a chunk of this turn goes to the
    /// assembler, and what is now in order is printed.
    fn receive(
        &self,
        payload: Result<Value, RealtimeError>,
        turn: &mut Turn,
    ) -> anyhow::Result<()> {
        let payload = payload.map_err(|error| match error {
            RealtimeError::Subscription(errors) => {
                anyhow::anyhow!("the subscription failed: {}", describe_errors(&errors))
            }
            other => anyhow::anyhow!("the subscription failed: {other}"),
        })?;
        // Chunks of another turn (e.g. one started in another window) are not ours.
        let Some(chunk) = chunk_from_payload(&payload).filter(|c| c.turn_id == turn.id) else {
            return Ok(());
        };
        self.release(turn, chunk)?;
        turn.watchdog
            .arrived(Instant::now(), turn.assembler.gap_pending());
        Ok(())
    }

    /// The connection closed mid-turn: open it again, then fetch what was
    /// published while it was down.
    async fn resume(&mut self, turn: &mut Turn) -> anyhow::Result<()> {
        self.link.reconnect().await?;
        turn.recovered.reconnects += 1;
        self.recover(turn).await
    }

    /// Asks `turnChunks` for every stored chunk after the last one in order
    /// and pushes them into the assembler (which drops what it already has).
    /// A failure is reported once and the turn goes on waiting: the
    /// subscription may still bring the rest.
    async fn recover(&self, turn: &mut Turn) -> anyhow::Result<()> {
        let fetched = turn_chunks(
            &self.http,
            &self.graphql_url,
            &self.token,
            &self.conversation_id,
            &turn.id,
            turn.assembler.after_seq(),
        )
        .await;
        match fetched {
            Ok(chunks) => {
                for chunk in chunks {
                    if chunk.turn_id != turn.id {
                        continue;
                    }
                    if turn.assembler.is_new(chunk.seq) {
                        turn.recovered.chunks += 1;
                    }
                    self.release(turn, chunk)?;
                }
            }
            Err(error) if !turn.recovery_failed => {
                turn.recovery_failed = true;
                eprintln!(
                    "\n(could not fetch the missed part of the answer: {error}; still waiting)"
                );
            }
            Err(_) => {}
        }
        turn.watchdog
            .recovered(Instant::now(), turn.assembler.gap_pending());
        Ok(())
    }

    /// Pushes one chunk of the turn into its assembler and prints the chunks
    /// that are now in order.
    fn release(&self, turn: &mut Turn, chunk: Chunk) -> anyhow::Result<()> {
        for ready in turn.assembler.push(chunk) {
            self.output
                .chunk(&ready, &turn.recovered)
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
