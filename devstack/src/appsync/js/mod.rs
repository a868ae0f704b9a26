//! The APPSYNC_JS resolver engine: runs the deployment's own resolver files
//! from `infra/` for every field.
//!
//! Place in the data path: client --sendPrompt--> AppSync **resolver
//! (infra/resolvers/*.js)** --Invoke(Event)--> Lambda; resolver Lambda
//! --publishChunk--> AppSync **resolver** (NONE) -> fan-out; subscriber
//! --onChunk--> AppSync **resolver** (sets the enhanced filter); client
//! --listConversations / listMessages / turnChunks / deleteConversation-->
//! AppSync **resolver** --> DynamoDB data source --> the local table.
//!
//! Unit resolvers run `request` -> data source -> `response`; pipeline
//! resolvers run the before (`request`) handler, each function's `request` ->
//! data source -> `response` (with `ctx.prev.result`), then the after
//! (`response`) handler.
//! <https://docs.aws.amazon.com/appsync/latest/devguide/resolver-reference-overview-js.html>
//! <https://docs.aws.amazon.com/appsync/latest/devguide/resolver-reference-lambda-js.html>
//! <https://docs.aws.amazon.com/appsync/latest/devguide/resolver-reference-none-js.html>
//! <https://docs.aws.amazon.com/appsync/latest/devguide/js-resolver-reference-dynamodb.html>

pub mod engine;
pub mod template;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::dynamodb_source::DynamoDbSource;
use super::filter::Filter;
use super::resolvers::{ResolveRequest, ResolverError, Resolvers};
use crate::lambda::LambdaService;
use engine::{Handler, Outcome, StageOutcome};
pub use template::{ApiDefinition, Code, DataSourceKind, ResolverDef, ResolverKind, TemplateError};

/// Runs `infra/`'s APPSYNC_JS resolvers; the devstack's [`Resolvers`].
pub struct JsResolvers {
    api: ApiDefinition,
    lambda: LambdaService,
    env: Map<String, Value>,
    /// Where `AMAZON_DYNAMODB` data sources send their requests: the local
    /// DynamoDB, when the stack runs one.
    dynamodb: Option<DynamoDbSource>,
}

/// Whether a data source may be waited for (queries and mutations) or not
/// (a subscription's resolver runs synchronously when a client subscribes).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Resolve,
    Subscribe,
}

/// What one resolver call leaves: its result and the filter it set.
struct Finished {
    result: Value,
    filter: Option<Value>,
}

/// The state carried from handler to handler of one call.
struct Carried {
    stash: Value,
    args: Value,
    filter: Option<Value>,
    appended: Vec<ResolverError>,
}

impl Carried {
    fn absorb(&mut self, stage: &mut StageOutcome) {
        self.stash = std::mem::take(&mut stage.stash);
        self.args = std::mem::take(&mut stage.args);
        if let Some(f) = stage.subscription_filter.take() {
            self.filter = Some(f);
        }
        self.appended.append(&mut stage.appended_errors);
    }
}

impl JsResolvers {
    /// Serves `api`, invoking `lambda` for `AWS_LAMBDA` data sources; `env`
    /// adds to or overrides the template's `ctx.env` (e.g. the devstack's
    /// `ALLOWED_MODEL_IDS`).
    pub fn new(
        api: ApiDefinition,
        lambda: LambdaService,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        let mut vars: Map<String, Value> =
            api.env.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        vars.extend(env.into_iter().map(|(k, v)| (k, json!(v))));
        Self {
            api,
            lambda,
            env: vars,
            dynamodb: None,
        }
    }

    /// Runs `AMAZON_DYNAMODB` data sources against `source` (the stack's local
    /// DynamoDB). Without one, a field on such a data source fails.
    #[must_use]
    pub fn with_dynamodb(mut self, source: DynamoDbSource) -> Self {
        self.dynamodb = Some(source);
        self
    }

    /// The API definition being served.
    pub fn api(&self) -> &ApiDefinition {
        &self.api
    }

