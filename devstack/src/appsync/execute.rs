//! Executing a prepared operation: per-field authorization, resolver calls, and
//! completing results against the selection set (with GraphQL's null
//! propagation). The same completion cuts a published mutation result down to
//! each subscriber's selection set.
//!
//! Place in the data path: client (`sendPrompt`) and resolver Lambda
//! (`publishChunk`) -> **AppSync execution** -> resolvers; a mutation's result
//! -> fan-out -> subscriber.
//!
//! Null propagation and error entries follow the GraphQL specification's
//! "Handling Field Errors" (<https://spec.graphql.org/October2021/#sec-Handling-Field-Errors>),
//! as AppSync's graphql-java engine applies it.

use serde_json::{Map, Value, json};

use super::AppSync;
use super::auth::Caller;
use super::operation::{GraphQlError, OperationKind, Prepared, Selected};
use super::resolvers::ResolveRequest;
use super::schema::{Schema, TypeDef, TypeRef};

/// The result of one operation: `data` and `errors`, as the HTTP body carries them.
pub struct Outcome {
    /// The `data` object, or `null` when a non-null root field was null.
    pub data: Value,
    /// The field errors, in the order they were found.
    pub errors: Vec<GraphQlError>,
}

impl Outcome {
    /// The response body: `{"data": ...}`, with `"errors"` when there are any.
    pub fn to_json(&self) -> Value {
        let mut body = json!({"data": self.data});
        if !self.errors.is_empty() {
            body["errors"] = Value::Array(self.errors.iter().map(GraphQlError::to_json).collect());
        }
        body
    }
}

/// A null that must propagate to the nearest nullable parent.
#[derive(Debug)]
pub struct Propagate;

/// Completes resolver results against a selection set for one caller.
pub struct Completer<'a> {
    /// The schema that gives each field's type and auth directives.
    pub schema: &'a Schema,
    /// Who will read the result: each field is checked against it.
    pub caller: &'a Caller,
    /// The API's default auth mode (for fields and types without directives).
    pub default_mode: super::auth::AuthMode,
    /// Key results by alias (responses) or by field name (broadcast results).
    pub by_alias: bool,
    /// The errors found so far (unauthorized fields, nulls in non-null fields).
    pub errors: Vec<GraphQlError>,
}

impl Completer<'_> {
    /// Completes `value` at a field of type `ty` whose parent type is `parent`.
    ///
    /// # Errors
    ///
    /// [`Propagate`] when a non-null field came out null; its error is in
    /// [`Self::errors`] and the parent must become null in turn.
    pub fn complete(
        &mut self,
        value: &Value,
        ty: &TypeRef,
        selected: &Selected,
        parent: &str,
        path: &[Value],
    ) -> Result<Value, Propagate> {
        match ty {
            TypeRef::NonNull(inner) => {
                let v = self.complete_inner(value, inner, selected, path)?;
                if v.is_null() {
                    let slashed: Vec<String> = path
                        .iter()
                        .map(|p| {
                            p.as_str()
                                .map(str::to_owned)
                                .unwrap_or_else(|| p.to_string())
                        })
                        .collect();
                    // As graphql-java (AppSync's engine) does, a field that
                    // already has an error (e.g. Unauthorized) gets no second
                    // error for being null.
                    if self.errors.iter().any(|e| e.path.as_deref() == Some(path)) {
                        return Err(Propagate);
                    }
                    let mut e = GraphQlError::new(format!(
                        "Cannot return null for non-nullable type: '{}' within parent '{parent}' (/{})",
                        inner.base(),
                        slashed.join("/")
                    ));
                    e.path = Some(path.to_vec());
                    e.location = Some((selected.line, selected.column));
                    self.errors.push(e);
                    return Err(Propagate);
                }
                Ok(v)
            }
            _ => Ok(self
                .complete_inner(value, ty, selected, path)
                .unwrap_or(Value::Null)),
        }
    }

    fn complete_inner(
        &mut self,
        value: &Value,
        ty: &TypeRef,
        selected: &Selected,
        path: &[Value],
    ) -> Result<Value, Propagate> {
        if value.is_null() {
            return Ok(Value::Null);
        }
        match ty {
            TypeRef::NonNull(_) => self.complete(value, ty, selected, "", path),
            TypeRef::List(inner) => {
                let items = match value {
                    Value::Array(items) => items.clone(),
                    other => vec![other.clone()],
                };
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let mut p = path.to_vec();
                    p.push(json!(i));
                    out.push(self.complete(item, inner, selected, ty.base(), &p)?);
                }
                Ok(Value::Array(out))
            }
            TypeRef::Named(name) => match self.schema.get(name) {
                Some(TypeDef::Object { .. }) => {
                    self.complete_object(value, name, &selected.children, path)
                }
                _ => Ok(value.clone()),
            },
        }
    }

    /// Completes an object's selected fields, checking the caller may read each.
    ///
    /// # Errors
    ///
    /// [`Propagate`] when a non-null field of the object came out null.
    pub fn complete_object(
        &mut self,
        value: &Value,
        type_name: &str,
        children: &[Selected],
        path: &[Value],
    ) -> Result<Value, Propagate> {
        let mut out = Map::new();
        for child in children {
            let key = if self.by_alias {
                &child.key
            } else {
                &child.name
            };
            let mut p = path.to_vec();
            p.push(json!(key));
            if child.name == "__typename" {
                out.insert(key.clone(), json!(type_name));
                continue;
            }
            let Some(def) = self.schema.field(type_name, &child.name) else {
                continue;
            };
            let field_value =
                if field_allowed(self.schema, type_name, def, self.caller, self.default_mode) {
                    value.get(&child.name).cloned().unwrap_or(Value::Null)
                } else {
                    self.errors
                        .push(unauthorized_field(&child.name, type_name, &p, child));
                    Value::Null
                };
            let completed = self.complete(&field_value, &def.ty, child, type_name, &p)?;
            out.insert(key.clone(), completed);
        }
        Ok(Value::Object(out))
    }
}

