//! Place in the data path: AppSync -> **subscriber** -> the screen.
//! How a turn is shown: the answer text as it streams (with a status line on
//! stderr at the end), or `--json`: every chunk as one JSON line on stdout.

use std::io::Write;

use appsync_client::{Chunk, Usage};

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

    /// Prints one chunk, in `seq` order; flushes so the text streams.
    ///
    /// # Errors
    /// When stdout is gone (e.g. a closed pipe).
    pub(crate) fn chunk(&self, chunk: &Chunk) -> std::io::Result<()> {
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
            eprintln!("{}", status_line(chunk));
        }
        Ok(())
    }
}

/// A short, friendly summary of a finished turn.
fn status_line(last: &Chunk) -> String {
    if let Some(error) = &last.error {
        return format!("Sorry, the answer stopped early: {}", error.message);
    }
    let reason = match last.stop_reason.as_deref() {
        Some("cancelled") => "cancelled",
        Some("max_tokens") => "reached the token limit",
        Some("end_turn") | None => "done",
        Some(other) => other,
    };
    match &last.usage {
        Some(usage) => format!("[{reason} · {}]", tokens(usage)),
        None => format!("[{reason}]"),
    }
}

/// `12 in / 40 out tokens`.
fn tokens(usage: &Usage) -> String {
    format!(
        "{} in / {} out tokens",
        usage.input_tokens, usage.output_tokens
    )
}
