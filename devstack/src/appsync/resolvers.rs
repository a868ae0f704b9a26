//! The resolvers the AppSync stand-in runs, behind one seam. Place in the data
//! path: client --sendPrompt--> **resolver** --Invoke(Event)--> Lambda;
//! resolver Lambda --publishChunk--> **resolver** (NONE data source) -> fan-out;
//! subscriber --onChunk--> **resolver** (sets the owner filter).
//!
//! [`BuiltinResolvers`] does what the deployed APPSYNC_JS resolvers do; the JS
//! engine replaces it by implementing [`Resolvers`], with no change to transport
//! or auth code.

use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::auth::Caller;
use super::filter::Filter;
use crate::lambda::LambdaService;

/// What a resolver sees: AppSync's `ctx` for one field.
pub struct ResolveRequest<'a> {
    pub parent_type: &'a str,
    pub field: &'a str,
    pub arguments: &'a Map<String, Value>,
    pub caller: &'a Caller,
    /// `info.selectionSetList`.
    pub selection_set_list: Vec<String>,
}

impl ResolveRequest<'_> {
    /// The resolver context's `info` object.
    pub fn info(&self) -> Value {
        json!({
            "fieldName": self.field,
            "parentTypeName": self.parent_type,
            "variables": {},
            "selectionSetList": self.selection_set_list,
        })
    }
}

/// A resolver's `util.error(message, errorType, data, errorInfo)`.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolverError {
    pub error_type: String,
    pub message: String,
}

impl ResolverError {
    pub fn new(error_type: &str, message: impl Into<String>) -> Self {
        Self {
            error_type: error_type.to_owned(),
            message: message.into(),
        }
    }
}

/// The seam: whatever runs resolver code (built in now, APPSYNC_JS later).
pub trait Resolvers: Send + Sync {
    /// Resolves a query or mutation root field to its result.
    fn resolve<'a>(
        &'a self,
        request: ResolveRequest<'a>,
    ) -> BoxFuture<'a, Result<Value, ResolverError>>;

    /// Runs a subscription field's resolver when a client subscribes; it may set
    /// an enhanced filter (`extensions.setSubscriptionFilter`).
    fn subscribe(&self, request: ResolveRequest<'_>) -> Result<Option<Filter>, ResolverError>;
}

/// This project's resolvers, built in.
pub struct BuiltinResolvers {
    pub lambda: LambdaService,
    /// The model ids `sendPrompt` accepts (`modelId` absent means the resolver's default).
    pub allowed_models: Vec<String>,
}

/// Input limits of `sendPrompt`, checked before anything is invoked.
pub mod limits {
    /// Longest conversation or turn id, in characters.
    pub const MAX_ID_CHARS: usize = 128;
    /// Longest prompt, in characters.
    pub const MAX_PROMPT_CHARS: usize = 32_000;
    /// Longest system prompt, in characters.
    pub const MAX_SYSTEM_CHARS: usize = 32_000;
    /// Most output tokens a prompt may ask for.
    pub const MAX_TOKENS: i64 = 8192;
}

impl Resolvers for BuiltinResolvers {
    fn resolve<'a>(
        &'a self,
        request: ResolveRequest<'a>,
    ) -> BoxFuture<'a, Result<Value, ResolverError>> {
        Box::pin(async move {
            match (request.parent_type, request.field) {
                ("Query", "ping") => Ok(json!("ok")),
                ("Mutation", "sendPrompt") => self.send_prompt(&request),
                ("Mutation", "cancelTurn") => cancel_turn(&request),
                // A NONE data source: the mutation's result is its input.
                ("Mutation", "publishChunk") => Ok(request
                    .arguments
                    .get("input")
                    .cloned()
                    .unwrap_or(Value::Null)),
                _ => Ok(Value::Null),
            }
        })
    }

    fn subscribe(&self, request: ResolveRequest<'_>) -> Result<Option<Filter>, ResolverError> {
        match (request.parent_type, request.field) {
            ("Subscription", "onChunk") => {
                let sub = request.caller.sub().ok_or_else(|| {
                    ResolverError::new(
                        "Unauthorized",
                        "Not Authorized to access onChunk on type Subscription",
                    )
                })?;
                Ok(Some(Filter::eq("owner", json!(sub))))
            }
            // IAM only; the subscription's own arguments (turnId, owner) filter it.
            ("Subscription", "onCancel") => Ok(None),
            _ => Ok(None),
        }
    }
}

impl BuiltinResolvers {
    /// Fills in the turn id and owner, invokes the resolver Lambda with
    /// `invocationType: 'Event'`, and answers with the turn at once.
    fn send_prompt(&self, request: &ResolveRequest<'_>) -> Result<Value, ResolverError> {
        let owner = request
            .caller
            .sub()
            .ok_or_else(|| {
                ResolverError::new(
                    "Unauthorized",
                    "Not Authorized to access sendPrompt on type Mutation",
                )
            })?
            .to_owned();
        let mut input = request
            .arguments
            .get("input")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        validate_prompt(&input, &self.allowed_models)?;
        let turn_id = match input.get("turnId").and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => uuid::Uuid::new_v4().to_string(),
        };
        input.insert("turnId".into(), json!(turn_id));
        let conversation_id = input.get("conversationId").cloned().unwrap_or(Value::Null);
        let payload = json!({
            "arguments": {"input": input},
            "identity": request.caller.identity,
            "source": null,
            "request": {"headers": {}, "domainName": null},
            "prev": null,
            "stash": {},
            "info": request.info(),
        });
        self.lambda.invoke_async(payload);
        Ok(json!({"conversationId": conversation_id, "turnId": turn_id, "owner": owner}))
    }
}

