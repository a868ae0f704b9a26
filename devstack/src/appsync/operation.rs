//! A GraphQL operation as AppSync prepares it before any resolver runs: parsed,
//! its selection sets flattened (fragments included), every field and argument
//! checked against the schema, and argument values coerced to their declared
//! types with variables substituted. Place in the data path: publisher and
//! subscribers -> **AppSync** (validation) -> resolvers.
//!
//! Error texts follow the `Validation error of type ...` messages AppSync
//! returns (it validates with graphql-java).

use std::collections::HashMap;

use graphql_parser::query::{
    self, Definition, FragmentDefinition, OperationDefinition, Selection, SelectionSet,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::schema::{InputValueDef, Schema, TypeDef, TypeRef};

/// The JSON body of `POST /graphql`, and the `data` string of a real-time `start`.
#[derive(Debug, Deserialize)]
pub struct GraphQLRequest {
    pub query: String,
    #[serde(default)]
    pub variables: Option<Value>,
    #[serde(default, rename = "operationName")]
    pub operation_name: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationKind {
    Query,
    Mutation,
    Subscription,
}

/// One selected field, fragments flattened, arguments coerced.
#[derive(Clone, Debug)]
pub struct Selected {
    /// The response key: the alias, or the field name.
    pub key: String,
    pub name: String,
    pub arguments: Map<String, Value>,
    pub children: Vec<Selected>,
    pub line: usize,
    pub column: usize,
}

impl Selected {
    /// AppSync's `info.selectionSetList`: the paths of every selected field.
    pub fn selection_set_list(children: &[Selected]) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(prefix: &str, sel: &[Selected], out: &mut Vec<String>) {
            for s in sel.iter().filter(|s| s.name != "__typename") {
                let path = if prefix.is_empty() {
                    s.name.clone()
                } else {
                    format!("{prefix}/{}", s.name)
                };
                out.push(path.clone());
                walk(&path, &s.children, out);
            }
        }
        walk("", children, &mut out);
        out
    }
}

/// A validated operation, ready to execute.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub kind: OperationKind,
    pub root_type: String,
    pub fields: Vec<Selected>,
}

/// A GraphQL error entry, in AppSync's shape.
#[derive(Clone, Debug, PartialEq)]
pub struct GqlError {
    pub message: String,
    pub error_type: Option<String>,
    pub path: Option<Vec<Value>>,
    pub location: Option<(usize, usize)>,
    pub data: Option<Value>,
    pub error_info: Option<Value>,
}

impl GqlError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            error_type: None,
            path: None,
            location: None,
            data: None,
            error_info: None,
        }
    }

    pub fn typed(error_type: &str, message: impl Into<String>) -> Self {
        Self {
            error_type: Some(error_type.to_owned()),
            ..Self::new(message)
        }
    }

    fn at(mut self, line: usize, column: usize) -> Self {
        self.location = Some((line, column));
        self
    }

    pub fn to_json(&self) -> Value {
        let locations = self
            .location
            .map(|(l, c)| json!([{"line": l, "column": c, "sourceName": null}]))
            .unwrap_or(Value::Null);
        json!({
            "path": self.path,
            "data": self.data,
            "errorType": self.error_type,
            "errorInfo": self.error_info,
            "locations": locations,
            "message": self.message,
        })
    }
}

