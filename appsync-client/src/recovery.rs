//! Place in the data path: the last hop's safety net, client --turnChunks-->
//! AppSync --DynamoDB data source--> the chunks the resolver Lambda stored
//! beside publishing them. A subscriber that missed chunks on `onChunk` (its
//! socket dropped and came back, a `seq` gap that does not fill, a turn that
//! goes quiet before its terminal chunk) asks for every chunk after the last
//! one it has in order, and pushes them into its [`crate::TurnAssembler`],
//! which drops what it already has: the answer completes exactly once.
//!
//! The resolver stores chunks up to its chunk writer's linger (about 100 ms)
//! after publishing them, and keeps them 24 hours: a chunk published a moment
//! ago may not be there yet, so a client asks again when its gap persists.

use graphql_client::GraphQLQuery;

use crate::chunk::Chunk;
use crate::documents::{TurnChunks, turn_chunks as document};
use crate::query::{Caller, PAGE_LIMIT, QueryError, collect_pages, fetch_page};

/// The field [`turn_chunks`] reads.
const FIELD: &str = "turnChunks";

/// The stored chunks of one of the caller's turns with `seq` greater than
/// `after_seq` (-1: all of them), in `seq` order, every page of them. Use
/// [`crate::TurnAssembler::after_seq`] as `after_seq`, and push the result
/// into that assembler. `token` is the user pool's raw ID token; another
/// user's turn finds nothing.
///
/// # Errors
/// [`QueryError::Transport`] without a reply, [`QueryError::Refused`] with
/// AppSync's first error (e.g. `ValidationException` for a malformed id or an
/// `after_seq` below -1, `UnauthorizedException` for an expired token),
/// [`QueryError::Unexpected`] for a reply of another shape.
pub async fn turn_chunks(
    http: &reqwest::Client,
    graphql_url: &str,
    token: &str,
    conversation_id: &str,
    turn_id: &str,
    after_seq: i64,
) -> Result<Vec<Chunk>, QueryError> {
    let caller = Caller {
        http,
        graphql_url,
        token,
    };
    collect_pages(FIELD, |next_token| {
        let variables = document::Variables {
            conversation_id: conversation_id.to_owned(),
            turn_id: turn_id.to_owned(),
            after_seq: Some(after_seq),
            limit: Some(PAGE_LIMIT),
            next_token,
        };
        fetch_page::<_, Chunk>(caller, FIELD, TurnChunks::build_query(variables))
    })
    .await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::TurnAssembler;
    use crate::query::page_from_response;

    fn stored(seq: i64, text: &str, done: bool) -> serde_json::Value {
        json!({"conversationId": "c", "turnId": "t", "owner": "o", "seq": seq, "text": text,
            "done": done, "stopReason": if done { json!("end_turn") } else { json!(null) },
            "usage": if done { json!({"inputTokens": 3, "outputTokens": 4, "totalTokens": 7}) } else { json!(null) },
            "error": null})
    }

    #[test]
    fn recovered_chunks_complete_a_turn_with_a_gap_exactly_once() {
        // The subscriber has seq 0 and 3; 1, 2 and the terminal 4 were missed.
        let mut assembler = TurnAssembler::new();
        let live = |seq: i64, text: &str| {
            serde_json::from_value::<Chunk>(stored(seq, text, false)).expect("a chunk")
        };
        let mut text: String = assembler
            .push(live(0, "a"))
            .into_iter()
            .map(|c| c.text)
            .collect();
        assert!(assembler.push(live(3, "d")).is_empty());
        assert!(assembler.gap_pending());
        assert_eq!(assembler.after_seq(), 0);

        // What turnChunks(afterSeq: 0) answers: 1 to 4, the held 3 included.
        let body = json!({"data": {"turnChunks": {"items": [
            stored(1, "b", false), stored(2, "c", false), stored(3, "d", false), stored(4, "", true)
        ], "nextToken": null}}});
        let page =
            page_from_response::<Chunk>(FIELD, 200, body.to_string().as_bytes()).expect("a page");
        assert_eq!(page.items.len(), 4);
        let usage = page.items[3].usage.as_ref().expect("usage");
        assert_eq!(usage.total_tokens, 7);
        for chunk in page.items {
            text.extend(assembler.push(chunk).into_iter().map(|c| c.text));
        }
        assert_eq!(text, "abcd");
        assert!(!assembler.gap_pending());
        assert_eq!(
            assembler.finished().and_then(|c| c.stop_reason.as_deref()),
            Some("end_turn")
        );
    }

    #[test]
    fn a_refused_recovery_names_its_error_type() {
        let body = json!({"data": {"turnChunks": null}, "errors": [
            {"errorType": "ValidationException", "message": "turnId must be 1 to 128 characters."}
        ]});
        let error = page_from_response::<Chunk>(FIELD, 200, body.to_string().as_bytes())
            .expect_err("refused");
        assert_eq!(error.error_type(), Some("ValidationException"));
        assert!(
            error.to_string().starts_with("turnChunks was refused"),
            "{error}"
        );
    }
}