/// `cancelTurn`: a NONE data source whose result names the caller as owner, so
/// only the owner's cancellation matches the resolver's `onCancel(turnId, owner)`.
fn cancel_turn(request: &ResolveRequest<'_>) -> Result<Value, ResolverError> {
    let owner = request.caller.sub().ok_or_else(|| {
        ResolverError::new(
            "Unauthorized",
            "Not Authorized to access cancelTurn on type Mutation",
        )
    })?;
    let arg = |k: &str| {
        request
            .arguments
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let (conversation_id, turn_id) = (arg("conversationId"), arg("turnId"));
    check_id("conversationId", conversation_id)?;
    check_id("turnId", turn_id)?;
    Ok(json!({"conversationId": conversation_id, "turnId": turn_id, "owner": owner}))
}

fn invalid(message: String) -> ResolverError {
    ResolverError::new("ValidationException", message)
}

fn check_id(name: &str, id: &str) -> Result<(), ResolverError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
    if id.is_empty() || id.chars().count() > limits::MAX_ID_CHARS || !id.chars().all(allowed) {
        return Err(invalid(format!(
            "{name} must be 1 to {} characters of A-Z, a-z, 0-9, '-', '_', '.', ':'.",
            limits::MAX_ID_CHARS
        )));
    }
    Ok(())
}

/// The input limits of `sendPrompt`, as the deployed resolver enforces them.
fn validate_prompt(
    input: &Map<String, Value>,
    allowed_models: &[String],
) -> Result<(), ResolverError> {
    let text = |k: &str| input.get(k).and_then(Value::as_str);
    check_id("conversationId", text("conversationId").unwrap_or_default())?;
    if let Some(turn_id) = text("turnId") {
        check_id("turnId", turn_id)?;
    }
    let prompt = text("prompt").unwrap_or_default();
    if prompt.trim().is_empty() || prompt.chars().count() > limits::MAX_PROMPT_CHARS {
        return Err(invalid(format!(
            "prompt must be 1 to {} characters and not blank.",
            limits::MAX_PROMPT_CHARS
        )));
    }
    if text("system").is_some_and(|s| s.chars().count() > limits::MAX_SYSTEM_CHARS) {
        return Err(invalid(format!(
            "system must be at most {} characters.",
            limits::MAX_SYSTEM_CHARS
        )));
    }
    if let Some(model) = text("modelId").filter(|m| !allowed_models.iter().any(|a| a == m)) {
        return Err(invalid(format!(
            "modelId '{model}' is not available; use one of: {}.",
            allowed_models.join(", ")
        )));
    }
    let given = |k: &str| input.get(k).filter(|v| !v.is_null());
    if given("maxTokens").is_some_and(|m| {
        !m.as_i64()
            .is_some_and(|m| (1..=limits::MAX_TOKENS).contains(&m))
    }) {
        return Err(invalid(format!(
            "maxTokens must be between 1 and {}.",
            limits::MAX_TOKENS
        )));
    }
    if given("temperature").is_some_and(|t| !t.as_f64().is_some_and(|t| (0.0..=1.0).contains(&t))) {
        return Err(invalid("temperature must be between 0 and 1.".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(v: Value) -> Result<(), ResolverError> {
        let input = v.as_object().cloned().unwrap_or_default();
        validate_prompt(&input, &["scripted".to_string(), "smollm2".to_string()])
    }

    #[test]
    fn accepts_a_plain_prompt_and_every_bound() {
        assert_eq!(
            check(json!({"conversationId": "c-1", "prompt": "hi"})),
            Ok(())
        );
        let full = json!({"conversationId": "c-1", "prompt": "hi", "turnId": "t:1",
            "modelId": "scripted", "maxTokens": 8192, "temperature": 0});
        assert_eq!(check(full), Ok(()));
    }

    #[test]
    fn refuses_each_limit_with_a_validation_error() {
        let cases = [
            json!({"conversationId": "c", "prompt": "   "}),
            json!({"conversationId": "c", "prompt": "x".repeat(limits::MAX_PROMPT_CHARS + 1)}),
            json!({"conversationId": "c d", "prompt": "hi"}),
            json!({"conversationId": "x".repeat(129), "prompt": "hi"}),
            json!({"conversationId": "c", "prompt": "hi", "turnId": "t/1"}),
            json!({"conversationId": "c", "prompt": "hi", "modelId": "gpt"}),
            json!({"conversationId": "c", "prompt": "hi", "maxTokens": 0}),
            json!({"conversationId": "c", "prompt": "hi", "maxTokens": 8193}),
            json!({"conversationId": "c", "prompt": "hi", "temperature": 1.5}),
        ];
        for case in cases {
            let e = check(case.clone()).expect_err(&case.to_string());
            assert_eq!(e.error_type, "ValidationException");
        }
    }
}
