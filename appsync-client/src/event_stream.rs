//! Place in the data path: client --POST--> Lambda function URL -> function
//! URL function --Server-Sent Events--> **this reader** -> the client's
//! [`crate::TurnAssembler`]. The second transport's last hop: a prompt
//! POSTed to the function URL with the user's ID token, its answer read as
//! an event stream
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation>)
//! whose every event's `data` is one chunk, the same JSON `onChunk`
//! delivers.

use thiserror::Error;

use crate::chunk::Chunk;

/// Why a function URL prompt failed.
#[derive(Debug, Error)]
pub enum EventStreamError {
    /// No answer, or the stream broke off.
    #[error("the function URL could not be reached or its stream broke: {0}")]
    Transport(#[from] reqwest::Error),
    /// The request was refused before it streamed: the HTTP status and the
    /// body's `message` (e.g. 401 for a missing or expired token).
    #[error("the function URL refused the prompt ({status}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// What the function said, safe to show.
        message: String,
    },
    /// An event whose data is not a chunk.
    #[error("an event of the stream is not a chunk: {0}")]
    NotAChunk(serde_json::Error),
}

/// An answer streaming from a function URL.
pub struct ChunkEvents {
    response: reqwest::Response,
    /// Bytes read and not yet dispatched; decoded a whole event at a time,
    /// so a character split across two reads stays whole.
    buffer: Vec<u8>,
}

/// POSTs `input` (the `SendPromptInput` JSON: `conversationId`, `prompt`,
/// ...) to the function URL `url` with the user pool ID token `token`, and
/// returns the answer's events once the stream has started.
///
/// # Errors
/// [`EventStreamError::Transport`] without an answer,
/// [`EventStreamError::Refused`] for a refusal.
pub async fn post_prompt(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    input: &serde_json::Value,
) -> Result<ChunkEvents, EventStreamError> {
    let response = http
        .post(url)
        .bearer_auth(token)
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .json(input)
        .send()
        .await?;
    let status = response.status();
    if !status.is_success() {
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        return Err(EventStreamError::Refused {
            status: status.as_u16(),
            message: body["message"]
                .as_str()
                .or_else(|| body["Message"].as_str())
                .unwrap_or("no reason given")
                .to_owned(),
        });
    }
    Ok(ChunkEvents::new(response))
}

impl ChunkEvents {
    /// The events of `response`, a `text/event-stream` body.
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            buffer: Vec::new(),
        }
    }

    /// The next chunk; `None` once the stream has ended. Comments (`:
    /// ping`) and events without data are skipped.
    ///
    /// # Errors
    /// [`EventStreamError::Transport`] when the stream breaks off,
    /// [`EventStreamError::NotAChunk`] for an event that is not a chunk.
    pub async fn next(&mut self) -> Result<Option<Chunk>, EventStreamError> {
        loop {
            if let Some(data) = self.next_event_data() {
                return serde_json::from_str(&data)
                    .map(Some)
                    .map_err(EventStreamError::NotAChunk);
            }
            match self.response.chunk().await? {
                Some(bytes) => self.buffer.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }

    /// The data of the next complete event in the buffer, if any.
    fn next_event_data(&mut self) -> Option<String> {
        loop {
            let (end, blank) = event_end(&self.buffer)?;
            let block: Vec<u8> = self.buffer.drain(..end + blank).collect();
            if let Some(data) = event_data(&String::from_utf8_lossy(&block[..end])) {
                return Some(data);
            }
        }
    }
}

/// Where the first event of `buffer` ends, and the length of the blank line
/// that ends it (`\n\n`, `\r\n\r\n` or `\r\r`, as the format allows).
fn event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    [&b"\r\n\r\n"[..], b"\n\n", b"\r\r"]
        .into_iter()
        .filter_map(|blank| {
            buffer
                .windows(blank.len())
                .position(|w| w == blank)
                .map(|at| (at, blank.len()))
        })
        .min_by_key(|(at, _)| *at)
}

/// The `data` of one event block: its `data:` lines joined with line
/// breaks; `None` for a block without any (a comment).
pub fn event_data(block: &str) -> Option<String> {
    let lines: Vec<&str> = block
        .split(['\n', '\r'])
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|v| v.strip_prefix(' ').unwrap_or(v))
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_events_data_lines_are_joined_and_comments_have_none() {
        assert_eq!(
            event_data("id: 3\ndata: {\"a\":1}\n\n").as_deref(),
            Some("{\"a\":1}")
        );
        assert_eq!(event_data("data:x\ndata: y\n").as_deref(), Some("x\ny"));
        assert_eq!(event_data(": ping\n\n"), None);
        assert_eq!(event_data("data: a\r\ndata: b").as_deref(), Some("a\nb"));
    }

    #[test]
    fn events_end_at_any_blank_line_the_format_allows() {
        assert_eq!(event_end(b"data: x\n\ndata: y\n\n"), Some((7, 2)));
        assert_eq!(event_end(b"data: x\r\n\r\n"), Some((7, 4)));
        assert_eq!(event_end(b"data: x\n"), None);
    }
}
