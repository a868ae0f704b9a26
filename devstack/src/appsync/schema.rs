//! The GraphQL schema as AppSync reads it: types, fields, arguments, and the
//! AppSync directives that decide who may call what (`@aws_iam`,
//! `@aws_cognito_user_pools`, ...) and which mutations feed which subscription
//! (`@aws_subscribe`).
//!
//! Place in the data path: client, resolver Lambda and subscriber -> **AppSync
//! (the schema every step reads)** -> resolvers -> fan-out.
//!
//! Auth rules follow
//! <https://docs.aws.amazon.com/appsync/latest/devguide/security-authz.html#using-additional-authorization-modes>:
//! a directive on a field overrides its type's; with none on either, only the
//! API's default mode is allowed.

use std::collections::HashMap;

use graphql_parser::schema::{self, Definition, TypeDefinition};

use super::auth::AuthMode;

/// A type reference: `Name`, `[T]`, `T!`.
#[derive(Clone, Debug, PartialEq)]
pub enum TypeRef {
    /// A named type: `Chunk`, `String`, ...
    Named(String),
    /// A list of the inner type: `[T]`.
    List(Box<TypeRef>),
    /// The inner type, never null: `T!`.
    NonNull(Box<TypeRef>),
}

impl TypeRef {
    fn from_ast(ty: &schema::Type<'static, String>) -> Self {
        match ty {
            schema::Type::NamedType(n) => TypeRef::Named(n.clone()),
            schema::Type::ListType(t) => TypeRef::List(Box::new(Self::from_ast(t))),
            schema::Type::NonNullType(t) => TypeRef::NonNull(Box::new(Self::from_ast(t))),
        }
    }

    /// The named type under any list and non-null wrappers.
    pub fn base(&self) -> &str {
        match self {
            TypeRef::Named(n) => n,
            TypeRef::List(t) | TypeRef::NonNull(t) => t.base(),
        }
    }
}

impl std::fmt::Display for TypeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TypeRef::Named(n) => write!(f, "{n}"),
            TypeRef::List(t) => write!(f, "[{t}]"),
            TypeRef::NonNull(t) => write!(f, "{t}!"),
        }
    }
}

/// An argument or input field.
#[derive(Clone, Debug)]
pub struct InputValueDef {
    /// The argument's or input field's name.
    pub name: String,
    /// Its declared type.
    pub ty: TypeRef,
    /// Its default value, if the schema gives one.
    pub default: Option<serde_json::Value>,
}

/// A directive as written: its name and its arguments as JSON.
#[derive(Clone, Debug)]
pub struct DirectiveUse {
    /// The directive's name without `@`, e.g. `aws_subscribe`.
    pub name: String,
    /// Its arguments, e.g. `mutations` or `cognito_groups`.
    pub args: HashMap<String, serde_json::Value>,
}

/// A field of an object (or interface) type.
#[derive(Clone, Debug)]
pub struct FieldDef {
    /// The field's name.
    pub name: String,
    /// Its arguments.
    pub args: Vec<InputValueDef>,
    /// Its result type.
    pub ty: TypeRef,
    /// The directives on it (auth, `@aws_subscribe`).
    pub directives: Vec<DirectiveUse>,
}

/// The kinds of named type this stand-in executes.
#[derive(Clone, Debug)]
pub enum TypeDef {
    /// An object type (interfaces are read as objects too).
    Object {
        /// Its fields.
        fields: Vec<FieldDef>,
        /// The directives on the type (auth modes for all its fields).
        directives: Vec<DirectiveUse>,
    },
    /// An input object type.
    InputObject {
        /// Its fields.
        fields: Vec<InputValueDef>,
    },
    /// An enum type.
    Enum {
        /// Its values' names.
        values: Vec<String>,
    },
    /// A scalar, built in or custom (unions are read as scalars: not executed).
    Scalar,
}

/// Why a schema could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The SDL does not parse (the parser's message).
    #[error("the schema does not parse: {0}")]
    Syntax(String),
    /// A root type the schema needs is missing (`Query`).
    #[error("the schema has no {0} type")]
    MissingRoot(&'static str),
}

/// A loaded schema.
#[derive(Clone, Debug)]
pub struct Schema {
    types: HashMap<String, TypeDef>,
    /// The query root type's name.
    pub query: String,
    /// The mutation root type's name, if the schema has one.
    pub mutation: Option<String>,
    /// The subscription root type's name, if the schema has one.
    pub subscription: Option<String>,
}