/// Parses and validates `request` against `schema`.
pub fn prepare(schema: &Schema, request: &GraphQLRequest) -> Result<Prepared, Vec<GqlError>> {
    let doc = query::parse_query::<String>(&request.query)
        .map_err(|e| {
            vec![GqlError::typed(
                "MalformedHttpRequestException",
                format!("Invalid Syntax : {e}").trim().to_owned(),
            )]
        })?
        .into_static();
    let mut fragments = HashMap::new();
    let mut operations = Vec::new();
    for def in &doc.definitions {
        match def {
            Definition::Fragment(f) => {
                fragments.insert(f.name.clone(), f);
            }
            Definition::Operation(o) => operations.push(o),
        }
    }
    let operation = pick_operation(&operations, request.operation_name.as_deref())?;
    let (kind, selection_set, variable_defs) = match operation {
        OperationDefinition::SelectionSet(s) => (OperationKind::Query, s, &[][..]),
        OperationDefinition::Query(q) => (
            OperationKind::Query,
            &q.selection_set,
            &q.variable_definitions[..],
        ),
        OperationDefinition::Mutation(m) => (
            OperationKind::Mutation,
            &m.selection_set,
            &m.variable_definitions[..],
        ),
        OperationDefinition::Subscription(s) => (
            OperationKind::Subscription,
            &s.selection_set,
            &s.variable_definitions[..],
        ),
    };
    let root_type = match kind {
        OperationKind::Query => Some(schema.query.clone()),
        OperationKind::Mutation => schema.mutation.clone(),
        OperationKind::Subscription => schema.subscription.clone(),
    }
    .ok_or_else(|| vec![GqlError::new("Validation error of type UnknownOperation: the schema has no root type for this operation")])?;
    let variables = variable_values(variable_defs, request.variables.as_ref());
    let mut errors = Vec::new();
    let walker = Walker {
        schema,
        fragments: &fragments,
        variables: &variables,
        declared: variable_defs.iter().map(|d| d.name.as_str()).collect(),
    };
    let fields = walker.selection(selection_set, &root_type, "", &mut errors);
    if kind == OperationKind::Subscription
        && fields.iter().filter(|f| f.name != "__typename").count() != 1
    {
        errors.push(GqlError::new(
            "Validation error of type SubscriptionMultipleRootFields: Subscription operations must have exactly one root field",
        ));
    }
    if errors.is_empty() {
        Ok(Prepared {
            kind,
            root_type,
            fields,
        })
    } else {
        Err(errors)
    }
}

fn pick_operation<'d>(
    operations: &[&'d OperationDefinition<'static, String>],
    name: Option<&str>,
) -> Result<&'d OperationDefinition<'static, String>, Vec<GqlError>> {
    let name_of = |o: &OperationDefinition<'static, String>| match o {
        OperationDefinition::Query(q) => q.name.clone(),
        OperationDefinition::Mutation(m) => m.name.clone(),
        OperationDefinition::Subscription(s) => s.name.clone(),
        OperationDefinition::SelectionSet(_) => None,
    };
    match (name, operations) {
        (None, [only]) => Ok(*only),
        (None, _) => Err(vec![GqlError::new(
            "Must provide operation name if query contains multiple operations.",
        )]),
        (Some(n), ops) => ops
            .iter()
            .find(|o| name_of(o).as_deref() == Some(n))
            .copied()
            .ok_or_else(|| vec![GqlError::new(format!("Unknown operation named '{n}'."))]),
    }
}

fn variable_values(
    defs: &[query::VariableDefinition<'static, String>],
    given: Option<&Value>,
) -> Map<String, Value> {
    let given = given.and_then(Value::as_object);
    defs.iter()
        .filter_map(|d| {
            let value = given
                .and_then(|g| g.get(&d.name).cloned())
                .or_else(|| d.default_value.as_ref().map(|v| literal(v, &Map::new())))?;
            Some((d.name.clone(), value))
        })
        .collect()
}

/// A query literal as JSON, variables substituted.
fn literal(v: &query::Value<'static, String>, vars: &Map<String, Value>) -> Value {
    match v {
        query::Value::Variable(n) => vars.get(n).cloned().unwrap_or(Value::Null),
        query::Value::Int(i) => i.as_i64().map(Value::from).unwrap_or(Value::Null),
        query::Value::Float(f) => json!(f),
        query::Value::String(s) => Value::String(s.clone()),
        query::Value::Boolean(b) => Value::Bool(*b),
        query::Value::Null => Value::Null,
        query::Value::Enum(e) => Value::String(e.clone()),
        query::Value::List(l) => Value::Array(l.iter().map(|x| literal(x, vars)).collect()),
        query::Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), literal(x, vars)))
                .collect(),
        ),
    }
}

/// The names of the variables a literal uses.
fn variables_in(v: &query::Value<'static, String>, out: &mut Vec<String>) {
    match v {
        query::Value::Variable(n) => out.push(n.clone()),
        query::Value::List(l) => l.iter().for_each(|x| variables_in(x, out)),
        query::Value::Object(o) => o.values().for_each(|x| variables_in(x, out)),
        _ => {}
    }
}

