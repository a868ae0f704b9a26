//! Place in the data path: the words every hop speaks. The GraphQL documents
//! that cross AppSync (`publishChunk` from the resolver, `onChunk` to the
//! subscriber, `sendPrompt` and `cancelTurn` from the client, `onCancel` back to
//! the resolver, and the client's queries of the stored conversation:
//! `listConversations`, `listMessages`, `turnChunks`), each checked against
//! `schema.graphql` at compile time by `graphql_client`, and the chunk types
//! generated from the schema's `ChunkInput`.
//!
//! The `.graphql` files live in `graphql/` beside this crate's `Cargo.toml`.
//! AppSync sends a subscriber only the fields the *mutation's* selection set
//! names (<https://docs.aws.amazon.com/appsync/latest/devguide/aws-appsync-real-time-data.html>),
//! so `publish_chunk.graphql` and `on_chunk.graphql` both select every field
//! of `Chunk`; a unit test keeps them equal, and keeps `turn_chunks.graphql`'s
//! items the same selection, so a recovered chunk reads into the same type.

// The derive's output (types per document, with serde attributes naming the
// schema's fields) has no doc comments of its own and includes response types
// this crate does not read; what is used is re-exported with docs below.
#[allow(dead_code, missing_docs, unreachable_pub, clippy::all)]
mod generated {
    use graphql_client::GraphQLQuery;

    #[derive(GraphQLQuery)]
    #[graphql(
        schema_path = "../schema.graphql",
        query_path = "graphql/publish_chunk.graphql",
        variables_derives = "Debug, Clone, PartialEq, Deserialize",
        response_derives = "Debug"
    )]
    pub struct PublishChunk;

    #[derive(GraphQLQuery)]
    #[graphql(
        schema_path = "../schema.graphql",
        query_path = "graphql/on_chunk.graphql",
        response_derives = "Debug"
    )]
    pub struct OnChunk;

    #[derive(GraphQLQuery)]
    #[graphql(
        schema_path = "../schema.graphql",
        query_path = "graphql/send_prompt.graphql",
        response_derives = "Debug"
    )]
    pub struct SendPrompt;

    #[derive(GraphQLQuery)]
    #[graphql(
        schema_path = "../schema.graphql",
        query_path = "graphql/cancel_turn.graphql",
        response_derives = "Debug"
    )]
    pub struct CancelTurn;

    #[derive(GraphQLQuery)]
    #[graphql(
        schema_path = "../schema.graphql",
        query_path = "graphql/on_cancel.graphql",
        response_derives = "Debug"
    )]
    pub struct OnCancel;

    #[derive(GraphQLQuery)]
    #[graphql(
        schema_path = "../schema.graphql",
        query_path = "graphql/list_conversations.graphql",
        response_derives = "Debug"
    )]
    pub struct ListConversations;

    #[derive(GraphQLQuery)]
    #[graphql(
        schema_path = "../schema.graphql",
        query_path = "graphql/list_messages.graphql",
        response_derives = "Debug"
    )]
    pub struct ListMessages;

    #[derive(GraphQLQuery)]
    #[graphql(
        schema_path = "../schema.graphql",
        query_path = "graphql/turn_chunks.graphql",
        response_derives = "Debug"
    )]
    pub struct TurnChunks;
}

pub(crate) use generated::publish_chunk::{ChunkErrorInput, ChunkInput, UsageInput};
pub(crate) use generated::{
    ListConversations, ListMessages, TurnChunks, list_conversations, list_messages, turn_chunks,
};

/// `mutation PublishChunk($input: ChunkInput!)`: the resolver's one mutation,
/// IAM-signed; its selection set is every field of `Chunk`.
pub const PUBLISH_CHUNK: &str = generated::publish_chunk::QUERY;

/// `subscription OnChunk($conversationId: ID!)`: a signed-in user's chunks of
/// one conversation (AppSync filters them to the caller's `sub`).
pub const ON_CHUNK: &str = generated::on_chunk::QUERY;

/// `mutation SendPrompt($input: SendPromptInput!)`, answering
/// `{conversationId, turnId, owner}`; subscribe to `onChunk` first.
pub const SEND_PROMPT: &str = generated::send_prompt::QUERY;

