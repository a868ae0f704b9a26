//! Property tests of the event-stream framing: frames split anywhere decode
//! to the events sent, in order, and arbitrary or damaged bytes end in a
//! [`FrameError`] or a wait for more bytes, never a panic. Cases:
//! `PROPTEST_CASES` (proptest's default 256).

use aws_smithy_eventstream::frame::MessageFrameDecoder;
use bytes::BytesMut;
use proptest::prelude::*;

use super::{StreamEvent, decode_frames, header_str};

fn event() -> impl Strategy<Value = StreamEvent> {
    prop_oneof![
        Just(StreamEvent::MessageStart),
        (any::<u32>(), ".{0,64}")
            .prop_map(|(index, text)| StreamEvent::ContentBlockDelta { index, text }),
        any::<u32>().prop_map(|index| StreamEvent::ContentBlockStop { index }),
        (any::<u32>(), any::<u32>(), any::<u64>()).prop_map(
            |(input_tokens, output_tokens, latency_ms)| {
                StreamEvent::Metadata {
                    input_tokens,
                    output_tokens,
                    latency_ms,
                }
            }
        ),
    ]
}

/// Feeds `bytes` to one decoder in pieces of the given sizes (cycled), and
/// returns the messages' event types and payloads, or the first error.
fn feed(bytes: &[u8], sizes: &[usize]) -> Result<Vec<(String, Vec<u8>)>, super::FrameError> {
    let mut decoder = MessageFrameDecoder::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let size = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        let (piece, tail) = rest.split_at(size);
        rest = tail;
        buf.extend_from_slice(piece);
        for message in decode_frames(&mut decoder, &mut buf)? {
            let name = header_str(&message, ":event-type")
                .unwrap_or_default()
                .to_owned();
            out.push((name, message.payload().to_vec()));
        }
    }
    Ok(out)
}

proptest! {
    #[test]
    fn frames_split_anywhere_decode_to_the_events_in_order(
        events in proptest::collection::vec(event(), 1..12),
        sizes in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let mut stream = Vec::new();
        for event in &events {
            stream.extend_from_slice(&event.encode().map_err(|e| TestCaseError::fail(e.to_string()))?);
        }
        let decoded = feed(&stream, &sizes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let expected: Vec<(String, Vec<u8>)> = events
            .iter()
            .map(|e| (e.name().to_owned(), serde_json::to_vec(&e.payload()).unwrap_or_default()))
            .collect();
        prop_assert_eq!(decoded.len(), expected.len());
        for ((name, payload), (want_name, want_payload)) in decoded.iter().zip(&expected) {
            prop_assert_eq!(name, want_name);
            let mut got: serde_json::Value = serde_json::from_slice(payload).map_err(|e| TestCaseError::fail(e.to_string()))?;
            // Bedrock pads every event with a random `p` (the stand-in too).
            let padding = got.as_object_mut().and_then(|o| o.remove("p"));
            prop_assert!(padding.is_some_and(|p| p.is_string()), "no padding");
            let want: serde_json::Value = serde_json::from_slice(want_payload).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn arbitrary_bytes_are_an_error_or_a_wait(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        sizes in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let _ = feed(&bytes, &sizes);
    }

    #[test]
    fn a_damaged_frame_is_never_taken_for_another(
        event in event(),
        position in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut frame = event.encode().map_err(|e| TestCaseError::fail(e.to_string()))?.to_vec();
        let at = position.index(frame.len());
        frame[at] ^= flip;
        // Both CRCs cover every byte: a changed byte is an error, or (a
        // changed length) a wait for bytes that never come.
        match feed(&frame, &[frame.len()]) {
            Err(_) => {}
            Ok(messages) => prop_assert!(messages.is_empty(), "a damaged frame decoded: {messages:?}"),
        }
    }
}
