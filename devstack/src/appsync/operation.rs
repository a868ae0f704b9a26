//! A GraphQL operation as AppSync prepares it before any resolver runs: parsed,
//! its selection sets flattened (fragments included), every field and argument
//! checked against the schema, and argument values coerced to their declared
//! types (by the `scalars` module) with variables substituted.
//!
//! Place in the data path: client (`sendPrompt`), resolver Lambda
//! (`publishChunk`) and subscriber (`onChunk` start) -> **AppSync validation**
//! -> resolvers.
//!
//! Error texts follow the `Validation error of type ...` messages AppSync
//! returns (it validates with graphql-java).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use graphql_parser::query::{
    self, Definition, FragmentDefinition, OperationDefinition, Selection, SelectionSet,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::scalars::coerce;
use super::schema::{InputValueDef, Schema, TypeDef, TypeRef};

/// The JSON body of `POST /graphql`, and the `data` string of a real-time `start`.
#[derive(Debug, Deserialize)]
pub struct GraphQlRequest {
    /// The GraphQL document (`query`): one or more operations and fragments.
    pub query: String,
    /// The variables (`variables`), a JSON object when given.
    #[serde(default)]
    pub variables: Option<Value>,
    /// Which operation of the document to run (`operationName`); needed when
    /// it has more than one.
    #[serde(default, rename = "operationName")]
    pub operation_name: Option<String>,
}

/// The kind of an operation, which decides its root type and where it may be
/// sent (subscriptions only over the real-time socket).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationKind {
    /// `query` (or a bare selection set): read, over HTTP.
    Query,
    /// `mutation`: write over HTTP; its result feeds subscriptions.
    Mutation,
    /// `subscription`: over the real-time socket only.
    Subscription,
}

/// One selected field, fragments flattened, arguments coerced.
#[derive(Clone, Debug, PartialEq)]
pub struct Selected {
    /// The response key: the alias, or the field name.
    pub key: String,
    /// The field's name in the schema.
    pub name: String,
    /// Its arguments, variables substituted and coerced to their types.
    pub arguments: Map<String, Value>,
    /// Its own selection set (empty for a leaf).
    pub children: Vec<Selected>,
    /// Where the field is in the document (1-based), for error `locations`.
    pub line: usize,
    /// The column of [`Self::line`] (1-based).
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
    /// Query, mutation or subscription.
    pub kind: OperationKind,
    /// The root type its fields belong to (`Query`, `Mutation`, `Subscription`).
    pub root_type: String,
    /// The root fields it selects.
    pub fields: Vec<Selected>,
}

/// A GraphQL error entry, in AppSync's shape (see [`Self::to_json`]).
#[derive(Clone, Debug, PartialEq)]
pub struct GraphQlError {
    /// The human-readable `message`.
    pub message: String,
    /// AppSync's `errorType` (e.g. `Unauthorized`), when it has one.
    pub error_type: Option<String>,
    /// The response path of the field that failed (keys and list indexes).
    pub path: Option<Vec<Value>>,
    /// `(line, column)` in the document, 1-based.
    pub location: Option<(usize, usize)>,
    /// The `data` a resolver's `util.error` attached.
    pub data: Option<Value>,
    /// The `errorInfo` a resolver's `util.error` attached.
    pub error_info: Option<Value>,
}

impl GraphQlError {
    /// An error with `message` alone.
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

    /// An error with an `errorType` and `message`.
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

