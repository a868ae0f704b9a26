//! Parsing and validation of the ConverseStream request body: the restJson1
//! body the SDK sends, turned into a validated [`GenerationRequest`].
//!
//! Place in the data path: resolver --ConverseStream request--> **Bedrock
//! (request body)** -> model -> event-stream body -> resolver.
//!
//! Follows <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html>:
//! `messages` (required), `system`, `inferenceConfig{maxTokens,temperature,topP,stopSequences}`.
//! Unknown keys (`toolConfig`, `guardrailConfig`, `additionalModelRequestFields`,
//! `requestMetadata`, ...) and non-text content blocks are accepted and ignored.
//! Every failure is a [`RequestError`], which the endpoint answers with HTTP 400
//! `ValidationException`.

use serde::Deserialize;

use super::model::{ChatMessage, GenerationRequest, Role};

/// Why a ConverseStream body was rejected (HTTP 400 `ValidationException`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body is not JSON of the expected shape (serde's description).
    #[error("malformed request body: {0}")]
    Malformed(String),
    /// The body is well-formed but breaks a constraint of the API.
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest {
    messages: Option<Vec<WireMessage>>,
    #[serde(default)]
    system: Vec<WireBlock>,
    #[serde(default)]
    inference_config: Option<WireInferenceConfig>,
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    role: WireRole,
    content: Vec<WireBlock>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum WireRole {
    User,
    Assistant,
}

/// A content block: only `text` matters here; image, document, toolUse,
/// toolResult, cachePoint, guardContent ... blocks deserialize with `text: None`.
#[derive(Debug, Deserialize)]
struct WireBlock {
    text: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireInferenceConfig {
    max_tokens: Option<i64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    #[serde(default)]
    stop_sequences: Vec<String>,
}

/// Parses and validates a ConverseStream JSON body.
///
/// # Errors
///
/// [`RequestError::Malformed`] for JSON that does not fit the shape,
/// [`RequestError::Invalid`] for an empty conversation, a first message that is
/// not from the user, a blank text block, a message without text, or
/// `maxTokens < 1`, `temperature`/`topP` outside `[0, 1]`.
pub fn parse_converse_stream(body: &[u8]) -> Result<GenerationRequest, RequestError> {
    let wire: WireRequest =
        serde_json::from_slice(body).map_err(|e| RequestError::Malformed(e.to_string()))?;

    let Some(wire_messages) = wire.messages else {
        return Err(RequestError::Invalid(
            "1 validation error detected: Value null at 'messages' failed to satisfy constraint: Member must not be null".into(),
        ));
    };
    if wire_messages.is_empty() {
        return Err(RequestError::Invalid(
            "A conversation must start with a user message. Try again with a conversation that starts with a user message.".into(),
        ));
    }

    let mut messages = Vec::with_capacity(wire_messages.len());
    for (i, m) in wire_messages.into_iter().enumerate() {
        let role = match m.role {
            WireRole::User => Role::User,
            WireRole::Assistant => Role::Assistant,
        };
        if i == 0 && role != Role::User {
            return Err(RequestError::Invalid(
                "A conversation must start with a user message. Try again with a conversation that starts with a user message.".into(),
            ));
        }
        if messages
            .last()
            .is_some_and(|m: &ChatMessage| m.role == role)
        {
            return Err(RequestError::Invalid(
                "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.".into(),
            ));
        }
        let mut texts = Vec::new();
        for (j, block) in m.content.into_iter().enumerate() {
            if let Some(text) = block.text {
                if text.trim().is_empty() {
                    return Err(RequestError::Invalid(format!(
                        "The text field in the ContentBlock object at messages.{i}.content.{j} is blank. Add text to the text field, and try again."
                    )));
                }
                texts.push(text);
            }
        }
        if texts.is_empty() {
            return Err(RequestError::Invalid(format!(
                "The content field in the Message object at messages.{i} has no text block; this stand-in only reads text content."
            )));
        }
        messages.push(ChatMessage {
            role,
            text: texts.join("\n"),
        });
    }

    let system = wire
        .system
        .into_iter()
        .filter_map(|b| b.text)
        .filter(|t| !t.trim().is_empty())
        .collect();

    let cfg = wire.inference_config.unwrap_or_default();
    let max_tokens = match cfg.max_tokens {
        None => None,
        Some(n) if n >= 1 => Some(u32::try_from(n).unwrap_or(u32::MAX)),
        Some(n) => {
            return Err(RequestError::Invalid(format!(
                "1 validation error detected: Value '{n}' at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1"
            )));
        }
    };
    let temperature = unit_interval("temperature", cfg.temperature)?;
    let top_p = unit_interval("topP", cfg.top_p)?;
    let stop_sequences = cfg
        .stop_sequences
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();

    Ok(GenerationRequest {
        system,
        messages,
        max_tokens,
        temperature,
        top_p,
        stop_sequences,
    })
}

fn unit_interval(name: &str, value: Option<f64>) -> Result<Option<f32>, RequestError> {
    match value {
        None => Ok(None),
        Some(v) if (0.0..=1.0).contains(&v) => Ok(Some(v as f32)),
        Some(v) => Err(RequestError::Invalid(format!(
            "1 validation error detected: Value '{v}' at 'inferenceConfig.{name}' failed to satisfy constraint: Member must have value between 0 and 1"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_sdk_shape_and_ignores_unknown_keys() {
        let body = br#"{
            "messages": [
                {"role": "user", "content": [{"text": "Hello"}, {"image": {"format": "png"}}, {"text": "there"}]},
                {"role": "assistant", "content": [{"text": "Hi"}]},
                {"role": "user", "content": [{"text": "Tell me more"}]}
            ],
            "system": [{"text": "Be brief."}, {"cachePoint": {"type": "default"}}],
            "inferenceConfig": {"maxTokens": 64, "temperature": 0.5, "topP": 0.9, "stopSequences": ["\n\n", ""]},
            "toolConfig": {"tools": []},
            "additionalModelRequestFields": {"top_k": 5}
        }"#;
        let req = parse_converse_stream(body).expect("valid body");
        assert_eq!(req.messages.len(), 3);
        assert_eq!(req.messages[0].text, "Hello\nthere");
        assert_eq!(req.messages[1].role, Role::Assistant);
        assert_eq!(req.system, vec!["Be brief.".to_string()]);
        assert_eq!(req.max_tokens, Some(64));
        assert_eq!(req.temperature, Some(0.5));
        assert_eq!(req.top_p, Some(0.9));
        assert_eq!(req.stop_sequences, vec!["\n\n".to_string()]);
        assert_eq!(req.last_user_text(), "Tell me more");
    }

    #[test]
    fn rejects_bad_bodies() {
        let cases: &[&[u8]] = &[
            b"not json",
            b"{}",
            br#"{"messages": []}"#,
            br#"{"messages": [{"role": "bot", "content": [{"text": "x"}]}]}"#,
            br#"{"messages": [{"role": "assistant", "content": [{"text": "x"}]}]}"#,
            br#"{"messages": [{"role": "user", "content": [{"text": "  "}]}]}"#,
            br#"{"messages": [{"role": "user", "content": [{"text": "a"}]}, {"role": "user", "content": [{"text": "b"}]}]}"#,
            br#"{"messages": [{"role": "user", "content": "hello"}]}"#,
            br#"{"messages": [{"role": "user", "content": [{"text": "x"}]}], "inferenceConfig": {"maxTokens": 0}}"#,
            br#"{"messages": [{"role": "user", "content": [{"text": "x"}]}], "inferenceConfig": {"temperature": 1.5}}"#,
            br#"{"messages": [{"role": "user", "content": [{"text": "x"}]}], "inferenceConfig": {"topP": -0.1}}"#,
        ];
        for body in cases {
            assert!(
                parse_converse_stream(body).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
