//! ConverseStream events and their event-stream framing: events and
//! exceptions encoded as `application/vnd.amazon.eventstream` frames the way
//! the real service does, so the real SDK decodes them unchanged.
//!
//! Place in the data path: model -> **event-stream frames** --HTTP body-->
//! resolver (coalescer -> publisher) -> AppSync -> subscriber.
//!
//! Frame layout (all big-endian): total length u32 | headers length u32 |
//! prelude CRC32 | headers | payload | message CRC32; encoded by
//! `aws_smithy_eventstream::frame::write_message_to`. Events carry
//! `:message-type=event`, `:event-type=<name>`, `:content-type=application/json`;
//! exceptions carry `:message-type=exception`, `:exception-type=<name>`.
//! Event shapes follow
//! <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStreamOutput.html>.
//! Like the real service, every payload gets a random-length `"p"` padding field
//! (a guard against length side channels); the SDK ignores it.

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder, write_message_to};
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::{Bytes, BytesMut};
use rand::Rng;
use serde_json::{Value, json};

use super::model::StopReason;

/// The content type of a ConverseStream response body.
pub const EVENT_STREAM_CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// Characters the `"p"` padding is drawn from (as the real service's).
const PADDING_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// A frame could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("event-stream framing: {0}")]
pub struct FrameError(#[from] aws_smithy_eventstream::error::Error);

/// One ConverseStream event (`:message-type=event`).
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// `messageStart` `{"role":"assistant"}`: always first.
    MessageStart,
    /// `contentBlockDelta` `{"contentBlockIndex":N,"delta":{"text":...}}`.
    ContentBlockDelta {
        /// Index of the content block (0 for the text answer).
        index: u32,
        /// The text to append to the answer.
        text: String,
    },
    /// `contentBlockStop` `{"contentBlockIndex":N}`.
    ContentBlockStop {
        /// Index of the finished block.
        index: u32,
    },
    /// `messageStop` `{"stopReason":...}`.
    MessageStop {
        /// Why the model stopped.
        stop_reason: StopReason,
    },
    /// `metadata` `{"usage":{...},"metrics":{"latencyMs":...}}`: always last.
    Metadata {
        /// Tokens of the prompt (system prompt and messages).
        input_tokens: u32,
        /// Tokens of the generated answer.
        output_tokens: u32,
        /// Milliseconds from request to the end of generation.
        latency_ms: u64,
    },
}

impl StreamEvent {
    /// The `:event-type` header value.
    pub fn name(&self) -> &'static str {
        match self {
            Self::MessageStart => "messageStart",
            Self::ContentBlockDelta { .. } => "contentBlockDelta",
            Self::ContentBlockStop { .. } => "contentBlockStop",
            Self::MessageStop { .. } => "messageStop",
            Self::Metadata { .. } => "metadata",
        }
    }

    /// The JSON payload, without padding.
    pub fn payload(&self) -> Value {
        match self {
            Self::MessageStart => json!({ "role": "assistant" }),
            Self::ContentBlockDelta { index, text } => {
                json!({ "contentBlockIndex": index, "delta": { "text": text } })
            }
            Self::ContentBlockStop { index } => json!({ "contentBlockIndex": index }),
            Self::MessageStop { stop_reason } => json!({ "stopReason": stop_reason.as_str() }),
            Self::Metadata {
                input_tokens,
                output_tokens,
                latency_ms,
            } => json!({
                "usage": {
                    "inputTokens": input_tokens,
                    "outputTokens": output_tokens,
                    "totalTokens": input_tokens.saturating_add(*output_tokens),
                },
                "metrics": { "latencyMs": latency_ms },
            }),
        }
    }

    /// Encodes the event as one frame, with a random `"p"` padding field.
    ///
    /// # Errors
    ///
    /// [`FrameError`] when the smithy encoder refuses the message (it cannot
    /// for these small events; the body aborts the connection if it does).
    pub fn encode(&self) -> Result<Bytes, FrameError> {
        let headers = vec![
            string_header(":message-type", "event"),
            string_header(":event-type", self.name()),
            string_header(":content-type", "application/json"),
        ];
        encode_message(headers, padded(self.payload()))
    }
}

/// The mid-stream exceptions ConverseStream defines (`:message-type=exception`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamException {
    /// `internalServerException`.
    InternalServer,
    /// `modelStreamErrorException` (payload adds `originalStatusCode`, `originalMessage`).
    ModelStreamError,
    /// `validationException`.
    Validation,
    /// `throttlingException`.
    Throttling,
    /// `serviceUnavailableException`.
    ServiceUnavailable,
}

impl StreamException {
    /// The `:exception-type` header value.
    pub fn name(self) -> &'static str {
        match self {
            Self::InternalServer => "internalServerException",
            Self::ModelStreamError => "modelStreamErrorException",
            Self::Validation => "validationException",
            Self::Throttling => "throttlingException",
            Self::ServiceUnavailable => "serviceUnavailableException",
        }
    }

    /// Encodes the exception with `{"message": ...}` as one frame.
    ///
    /// # Errors
    ///
    /// [`FrameError`] when the smithy encoder refuses the message.
    pub fn encode(self, message: &str) -> Result<Bytes, FrameError> {
        let mut payload = json!({ "message": message });
        if self == Self::ModelStreamError {
            payload["originalStatusCode"] = json!(500);
            payload["originalMessage"] = json!(message);
        }
        let headers = vec![
            string_header(":message-type", "exception"),
            string_header(":exception-type", self.name()),
            string_header(":content-type", "application/json"),
        ];
        encode_message(headers, payload.to_string().into_bytes())
    }
}