    /// `ctx` for one handler.
    fn context(
        &self,
        request: &ResolveRequest<'_>,
        carried: &Carried,
        prev: &Value,
        result: Option<(&Value, &Option<Value>)>,
    ) -> Value {
        let mut ctx = json!({
            "args": carried.args,
            "identity": request.caller.identity,
            "source": null,
            "stash": carried.stash,
            "prev": prev,
            "info": request.info(),
            "request": {"headers": {}, "domainName": null},
            "env": self.env,
        });
        if let (Some((result, error)), Some(obj)) = (result, ctx.as_object_mut()) {
            obj.insert("result".into(), result.clone());
            if let Some(error) = error {
                obj.insert("error".into(), error.clone());
            }
        }
        ctx
    }

    /// Runs one handler and folds its state into `carried`.
    fn stage(
        &self,
        code: &Code,
        handler: Handler,
        ctx: &Value,
        carried: &mut Carried,
    ) -> Result<Outcome, ResolverError> {
        let mut stage = engine::run(&code.path, &code.source, handler, ctx)?;
        carried.absorb(&mut stage);
        Ok(stage.outcome)
    }

    /// Sends a handler's request object to its data source: `(result, ctx.error)`.
    async fn data_source(
        &self,
        kind: &DataSourceKind,
        request: Value,
        mode: Mode,
    ) -> Result<(Value, Option<Value>), ResolverError> {
        let payload = request.get("payload").cloned().unwrap_or(Value::Null);
        match kind {
            DataSourceKind::None => Ok((payload, None)),
            DataSourceKind::Lambda => {
                let operation = request.get("operation").and_then(Value::as_str);
                if operation != Some("Invoke") {
                    return Err(ResolverError::new(
                        "Code",
                        format!(
                            "a Lambda request's operation must be 'Invoke', not {}",
                            request.get("operation").unwrap_or(&Value::Null)
                        ),
                    ));
                }
                match request.get("invocationType").and_then(Value::as_str) {
                    Some("Event") => {
                        self.lambda.invoke_async(payload);
                        Ok((Value::Null, None))
                    }
                    None | Some("RequestResponse") if mode == Mode::Resolve => {
                        match self.lambda.invoke(payload).await {
                            Ok(result) => Ok((result, None)),
                            Err(e) => {
                                let message = e
                                    .get("errorMessage")
                                    .and_then(Value::as_str)
                                    .unwrap_or("the function failed")
                                    .to_owned();
                                Ok((
                                    Value::Null,
                                    Some(json!({"message": message, "type": "Lambda:Unhandled"})),
                                ))
                            }
                        }
                    }
                    None | Some("RequestResponse") => Err(ResolverError::new(
                        "Code",
                        "the devstack runs a subscription's resolver without waiting; \
                         only invocationType 'Event' is supported there",
                    )),
                    Some(other) => Err(ResolverError::new(
                        "Code",
                        format!("invocationType '{other}' is not supported"),
                    )),
                }
            }
            DataSourceKind::DynamoDb { table } => {
                if mode == Mode::Subscribe {
                    return Err(ResolverError::new(
                        "Code",
                        "the devstack runs a subscription's resolver without waiting; \
                         a DynamoDB data source is not supported there",
                    ));
                }
                let Some(source) = &self.dynamodb else {
                    return Err(ResolverError::new(
                        "InternalFailure",
                        format!(
                            "the DynamoDB data source of table {table} needs the devstack's \
                             local DynamoDB, which is not running (start the stack with \
                             StackConfig::dynamodb, as `devstack up` does)"
                        ),
                    ));
                };
                source
                    .execute(table, &request)
                    .await
                    .map_err(|e| ResolverError::new("Code", e.to_string()))
            }
        }
    }

