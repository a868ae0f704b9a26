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
//!   connect, subscribe, keep-alive, stop, with Cognito, IAM or API key auth;
//!   [`RealtimeSocket`] is the same handshake on a socket its owner reads
//!   frame by frame.
//! - [`event_stream`]: the same last hop over a Lambda function URL: a
//!   prompt POSTed with the user's token, its chunks read back as
//!   Server-Sent Events.
//! - [`websocket_api`]: the same last hop over an API Gateway WebSocket
//!   API: a connection opened with the user's token, `sendPrompt` and
//!   `cancelTurn` messages out, chunks in.
//! - [`assembler`]: the last hop, chunks in `seq` order, repeats dropped, done
//!   at the terminal chunk; it tells the `afterSeq` to recover from and
//!   whether a gap is pending.
//!
//! Beside the path, `client --query--> AppSync --> the conversations table`:
//!
//! - [`query`]: a signed-in user's paged query over HTTP (token, `nextToken`
//!   followed to the end, AppSync's first error as [`QueryError`]).
//! - [`history`]: what a conversation has been, `listConversations` and
//!   `listMessages`.
//! - [`recovery`]: `turnChunks`, the chunks a subscriber missed, to push into
//!   its [`TurnAssembler`].

pub mod assembler;
pub mod chunk;
pub mod documents;
pub mod endpoint;
pub mod event_stream;
pub mod history;
pub mod mutation;
pub mod query;
pub mod realtime;
pub mod recovery;
pub mod sigv4;
pub mod websocket_api;

pub use assembler::TurnAssembler;
pub use chunk::{Chunk, ChunkError, Usage, chunk_from_payload};
pub use documents::{
    CANCEL_TURN, LIST_CONVERSATIONS, LIST_MESSAGES, ON_CANCEL, ON_CHUNK, PUBLISH_CHUNK,
    SEND_PROMPT, TURN_CHUNKS,
};
pub use endpoint::realtime_url_for;
pub use event_stream::{ChunkEvents, EventStreamError, post_prompt};
/// A conversation's stored messages and the caller's conversations, read back
/// (`listMessages`, `listConversations`), every page of them.
pub use history::{Conversation, Message, list_conversations, list_messages};
pub use mutation::{MutationError, cancel_turn, send_prompt, send_prompt_variables};
/// Why a query failed, with AppSync's first error (`errorType`, `message`).
pub use query::{GraphQlError, QueryError};
pub use realtime::{
    HeaderTransport, RealtimeAuth, RealtimeClient, RealtimeError, RealtimeSocket, Subscription,
};
/// The stored chunks of a turn after a `seq`, for a subscriber that missed some.
pub use recovery::turn_chunks;
pub use sigv4::{CredentialsCache, CredentialsError, SignError, sign_graphql_post, sign_headers};
pub use websocket_api::{ServerMessage, WebSocketApiClient, WebSocketApiError};
