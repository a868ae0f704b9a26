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