    /// One call of `def`: unit or pipeline.
    async fn execute(
        &self,
        def: &ResolverDef,
        request: &ResolveRequest<'_>,
        mode: Mode,
    ) -> Result<Finished, ResolverError> {
        let mut carried = Carried {
            stash: json!({}),
            args: Value::Object(request.arguments.clone()),
            filter: None,
            appended: Vec::new(),
        };
        let empty = json!({});
        let result = match &def.kind {
            ResolverKind::Unit { data_source } => {
                let ctx = self.context(request, &carried, &empty, None);
                match self.stage(&def.code, Handler::Request, &ctx, &mut carried)? {
                    Outcome::Error(e) => return Err(e),
                    Outcome::EarlyReturn(v) => v,
                    Outcome::Returned(r) => {
                        let (result, error) = self.data_source(data_source, r, mode).await?;
                        let ctx = self.context(request, &carried, &empty, Some((&result, &error)));
                        match self.stage(&def.code, Handler::Response, &ctx, &mut carried)? {
                            Outcome::Error(e) => return Err(e),
                            Outcome::EarlyReturn(v) | Outcome::Returned(v) => v,
                        }
                    }
                }
            }
            ResolverKind::Pipeline { functions } => {
                let ctx = self.context(request, &carried, &empty, None);
                match self.stage(&def.code, Handler::Request, &ctx, &mut carried)? {
                    Outcome::Error(e) => return Err(e),
                    Outcome::EarlyReturn(v) => v,
                    Outcome::Returned(before) => {
                        let mut prev = before;
                        for function in functions {
                            let prev_ctx = json!({"result": prev});
                            let ctx = self.context(request, &carried, &prev_ctx, None);
                            prev = match self.stage(
                                &function.code,
                                Handler::Request,
                                &ctx,
                                &mut carried,
                            )? {
                                Outcome::Error(e) => return Err(e),
                                Outcome::EarlyReturn(v) => v,
                                Outcome::Returned(r) => {
                                    let (result, error) =
                                        self.data_source(&function.data_source, r, mode).await?;
                                    let ctx = self.context(
                                        request,
                                        &carried,
                                        &prev_ctx,
                                        Some((&result, &error)),
                                    );
                                    match self.stage(
                                        &function.code,
                                        Handler::Response,
                                        &ctx,
                                        &mut carried,
                                    )? {
                                        Outcome::Error(e) => return Err(e),
                                        Outcome::EarlyReturn(v) | Outcome::Returned(v) => v,
                                    }
                                }
                            };
                        }
                        let prev_ctx = json!({"result": prev});
                        let ctx = self.context(request, &carried, &prev_ctx, Some((&prev, &None)));
                        match self.stage(&def.code, Handler::Response, &ctx, &mut carried)? {
                            Outcome::Error(e) => return Err(e),
                            Outcome::EarlyReturn(v) | Outcome::Returned(v) => v,
                        }
                    }
                }
            }
        };
        // The trait carries one result or one error: an appended error shows
        // when the field resolved to null, and is logged otherwise.
        if let Some(first) = carried.appended.first() {
            if result.is_null() {
                return Err(first.clone());
            }
            for e in &carried.appended {
                tracing::warn!(field = request.field, error_type = %e.error_type, message = %e.message,
                    "util.appendError on a field that also has a value");
            }
        }
        Ok(Finished {
            result,
            filter: carried.filter,
        })
    }
}

impl Resolvers for JsResolvers {
    fn resolve<'a>(
        &'a self,
        request: ResolveRequest<'a>,
    ) -> BoxFuture<'a, Result<Value, ResolverError>> {
        Box::pin(async move {
            // A field without a resolver resolves to its source's value: null at the root.
            let Some(def) = self.api.resolver(request.parent_type, request.field) else {
                return Ok(Value::Null);
            };
            Ok(self.execute(def, &request, Mode::Resolve).await?.result)
        })
    }

    fn subscribe(&self, request: ResolveRequest<'_>) -> Result<Option<Filter>, ResolverError> {
        let Some(def) = self.api.resolver(request.parent_type, request.field) else {
            return Ok(None);
        };
        // In Subscribe mode no data source waits, so the future is ready at once.
        let finished = self
            .execute(def, &request, Mode::Subscribe)
            .now_or_never()
            .unwrap_or_else(|| {
                Err(ResolverError::new(
                    "Code",
                    "a subscription resolver waited for a data source",
                ))
            })?;
        finished
            .filter
            .map(|f| {
                serde_json::from_value::<Filter>(f).map_err(|e| {
                    ResolverError::new(
                        "Code",
                        format!("extensions.setSubscriptionFilter got an invalid filter: {e}"),
                    )
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests;