fn string_header(name: &'static str, value: &'static str) -> Header {
    Header::new(name, HeaderValue::String(value.into()))
}

/// Adds the `"p"` field (1 to 40 random alphanumerics) and serialises.
fn padded(mut payload: Value) -> Vec<u8> {
    let mut rng = rand::thread_rng();
    let len = rng.gen_range(1..=40);
    let pad: String = (0..len)
        .map(|_| char::from(PADDING_ALPHABET[rng.gen_range(0..PADDING_ALPHABET.len())]))
        .collect();
    if let Value::Object(map) = &mut payload {
        map.insert("p".into(), Value::String(pad));
    }
    payload.to_string().into_bytes()
}

fn encode_message(headers: Vec<Header>, payload: Vec<u8>) -> Result<Bytes, FrameError> {
    let message = Message::new_from_parts(headers, payload);
    let mut buf = Vec::with_capacity(message.payload().len() + 128);
    write_message_to(&message, &mut buf)?;
    Ok(Bytes::from(buf))
}

/// Decodes every complete frame at the front of `buf`, leaving any partial
/// frame in it. For tests and tools that read a ConverseStream body.
///
/// # Errors
///
/// [`FrameError`] for bytes that are not event-stream frames (a bad prelude
/// or a CRC mismatch).
pub fn decode_frames(
    decoder: &mut MessageFrameDecoder,
    buf: &mut BytesMut,
) -> Result<Vec<Message>, FrameError> {
    let mut out = Vec::new();
    while let DecodedFrame::Complete(message) = decoder.decode_frame(&mut *buf)? {
        out.push(message);
    }
    Ok(out)
}

/// The string value of header `name` of a decoded frame, if present.
pub fn header_str<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| h.value().as_string().ok())
        .map(|s| s.as_str())
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frame: &Bytes) -> Message {
        let mut decoder = MessageFrameDecoder::new();
        let mut buf = BytesMut::from(&frame[..]);
        let mut messages = decode_frames(&mut decoder, &mut buf).expect("decodes");
        assert!(buf.is_empty(), "frame fully consumed");
        assert_eq!(messages.len(), 1);
        messages.remove(0)
    }

    #[test]
    fn events_round_trip_through_the_smithy_decoder() {
        let events = [
            StreamEvent::MessageStart,
            StreamEvent::ContentBlockDelta {
                index: 0,
                text: "héllo \"wörld\"\n".into(),
            },
            StreamEvent::ContentBlockStop { index: 0 },
            StreamEvent::MessageStop {
                stop_reason: StopReason::MaxTokens,
            },
            StreamEvent::Metadata {
                input_tokens: 7,
                output_tokens: 11,
                latency_ms: 1234,
            },
        ];
        for event in events {
            let frame = event.encode().expect("encodes");
            let message = round_trip(&frame);
            assert_eq!(header_str(&message, ":message-type"), Some("event"));
            assert_eq!(header_str(&message, ":event-type"), Some(event.name()));
            assert_eq!(
                header_str(&message, ":content-type"),
                Some("application/json")
            );
            let mut payload: Value = serde_json::from_slice(message.payload()).expect("json");
            let pad = payload["p"].as_str().expect("padding").to_owned();
            assert!((1..=40).contains(&pad.len()));
            assert!(pad.chars().all(|c| c.is_ascii_alphanumeric()));
            payload.as_object_mut().expect("object").remove("p");
            assert_eq!(payload, event.payload());
        }
    }

    #[test]
    fn metadata_totals_tokens() {
        let payload = StreamEvent::Metadata {
            input_tokens: 3,
            output_tokens: 4,
            latency_ms: 5,
        }
        .payload();
        assert_eq!(payload["usage"]["totalTokens"], 7);
        assert_eq!(payload["metrics"]["latencyMs"], 5);
    }

    #[test]
    fn exceptions_round_trip() {
        let frame = StreamException::ModelStreamError
            .encode("boom")
            .expect("encodes");
        let message = round_trip(&frame);
        assert_eq!(header_str(&message, ":message-type"), Some("exception"));
        assert_eq!(
            header_str(&message, ":exception-type"),
            Some("modelStreamErrorException")
        );
        let payload: Value = serde_json::from_slice(message.payload()).expect("json");
        assert_eq!(payload["message"], "boom");
        assert_eq!(payload["originalStatusCode"], 500);

        let frame = StreamException::Throttling
            .encode("slow down")
            .expect("encodes");
        let message = round_trip(&frame);
        assert_eq!(
            header_str(&message, ":exception-type"),
            Some("throttlingException")
        );
    }

    #[test]
    fn decoder_handles_split_and_concatenated_frames() {
        let mut all = BytesMut::new();
        for i in 0..5 {
            let frame = StreamEvent::ContentBlockDelta {
                index: 0,
                text: format!("part {i} "),
            }
            .encode()
            .expect("encodes");
            all.extend_from_slice(&frame);
        }
        let mut decoder = MessageFrameDecoder::new();
        let mut buf = BytesMut::new();
        let mut texts = Vec::new();
        for chunk in all.chunks(7) {
            buf.extend_from_slice(chunk);
            for m in decode_frames(&mut decoder, &mut buf).expect("decodes") {
                let v: Value = serde_json::from_slice(m.payload()).expect("json");
                texts.push(v["delta"]["text"].as_str().expect("text").to_owned());
            }
        }
        assert_eq!(texts.concat(), "part 0 part 1 part 2 part 3 part 4 ");
    }
}
