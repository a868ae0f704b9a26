//! The ConverseStream response body: a running generation turned into
//! event-stream frames in the service's order, with stop sequences, real usage
//! and latency, and injected faults. Dropping the body drops the model's
//! receiver, which stops the model.
//!
//! Place in the data path: model --[`ModelOutput`]--> **event-stream body**
//! --HTTP--> resolver (coalescer -> publisher) -> AppSync -> subscriber.
//!
//! Order: `messageStart`, `contentBlockDelta`* (index 0), `contentBlockStop`,
//! `messageStop`, `metadata`; or, on failure, an exception frame after which
//! the body ends
//! (<https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStreamOutput.html>).
//! `stopSequences` are applied here, for every model: text is held back while
//! it could be the start of a stop sequence, and a match ends the turn with
//! `stop_sequence` (the model is dropped, so it stops).

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;

use super::eventstream::{FrameError, StreamEvent, StreamException};
use super::model::{Generation, ModelOutput, StopReason};

/// Pause before an aborting `Err` item, so earlier frames reach the client.
const ABORT_FLUSH_DELAY: Duration = Duration::from_millis(50);

/// A fault to inject into ConverseStream responses (for testing the resolver's
/// error handling). Set with [`super::BedrockState::set_fault`] or
/// [`super::BedrockConfig::fault`]; applies to every request while set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Refuse before streaming: HTTP `status` with `x-amzn-ErrorType: <code>`
    /// (e.g. 429 `ThrottlingException`, which the SDK retries).
    Reject {
        /// The HTTP status to answer with, e.g. 429 or 503.
        status: u16,
        /// Error code, e.g. `ThrottlingException`, `ServiceUnavailableException`.
        code: String,
        /// The `message` of the JSON body.
        message: String,
    },
    /// Stream `after_deltas` deltas, then send this exception frame and end.
    Exception {
        /// Deltas sent before the exception.
        after_deltas: u32,
        /// The exception frame to send, e.g. `modelStreamErrorException`.
        exception: StreamException,
        /// Its `message`.
        message: String,
    },
    /// Stream `after_deltas` deltas, then the first half of the next frame,
    /// then end the body cleanly: the event stream stops mid-frame (the SDK's
    /// `recv()` fails with `SdkError::ResponseError`, unexpected end of stream).
    Truncate {
        /// Deltas sent before the cut.
        after_deltas: u32,
    },
    /// Stream `after_deltas` deltas, then nothing more, with the connection
    /// held open: a model that hangs. The client's own deadline must end it.
    Stall {
        /// Deltas sent before the stall.
        after_deltas: u32,
    },
    /// Stream `after_deltas` deltas, then abort the connection without ending
    /// the chunked body (a network failure; the SDK's `recv()` fails with
    /// `SdkError::DispatchFailure`, an I/O error from hyper).
    Disconnect {
        /// Deltas sent before the cut.
        after_deltas: u32,
    },
}

/// Holds back text that could be the beginning of a stop sequence.
#[derive(Debug, Default)]
struct StopFilter {
    stops: Vec<String>,
    held: String,
}

