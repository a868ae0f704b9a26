//! Place in the data path: the first hop, client -> `sendPrompt` -> AppSync
//! (and `cancelTurn`, the way to stop a turn): the two mutations a signed-in
//! user sends over HTTP, with the user pool's ID token as AppSync's
//! `Authorization` header
//! (<https://docs.aws.amazon.com/appsync/latest/devguide/security-authz.html#amazon-cognito-user-pools-authorization>).

use serde_json::{Value, json};

use crate::documents::{CANCEL_TURN, SEND_PROMPT};

/// Why [`send_prompt`] or [`cancel_turn`] failed.
#[derive(Debug, thiserror::Error)]
pub enum MutationError {
    /// No HTTP reply, or an unreadable one.
    #[error("could not reach AppSync: {0}")]
    Transport(#[from] reqwest::Error),
    /// AppSync answered with a non-2xx status or `errors` (e.g. a `ValidationException`).
    #[error("{mutation} was refused ({status}): {errors}")]
    Refused {
        /// The mutation's field, `sendPrompt` or `cancelTurn`.
        mutation: &'static str,
        /// The HTTP status.
        status: u16,
        /// AppSync's `errors` array (`null` when the body had none).
        errors: Value,
    },
}

/// Sends `sendPrompt` over HTTP as a signed-in user (`token`: the user pool's
/// raw JWT, as AppSync's `Authorization` header takes it). Returns the `Turn`
/// (`{conversationId, turnId, owner}`); subscribe before calling this.
///
/// # Errors
/// [`MutationError::Transport`] without a readable reply,
/// [`MutationError::Refused`] when AppSync refuses the prompt.
pub async fn send_prompt(
    http: &reqwest::Client,
    graphql_url: &str,
    token: &str,
    variables: Value,
) -> Result<Value, MutationError> {
    mutate(
        http,
        graphql_url,
        token,
        SEND_PROMPT,
        "sendPrompt",
        variables,
    )
    .await
}

/// Sends `cancelTurn` over HTTP as the turn's owner (`token` as for
/// [`send_prompt`]). Returns the `Cancellation`; the turn then ends with a
/// terminal chunk whose `stopReason` is `cancelled`.
///
/// # Errors
/// As [`send_prompt`].
pub async fn cancel_turn(
    http: &reqwest::Client,
    graphql_url: &str,
    token: &str,
    conversation_id: &str,
    turn_id: &str,
) -> Result<Value, MutationError> {
    let variables = json!({"conversationId": conversation_id, "turnId": turn_id});
    mutate(
        http,
        graphql_url,
        token,
        CANCEL_TURN,
        "cancelTurn",
        variables,
    )
    .await
}

/// POSTs one mutation with the user's token; returns `data.<field>`.
async fn mutate(
    http: &reqwest::Client,
    graphql_url: &str,
    token: &str,
    query: &str,
    field: &'static str,
    variables: Value,
) -> Result<Value, MutationError> {
    let response = http
        .post(graphql_url)
        .header("authorization", token)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await?;
    let status = response.status().as_u16();
    let body: Value = response.json().await?;
    match body.get("data").and_then(|data| data.get(field)) {
        Some(result) if (200..300).contains(&status) && body.get("errors").is_none() => {
            Ok(result.clone())
        }
        _ => Err(MutationError::Refused {
            mutation: field,
            status,
            errors: body.get("errors").cloned().unwrap_or(Value::Null),
        }),
    }
}

/// The variables of `sendPrompt`: `{"input": {conversationId, turnId,
/// prompt, modelId?, maxTokens?}}`.
pub fn send_prompt_variables(
    conversation_id: &str,
    turn_id: &str,
    prompt: &str,
    model_id: Option<&str>,
    max_tokens: Option<u32>,
) -> Value {
    let mut input = json!({"conversationId": conversation_id, "turnId": turn_id, "prompt": prompt});
    if let Some(m) = model_id {
        input["modelId"] = json!(m);
    }
    if let Some(t) = max_tokens {
        input["maxTokens"] = json!(t);
    }
    json!({"input": input})
}