const AUTH_DIRECTIVES: [(&str, AuthMode); 5] = [
    ("aws_iam", AuthMode::Iam),
    ("aws_cognito_user_pools", AuthMode::CognitoUserPools),
    ("aws_api_key", AuthMode::ApiKey),
    ("aws_oidc", AuthMode::Oidc),
    ("aws_lambda", AuthMode::Lambda),
];

impl Schema {
    /// Parses SDL (AppSync's scalars are built in, as in the service). Root
    /// types are the `schema { ... }` block's, else `Query`, `Mutation` and
    /// `Subscription` by name.
    ///
    /// # Errors
    ///
    /// [`SchemaError::Syntax`] for SDL that does not parse,
    /// [`SchemaError::MissingRoot`] without a query type.
    pub fn parse(sdl: &str) -> Result<Self, SchemaError> {
        let doc = graphql_parser::parse_schema::<String>(sdl)
            .map_err(|e| SchemaError::Syntax(e.to_string()))?
            .into_static();
        let mut types = builtin_scalars();
        let (mut query, mut mutation, mut subscription) = (None, None, None);
        for def in doc.definitions {
            match def {
                Definition::SchemaDefinition(s) => {
                    query = s.query;
                    mutation = s.mutation;
                    subscription = s.subscription;
                }
                Definition::TypeDefinition(t) => {
                    let (name, def) = convert_type(t);
                    types.insert(name, def);
                }
                Definition::TypeExtension(_) | Definition::DirectiveDefinition(_) => {}
            }
        }
        let root = |explicit: Option<String>, name: &str| {
            explicit.or_else(|| types.contains_key(name).then(|| name.to_owned()))
        };
        Ok(Self {
            query: root(query, "Query").ok_or(SchemaError::MissingRoot("Query"))?,
            mutation: root(mutation, "Mutation"),
            subscription: root(subscription, "Subscription"),
            types,
        })
    }

    /// The named type, if the schema (or AppSync's built-in scalars) has it.
    pub fn get(&self, name: &str) -> Option<&TypeDef> {
        self.types.get(name)
    }

    /// A field of an object type.
    pub fn field(&self, type_name: &str, field: &str) -> Option<&FieldDef> {
        match self.types.get(type_name)? {
            TypeDef::Object { fields, .. } => fields.iter().find(|f| f.name == field),
            _ => None,
        }
    }

    /// The auth modes allowed on `type_name.field`: the field's directives, else
    /// the type's, else the default mode alone.
    pub fn allowed_modes(
        &self,
        type_name: &str,
        field: &FieldDef,
        default: AuthMode,
    ) -> Vec<AuthMode> {
        let from = |ds: &[DirectiveUse]| -> Vec<AuthMode> {
            AUTH_DIRECTIVES
                .iter()
                .filter(|(n, _)| ds.iter().any(|d| d.name == *n))
                .map(|(_, m)| *m)
                .collect()
        };
        let on_field = from(&field.directives);
        if !on_field.is_empty() {
            return on_field;
        }
        let on_type = match self.types.get(type_name) {
            Some(TypeDef::Object { directives, .. }) => from(directives),
            _ => Vec::new(),
        };
        if on_type.is_empty() {
            vec![default]
        } else {
            on_type
        }
    }

    /// The `cognito_groups` a Cognito caller must be in, if the field or type names any.
    pub fn cognito_groups(&self, type_name: &str, field: &FieldDef) -> Option<Vec<String>> {
        let groups = |ds: &[DirectiveUse]| {
            ds.iter()
                .find(|d| d.name == "aws_cognito_user_pools")
                .and_then(|d| d.args.get("cognito_groups"))
                .and_then(|v| serde_json::from_value::<Vec<String>>(v.clone()).ok())
        };
        // The directives that decide are the field's when it has any auth
        // directive (they override the type's), else the type's.
        let field_has_auth = field
            .directives
            .iter()
            .any(|d| AUTH_DIRECTIVES.iter().any(|(n, _)| d.name == *n));
        if field_has_auth {
            return groups(&field.directives);
        }
        match self.types.get(type_name) {
            Some(TypeDef::Object { directives, .. }) => groups(directives),
            _ => None,
        }
    }

    /// The mutations named by a subscription field's `@aws_subscribe`.
    pub fn subscribed_mutations(&self, field: &FieldDef) -> Vec<String> {
        field
            .directives
            .iter()
            .find(|d| d.name == "aws_subscribe")
            .and_then(|d| d.args.get("mutations"))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }
}