impl StopFilter {
    /// Adds `text`; returns what may be emitted now and whether a stop
    /// sequence matched (then nothing after it may be emitted).
    fn push(&mut self, text: &str) -> (String, bool) {
        if self.stops.is_empty() {
            return (text.to_owned(), false);
        }
        self.held.push_str(text);
        if let Some(pos) = self.stops.iter().filter_map(|s| self.held.find(s)).min() {
            let out = self.held[..pos].to_owned();
            self.held.clear();
            return (out, true);
        }
        let keep = self
            .stops
            .iter()
            .map(|s| {
                (1..s.len())
                    .rev()
                    .filter(|k| s.is_char_boundary(*k))
                    .find(|k| self.held.ends_with(&s[..*k]))
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0);
        let split = self.held.len() - keep;
        let out = self.held[..split].to_owned();
        self.held.drain(..split);
        (out, false)
    }

    /// The held-back text, at the end of the turn.
    fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// The state of one response body.
struct Body {
    events: Option<tokio::sync::mpsc::Receiver<ModelOutput>>,
    pending: VecDeque<io::Result<Bytes>>,
    started: Instant,
    input_tokens: u32,
    delta_tokens: u32,
    deltas_sent: u32,
    stops: StopFilter,
    fault: Option<Fault>,
    /// A `Stall` fault fired: send nothing more, keep the connection open.
    stalled: bool,
}

fn frame_io(result: Result<Bytes, FrameError>) -> io::Result<Bytes> {
    result.map_err(io::Error::other)
}

impl Body {
    fn push_event(&mut self, event: StreamEvent) {
        self.pending.push_back(frame_io(event.encode()));
    }

    fn push_delta(&mut self, text: String) {
        if text.is_empty() || self.events.is_none() {
            return;
        }
        match &self.fault {
            Some(Fault::Exception {
                after_deltas,
                exception,
                message,
            }) if self.deltas_sent >= *after_deltas => {
                self.pending.push_back(frame_io(exception.encode(message)));
                self.events = None;
                return;
            }
            Some(Fault::Truncate { after_deltas }) if self.deltas_sent >= *after_deltas => {
                let frame = StreamEvent::ContentBlockDelta { index: 0, text }.encode();
                self.pending
                    .push_back(frame_io(frame).map(|f| f.slice(..f.len() / 2)));
                self.events = None;
                return;
            }
            Some(Fault::Stall { after_deltas }) if self.deltas_sent >= *after_deltas => {
                self.stalled = true;
                self.events = None;
                return;
            }
            Some(Fault::Disconnect { after_deltas }) if self.deltas_sent >= *after_deltas => {
                self.pending.push_back(Err(io::Error::other(
                    "devstack fault injection: connection cut mid-stream",
                )));
                self.events = None;
                return;
            }
            _ => {}
        }
        self.deltas_sent += 1;
        self.push_event(StreamEvent::ContentBlockDelta { index: 0, text });
    }

    fn finish(&mut self, stop: StopReason, output_tokens: u32) {
        if self.events.is_none() {
            return;
        }
        self.push_event(StreamEvent::ContentBlockStop { index: 0 });
        self.push_event(StreamEvent::MessageStop { stop_reason: stop });
        self.push_event(StreamEvent::Metadata {
            input_tokens: self.input_tokens,
            output_tokens,
            latency_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
        self.events = None;
    }

    fn fail(&mut self, exception: StreamException, message: &str) {
        self.pending.push_back(frame_io(exception.encode(message)));
        self.events = None;
    }

    fn on_event(&mut self, event: Option<ModelOutput>) {
        match event {
            Some(ModelOutput::Delta { text, tokens }) => {
                self.delta_tokens = self.delta_tokens.saturating_add(tokens);
                let (out, matched) = self.stops.push(&text);
                self.push_delta(out);
                if matched {
                    let tokens = self.delta_tokens;
                    self.finish(StopReason::StopSequence, tokens);
                }
            }
            Some(ModelOutput::Done {
                stop,
                output_tokens,
            }) => {
                let rest = self.stops.flush();
                self.push_delta(rest);
                self.finish(stop, output_tokens.max(self.delta_tokens));
            }
            Some(ModelOutput::Failed { message }) => {
                self.fail(StreamException::ModelStreamError, &message);
            }
            None => self.fail(
                StreamException::InternalServer,
                "the model stopped without finishing its answer",
            ),
        }
    }
}

/// The response body for a started generation: a stream of encoded frames.
///
/// `started` is when the request arrived (for `latencyMs`). A frame that
/// cannot be encoded, or a `Disconnect` fault, yields an `Err`, which makes
/// the server abort the connection.
pub(crate) fn body(
    generation: Generation,
    started: Instant,
    stop_sequences: Vec<String>,
    fault: Option<Fault>,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let mut state = Body {
        events: Some(generation.events),
        pending: VecDeque::new(),
        started,
        input_tokens: generation.input_tokens,
        delta_tokens: 0,
        deltas_sent: 0,
        stops: StopFilter {
            stops: stop_sequences,
            held: String::new(),
        },
        fault: fault.filter(|f| !matches!(f, Fault::Reject { .. })),
        stalled: false,
    };
    state.push_event(StreamEvent::MessageStart);
    futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(item) = state.pending.pop_front() {
                if item.is_err() {
                    // Let the server flush the frames already written, so the
                    // client sees them before the connection is cut.
                    tokio::time::sleep(ABORT_FLUSH_DELAY).await;
                }
                return Some((item, state));
            }
            let event = match state.events.as_mut() {
                Some(rx) => rx.recv().await,
                // Hung until the client gives up and the body is dropped.
                None if state.stalled => std::future::pending().await,
                None => return None,
            };
            state.on_event(event);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::eventstream::{decode_frames, header_str};
    use super::*;
    use aws_smithy_eventstream::frame::MessageFrameDecoder;
    use bytes::BytesMut;
    use futures_util::StreamExt;
    use serde_json::Value;

    fn filter(stops: &[&str]) -> StopFilter {
        StopFilter {
            stops: stops.iter().map(|s| s.to_string()).collect(),
            held: String::new(),
        }
    }

    #[test]
    fn stop_filter_holds_partial_matches() {
        let mut f = filter(&["END", "\n\n"]);
        assert_eq!(f.push("Hello E"), ("Hello ".into(), false));
        assert_eq!(f.push("N"), (String::new(), false));
        assert_eq!(f.push("X and\n"), ("ENX and".into(), false));
        assert_eq!(f.push("\nmore"), (String::new(), true));

        let mut f = filter(&["END"]);
        assert_eq!(f.push("abc EN"), ("abc ".into(), false));
        assert_eq!(f.flush(), "EN");

        let mut f = filter(&["é!"]);
        assert_eq!(f.push("café"), ("caf".into(), false));
        assert_eq!(f.push("s"), ("és".into(), false));
    }

    #[tokio::test]
    async fn a_stall_keeps_the_body_open_after_the_given_deltas() {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        for word in ["a", " b", " c"] {
            tx.send(ModelOutput::Delta {
                text: word.into(),
                tokens: 1,
            })
            .await
            .expect("send");
        }
        let generation = Generation {
            input_tokens: 1,
            events: rx,
        };
        let fault = Some(Fault::Stall { after_deltas: 2 });
        let mut stream = Box::pin(body(generation, Instant::now(), Vec::new(), fault));
        for _ in 0..3 {
            // messageStart and two deltas
            let frame = tokio::time::timeout(Duration::from_secs(1), stream.next()).await;
            assert!(matches!(frame, Ok(Some(Ok(_)))));
        }
        let hung = tokio::time::timeout(Duration::from_millis(200), stream.next()).await;
        assert!(
            hung.is_err(),
            "nothing after the stall, and no end of stream"
        );
    }

    /// Runs a fake model's events through the body and decodes the frames.
    async fn run(
        events: Vec<ModelOutput>,
        stops: &[&str],
        fault: Option<Fault>,
    ) -> Vec<(String, Value)> {
        let (frames, leftover) = run_inner(events, stops, fault).await;
        assert_eq!(leftover, 0, "no partial frame");
        frames
    }

    async fn run_raw(
        events: Vec<ModelOutput>,
        fault: Option<Fault>,
    ) -> (Vec<(String, Value)>, usize) {
        run_inner(events, &[], fault).await
    }

    /// The decoded frames (and `<abort>` for an error item), plus the bytes
    /// left over after the last complete frame.
    async fn run_inner(
        events: Vec<ModelOutput>,
        stops: &[&str],
        fault: Option<Fault>,
    ) -> (Vec<(String, Value)>, usize) {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        for e in events {
            tx.send(e).await.expect("send");
        }
        drop(tx);
        let generation = Generation {
            input_tokens: 5,
            events: rx,
        };
        let stream = body(
            generation,
            Instant::now(),
            stops.iter().map(|s| s.to_string()).collect(),
            fault,
        );
        let chunks: Vec<io::Result<Bytes>> = stream.collect().await;
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            match chunk {
                Ok(bytes) => buf.extend_from_slice(&bytes),
                Err(_) => out.push(("<abort>".to_string(), Value::Null)),
            }
        }
        let mut decoder = MessageFrameDecoder::new();
        let mut frames = decode_frames(&mut decoder, &mut buf).expect("decode");
        let leftover = buf.len();
        let aborted = !out.is_empty();
        out.clear();
        for m in frames.drain(..) {
            let name = header_str(&m, ":event-type")
                .or_else(|| header_str(&m, ":exception-type"))
                .unwrap_or("?")
                .to_string();
            out.push((name, serde_json::from_slice(m.payload()).expect("json")));
        }
        if aborted {
            out.push(("<abort>".to_string(), Value::Null));
        }
        (out, leftover)
    }

    fn delta(text: &str) -> ModelOutput {
        ModelOutput::Delta {
            text: text.into(),
            tokens: 1,
        }
    }

    fn names(frames: &[(String, Value)]) -> Vec<&str> {
        frames.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[tokio::test]
    async fn events_come_in_service_order_with_usage() {
        let frames = run(
            vec![
                delta("Hello"),
                delta(" world"),
                ModelOutput::Done {
                    stop: StopReason::EndTurn,
                    output_tokens: 2,
                },
            ],
            &[],
            None,
        )
        .await;
        assert_eq!(
            names(&frames),
            [
                "messageStart",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockStop",
                "messageStop",
                "metadata"
            ]
        );
        assert_eq!(frames[0].1["role"], "assistant");
        assert_eq!(frames[2].1["delta"]["text"], " world");
        assert_eq!(frames[4].1["stopReason"], "end_turn");
        assert_eq!(frames[5].1["usage"]["inputTokens"], 5);
        assert_eq!(frames[5].1["usage"]["outputTokens"], 2);
        assert_eq!(frames[5].1["usage"]["totalTokens"], 7);
        assert!(frames[5].1["metrics"]["latencyMs"].is_u64());
    }

    #[tokio::test]
    async fn stop_sequences_cut_the_answer() {
        let frames = run(
            vec![
                delta("one two"),
                delta(" thr"),
                delta("ee four"),
                delta(" five"),
            ],
            &["three"],
            None,
        )
        .await;
        let text: String = frames
            .iter()
            .filter(|(n, _)| n == "contentBlockDelta")
            .filter_map(|(_, v)| v["delta"]["text"].as_str())
            .collect();
        assert_eq!(text, "one two ");
        let stop = frames
            .iter()
            .find(|(n, _)| n == "messageStop")
            .expect("stop");
        assert_eq!(stop.1["stopReason"], "stop_sequence");
        assert_eq!(frames.last().expect("meta").1["usage"]["outputTokens"], 3);
    }

    #[tokio::test]
    async fn failures_become_exception_frames() {
        let frames = run(
            vec![
                delta("a"),
                ModelOutput::Failed {
                    message: "oops".into(),
                },
            ],
            &[],
            None,
        )
        .await;
        assert_eq!(
            names(&frames),
            [
                "messageStart",
                "contentBlockDelta",
                "modelStreamErrorException"
            ]
        );
        assert_eq!(frames[2].1["message"], "oops");

        // A model that vanishes without Done is an internal error.
        let frames = run(vec![delta("a")], &[], None).await;
        assert_eq!(names(&frames).last(), Some(&"internalServerException"));
    }

    #[tokio::test]
    async fn faults_are_injected_after_n_deltas() {
        let events = || {
            vec![
                delta("a"),
                delta("b"),
                delta("c"),
                ModelOutput::Done {
                    stop: StopReason::EndTurn,
                    output_tokens: 3,
                },
            ]
        };
        let frames = run(
            events(),
            &[],
            Some(Fault::Exception {
                after_deltas: 2,
                exception: StreamException::Throttling,
                message: "slow down".into(),
            }),
        )
        .await;
        assert_eq!(
            names(&frames),
            [
                "messageStart",
                "contentBlockDelta",
                "contentBlockDelta",
                "throttlingException"
            ]
        );
        let frames = run(events(), &[], Some(Fault::Disconnect { after_deltas: 1 })).await;
        assert_eq!(
            names(&frames),
            ["messageStart", "contentBlockDelta", "<abort>"]
        );
        let (frames, leftover) = run_raw(events(), Some(Fault::Truncate { after_deltas: 2 })).await;
        assert_eq!(
            names(&frames),
            ["messageStart", "contentBlockDelta", "contentBlockDelta"]
        );
        assert!(leftover > 0, "the body ends inside a frame");
    }
}
