//! A stand-in for Amazon Bedrock Runtime's `ConverseStream`, close enough on
//! the wire that the real `aws-sdk-bedrockruntime` client talks to it unchanged.
//!
//! Place in the data path: resolver Lambda --ConverseStream--> **Bedrock
//! (model)** --deltas--> resolver (coalescer -> publisher) -> AppSync ->
//! subscriber.
//!
//! Follows <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html>:
//! `POST /model/{modelId}/converse-stream` with a restJson1 body, answered by
//! HTTP 200 `application/vnd.amazon.eventstream` frames (see [`eventstream`]),
//! or by an HTTP error with `x-amzn-ErrorType` and `{"message": ...}` (the
//! header is what the SDK reads the error code from).
//!
//! Models (the `{modelId}`, see [`ModelId`]): `scripted` ([`scripted`],
//! deterministic text, no weights) and `smollm2` ([`smollm2`],
//! SmolLM2-135M-Instruct on the CPU). Closing the response body stops the
//! model. SigV4 is checked by the caller, as a layer around [`router`].
//!
//! A request meets, in order: the route and its handler ([`router`]); the
//! model id ([`ModelId::resolve`]); the body ([`request`]); the state, with
//! its injected fault ([`BedrockState`], [`BedrockConfig`]); a model
//! ([`scripted`], [`smollm2`] with its [`weights`]); and the response body
//! ([`stream`], framed by [`eventstream`]). A refusal before streaming is a
//! [`BedrockError`].

pub mod eventstream;
pub mod model;
pub mod request;
pub mod scripted;
pub mod smollm2;
pub mod stream;
pub mod weights;

mod endpoint;
mod error;
mod state;

pub use endpoint::router;
pub use error::BedrockError;
pub use eventstream::{EVENT_STREAM_CONTENT_TYPE, StreamEvent, StreamException};
pub use model::{
    ChatMessage, Generation, GenerationRequest, ModelId, ModelOutput, Role, StopReason,
};
pub use request::RequestError;
pub use scripted::{ESCAPES_MARKER, scripted_answer};
pub use smollm2::SmolLm2Error;
pub use state::{BedrockConfig, BedrockState};
pub use stream::Fault;
pub use weights::WeightsError;
