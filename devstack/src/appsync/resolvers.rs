//! The resolvers the AppSync stand-in runs, behind one seam.
//!
//! Place in the data path: client --sendPrompt--> AppSync **resolver**
//! --Invoke(Event)--> Lambda; resolver Lambda --publishChunk--> AppSync
//! **resolver** (NONE data source) -> fan-out; subscriber --onChunk--> AppSync
//! **resolver** (sets the owner filter).
//!
//! The devstack's implementation is [`super::js::JsResolvers`], which runs the
//! deployment's own APPSYNC_JS files from `infra/`: no resolver logic lives in
//! Rust, and transport and auth code only see this trait.
//! <https://docs.aws.amazon.com/appsync/latest/devguide/resolver-reference-overview-js.html>

use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::auth::Caller;
use super::filter::Filter;

/// What a resolver sees: AppSync's `ctx` for one field.
pub struct ResolveRequest<'a> {
    /// `info.parentTypeName`: the type the field belongs to, e.g. `Mutation`.
    pub parent_type: &'a str,
    /// `info.fieldName`, e.g. `sendPrompt`.
    pub field: &'a str,
    /// `ctx.args`: the field's arguments, coerced.
    pub arguments: &'a Map<String, Value>,
    /// Who is calling; its `identity` is `ctx.identity`.
    pub caller: &'a Caller,
    /// `info.selectionSetList`.
    pub selection_set_list: Vec<String>,
}

impl ResolveRequest<'_> {
    /// The resolver context's `info` object. `selectionSetGraphQL` is rebuilt
    /// from `selectionSetList` (fields only: no arguments, aliases or fragments).
    pub fn info(&self) -> Value {
        json!({
            "fieldName": self.field,
            "parentTypeName": self.parent_type,
            "variables": {},
            "selectionSetList": self.selection_set_list,
            "selectionSetGraphQL": selection_set_graphql(&self.selection_set_list),
        })
    }
}

/// A resolver's `util.error(message, errorType, data, errorInfo)`.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolverError {
    /// The `errorType`, e.g. `Unauthorized` or `Code`.
    pub error_type: String,
    /// The `message`.
    pub message: String,
    /// The `data`, when given (null is none).
    pub data: Option<Value>,
    /// The `errorInfo`, when given (null is none).
    pub error_info: Option<Value>,
}

impl ResolverError {
    /// An error of `error_type` with `message`.
    pub fn new(error_type: &str, message: impl Into<String>) -> Self {
        Self {
            error_type: error_type.to_owned(),
            message: message.into(),
            data: None,
            error_info: None,
        }
    }
}

/// The seam: whatever runs resolver code (the APPSYNC_JS engine).
pub trait Resolvers: Send + Sync {
    /// Resolves a query or mutation root field to its result.
    ///
    /// # Errors
    ///
    /// The resolver's error (`util.error`, a thrown exception as `Code`, a
    /// data source failure), which AppSync puts in the response's `errors`.
    fn resolve<'a>(
        &'a self,
        request: ResolveRequest<'a>,
    ) -> BoxFuture<'a, Result<Value, ResolverError>>;

    /// Runs a subscription field's resolver when a client subscribes; it may set
    /// an enhanced filter (`extensions.setSubscriptionFilter`).
    ///
    /// # Errors
    ///
    /// The resolver's error, which refuses the `start` with an `error` message.
    fn subscribe(&self, request: ResolveRequest<'_>) -> Result<Option<Filter>, ResolverError>;
}

/// `["a", "b", "b/c"]` -> `"{\n  a\n  b {\n    c\n  }\n}"`; empty for no selection.
fn selection_set_graphql(list: &[String]) -> String {
    fn render(list: &[String], prefix: &str, depth: usize, out: &mut String) {
        let indent = "  ".repeat(depth);
        for path in list {
            let Some(rest) = path.strip_prefix(prefix) else {
                continue;
            };
            if rest.contains('/') {
                continue;
            }
            out.push_str(&indent);
            out.push_str(rest);
            let child = format!("{path}/");
            if list.iter().any(|p| p.starts_with(&child)) {
                out.push_str(" {\n");
                render(list, &child, depth + 1, out);
                out.push_str(&indent);
                out.push('}');
            }
            out.push('\n');
        }
    }
    if list.is_empty() {
        return String::new();
    }
    let mut out = String::from("{\n");
    render(list, "", 1, &mut out);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_set_graphql_nests_paths() {
        let list: Vec<String> = ["a", "b", "b/c", "b/d"].map(String::from).to_vec();
        assert_eq!(
            selection_set_graphql(&list),
            "{\n  a\n  b {\n    c\n    d\n  }\n}"
        );
        assert_eq!(selection_set_graphql(&[]), "");
    }
}