struct Walker<'a> {
    schema: &'a Schema,
    fragments: &'a HashMap<String, &'a FragmentDefinition<'static, String>>,
    variables: &'a Map<String, Value>,
    /// The variables the operation declares.
    declared: Vec<&'a str>,
}

impl Walker<'_> {
    fn selection(
        &self,
        set: &SelectionSet<'static, String>,
        type_name: &str,
        path: &str,
        errors: &mut Vec<GqlError>,
    ) -> Vec<Selected> {
        let mut out = Vec::new();
        for item in &set.items {
            match item {
                Selection::Field(f) => {
                    if let Some(s) = self.field(f, type_name, path, errors) {
                        out.push(s);
                    }
                }
                Selection::InlineFragment(i) => {
                    out.extend(self.selection(&i.selection_set, type_name, path, errors));
                }
                Selection::FragmentSpread(s) => match self.fragments.get(&s.fragment_name) {
                    Some(f) => {
                        out.extend(self.selection(&f.selection_set, type_name, path, errors))
                    }
                    None => errors.push(
                        GqlError::new(format!(
                            "Validation error of type UndefinedFragment: Undefined fragment {}",
                            s.fragment_name
                        ))
                        .at(s.position.line, s.position.column),
                    ),
                },
            }
        }
        out
    }

    fn field(
        &self,
        f: &query::Field<'static, String>,
        type_name: &str,
        path: &str,
        errors: &mut Vec<GqlError>,
    ) -> Option<Selected> {
        let (line, column) = (f.position.line, f.position.column);
        let path = format!("{path}/{}", f.name);
        if f.name == "__typename" {
            return Some(Selected {
                key: f.alias.clone().unwrap_or_else(|| f.name.clone()),
                name: f.name.clone(),
                arguments: Map::new(),
                children: Vec::new(),
                line,
                column,
            });
        }
        let Some(def) = self.schema.field(type_name, &f.name) else {
            errors.push(
                GqlError::new(format!(
                    "Validation error of type FieldUndefined: Field '{}' in type '{type_name}' is undefined @ '{}'",
                    f.name,
                    path.trim_start_matches('/')
                ))
                .at(line, column),
            );
            return None;
        };
        let arguments = self.arguments(f, &def.args, &path, errors);
        let base = def.ty.base();
        let is_object = matches!(self.schema.get(base), Some(TypeDef::Object { .. }));
        let children = if is_object {
            if f.selection_set.items.is_empty() {
                errors.push(
                    GqlError::new(format!(
                        "Validation error of type SubSelectionRequired: Sub selection required for type {} of field {} @ '{}'",
                        def.ty, f.name, path.trim_start_matches('/')
                    ))
                    .at(line, column),
                );
            }
            self.selection(&f.selection_set, base, &path, errors)
        } else {
            if !f.selection_set.items.is_empty() {
                errors.push(
                    GqlError::new(format!(
                        "Validation error of type SubSelectionNotAllowed: Sub selection not allowed on leaf type {} of field {} @ '{}'",
                        def.ty, f.name, path.trim_start_matches('/')
                    ))
                    .at(line, column),
                );
            }
            Vec::new()
        };
        Some(Selected {
            key: f.alias.clone().unwrap_or_else(|| f.name.clone()),
            name: f.name.clone(),
            arguments,
            children,
            line,
            column,
        })
    }

    fn arguments(
        &self,
        f: &query::Field<'static, String>,
        defs: &[InputValueDef],
        path: &str,
        errors: &mut Vec<GqlError>,
    ) -> Map<String, Value> {
        let at = |e: GqlError| e.at(f.position.line, f.position.column);
        for (_, value) in &f.arguments {
            let mut used = Vec::new();
            variables_in(value, &mut used);
            for name in used.iter().filter(|n| !self.declared.contains(&n.as_str())) {
                errors.push(at(GqlError::new(format!(
                    "Validation error of type UndefinedVariable: Undefined variable {name} @ '{}'",
                    path.trim_start_matches('/')
                ))));
            }
        }
        for (name, _) in &f.arguments {
            if !defs.iter().any(|d| &d.name == name) {
                errors.push(at(GqlError::new(format!(
                    "Validation error of type UnknownArgument: Unknown field argument {name} @ '{}'",
                    path.trim_start_matches('/')
                ))));
            }
        }
        let mut out = Map::new();
        for def in defs {
            let given = f.arguments.iter().find(|(n, _)| n == &def.name);
            let value = match given {
                Some((_, v)) => Some(literal(v, self.variables)),
                None => def.default.clone(),
            };
            match value {
                Some(v) => match coerce(self.schema, &v, &def.ty) {
                    Ok(v) => {
                        out.insert(def.name.clone(), v);
                    }
                    Err(why) => errors.push(at(GqlError::new(format!(
                        "Validation error of type WrongType: argument '{}' with value '{}' {why} @ '{}'",
                        def.name,
                        v,
                        path.trim_start_matches('/')
                    )))),
                },
                None if matches!(def.ty, TypeRef::NonNull(_)) => errors.push(at(GqlError::new(format!(
                    "Validation error of type MissingFieldArgument: Missing field argument {} @ '{}'",
                    def.name,
                    path.trim_start_matches('/')
                )))),
                None => {}
            }
        }
        out
    }
}

