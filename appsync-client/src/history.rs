//! Place in the data path: client --listConversations, listMessages-->
//! AppSync --DynamoDB data source--> the conversations table, where the
//! resolver Lambda writes each turn's prompt and, once the turn is over, its
//! answer. What a conversation has been so far, read back by its user.

use graphql_client::GraphQLQuery;
use serde::Serialize;

use crate::chunk::ChunkError;
use crate::documents::{ListConversations, ListMessages, list_conversations, list_messages};
use crate::query::{Caller, PAGE_LIMIT, QueryError, collect_pages, fetch_page};

/// One of the caller's conversations (the schema's `Conversation`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    /// Its id, as `sendPrompt` was given it.
    pub conversation_id: String,
    /// Its title (the start of its first prompt).
    pub title: String,
    /// When its first turn was written (ISO-8601, UTC, milliseconds).
    pub created_at: String,
    /// When its latest turn was written.
    pub updated_at: String,
}

/// A turn's prompt (`role` `user`) or its answer (`role` `assistant`), as
/// `listMessages` answers it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// The turn it belongs to; a prompt and its answer share it.
    pub turn_id: String,
    /// `user` or `assistant`.
    pub role: String,
    /// The prompt, or the answer's text (what its user saw stream in).
    pub text: String,
    /// When it was written (ISO-8601, UTC, milliseconds).
    pub created_at: String,
    /// How the answer ended (`end_turn`, `max_tokens`, `cancelled`, `error`,
    /// ...); `None` on a prompt.
    pub stop_reason: Option<String>,
    /// Why the answer failed, when it did (its `message` is the one the user
    /// was shown).
    pub error: Option<ChunkError>,
}

impl Message {
    /// True for an answer (`role` `assistant`).
    pub fn is_answer(&self) -> bool {
        self.role == "assistant"
    }
}

type MessageItem = list_messages::ListMessagesListMessagesItems;
type ConversationItem = list_conversations::ListConversationsListConversationsItems;

/// Every message of one of the caller's conversations, oldest first: each
/// turn's prompt, then its answer. `token` is the user pool's raw ID token;
/// another user's conversation id finds nothing. A turn still streaming has
/// its prompt here but not yet its answer.
///
/// # Errors
/// [`QueryError::Transport`] without a reply, [`QueryError::Refused`] with
/// AppSync's first error (e.g. `ValidationException` for a malformed id,
/// `UnauthorizedException` for an expired token), [`QueryError::Unexpected`]
/// for a reply of another shape.
pub async fn list_messages(
    http: &reqwest::Client,
    graphql_url: &str,
    token: &str,
    conversation_id: &str,
) -> Result<Vec<Message>, QueryError> {
    let caller = Caller {
        http,
        graphql_url,
        token,
    };
    let items: Vec<MessageItem> = collect_pages(FIELD_MESSAGES, |next_token| {
        let variables = list_messages::Variables {
            conversation_id: conversation_id.to_owned(),
            limit: Some(PAGE_LIMIT),
            next_token,
        };
        fetch_page::<_, MessageItem>(caller, FIELD_MESSAGES, ListMessages::build_query(variables))
    })
    .await?;
    Ok(items.into_iter().map(message).collect())
}

/// Every one of the caller's conversations, most recently updated first.
///
/// # Errors
/// As [`list_messages`].
pub async fn list_conversations(
    http: &reqwest::Client,
    graphql_url: &str,
    token: &str,
) -> Result<Vec<Conversation>, QueryError> {
    let caller = Caller {
        http,
        graphql_url,
        token,
    };
    let items: Vec<ConversationItem> = collect_pages(FIELD_CONVERSATIONS, |next_token| {
        let variables = list_conversations::Variables {
            limit: Some(PAGE_LIMIT),
            next_token,
        };
        fetch_page::<_, ConversationItem>(
            caller,
            FIELD_CONVERSATIONS,
            ListConversations::build_query(variables),
        )
    })
    .await?;
    Ok(items.into_iter().map(conversation).collect())
}

/// The field `list_messages` reads.
const FIELD_MESSAGES: &str = "listMessages";
/// The field `list_conversations` reads.
const FIELD_CONVERSATIONS: &str = "listConversations";