    /// The entry as AppSync writes it: `path`, `data`, `errorType`,
    /// `errorInfo`, `locations` (`[{line, column, sourceName}]`) and `message`,
    /// `null` where unset.
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

/// Parses and validates `request` against `schema`: picks the operation,
/// flattens fragments, checks every field and argument, and coerces argument
/// values with the variables substituted.
///
/// # Errors
///
/// Every validation error found (AppSync reports them together), or the one
/// syntax error (`MalformedHttpRequestException`) of a document that does not
/// parse.
pub fn prepare(schema: &Schema, request: &GraphQlRequest) -> Result<Prepared, Vec<GraphQlError>> {
    let doc = query::parse_query::<String>(&request.query)
        .map_err(|e| {
            vec![GraphQlError::typed(
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
    .ok_or_else(|| vec![GraphQlError::new("Validation error of type UnknownOperation: the schema has no root type for this operation")])?;
    let variables = variable_values(variable_defs, request.variables.as_ref());
    let mut errors = Vec::new();
    let walker = Walker {
        schema,
        fragments: &fragments,
        variables: &variables,
        declared: variable_defs.iter().map(|d| d.name.as_str()).collect(),
        spreading: RefCell::new(Vec::new()),
        spreads: Cell::new(0),
    };
    let fields = walker.selection(selection_set, &root_type, "", &mut errors);
    if kind == OperationKind::Subscription
        && fields.iter().filter(|f| f.name != "__typename").count() != 1
    {
        errors.push(GraphQlError::new(
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
) -> Result<&'d OperationDefinition<'static, String>, Vec<GraphQlError>> {
    let name_of = |o: &OperationDefinition<'static, String>| match o {
        OperationDefinition::Query(q) => q.name.clone(),
        OperationDefinition::Mutation(m) => m.name.clone(),
        OperationDefinition::Subscription(s) => s.name.clone(),
        OperationDefinition::SelectionSet(_) => None,
    };
    match (name, operations) {
        (None, [only]) => Ok(*only),
        (None, _) => Err(vec![GraphQlError::new(
            "Must provide operation name if query contains multiple operations.",
        )]),
        (Some(n), ops) => ops
            .iter()
            .find(|o| name_of(o).as_deref() == Some(n))
            .copied()
            .ok_or_else(|| vec![GraphQlError::new(format!("Unknown operation named '{n}'."))]),
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
    /// The fragments being spread, outermost first: a spread of one of them
    /// is a cycle (GraphQL's "Fragments must not form cycles",
    /// <https://spec.graphql.org/October2021/#sec-Fragment-spreads-must-not-form-cycles>).
    spreading: RefCell<Vec<String>>,
    /// Fragment spreads expanded so far: fragments that spread others twice,
    /// nested, multiply without a cycle; past [`MAX_SPREADS`] the document is
    /// refused.
    spreads: Cell<usize>,
}

/// The most fragment spreads one document may expand.
const MAX_SPREADS: usize = 10_000;

impl Walker<'_> {
    fn selection(
        &self,
        set: &SelectionSet<'static, String>,
        type_name: &str,
        path: &str,
        errors: &mut Vec<GraphQlError>,
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
                        if let Err(message) = self.enter_spread(&s.fragment_name) {
                            errors.push(
                                GraphQlError::new(message).at(s.position.line, s.position.column),
                            );
                            continue;
                        }
                        out.extend(self.selection(&f.selection_set, type_name, path, errors));
                        self.spreading.borrow_mut().pop();
                    }
                    None => errors.push(
                        GraphQlError::new(format!(
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

    /// Starts spreading fragment `name`, or the error's message when that
    /// would be a cycle or one spread too many.
    fn enter_spread(&self, name: &str) -> Result<(), String> {
        if self.spreading.borrow().iter().any(|n| n == name) {
            return Err(format!(
                "Validation error of type FragmentCycle: Fragment {name} spreads itself"
            ));
        }
        self.spreads.set(self.spreads.get() + 1);
        if self.spreads.get() > MAX_SPREADS {
            return Err(format!(
                "Validation error of type FragmentSpreads: more than {MAX_SPREADS} fragment spreads"
            ));
        }
        self.spreading.borrow_mut().push(name.to_owned());
        Ok(())
    }

    fn field(
        &self,
        f: &query::Field<'static, String>,
        type_name: &str,
        path: &str,
        errors: &mut Vec<GraphQlError>,
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
                GraphQlError::new(format!(
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
                    GraphQlError::new(format!(
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
                    GraphQlError::new(format!(
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
        errors: &mut Vec<GraphQlError>,
    ) -> Map<String, Value> {
        let at = |e: GraphQlError| e.at(f.position.line, f.position.column);
        for (_, value) in &f.arguments {
            let mut used = Vec::new();
            variables_in(value, &mut used);
            for name in used.iter().filter(|n| !self.declared.contains(&n.as_str())) {
                errors.push(at(GraphQlError::new(format!(
                    "Validation error of type UndefinedVariable: Undefined variable {name} @ '{}'",
                    path.trim_start_matches('/')
                ))));
            }
        }
        for (name, _) in &f.arguments {
            if !defs.iter().any(|d| &d.name == name) {
                errors.push(at(GraphQlError::new(format!(
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
                    Err(why) => errors.push(at(GraphQlError::new(format!(
                        "Validation error of type WrongType: argument '{}' with value '{}' {why} @ '{}'",
                        def.name,
                        v,
                        path.trim_start_matches('/')
                    )))),
                },
                None if matches!(def.ty, TypeRef::NonNull(_)) => errors.push(at(GraphQlError::new(format!(
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

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::parse(include_str!("../../../schema.graphql")).expect("schema")
    }

    fn req(query: &str, variables: Value) -> GraphQlRequest {
        GraphQlRequest {
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
}