/// Coerces a JSON input value to `ty`, or says why it does not fit.
pub fn coerce(schema: &Schema, v: &Value, ty: &TypeRef) -> Result<Value, String> {
    match ty {
        TypeRef::NonNull(inner) => {
            if v.is_null() {
                Err(format!("must not be null for type '{ty}'"))
            } else {
                coerce(schema, v, inner)
            }
        }
        _ if v.is_null() => Ok(Value::Null),
        TypeRef::List(inner) => match v {
            Value::Array(items) => items
                .iter()
                .map(|i| coerce(schema, i, inner))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            single => Ok(Value::Array(vec![coerce(schema, single, inner)?])),
        },
        TypeRef::Named(name) => coerce_named(schema, v, name),
    }
}

fn coerce_named(schema: &Schema, v: &Value, name: &str) -> Result<Value, String> {
    let bad = || Err(format!("is not a valid '{name}'"));
    match (name, schema.get(name)) {
        ("Int", _) | ("AWSTimestamp", _) => match v.as_i64() {
            Some(i) if i32::try_from(i).is_ok() || name == "AWSTimestamp" => Ok(v.clone()),
            _ => bad(),
        },
        ("Float", _) => {
            if v.is_number() {
                Ok(v.clone())
            } else {
                bad()
            }
        }
        ("Boolean", _) => {
            if v.is_boolean() {
                Ok(v.clone())
            } else {
                bad()
            }
        }
        ("ID", _) => match v {
            Value::String(_) => Ok(v.clone()),
            Value::Number(n) if n.is_i64() => Ok(Value::String(n.to_string())),
            _ => bad(),
        },
        (_, Some(TypeDef::Scalar)) => match v.as_str() {
            Some(s) if aws_scalar_accepts(name, s) => Ok(v.clone()),
            _ => bad(),
        },
        (_, Some(TypeDef::Enum { values })) => match v.as_str() {
            Some(s) if values.iter().any(|x| x == s) => Ok(v.clone()),
            _ => bad(),
        },
        (_, Some(TypeDef::InputObject { fields })) => {
            let Some(obj) = v.as_object() else {
                return bad();
            };
            if let Some(extra) = obj.keys().find(|k| !fields.iter().any(|f| &f.name == *k)) {
                return Err(format!("contains a field not in '{name}': '{extra}'"));
            }
            let mut out = Map::new();
            for f in fields {
                match obj.get(&f.name).or(f.default.as_ref()) {
                    Some(x) => {
                        out.insert(f.name.clone(), coerce(schema, x, &f.ty)?);
                    }
                    None if matches!(f.ty, TypeRef::NonNull(_)) => {
                        return Err(format!("is missing required fields '[{}]'", f.name));
                    }
                    None => {}
                }
            }
            Ok(Value::Object(out))
        }
        _ => bad(),
    }
}