/// A generated `listMessages` item as the public type.
fn message(item: MessageItem) -> Message {
    Message {
        turn_id: item.turn_id,
        role: item.role,
        text: item.text,
        created_at: item.created_at,
        stop_reason: item.stop_reason,
        error: item.error.map(|error| ChunkError {
            error_type: error.error_type,
            message: error.message,
            retryable: error.retryable,
        }),
    }
}

/// A generated `listConversations` item as the public type.
fn conversation(item: ConversationItem) -> Conversation {
    Conversation {
        conversation_id: item.conversation_id,
        title: item.title,
        created_at: item.created_at,
        updated_at: item.updated_at,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::query::page_from_response;

    #[test]
    fn a_list_messages_answer_reads_into_messages() {
        let body = json!({"data": {"listMessages": {"items": [
            {"turnId": "t1", "role": "user", "text": "Hi?", "createdAt": "2026-11-27T16:54:10.123Z",
             "stopReason": null, "error": null},
            {"turnId": "t1", "role": "assistant", "text": "Hello.", "createdAt": "2026-11-27T16:54:11.001Z",
             "stopReason": "max_tokens", "error": null},
            {"turnId": "t2", "role": "user", "text": "Again?", "createdAt": "2026-11-27T16:55:00.000Z"},
            {"turnId": "t2", "role": "assistant", "text": "", "createdAt": "2026-11-27T16:55:01.000Z",
             "stopReason": "error",
             "error": {"errorType": "ThrottlingException", "message": "Too many requests.", "retryable": true}}
        ], "nextToken": null}}});
        let page =
            page_from_response::<MessageItem>(FIELD_MESSAGES, 200, body.to_string().as_bytes())
                .expect("a page");
        assert_eq!(page.next_token, None);
        let messages: Vec<Message> = page.items.into_iter().map(message).collect();
        assert_eq!(messages.len(), 4);
        assert_eq!(
            (messages[0].role.as_str(), messages[0].text.as_str()),
            ("user", "Hi?")
        );
        assert!(!messages[0].is_answer());
        assert!(messages[1].is_answer());
        assert_eq!(messages[1].stop_reason.as_deref(), Some("max_tokens"));
        assert_eq!(messages[2].stop_reason, None);
        let error = messages[3].error.as_ref().expect("an error");
        assert_eq!(
            (
                error.error_type.as_str(),
                error.message.as_str(),
                error.retryable
            ),
            ("ThrottlingException", "Too many requests.", true)
        );
        // Serialised with the schema's names, for a client's JSON output.
        let value = serde_json::to_value(&messages[3]).expect("json");
        assert_eq!(value["turnId"], "t2");
        assert_eq!(value["stopReason"], "error");
        assert_eq!(value["error"]["errorType"], "ThrottlingException");
    }

    #[test]
    fn a_list_conversations_answer_reads_into_conversations() {
        let body = json!({"data": {"listConversations": {"items": [
            {"conversationId": "c2", "title": "Second", "createdAt": "2026-11-27T16:00:00.000Z",
             "updatedAt": "2026-11-27T17:00:00.000Z"}
        ], "nextToken": "page-2"}}});
        let page = page_from_response::<ConversationItem>(
            FIELD_CONVERSATIONS,
            200,
            body.to_string().as_bytes(),
        )
        .expect("a page");
        assert_eq!(page.next_token.as_deref(), Some("page-2"));
        let conversations: Vec<Conversation> = page.items.into_iter().map(conversation).collect();
        assert_eq!(
            conversations,
            [Conversation {
                conversation_id: "c2".into(),
                title: "Second".into(),
                created_at: "2026-11-27T16:00:00.000Z".into(),
                updated_at: "2026-11-27T17:00:00.000Z".into(),
            }]
        );
    }

    #[test]
    fn a_missing_required_field_is_an_unexpected_reply() {
        let body = json!({"data": {"listMessages": {"items": [{"turnId": "t1", "role": "user"}]}}});
        let read =
            page_from_response::<MessageItem>(FIELD_MESSAGES, 200, body.to_string().as_bytes());
        assert!(matches!(read, Err(QueryError::Unexpected { .. })));
    }
}
