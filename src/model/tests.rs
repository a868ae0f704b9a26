//! Unit tests of the model module: event translation, error mapping, reopening.
use super::*;
use aws_sdk_bedrockruntime::error::SdkError;
use aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamError;
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;
use aws_sdk_bedrockruntime::types::error::{
    AccessDeniedException, ModelStreamErrorException, ThrottlingException, ValidationException,
};
use aws_sdk_bedrockruntime::types::{
    ContentBlockDeltaEvent, ConverseStreamMetadataEvent, MessageStartEvent, MessageStopEvent,
    StopReason, TokenUsage, ToolUseBlockDelta,
};

#[test]
fn text_deltas_stop_and_usage_are_translated() {
    let delta = ConverseStreamOutput::ContentBlockDelta(
        ContentBlockDeltaEvent::builder()
            .content_block_index(0)
            .delta(ContentBlockDelta::Text("Hi".into()))
            .build()
            .unwrap(),
    );
    assert_eq!(translate(delta), Some(ModelEvent::Delta("Hi".into())));

    let stop = ConverseStreamOutput::MessageStop(
        MessageStopEvent::builder()
            .stop_reason(StopReason::MaxTokens)
            .build()
            .unwrap(),
    );
    assert_eq!(
        translate(stop),
        Some(ModelEvent::Stop {
            stop_reason: "max_tokens".into()
        })
    );

    let usage = ConverseStreamOutput::Metadata(
        ConverseStreamMetadataEvent::builder()
            .usage(
                TokenUsage::builder()
                    .input_tokens(3)
                    .output_tokens(5)
                    .total_tokens(8)
                    .build()
                    .unwrap(),
            )
            .build(),
    );
    assert_eq!(
        translate(usage),
        Some(ModelEvent::Usage {
            input_tokens: 3,
            output_tokens: 5,
            total_tokens: 8
        })
    );
}

#[test]
fn other_events_are_ignored() {
    let start = ConverseStreamOutput::MessageStart(
        MessageStartEvent::builder()
            .role(ConversationRole::Assistant)
            .build()
            .unwrap(),
    );
    assert_eq!(translate(start), None);
    let tool = ConverseStreamOutput::ContentBlockDelta(
        ContentBlockDeltaEvent::builder()
            .content_block_index(1)
            .delta(ContentBlockDelta::ToolUse(
                ToolUseBlockDelta::builder().input("{").build().unwrap(),
            ))
            .build()
            .unwrap(),
    );
    assert_eq!(translate(tool), None);
    let no_usage = ConverseStreamOutput::Metadata(ConverseStreamMetadataEvent::builder().build());
    assert_eq!(translate(no_usage), None);
}

#[test]
fn mid_stream_exceptions_map_to_their_variant() {
    let throttled: SdkError<ConverseStreamOutputError, ()> = SdkError::service_error(
        ConverseStreamOutputError::ThrottlingException(
            ThrottlingException::builder().message("slow down").build(),
        ),
        (),
    );
    let e = mid_stream_error(throttled);
    assert!(e.is_mid_stream());
    assert_eq!(e.kind().error_type(), "ThrottlingException");
    assert!(e.retryable());
    assert!(e.to_string().contains("slow down"));

    let model: SdkError<ConverseStreamOutputError, ()> = SdkError::service_error(
        ConverseStreamOutputError::ModelStreamErrorException(
            ModelStreamErrorException::builder()
                .message("boom")
                .original_status_code(500)
                .build(),
        ),
        (),
    );
    let e = mid_stream_error(model);
    assert_eq!(e.kind().error_type(), "ModelStreamError");
    assert!(e.retryable());

    let invalid: SdkError<ConverseStreamOutputError, ()> = SdkError::service_error(
        ConverseStreamOutputError::ValidationException(
            ValidationException::builder().message("bad").build(),
        ),
        (),
    );
    let e = mid_stream_error(invalid);
    assert_eq!(e.kind().error_type(), "ValidationException");
    assert!(!e.retryable());

    let cut: SdkError<ConverseStreamOutputError, ()> =
        SdkError::response_error("unexpected end of stream", ());
    let e = mid_stream_error(cut);
    assert_eq!(e.kind(), ErrorKind::Truncated);
    assert_eq!(e.kind().error_type(), "StreamTruncated");
    assert!(e.retryable());
}

#[test]
fn before_stream_errors_map_to_their_variant() {
    let denied: SdkError<ConverseStreamError, ()> = SdkError::service_error(
        ConverseStreamError::AccessDeniedException(
            AccessDeniedException::builder().message("no").build(),
        ),
        (),
    );
    let e = before_stream_error(denied);
    assert!(!e.is_mid_stream());
    assert_eq!(e.kind().error_type(), "AccessDeniedException");
    assert!(!e.retryable());

    let throttled: SdkError<ConverseStreamError, ()> = SdkError::service_error(
        ConverseStreamError::ThrottlingException(ThrottlingException::builder().build()),
        (),
    );
    assert_eq!(before_stream_error(throttled).kind(), ErrorKind::Throttling);

    let unknown: SdkError<ConverseStreamError, ()> =
        SdkError::service_error(ConverseStreamError::unhandled("weird"), ());
    assert_eq!(
        before_stream_error(unknown).kind().error_type(),
        "InternalError"
    );

    let built: SdkError<ConverseStreamError, ()> = SdkError::construction_failure("no region");
    let e = before_stream_error(built);
    assert_eq!(e.kind(), ErrorKind::Other);
    assert!(!e.retryable());
}

#[test]
fn only_retryable_errors_before_the_first_event_reopen_the_stream() {
    let mid = |kind| ModelError::MidStream {
        kind,
        detail: String::new(),
    };
    let p = REOPEN_RETRY;
    assert!(should_reopen(&mid(ErrorKind::Throttling), 1, &p));
    assert!(should_reopen(&mid(ErrorKind::ServiceUnavailable), 2, &p));
    assert!(
        !should_reopen(&mid(ErrorKind::Throttling), 3, &p),
        "attempts used up"
    );
    assert!(
        !should_reopen(&mid(ErrorKind::Validation), 1, &p),
        "not retryable"
    );
    let before = ModelError::BeforeStream {
        kind: ErrorKind::Throttling,
        detail: String::new(),
    };
    assert!(!should_reopen(&before, 1, &p), "the SDK already retried it");
}

#[test]
fn the_sdk_retry_is_standard_with_four_attempts() {
    let c = sdk_retry_config();
    assert_eq!(c.max_attempts(), 4);
    assert_eq!(c.mode(), aws_config::retry::RetryMode::Standard);
}

#[test]
fn codes_map_to_kinds() {
    assert_eq!(
        ErrorKind::from_code("ThrottlingException:http://internal"),
        ErrorKind::Throttling
    );
    assert_eq!(
        ErrorKind::from_code("serviceUnavailableException"),
        ErrorKind::ServiceUnavailable
    );
    assert_eq!(ErrorKind::from_code("Nope"), ErrorKind::Other);
}