/// Whether a string input is a valid value of one of AppSync's own scalars;
/// `String`, `ID` and custom scalars accept any string. Formats as the AppSync
/// docs describe them
/// (<https://docs.aws.amazon.com/appsync/latest/devguide/scalars.html>).
fn aws_scalar_accepts(name: &str, s: &str) -> bool {
    match name {
        "AWSDate" => date_with_offset(s),
        "AWSTime" => time_with_offset(s),
        "AWSDateTime" => s
            .split_once('T')
            .is_some_and(|(date, time)| is_date(date) && time_with_required_offset(time)),
        "AWSEmail" => is_email(s),
        "AWSJSON" => serde_json::from_str::<Value>(s).is_ok(),
        "AWSURL" => is_url(s),
        "AWSPhone" => is_phone(s),
        "AWSIPAddress" => is_ip_address(s),
        _ => true,
    }
}

fn all_digits(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit())
}

fn number_in(s: &str, len: usize, max: u32) -> bool {
    all_digits(s, len) && s.parse::<u32>().is_ok_and(|n| n <= max)
}

/// `YYYY-MM-DD` (a leading `-` for negative years is allowed, as the docs say).
fn is_date(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let parts: Vec<&str> = s.split('-').collect();
    match parts.as_slice() {
        [y, m, d] => {
            all_digits(y, 4)
                && number_in(m, 2, 12)
                && m != &"00"
                && number_in(d, 2, 31)
                && d != &"00"
        }
        _ => false,
    }
}

/// `hh:mm`, `hh:mm:ss` or `hh:mm:ss.f` with 1 to 9 fraction digits.
fn is_time(s: &str) -> bool {
    let (clock, fraction) = match s.split_once('.') {
        Some((c, f)) => (c, Some(f)),
        None => (s, None),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let clock_ok = match parts.as_slice() {
        [h, m] => fraction.is_none() && number_in(h, 2, 23) && number_in(m, 2, 59),
        [h, m, sec] => number_in(h, 2, 23) && number_in(m, 2, 59) && number_in(sec, 2, 59),
        _ => false,
    };
    clock_ok
        && fraction
            .is_none_or(|f| (1..=9).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()))
}

/// `Z`, `+hh:mm`, `-hh:mm` or, as AppSync also accepts, `+hh:mm:ss`.
fn is_offset(s: &str) -> bool {
    if s == "Z" {
        return true;
    }
    let Some(rest) = s.strip_prefix('+').or_else(|| s.strip_prefix('-')) else {
        return false;
    };
    let parts: Vec<&str> = rest.split(':').collect();
    match parts.as_slice() {
        [h, m] => number_in(h, 2, 23) && number_in(m, 2, 59),
        [h, m, sec] => number_in(h, 2, 23) && number_in(m, 2, 59) && number_in(sec, 2, 59),
        _ => false,
    }
}

/// Splits `value` into its part before a time-zone offset and the offset.
fn split_offset(s: &str) -> (&str, Option<&str>) {
    if let Some(body) = s.strip_suffix('Z') {
        return (body, Some("Z"));
    }
    match s.rfind(['+', '-']) {
        Some(i) if i > 0 => (&s[..i], Some(&s[i..])),
        _ => (s, None),
    }
}

fn time_with_offset(s: &str) -> bool {
    match split_offset(s) {
        (t, Some(o)) => is_time(t) && is_offset(o),
        (t, None) => is_time(t),
    }
}

fn time_with_required_offset(s: &str) -> bool {
    matches!(split_offset(s), (t, Some(o)) if is_time(t) && is_offset(o))
}