/// `mutation CancelTurn($conversationId: ID!, $turnId: ID!)`: stops one of the
/// caller's running turns, answering `{conversationId, turnId, owner}`.
pub const CANCEL_TURN: &str = generated::cancel_turn::QUERY;

/// `subscription OnCancel($turnId: ID!, $owner: ID!)`: the resolver's cancel
/// signal for one turn of one owner (IAM only).
pub const ON_CANCEL: &str = generated::on_cancel::QUERY;

/// `query ListConversations($limit: Int, $nextToken: String)`: one page of the
/// caller's conversations, most recently updated first (Cognito only).
pub const LIST_CONVERSATIONS: &str = generated::list_conversations::QUERY;

/// `query ListMessages($conversationId: ID!, $limit: Int, $nextToken: String)`:
/// one page of a conversation's messages, oldest first (Cognito only).
pub const LIST_MESSAGES: &str = generated::list_messages::QUERY;

/// `query TurnChunks($conversationId: ID!, $turnId: ID!, $afterSeq: Int,
/// $limit: Int, $nextToken: String)`: one page of a turn's stored chunks after
/// `afterSeq`, in `seq` order, every field of `Chunk` selected (Cognito only).
pub const TURN_CHUNKS: &str = generated::turn_chunks::QUERY;

/// The HTTP body of a `publishChunk` request for `chunk`:
/// `{"variables":{"input":<chunk>},"query":PUBLISH_CHUNK,"operationName":"PublishChunk"}`.
///
/// # Errors
/// The JSON error if the chunk cannot be serialised (it always can: every
/// field is a string, number, boolean or null).
pub fn publish_chunk_body(chunk: &crate::Chunk) -> Result<Vec<u8>, serde_json::Error> {
    use graphql_client::GraphQLQuery;
    let body = generated::PublishChunk::build_query(generated::publish_chunk::Variables {
        input: chunk.clone(),
    });
    serde_json::to_vec(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The selection set of a document: the text between its first `{` after
    /// the field name and the end.
    fn selection(document: &str, field: &str) -> String {
        let at = document.find(&format!("{field}(")).expect("field");
        let open = at + document[at..].find('{').expect("selection set");
        document[open..]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn publish_and_subscribe_select_the_same_chunk_fields() {
        assert_eq!(
            selection(PUBLISH_CHUNK, "publishChunk"),
            selection(ON_CHUNK, "onChunk")
        );
        for field in [
            "conversationId",
            "seq",
            "stopReason",
            "totalTokens",
            "retryable",
        ] {
            assert!(ON_CHUNK.contains(field), "{field}");
        }
    }

    #[test]
    fn recovered_chunks_select_the_same_fields_as_subscribed_ones() {
        // The onChunk selection set, without the operation's closing brace.
        let subscribed = selection(ON_CHUNK, "onChunk");
        let chunk_fields = subscribed
            .strip_suffix(" }")
            .expect("the operation's brace");
        let recovered = selection(TURN_CHUNKS, "turnChunks");
        assert!(
            recovered.starts_with(&format!("{{ items {chunk_fields} nextToken }}")),
            "{recovered}"
        );
    }

    #[test]
    fn the_queries_page_with_next_token() {
        for (document, field) in [
            (
                LIST_CONVERSATIONS,
                "listConversations(limit: $limit, nextToken: $nextToken)",
            ),
            (
                LIST_MESSAGES,
                "listMessages(conversationId: $conversationId, limit: $limit, nextToken: $nextToken)",
            ),
            (
                TURN_CHUNKS,
                "afterSeq: $afterSeq, limit: $limit, nextToken: $nextToken)",
            ),
        ] {
            assert!(document.contains(field), "{document}");
            assert!(document.contains("nextToken\n"), "{document}");
        }
    }

    #[test]
    fn the_documents_name_their_operations() {
        assert!(SEND_PROMPT.contains("mutation SendPrompt($input: SendPromptInput!)"));
        assert!(
            CANCEL_TURN.contains("cancelTurn(conversationId: $conversationId, turnId: $turnId)")
        );
        assert!(ON_CANCEL.contains("onCancel(turnId: $turnId, owner: $owner)"));
    }
}
