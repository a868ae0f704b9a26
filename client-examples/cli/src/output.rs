//! Place in the data path: AppSync -> **subscriber** -> the screen.
//! How a turn is shown: the answer text as it streams (with a status line on
//! stderr at the end, saying what recovery did if anything), or `--json`:
//! every chunk as one JSON line on stdout. And the lines on stderr that name
//! the conversation, so that it can be continued.

use std::io::Write;

use appsync_client::{Chunk, Usage};

use crate::recovery::Recovered;

/// Where and how chunks are printed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Output {
    /// One JSON object per chunk on stdout, and nothing else there.
    pub json: bool,
}

impl Output {
    /// Ends a line of answer text cut short (the connection closed), so the
    /// error message that follows starts on a line of its own.
    pub(crate) fn interrupted(&self) {
        if !self.json {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout).and_then(|()| stdout.flush());
        }
    }

    /// Prints one chunk, in `seq` order; flushes so the text streams. The
    /// status line of a terminal chunk includes what `recovered` says.
    ///
    /// # Errors
    /// When stdout is gone (e.g. a closed pipe).
    pub(crate) fn chunk(&self, chunk: &Chunk, recovered: &Recovered) -> std::io::Result<()> {
        let mut stdout = std::io::stdout().lock();
        if self.json {
            let line = serde_json::to_string(chunk).map_err(std::io::Error::other)?;
            writeln!(stdout, "{line}")?;
        } else {
            write!(stdout, "{}", chunk.text)?;
            if chunk.done {
                writeln!(stdout)?;
            }
        }
        stdout.flush()?;
        if chunk.done && !self.json {
            eprintln!("{}", status_line(chunk, recovered));
        }
        Ok(())
    }
}

/// The first line on stderr once connected: which conversation this is.
pub(crate) fn opening(conversation_id: &str, continued: bool) -> String {
    let which = if continued { "Continuing" } else { "New" };
    format!("{which} conversation {conversation_id}. Type a prompt, or /history to see it so far.")
}

/// The last line on stderr: how to continue the conversation later.
pub(crate) fn closing(conversation_id: &str) -> String {
    format!("To continue this conversation: appsync-chat --conversation {conversation_id}")
}

/// A short, friendly summary of a finished turn.
fn status_line(last: &Chunk, recovered: &Recovered) -> String {
    if let Some(error) = &last.error {
        return format!("Sorry, the answer stopped early: {}", error.message);
    }
    let reason = match last.stop_reason.as_deref() {
        Some("cancelled") => "cancelled",
        Some("max_tokens") => "reached the token limit",
        Some("end_turn") | None => "done",
        Some(other) => other,
    };
    let parts: Vec<String> = [
        Some(reason.to_owned()),
        last.usage.as_ref().map(tokens),
        recovered.note(),
    ]
    .into_iter()
    .flatten()
    .collect();
    format!("[{}]", parts.join(" · "))
}

/// `12 in / 40 out tokens`.
fn tokens(usage: &Usage) -> String {
    format!(
        "{} in / {} out tokens",
        usage.input_tokens, usage.output_tokens
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last(stop_reason: &str, usage: bool) -> Chunk {
        Chunk {
            conversation_id: "c".into(),
            turn_id: "t".into(),
            owner: "o".into(),
            seq: 3,
            text: String::new(),
            done: true,
            stop_reason: Some(stop_reason.into()),
            usage: usage.then_some(Usage {
                input_tokens: 12,
                output_tokens: 40,
                total_tokens: 52,
            }),
            error: None,
        }
    }

    #[test]
    fn the_status_line_names_the_end_the_tokens_and_any_recovery() {
        let nothing = Recovered::default();
        assert_eq!(
            status_line(&last("end_turn", true), &nothing),
            "[done · 12 in / 40 out tokens]"
        );
        assert_eq!(
            status_line(&last("cancelled", false), &nothing),
            "[cancelled]"
        );
        let recovered = Recovered {
            reconnects: 1,
            chunks: 2,
        };
        assert_eq!(
            status_line(&last("max_tokens", true), &recovered),
            "[reached the token limit · 12 in / 40 out tokens · reconnected, 2 missed chunks recovered]"
        );
    }

    #[test]
    fn the_closing_line_ends_with_the_conversation_id() {
        assert!(closing("conv-1").ends_with("--conversation conv-1"));
        assert!(opening("conv-1", true).starts_with("Continuing conversation conv-1."));
        assert!(opening("conv-1", false).starts_with("New conversation conv-1."));
    }
}
