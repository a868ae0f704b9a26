//! Place in the data path: client --listMessages--> AppSync --> the
//! conversations table the resolver Lambda writes, -> the screen. The
//! `/history` command: the conversation so far, `you:` and `assistant:` lines
//! (or, with `--json`, one JSON object per message).

use std::io::Write;

use anyhow::Context;
use appsync_client::{Message, list_messages};

/// Where a conversation's history is read, and how it is printed.
pub(crate) struct HistorySource<'a> {
    pub(crate) http: &'a reqwest::Client,
    /// The AppSync API's GraphQL URL (`listMessages`).
    pub(crate) graphql_url: &'a str,
    pub(crate) token: &'a str,
    pub(crate) conversation_id: &'a str,
    /// One JSON object per message.
    pub(crate) json: bool,
}

/// The line that asks for the history instead of sending a prompt.
pub(crate) const COMMAND: &str = "/history";

/// Prints the conversation's messages, oldest first. A history that cannot be
/// read is reported on stderr and the chat goes on.
///
/// # Errors
/// When stdout is gone (e.g. a closed pipe).
pub(crate) async fn show(session: HistorySource<'_>) -> anyhow::Result<()> {
    let read = list_messages(
        session.http,
        session.graphql_url,
        session.token,
        session.conversation_id,
    )
    .await;
    let messages = match read {
        Ok(messages) => messages,
        Err(error) => {
            eprintln!("could not read the history: {error}");
            return Ok(());
        }
    };
    if messages.is_empty() {
        eprintln!(
            "(conversation {} has no messages yet)",
            session.conversation_id
        );
        return Ok(());
    }
    print(&messages, session.json).context("could not write to stdout")
}

/// Writes the messages to stdout, as lines of text or of JSON.
fn print(messages: &[Message], json: bool) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    for message in messages {
        if json {
            let line = serde_json::to_string(message).map_err(std::io::Error::other)?;
            writeln!(stdout, "{line}")?;
        } else {
            writeln!(stdout, "{}", line(message))?;
        }
    }
    stdout.flush()
}

/// `you: <prompt>` or `assistant: <answer>`, with a note in brackets when the
/// answer failed (`[error: ...]`) or ended other than by `end_turn`
/// (`[stopped: max_tokens]`).
pub(crate) fn line(message: &Message) -> String {
    let who = match message.role.as_str() {
        "user" => "you",
        other => other,
    };
    let said = if message.text.is_empty() {
        format!("{who}:")
    } else {
        format!("{who}: {}", message.text)
    };
    match note(message) {
        Some(note) => format!("{said} [{note}]"),
        None => said,
    }
}

/// What is worth saying about how an answer ended.
fn note(message: &Message) -> Option<String> {
    if let Some(error) = &message.error {
        return Some(format!("error: {}", error.message));
    }
    match message.stop_reason.as_deref() {
        None | Some("end_turn") => None,
        Some(reason) => Some(format!("stopped: {reason}")),
    }
}

#[cfg(test)]
mod tests {
    use appsync_client::ChunkError;

    use super::*;

    fn message(role: &str, text: &str, stop_reason: Option<&str>) -> Message {
        Message {
            turn_id: "t".into(),
            role: role.into(),
            text: text.into(),
            created_at: "2026-11-27T16:54:10.123Z".into(),
            stop_reason: stop_reason.map(str::to_owned),
            error: None,
        }
    }

    #[test]
    fn prompts_and_answers_are_you_and_assistant_lines() {
        assert_eq!(line(&message("user", "Hi?", None)), "you: Hi?");
        assert_eq!(
            line(&message("assistant", "Hello.", Some("end_turn"))),
            "assistant: Hello."
        );
    }

    #[test]
    fn another_stop_reason_or_an_error_is_noted() {
        assert_eq!(
            line(&message("assistant", "Hel", Some("max_tokens"))),
            "assistant: Hel [stopped: max_tokens]"
        );
        assert_eq!(
            line(&message("assistant", "", Some("cancelled"))),
            "assistant: [stopped: cancelled]"
        );
        let mut failed = message("assistant", "Par", Some("error"));
        failed.error = Some(ChunkError {
            error_type: "ThrottlingException".into(),
            message: "Too many requests.".into(),
            retryable: true,
        });
        assert_eq!(line(&failed), "assistant: Par [error: Too many requests.]");
    }
}
