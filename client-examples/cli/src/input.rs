//! Place in the data path: AppSync -> **subscriber** (the user's side of it).
//! What the user types: prompt lines from stdin and Ctrl-C presses, each
//! turned into a channel the chat loop can `select!` on.

use std::io::{BufRead, IsTerminal, Write};

use tokio::sync::mpsc;

/// Lines of stdin, read on a thread of their own.
///
/// Blocking reads live on a plain thread (not in the async runtime), so the
/// program can quit on Ctrl-C while a read is still waiting. The channel
/// closes at end of input (or on a read error, such as text that is not UTF-8).
pub(crate) fn prompts() -> mpsc::UnboundedReceiver<String> {
    let (lines, receiver) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// One message per Ctrl-C. While this runs, Ctrl-C no longer kills the
/// process: the chat loop decides (cancel the turn, or quit).
pub(crate) fn interrupts() -> mpsc::UnboundedReceiver<()> {
    let (presses, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if presses.send(()).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Shows `> ` on stderr when a person is typing (stdin is a terminal), never
/// when the prompts come from a pipe or a file.
pub(crate) fn show_prompt() {
    if std::io::stdin().is_terminal() {
        let mut stderr = std::io::stderr();
        let _ = write!(stderr, "> ");
        let _ = stderr.flush();
    }
}