/// AppSync's error for a field the caller's auth mode may not read.
pub fn unauthorized_field(
    field: &str,
    type_name: &str,
    path: &[Value],
    at: &Selected,
) -> GraphQlError {
    let mut e = GraphQlError::typed(
        "Unauthorized",
        format!("Not Authorized to access {field} on type {type_name}"),
    );
    e.path = Some(path.to_vec());
    e.location = Some((at.line, at.column));
    e
}

/// Runs a query or mutation; mutation results are handed to the fan-out.
pub async fn execute(appsync: &AppSync, prepared: &Prepared, caller: &Caller) -> Outcome {
    let schema = &appsync.schema;
    let mut data = Map::new();
    let mut errors = Vec::new();
    let mut propagated = false;
    for selected in &prepared.fields {
        let path = vec![json!(selected.key)];
        if selected.name == "__typename" {
            data.insert(selected.key.clone(), json!(prepared.root_type));
            continue;
        }
        let Some(def) = schema.field(&prepared.root_type, &selected.name) else {
            continue;
        };
        let resolved = if is_authorized(appsync, &prepared.root_type, def, caller) {
            resolve(appsync, prepared, selected, caller).await
        } else {
            Err(unauthorized_field(
                &selected.name,
                &prepared.root_type,
                &path,
                selected,
            ))
        };
        let mut completer = appsync.completer(caller, true);
        let value = match resolved {
            Ok(v) => v,
            Err(mut e) => {
                e.path = Some(path.clone());
                e.location = Some((selected.line, selected.column));
                completer.errors.push(e);
                Value::Null
            }
        };
        let completed = completer.complete(&value, &def.ty, selected, &prepared.root_type, &path);
        errors.append(&mut completer.errors);
        match completed {
            Ok(v) => {
                if prepared.kind == OperationKind::Mutation && !v.is_null() {
                    broadcast(
                        appsync,
                        &prepared.root_type,
                        selected,
                        &def.ty,
                        &value,
                        caller,
                    );
                }
                data.insert(selected.key.clone(), v);
            }
            Err(Propagate) => propagated = true,
        }
    }
    Outcome {
        data: if propagated {
            Value::Null
        } else {
            Value::Object(data)
        },
        errors,
    }
}

/// Whether the caller's mode is allowed on the field and its groups match any `cognito_groups`.
pub fn is_authorized(
    appsync: &AppSync,
    type_name: &str,
    def: &super::schema::FieldDef,
    caller: &Caller,
) -> bool {
    field_allowed(
        &appsync.schema,
        type_name,
        def,
        caller,
        appsync.auth.default_mode,
    )
}

