//! The client's side of AWS AppSync for streamed answers: everything that
//! speaks to AppSync from outside it, shared by the resolver Lambda, the
//! terminal client (`appsync-chat`), the devstack's `chat` and `bench`, and the
//! tests. It depends on neither Lambda nor Bedrock, so a client never pulls in
//! the resolver.
//!
//! # Layout
//!
//! Along the data path,
//! `client --sendPrompt--> AppSync --> resolver --publishChunk--> AppSync --onChunk--> client`:
//!
//! - [`mutation`]: the first hop. `sendPrompt` and `cancelTurn` over HTTP with
//!   a Cognito user pool token.
//! - [`documents`]: the GraphQL documents of every hop, checked against
//!   `schema.graphql` at compile time.
//! - [`sigv4`]: how the resolver signs `publishChunk` and IAM real-time
//!   connections (service `appsync`), and the credentials cache it signs with.
//! - [`chunk`]: the one chunk shape, generated from the schema, that the
//!   resolver publishes and every client receives.
//! - [`endpoint`]: the real-time URL of an API, from its GraphQL URL.
//! - [`realtime`]: AppSync's real-time WebSocket protocol (`graphql-ws`):
//!   connect, subscribe, keep-alive, stop, with Cognito, IAM or API key auth.
//! - [`assembler`]: the last hop, chunks in `seq` order, repeats dropped, done
//!   at the terminal chunk.

pub mod assembler;
pub mod chunk;
pub mod documents;
pub mod endpoint;
pub mod mutation;
pub mod realtime;
pub mod sigv4;

pub use assembler::TurnAssembler;
pub use chunk::{Chunk, ChunkError, Usage, chunk_from_payload};
pub use documents::{CANCEL_TURN, ON_CANCEL, ON_CHUNK, PUBLISH_CHUNK, SEND_PROMPT};
pub use endpoint::realtime_url_for;
pub use mutation::{MutationError, cancel_turn, send_prompt, send_prompt_variables};
pub use realtime::{HeaderTransport, RealtimeAuth, RealtimeClient, RealtimeError, Subscription};
pub use sigv4::{CredentialsCache, CredentialsError, SignError, sign_graphql_post, sign_headers};
