//! Executing a prepared operation: per-field authorization, resolver calls, and
//! completing results against the selection set (with GraphQL's null
//! propagation). The same completion cuts a published mutation result down to
//! each subscriber's selection set. Place in the data path: publisher ->
//! **AppSync execution** -> fan-out -> subscriber.

use serde_json::{Map, Value, json};

use super::AppSync;
use super::auth::Caller;
use super::operation::{GqlError, OperationKind, Prepared, Selected};
use super::resolvers::ResolveRequest;
use super::schema::{Schema, TypeDef, TypeRef};

/// The result of one operation: `data` and `errors`, as the HTTP body carries them.
pub struct Outcome {
    pub data: Value,
    pub errors: Vec<GqlError>,
}

impl Outcome {
    pub fn to_json(&self) -> Value {
        let mut body = json!({"data": self.data});
        if !self.errors.is_empty() {
            body["errors"] = Value::Array(self.errors.iter().map(GqlError::to_json).collect());
        }
        body
    }
}

/// A null that must propagate to the nearest nullable parent.
#[derive(Debug)]
pub struct Propagate;

/// Completes resolver results against a selection set for one caller.
pub struct Completer<'a> {
    pub schema: &'a Schema,
    pub caller: &'a Caller,
    pub default_mode: super::auth::AuthMode,
    /// Key results by alias (responses) or by field name (broadcast results).
    pub by_alias: bool,
    pub errors: Vec<GqlError>,
}

impl Completer<'_> {
    /// Completes `value` at a field of type `ty` whose parent type is `parent`.
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
                    let mut e = GqlError::new(format!(
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
            let allowed = self.schema.allowed_modes(type_name, def, self.default_mode);
            let field_value = if allowed.contains(&self.caller.mode) {
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
pub fn unauthorized_field(field: &str, type_name: &str, path: &[Value], at: &Selected) -> GqlError {
    let mut e = GqlError::typed(
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
        let value = match resolved {
            Ok(v) => v,
            Err(mut e) => {
                e.path = Some(path.clone());
                e.location = Some((selected.line, selected.column));
                errors.push(e);
                Value::Null
            }
        };
        let mut completer = appsync.completer(caller, true);
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
    let allowed = appsync
        .schema
        .allowed_modes(type_name, def, appsync.auth.default_mode);
    if !allowed.contains(&caller.mode) {
        return false;
    }
    match appsync.schema.cognito_groups(type_name, def) {
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
) -> Result<Value, GqlError> {
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
        .map_err(|e| GqlError::typed(&e.error_type, e.message))
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