/// AppSync's rule for one field
/// (<https://docs.aws.amazon.com/appsync/latest/devguide/security-authz.html#using-additional-authorization-modes>):
/// the caller's mode must be among the field's directives, else the type's,
/// else the default mode; a Cognito caller must also be in one of the
/// `cognito_groups` the deciding directive names, if it names any
/// (<https://docs.aws.amazon.com/appsync/latest/devguide/security-authz.html#amazon-cognito-user-pools-authorization>).
pub fn field_allowed(
    schema: &Schema,
    type_name: &str,
    def: &super::schema::FieldDef,
    caller: &Caller,
    default_mode: super::auth::AuthMode,
) -> bool {
    let allowed = schema.allowed_modes(type_name, def, default_mode);
    if !allowed.contains(&caller.mode) {
        return false;
    }
    match schema.cognito_groups(type_name, def) {
        Some(groups) if caller.mode == super::auth::AuthMode::CognitoUserPools => {
            groups.iter().any(|g| caller.groups.contains(g))
        }
        _ => true,
    }
}

async fn resolve(
    appsync: &AppSync,
    prepared: &Prepared,
    selected: &Selected,
    caller: &Caller,
) -> Result<Value, GraphQlError> {
    let request = ResolveRequest {
        parent_type: &prepared.root_type,
        field: &selected.name,
        arguments: &selected.arguments,
        caller,
        selection_set_list: Selected::selection_set_list(&selected.children),
    };
    appsync
        .resolvers
        .resolve(request)
        .await
        .map_err(|e| GraphQlError {
            data: e.data,
            error_info: e.error_info,
            ..GraphQlError::typed(&e.error_type, e.message)
        })
}