fn builtin_scalars() -> HashMap<String, TypeDef> {
    [
        "Int",
        "Float",
        "String",
        "Boolean",
        "ID",
        "AWSDate",
        "AWSTime",
        "AWSDateTime",
        "AWSTimestamp",
        "AWSEmail",
        "AWSJSON",
        "AWSURL",
        "AWSPhone",
        "AWSIPAddress",
    ]
    .into_iter()
    .map(|n| (n.to_owned(), TypeDef::Scalar))
    .collect()
}

fn convert_type(t: TypeDefinition<'static, String>) -> (String, TypeDef) {
    match t {
        TypeDefinition::Object(o) => (
            o.name,
            TypeDef::Object {
                fields: o.fields.iter().map(convert_field).collect(),
                directives: convert_directives(&o.directives),
            },
        ),
        TypeDefinition::InputObject(i) => (
            i.name,
            TypeDef::InputObject {
                fields: i.fields.iter().map(convert_input_value).collect(),
            },
        ),
        TypeDefinition::Enum(e) => (
            e.name,
            TypeDef::Enum {
                values: e.values.into_iter().map(|v| v.name).collect(),
            },
        ),
        TypeDefinition::Scalar(s) => (s.name, TypeDef::Scalar),
        TypeDefinition::Interface(i) => (
            i.name,
            TypeDef::Object {
                fields: i.fields.iter().map(convert_field).collect(),
                directives: convert_directives(&i.directives),
            },
        ),
        TypeDefinition::Union(u) => (u.name, TypeDef::Scalar),
    }
}

fn convert_field(f: &schema::Field<'static, String>) -> FieldDef {
    FieldDef {
        name: f.name.clone(),
        args: f.arguments.iter().map(convert_input_value).collect(),
        ty: TypeRef::from_ast(&f.field_type),
        directives: convert_directives(&f.directives),
    }
}

fn convert_input_value(v: &schema::InputValue<'static, String>) -> InputValueDef {
    InputValueDef {
        name: v.name.clone(),
        ty: TypeRef::from_ast(&v.value_type),
        default: v.default_value.as_ref().and_then(const_value),
    }
}

fn convert_directives(ds: &[schema::Directive<'static, String>]) -> Vec<DirectiveUse> {
    ds.iter()
        .map(|d| DirectiveUse {
            name: d.name.clone(),
            args: d
                .arguments
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), const_value(v)?)))
                .collect(),
        })
        .collect()
}

/// A constant (variable-free) value as JSON.
fn const_value(v: &schema::Value<'static, String>) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    Some(match v {
        schema::Value::Variable(_) => return None,
        schema::Value::Int(i) => J::from(i.as_i64()?),
        schema::Value::Float(f) => J::from(*f),
        schema::Value::String(s) => J::from(s.clone()),
        schema::Value::Boolean(b) => J::from(*b),
        schema::Value::Null => J::Null,
        schema::Value::Enum(e) => J::from(e.clone()),
        schema::Value::List(l) => J::Array(l.iter().filter_map(const_value).collect()),
        schema::Value::Object(o) => J::Object(
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), const_value(v)?)))
                .collect(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project_schema() -> Schema {
        Schema::parse(include_str!("../../../schema.graphql")).expect("schema")
    }

    #[test]
    fn reads_the_project_schema_and_its_directives() {
        let s = project_schema();
        assert_eq!(s.mutation.as_deref(), Some("Mutation"));
        let publish = s.field("Mutation", "publishChunk").expect("field");
        assert_eq!(
            s.allowed_modes("Mutation", publish, AuthMode::CognitoUserPools),
            vec![AuthMode::Iam]
        );
        let on_chunk = s.field("Subscription", "onChunk").expect("field");
        assert_eq!(
            s.subscribed_mutations(on_chunk),
            vec!["publishChunk".to_string()]
        );
    }

    #[test]
    fn type_directives_apply_when_the_field_has_none_and_default_otherwise() {
        let s = project_schema();
        let seq = s.field("Chunk", "seq").expect("field");
        let modes = s.allowed_modes("Chunk", seq, AuthMode::CognitoUserPools);
        assert!(modes.contains(&AuthMode::Iam) && modes.contains(&AuthMode::CognitoUserPools));
        let ping = s.field("Query", "ping").expect("field");
        assert_eq!(
            s.allowed_modes("Query", ping, AuthMode::CognitoUserPools),
            vec![AuthMode::CognitoUserPools]
        );
    }
}
