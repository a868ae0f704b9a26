//! Place in the data path: client --query--> AppSync --DynamoDB data source-->
//! the conversations table the resolver Lambda writes, and back. How a
//! signed-in user's query crosses AppSync: one POST per page with the user
//! pool's ID token as the `Authorization` header (as `sendPrompt` does), the
//! answer's `errors` turned into a typed error, and `nextToken` followed to
//! the last page. [`crate::history`] and [`crate::recovery`] use it.

use std::fmt;

use graphql_client::QueryBody;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Items asked for per page: the schema's most (`limit` is 1 to 100).
pub(crate) const PAGE_LIMIT: i64 = 100;

/// The first error of AppSync's `errors` array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphQlError {
    /// Its `errorType`, e.g. `ValidationException`, `UnauthorizedException`
    /// (`None` when AppSync named none).
    pub error_type: Option<String>,
    /// Its `message`.
    pub message: String,
}

impl GraphQlError {
    /// Reads one element of an `errors` array.
    fn from_json(error: &Value) -> Self {
        Self {
            error_type: error
                .get("errorType")
                .and_then(Value::as_str)
                .map(str::to_owned),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message")
                .to_owned(),
        }
    }
}

impl fmt::Display for GraphQlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error_type {
            Some(error_type) => write!(f, "{error_type}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Why a query ([`crate::list_conversations`], [`crate::list_messages`],
/// [`crate::turn_chunks`]) failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// No HTTP reply, or one cut short.
    #[error("could not reach AppSync: {0}")]
    Transport(#[from] reqwest::Error),
    /// AppSync answered with `errors` (a refused token, a
    /// `ValidationException`, a failing data source); the first one is kept.
    #[error("{query} was refused (HTTP {status}): {error}")]
    Refused {
        /// The query's field, e.g. `turnChunks`.
        query: &'static str,
        /// The HTTP status.
        status: u16,
        /// AppSync's first error.
        error: GraphQlError,
    },
    /// A reply that is not a GraphQL answer of the expected shape.
    #[error("{query} got an unexpected reply (HTTP {status}): {problem}")]
    Unexpected {
        /// The query's field.
        query: &'static str,
        /// The HTTP status.
        status: u16,
        /// What was wrong with it.
        problem: String,
    },
    /// A page handed back the `nextToken` it was asked with: following it
    /// would never end.
    #[error("{query} returned the same nextToken twice")]
    NextTokenRepeated {
        /// The query's field.
        query: &'static str,
    },
}

impl QueryError {
    /// The `errorType` of AppSync's first error, for [`QueryError::Refused`].
    pub fn error_type(&self) -> Option<&str> {
        match self {
            QueryError::Refused { error, .. } => error.error_type.as_deref(),
            _ => None,
        }
    }
}

/// Who asks, and where: the API's GraphQL URL and the user's raw ID token.
#[derive(Clone, Copy)]
pub(crate) struct Caller<'a> {
    pub(crate) http: &'a reqwest::Client,
    pub(crate) graphql_url: &'a str,
    pub(crate) token: &'a str,
}

/// One page of a connection type (`ConversationConnection`,
/// `MessageConnection`, `ChunkConnection`): `{items, nextToken}`.
#[derive(Debug, Deserialize)]
pub(crate) struct Page<T> {
    pub(crate) items: Vec<T>,
    #[serde(rename = "nextToken", default)]
    pub(crate) next_token: Option<String>,
}

/// POSTs one page's request as `caller`; returns `data.<field>` as a page.
pub(crate) async fn fetch_page<V: Serialize, T: DeserializeOwned>(
    caller: Caller<'_>,
    field: &'static str,
    body: QueryBody<V>,
) -> Result<Page<T>, QueryError> {
    let response = caller
        .http
        .post(caller.graphql_url)
        .header("authorization", caller.token)
        .json(&body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await?;
    page_from_response(field, status, &bytes)
}

/// Reads an HTTP answer to a paged query: its first error as
/// [`QueryError::Refused`], else `data.<field>` as a page.
pub(crate) fn page_from_response<T: DeserializeOwned>(
    field: &'static str,
    status: u16,
    body: &[u8],
) -> Result<Page<T>, QueryError> {
    let unexpected = |problem: String| QueryError::Unexpected {
        query: field,
        status,
        problem,
    };
    let body: Value = serde_json::from_slice(body)
        .map_err(|error| unexpected(format!("the body is not JSON ({error})")))?;
    if let Some(first) = body
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|errors| errors.first())
    {
        return Err(QueryError::Refused {
            query: field,
            status,
            error: GraphQlError::from_json(first),
        });
    }
    if !(200..300).contains(&status) {
        return Err(unexpected("an error status without errors".to_owned()));
    }
    let page = body
        .get("data")
        .and_then(|data| data.get(field))
        .filter(|page| !page.is_null())
        .ok_or_else(|| unexpected(format!("no data.{field}")))?;
    Page::deserialize(page).map_err(|error| unexpected(format!("data.{field}: {error}")))
}

/// Fetches pages until one has no `nextToken`, starting without one; returns
/// every page's items in order. `fetch` is called with the token to pass.
pub(crate) async fn collect_pages<T, F, Fut>(
    field: &'static str,
    mut fetch: F,
) -> Result<Vec<T>, QueryError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>, QueryError>>,
{
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = fetch(token.clone()).await?;
        items.extend(page.items);
        match page.next_token {
            None => return Ok(items),
            Some(next) if token.as_deref() == Some(next.as_str()) => {
                return Err(QueryError::NextTokenRepeated { query: field });
            }
            Some(next) => token = Some(next),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn page(body: &Value, status: u16) -> Result<Page<u32>, QueryError> {
        page_from_response("listThings", status, body.to_string().as_bytes())
    }

    #[test]
    fn a_page_reads_its_items_and_next_token() {
        let read = page(
            &json!({"data": {"listThings": {"items": [1, 2], "nextToken": "abc"}}}),
            200,
        )
        .expect("a page");
        assert_eq!(
            (read.items, read.next_token.as_deref()),
            (vec![1, 2], Some("abc"))
        );
        let last = page(
            &json!({"data": {"listThings": {"items": [], "nextToken": null}}}),
            200,
        )
        .expect("a page");
        assert!(last.items.is_empty());
        assert_eq!(last.next_token, None);
    }

    #[test]
    fn errors_become_the_first_errors_type_and_message() {
        let body = json!({
            "data": {"listThings": null},
            "errors": [
                {"errorType": "ValidationException", "message": "afterSeq must be -1 or more.", "path": ["listThings"]},
                {"errorType": "Other", "message": "second"}
            ]
        });
        let error = page(&body, 200).expect_err("refused");
        assert_eq!(error.error_type(), Some("ValidationException"));
        match &error {
            QueryError::Refused {
                query,
                status,
                error,
            } => {
                assert_eq!((*query, *status), ("listThings", 200));
                assert_eq!(error.message, "afterSeq must be -1 or more.");
            }
            other => panic!("not Refused: {other:?}"),
        }
        assert!(
            error
                .to_string()
                .contains("ValidationException: afterSeq must be -1 or more."),
            "{error}"
        );

        let unauthorized = json!({"errors": [{"errorType": "UnauthorizedException", "message": "Valid authorization header not provided."}]});
        let error = page(&unauthorized, 401).expect_err("refused");
        assert_eq!(error.error_type(), Some("UnauthorizedException"));

        let untyped = json!({"errors": [{"message": "Validation error of type FieldUndefined"}]});
        let error = page(&untyped, 400).expect_err("refused");
        assert_eq!(error.error_type(), None);
        assert!(
            error
                .to_string()
                .ends_with("Validation error of type FieldUndefined")
        );
    }

    #[test]
    fn a_reply_of_another_shape_is_unexpected_not_a_panic() {
        let not_json = page_from_response::<u32>("listThings", 502, b"<html>Bad gateway</html>");
        assert!(matches!(
            not_json,
            Err(QueryError::Unexpected { status: 502, .. })
        ));
        let no_field = page(&json!({"data": {"other": {"items": []}}}), 200);
        assert!(matches!(no_field, Err(QueryError::Unexpected { .. })));
        let wrong_items = page(&json!({"data": {"listThings": {"items": ["a"]}}}), 200);
        assert!(matches!(wrong_items, Err(QueryError::Unexpected { .. })));
        let bare_error_status = page(&json!({"message": "oops"}), 500);
        assert!(matches!(
            bare_error_status,
            Err(QueryError::Unexpected { status: 500, .. })
        ));
    }

    #[tokio::test]
    async fn pages_are_followed_to_the_last_one() {
        let mut asked = Vec::new();
        let mut pages = vec![
            Page {
                items: vec![1, 2],
                next_token: Some("t1".to_owned()),
            },
            // A page may be empty and still not be the last.
            Page {
                items: vec![],
                next_token: Some("t2".to_owned()),
            },
            Page {
                items: vec![3],
                next_token: None,
            },
        ]
        .into_iter();
        let items = collect_pages("listThings", |token| {
            asked.push(token);
            let next = pages.next().expect("no page asked for after the last");
            async move { Ok::<_, QueryError>(next) }
        })
        .await
        .expect("every page");
        assert_eq!(items, [1, 2, 3]);
        assert_eq!(asked, [None, Some("t1".to_owned()), Some("t2".to_owned())]);
    }

    #[tokio::test]
    async fn a_repeated_next_token_stops_the_paging() {
        let result = collect_pages("listThings", |_| async {
            Ok::<_, QueryError>(Page {
                items: vec![1],
                next_token: Some("same".to_owned()),
            })
        })
        .await;
        assert!(matches!(
            result,
            Err(QueryError::NextTokenRepeated {
                query: "listThings"
            })
        ));
    }
}