/// `YYYY-MM-DD` with an optional offset (`1970-01-01Z`, `1970-01-01-07:00`).
fn date_with_offset(s: &str) -> bool {
    if is_date(s) {
        return true;
    }
    if let Some(body) = s.strip_suffix('Z') {
        return is_date(body);
    }
    // The date has two or three `-` of its own; an offset adds one sign.
    s.len() > 10 && {
        let (date, offset) = s.split_at(s.len() - 6);
        is_date(date) && is_offset(offset)
    }
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !local.contains('@')
        && !s.chars().any(char::is_whitespace)
        && domain.split('.').count() >= 2
        && domain.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A scheme (`http`, `mailto`, ...), then a body without whitespace; no `//`
/// in the path part.
fn is_url(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok || rest.is_empty() || s.chars().any(char::is_whitespace) {
        return false;
    }
    match rest.strip_prefix("//") {
        Some(after) => {
            let (authority, path) = after.split_at(after.find('/').unwrap_or(after.len()));
            !authority.is_empty() && !path.contains("//")
        }
        None => !rest.contains("//"),
    }
}

/// Digits with spaces or hyphens between groups; with a leading `+` a country
/// code, without one a North American (NANP) number of 10 digits (11 with a
/// leading 1).
fn is_phone(s: &str) -> bool {
    let (international, body) = match s.strip_prefix('+') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let starts_and_ends_with_digit = body.chars().next().is_some_and(|c| c.is_ascii_digit())
        && body.chars().last().is_some_and(|c| c.is_ascii_digit());
    if !starts_and_ends_with_digit
        || !body
            .chars()
            .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
    {
        return false;
    }
    let digits: String = body.chars().filter(char::is_ascii_digit).collect();
    if international {
        (8..=15).contains(&digits.len())
    } else {
        digits.len() == 10 || (digits.len() == 11 && digits.starts_with('1'))
    }
}

/// IPv4 or IPv6, optionally with a CIDR prefix.
fn is_ip_address(s: &str) -> bool {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let Ok(ip) = addr.parse::<std::net::IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    prefix.is_none_or(|p| {
        !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| n <= max)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::parse(include_str!("../../../schema.graphql")).expect("schema")
    }

    fn req(query: &str, variables: Value) -> GraphQLRequest {
        GraphQLRequest {
            query: query.into(),
            variables: Some(variables),
            operation_name: None,
        }
    }

    #[test]
    fn flattens_fragments_and_substitutes_variables() {
        let q = "subscription S($c: ID!) { onChunk(conversationId: $c) { ...F usage { totalTokens } } } fragment F on Chunk { seq text }";
        let p = prepare(&schema(), &req(q, json!({"c": "conv-1"}))).expect("valid");
        assert_eq!(p.kind, OperationKind::Subscription);
        let f = &p.fields[0];
        assert_eq!(f.arguments["conversationId"], "conv-1");
        assert_eq!(
            Selected::selection_set_list(&f.children),
            vec!["seq", "text", "usage", "usage/totalTokens"]
        );
    }

    #[test]
    fn refuses_unknown_fields_missing_arguments_and_wrong_types() {
        let s = schema();
        let unknown = prepare(&s, &req("{ nope }", json!({}))).expect_err("invalid");
        assert!(unknown[0].message.contains("FieldUndefined"));
        let missing =
            prepare(&s, &req("subscription { onChunk { seq } }", json!({}))).expect_err("invalid");
        assert!(missing[0].message.contains("MissingFieldArgument"));
        let q = "mutation M($i: ChunkInput!) { publishChunk(input: $i) { seq } }";
        let wrong = prepare(&s, &req(q, json!({"i": {"conversationId": "c", "turnId": "t", "owner": "o", "seq": "x", "text": "", "done": false}}))).expect_err("invalid");
        assert!(
            wrong[0].message.contains("WrongType"),
            "{}",
            wrong[0].message
        );
        let leaf = prepare(
            &s,
            &req("subscription { onChunk(conversationId: \"c\") }", json!({})),
        )
        .expect_err("invalid");
        assert!(leaf[0].message.contains("SubSelectionRequired"));
    }

    const SCALARS: &str = "
        type Query { probe(dt: AWSDateTime, d: AWSDate, t: AWSTime, ts: AWSTimestamp,
            email: AWSEmail, json: AWSJSON, url: AWSURL, phone: AWSPhone,
            ip: AWSIPAddress, s: String): String }
    ";

    /// Prepares `{ probe(arg: $v) }` with `value` as the variable; Ok if accepted.
    fn probe(arg: &str, ty: &str, value: Value) -> Result<Prepared, Vec<GqlError>> {
        let s = Schema::parse(SCALARS).expect("test schema");
        let q = format!("query Q($v: {ty}) {{ probe({arg}: $v) }}");
        prepare(&s, &req(&q, json!({ "v": value })))
    }

    fn accepts(arg: &str, ty: &str, good: &[Value], bad: &[Value]) {
        for v in good {
            assert!(probe(arg, ty, v.clone()).is_ok(), "{ty} should accept {v}");
        }
        for v in bad {
            let errors = probe(arg, ty, v.clone()).expect_err(&format!("{ty} refuses {v}"));
            assert!(
                errors[0]
                    .message
                    .starts_with("Validation error of type WrongType")
                    && errors[0]
                        .message
                        .contains(&format!("is not a valid '{ty}'")),
                "{}",
                errors[0].message
            );
            assert!(errors[0].location.is_some(), "a location for {v}");
        }
    }

    #[test]
    fn an_undeclared_variable_is_refused() {
        let e = prepare(
            &schema(),
            &req(
                "subscription { onChunk(conversationId: $c) { seq } }",
                json!({"c": "x"}),
            ),
        )
        .expect_err("invalid");
        assert!(
            e.iter().any(|e| e.message
                == "Validation error of type UndefinedVariable: Undefined variable c @ 'onChunk'"),
            "{e:?}"
        );
    }

    #[test]
    fn aws_date_time_scalars() {
        accepts(
            "dt",
            "AWSDateTime",
            &[
                json!("1970-01-01T12:00:00.000Z"),
                json!("1970-01-01T12:00Z"),
                json!("2024-02-29T23:59:59.123456789+05:30"),
                json!("1970-01-01T00:00:00-07:00:30"),
            ],
            &[
                json!("1970-01-01T12:00:00"),
                json!("1970-01-01"),
                json!("1970-13-01T00:00:00Z"),
                json!("yesterday"),
                json!(0),
            ],
        );
        accepts(
            "d",
            "AWSDate",
            &[
                json!("1970-01-01"),
                json!("1970-01-01Z"),
                json!("1970-01-01-07:00"),
            ],
            &[
                json!("1970-1-1"),
                json!("1970-01-32"),
                json!("01/01/1970"),
                json!("1970-01-01T00:00Z"),
            ],
        );
        accepts(
            "t",
            "AWSTime",
            &[
                json!("12:30"),
                json!("12:30:15"),
                json!("12:30:15.123"),
                json!("12:30:15Z"),
                json!("12:30:15+01:00"),
            ],
            &[
                json!("24:00:00"),
                json!("12"),
                json!("12:30:15.1234567890"),
                json!("noon"),
            ],
        );
        accepts(
            "ts",
            "AWSTimestamp",
            &[json!(0), json!(1_700_000_000_000_i64)],
            &[json!("1700000000"), json!(1.5)],
        );
    }

    #[test]
    fn aws_string_scalars() {
        accepts(
            "email",
            "AWSEmail",
            &[
                json!("someone@example.com"),
                json!("a.b+c@mail.example.org"),
            ],
            &[
                json!("someone"),
                json!("@example.com"),
                json!("a@b"),
                json!("a b@example.com"),
            ],
        );
        accepts(
            "json",
            "AWSJSON",
            &[
                json!("{\"a\":1}"),
                json!("[1,2]"),
                json!("\"s\""),
                json!("3"),
            ],
            &[json!("{a:1}"), json!({"a": 1}), json!("")],
        );
        accepts(
            "url",
            "AWSURL",
            &[
                json!("https://www.example.com/dp/B000NZW3KC/"),
                json!("mailto:someone@example.com"),
            ],
            &[
                json!("www.example.com"),
                json!("https://example.com//double"),
                json!("http://"),
            ],
        );
        accepts(
            "phone",
            "AWSPhone",
            &[
                json!("+1 555 764 4377"),
                json!("555-764-4377"),
                json!("+44 20 7946 0958"),
            ],
            &[
                json!("764 4377"),
                json!("phone"),
                json!("+1 (555) 764 4377"),
            ],
        );
        accepts(
            "ip",
            "AWSIPAddress",
            &[
                json!("127.0.0.1"),
                json!("10.0.0.0/8"),
                json!("::1"),
                json!("2001:db8::/32"),
            ],
            &[json!("256.0.0.1"), json!("10.0.0.0/33"), json!("localhost")],
        );
        // Plain strings are not checked.
        assert!(probe("s", "String", json!("anything")).is_ok());
    }

    #[test]
    fn a_literal_scalar_is_checked_too_and_located() {
        let s = Schema::parse(SCALARS).expect("test schema");
        let errors =
            prepare(&s, &req("{\n  probe(email: \"nope\") }", json!({}))).expect_err("invalid");
        assert_eq!(errors[0].location, Some((2, 3)));
        assert!(
            errors[0].message.contains("'AWSEmail'"),
            "{}",
            errors[0].message
        );
    }
}
