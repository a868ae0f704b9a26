//! Place in the data path: the bounds every step of "event -> model ->
//! coalescer -> chunk" keeps, defined once (the defaults within them are
//! configuration, in `config`). The `sendPrompt` JS resolver in
//! `infra/resolvers/` checks the same input limits before the Lambda runs; a
//! test reads its constants and checks them equal to these.

use std::ops::RangeInclusive;

/// Longest `conversationId` / `turnId`, in characters (all ASCII:
/// `A-Z a-z 0-9 - _ . :`).
pub(crate) const MAX_ID_CHARS: usize = 128;

/// Longest prompt, in characters (Unicode scalar values).
pub(crate) const MAX_PROMPT_CHARS: usize = 32_000;

/// Longest system prompt, in characters (Unicode scalar values).
pub(crate) const MAX_SYSTEM_CHARS: usize = 32_000;

/// Longest model id or model ARN, in characters.
pub(crate) const MAX_MODEL_ID_CHARS: usize = 2048;

/// Longest owner (`sub`) that can go into chunks and subscription filters, in
/// UTF-8 bytes.
pub(crate) const MAX_OWNER_BYTES: usize = 256;

/// Highest `maxTokens` a prompt or `DEFAULT_MAX_TOKENS` may ask for.
pub(crate) const MAX_TOKENS: i32 = 8192;

/// `temperature` bounds (Bedrock's `inferenceConfig.temperature`).
pub(crate) const TEMPERATURE_RANGE: RangeInclusive<f64> = 0.0..=1.0;

/// Smallest usable chunk bound, in UTF-8 bytes: one character, so a chunk
/// always makes progress.
pub(crate) const MIN_CHUNK_BYTES: usize = 4;

/// Largest chunk bound, in UTF-8 bytes. AppSync drops a subscription message
/// over 240 KB (245,760 bytes) silently, telling nobody
/// (<https://docs.aws.amazon.com/general/latest/gr/appsync.html>), and the
/// message carries the chunk's text JSON-escaped: a control character is
/// written `\u00XX`, six bytes for one (RFC 8259, section 7). So the bound is
/// a sixth of the limit, less room for the rest of the message: 40,000 bytes
/// of the worst text escape to 240,000 bytes, leaving 5,760 for the ids, the
/// owner, the error and the message's envelope, which need under 4,500 even
/// at their longest and themselves escaped (a test builds that message). The
/// `per-delta` strategy splits at this bound.
pub(crate) const MAX_CHUNK_BYTES: usize = 40_000;

/// Bounds of the `MAX_CHUNK_BYTES` setting, in UTF-8 bytes.
pub(crate) const CHUNK_BYTES_RANGE: RangeInclusive<usize> = MIN_CHUNK_BYTES..=MAX_CHUNK_BYTES;

/// Bounds of the `MAX_HOLD_MS` setting, in milliseconds.
pub(crate) const MAX_HOLD_MS_RANGE: RangeInclusive<u64> = 1..=60_000;

#[cfg(test)]
mod tests;