/// Cuts the mutation's result to the mutation's own selection set (keyed by
/// field name) and hands it to the subscriptions that listen for it.
fn broadcast(
    appsync: &AppSync,
    root_type: &str,
    selected: &Selected,
    ty: &TypeRef,
    value: &Value,
    caller: &Caller,
) {
    let mut completer = appsync.completer(caller, false);
    let path = vec![json!(selected.name)];
    if let Ok(result) = completer.complete(value, ty, selected, root_type, &path) {
        appsync.pubsub.publish(appsync, &selected.name, &result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appsync::auth::{AuthMode, Authenticator};
    use crate::appsync::filter::Filter;
    use crate::appsync::operation::{GraphQlRequest, prepare};
    use crate::appsync::resolvers::{ResolveRequest, ResolverError, Resolvers};
    use crate::appsync::schema::Schema;
    use crate::appsync::{AppSync, AppSyncConfig};
    use futures_util::future::BoxFuture;

    /// A directive matrix: default mode Cognito.
    const SDL: &str = r#"
        type Query {
            open: Thing
            keyed: Thing @aws_api_key
            admins: String @aws_cognito_user_pools(cognito_groups: ["admin"])
            staff: Staff @aws_cognito_user_pools
            plain: String
        }
        type Thing @aws_api_key @aws_cognito_user_pools {
            a: String
            b: String @aws_iam
            c: String!  @aws_iam
        }
        type Staff @aws_cognito_user_pools(cognito_groups: ["staff"]) {
            x: String
            y: String @aws_cognito_user_pools
        }
    "#;

    /// Every field resolves to one fixed object or string.
    struct Stub;

    impl Resolvers for Stub {
        fn resolve<'a>(
            &'a self,
            request: ResolveRequest<'a>,
        ) -> BoxFuture<'a, Result<Value, ResolverError>> {
            let v = match request.field {
                "open" | "keyed" => json!({"a": "A", "b": "B", "c": "C"}),
                "staff" => json!({"x": "X", "y": "Y"}),
                other => json!(other),
            };
            Box::pin(async move { Ok(v) })
        }

        fn subscribe(&self, _: ResolveRequest<'_>) -> Result<Option<Filter>, ResolverError> {
            Ok(None)
        }
    }

    fn appsync() -> AppSync {
        let key = crate::cognito::new_key().expect("a key");
        let auth = Authenticator {
            user_pool: crate::cognito::UserPool::new("http://127.0.0.1:1", "pool", "client", &key),
            iam_users: crate::dev_iam_users(),
            api_keys: vec!["k".into()],
            default_mode: AuthMode::CognitoUserPools,
        };
        let schema = Schema::parse(SDL).expect("test schema");
        AppSync::new(schema, auth, Box::new(Stub), AppSyncConfig::default())
    }

    fn caller(mode: AuthMode, groups: &[&str]) -> Caller {
        Caller {
            mode,
            identity: Value::Null,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    async fn run(appsync: &AppSync, query: &str, caller: &Caller) -> Value {
        let request = GraphQlRequest {
            query: query.into(),
            variables: None,
            operation_name: None,
        };
        let prepared = prepare(&appsync.schema, &request).expect("valid");
        execute(appsync, &prepared, caller).await.to_json()
    }

    fn unauthorized(body: &Value, field: &str, ty: &str) -> bool {
        body["errors"].as_array().is_some_and(|errors| {
            errors.iter().any(|e| {
                e["errorType"] == "Unauthorized"
                    && e["message"] == format!("Not Authorized to access {field} on type {ty}")
            })
        })
    }

    #[tokio::test]
    async fn no_directive_means_the_default_mode_only() {
        let a = appsync();
        let cognito = caller(AuthMode::CognitoUserPools, &[]);
        let body = run(&a, "{ plain }", &cognito).await;
        assert_eq!(body, json!({"data": {"plain": "plain"}}));
        for mode in [AuthMode::ApiKey, AuthMode::Iam] {
            let body = run(&a, "{ plain }", &caller(mode, &[])).await;
            assert_eq!(body["data"]["plain"], Value::Null, "{body}");
            assert!(unauthorized(&body, "plain", "Query"), "{body}");
        }
    }

    #[tokio::test]
    async fn a_field_directive_overrides_its_type() {
        let a = appsync();
        // Cognito: Query.open by default mode, Thing.a by the type, Thing.b is IAM only.
        let body = run(
            &a,
            "{ open { a b } }",
            &caller(AuthMode::CognitoUserPools, &[]),
        )
        .await;
        assert_eq!(
            body["data"],
            json!({"open": {"a": "A", "b": null}}),
            "{body}"
        );
        assert!(unauthorized(&body, "b", "Thing"), "{body}");
        assert_eq!(body["errors"][0]["path"], json!(["open", "b"]));
        // An API key may not call Query.open (no directive: Cognito only)...
        let body = run(&a, "{ open { a } }", &caller(AuthMode::ApiKey, &[])).await;
        assert_eq!(body["data"], json!({"open": null}), "{body}");
        assert!(unauthorized(&body, "open", "Query"), "{body}");
        // ...but may call Query.keyed and read Thing.a, not Thing.b.
        let body = run(&a, "{ keyed { a b } }", &caller(AuthMode::ApiKey, &[])).await;
        assert_eq!(
            body["data"],
            json!({"keyed": {"a": "A", "b": null}}),
            "{body}"
        );
        assert!(unauthorized(&body, "b", "Thing"), "{body}");
        // IAM may not call Query.keyed at all.
        let body = run(&a, "{ keyed { b } }", &caller(AuthMode::Iam, &[])).await;
        assert!(unauthorized(&body, "keyed", "Query"), "{body}");
        // An unauthorized non-null field nulls its parent, with both errors.
        let body = run(
            &a,
            "{ open { a c } }",
            &caller(AuthMode::CognitoUserPools, &[]),
        )
        .await;
        assert_eq!(body["data"], json!({"open": null}), "{body}");
        assert!(unauthorized(&body, "c", "Thing"), "{body}");
        assert_eq!(body["errors"].as_array().map(Vec::len), Some(1), "{body}");
    }

    #[tokio::test]
    async fn cognito_groups_require_membership() {
        let a = appsync();
        let outsider = caller(AuthMode::CognitoUserPools, &["users"]);
        let admin = caller(AuthMode::CognitoUserPools, &["users", "admin"]);
        let body = run(&a, "{ admins }", &outsider).await;
        assert_eq!(body["data"]["admins"], Value::Null);
        assert!(unauthorized(&body, "admins", "Query"), "{body}");
        let body = run(&a, "{ admins }", &admin).await;
        assert_eq!(body, json!({"data": {"admins": "admins"}}));
        // An API key is refused on a Cognito-only field whatever the groups.
        let body = run(&a, "{ admins }", &caller(AuthMode::ApiKey, &["admin"])).await;
        assert!(unauthorized(&body, "admins", "Query"), "{body}");
        // Type-level groups apply to Staff.x; Staff.y's own directive names none.
        let body = run(&a, "{ staff { x y } }", &outsider).await;
        assert_eq!(
            body["data"],
            json!({"staff": {"x": null, "y": "Y"}}),
            "{body}"
        );
        assert!(unauthorized(&body, "x", "Staff"), "{body}");
        let staff = caller(AuthMode::CognitoUserPools, &["staff"]);
        let body = run(&a, "{ staff { x y } }", &staff).await;
        assert_eq!(body, json!({"data": {"staff": {"x": "X", "y": "Y"}}}));
    }
}
