//! The QuickJS engine that runs one APPSYNC_JS handler.
//!
//! Place in the data path: client --sendPrompt--> AppSync -> **resolver
//! handler** (`request` | `response`) -> data source (NONE | Lambda |
//! DynamoDB) -> the caller's response or the fan-out.
//!
//! Every call gets a fresh runtime: the handler's module, `@aws-appsync/utils`
//! and the context are built anew, so nothing leaks from one call (or one
//! request) to the next; what must survive from `request` to `response` (the
//! stash, the arguments) travels as JSON through [`StageOutcome`]. Only the
//! parsing is shared: each source (the utilities, every resolver file) is
//! compiled to QuickJS bytecode once and loaded from it by every call, which
//! cut a call from 1.3 ms of CPU to 0.26 ms (AppSync's own JS runtime costs
//! the devstack's machine nothing; this one shares its cores with the
//! function).
//! <https://docs.aws.amazon.com/appsync/latest/devguide/resolver-reference-overview-js.html>

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rquickjs::loader::{BuiltinLoader, BuiltinResolver};
use rquickjs::{
    CatchResultExt, CaughtError, Context, Ctx, Function, Module, Object, Runtime, WriteOptions,
    module::Evaluated,
};
use serde::Deserialize;
use serde_json::Value;

use super::super::resolvers::ResolverError;

/// The module name resolvers import the runtime utilities from.
pub const UTILS_MODULE: &str = "@aws-appsync/utils";

/// The utilities: a module evaluated for its effect, defining
/// `globalThis.__appsync`.
const PRELUDE: &str = include_str!("appsync_utils.js");

/// The module name the utilities are compiled under.
const PRELUDE_NAME: &str = "appsync_utils.js";

/// The `@aws-appsync/utils` module: re-exports what the prelude defined.
const UTILS_MODULE_SOURCE: &str = "const a = globalThis.__appsync;\n\
     export const util = a.util;\n\
     export const extensions = a.extensions;\n\
     export const runtime = a.runtime;\n";

/// Longest a handler may run (AppSync stops a resolver's code after a few seconds).
pub const TIME_LIMIT: Duration = Duration::from_secs(5);
/// Most memory one handler's runtime may use.
pub const MEMORY_LIMIT: usize = 64 * 1024 * 1024;

/// Which exported function of a resolver or function file runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handler {
    /// `request(ctx)`: runs before the data source, returns its request.
    Request,
    /// `response(ctx)`: runs after the data source, returns the field's result.
    Response,
}

impl Handler {
    /// The exported function's name: `request` or `response`.
    pub fn name(self) -> &'static str {
        match self {
            Handler::Request => "request",
            Handler::Response => "response",
        }
    }
}

/// Why a handler could not run or finish: each becomes errorType `Code`.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// QuickJS failed outside the handler's code (runtime, context, globals).
    #[error("the JavaScript runtime could not start: {0}")]
    Runtime(#[from] rquickjs::Error),
    /// The module or the utilities failed to load or evaluate, or the call threw.
    #[error("{file}: {message}")]
    Code {
        /// The resolver file, as named in the template.
        file: String,
        /// The exception, as `Name: message`.
        message: String,
    },
    /// The module does not export the handler that was to run.
    #[error("{file} exports no `{handler}` function")]
    MissingHandler {
        /// The resolver file.
        file: String,
        /// `request` or `response`.
        handler: &'static str,
    },
    /// What the handler left could not be read back as JSON.
    #[error("{file}: the handler's output is not JSON: {source}")]
    Output {
        /// The resolver file.
        file: String,
        /// Why the JSON did not fit.
        source: serde_json::Error,
    },
}

impl From<EngineError> for ResolverError {
    fn from(e: EngineError) -> Self {
        ResolverError::new("Code", e.to_string())
    }
}

/// How a handler ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// It returned this value (`undefined` is `null`).
    Returned(Value),
    /// It called `runtime.earlyReturn(value)`.
    EarlyReturn(Value),
    /// It called `util.error`/`util.unauthorized`, or threw (errorType `Code`).
    Error(ResolverError),
}

/// A handler's outcome and the context state it leaves behind.
#[derive(Clone, Debug, PartialEq)]
pub struct StageOutcome {
    /// How the handler ended.
    pub outcome: Outcome,
    /// `ctx.stash` after the handler.
    pub stash: Value,
    /// `ctx.args` after the handler.
    pub args: Value,
    /// What `extensions.setSubscriptionFilter` was given, if anything.
    pub subscription_filter: Option<Value>,
    /// What `util.appendError` recorded.
    pub appended_errors: Vec<ResolverError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawError {
    message: Option<String>,
    #[serde(rename = "type")]
    error_type: Option<String>,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    error_info: Value,
}

impl RawError {
    fn into_error(self) -> ResolverError {
        // AppSync's defaults when util.error gets no type.
        let mut error = ResolverError::new(
            self.error_type
                .as_deref()
                .unwrap_or("CustomTemplateException"),
            self.message.unwrap_or_default(),
        );
        error.data = Some(self.data).filter(|v| !v.is_null());
        error.error_info = Some(self.error_info).filter(|v| !v.is_null());
        error
    }
}

#[derive(Deserialize)]
struct RawEarly {
    #[serde(default)]
    value: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawThrown {
    error: Option<RawError>,
    early_return: Option<RawEarly>,
    exception: Option<String>,
}

#[derive(Deserialize)]
struct RawCtx {
    #[serde(default)]
    stash: Value,
    #[serde(default)]
    args: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawState {
    #[serde(default)]
    subscription_filter: Value,
    #[serde(default)]
    errors: Vec<RawError>,
}

#[derive(Deserialize)]
struct RawOut {
    #[serde(default)]
    returned: Value,
    thrown: Option<RawThrown>,
    ctx: RawCtx,
    state: RawState,
}

/// Runs `handler` of the module `code` (named `file` in messages) on the
/// resolver context `ctx` (AppSync's `ctx` as JSON; `arguments` is added as an
/// alias of `args`).
///
/// # Errors
///
/// An [`EngineError`] when the handler could not run or its output could not
/// be read; a handler that ran and failed is an `Ok` with [`Outcome::Error`].
pub fn run(
    file: &str,
    code: &str,
    handler: Handler,
    ctx: &Value,
) -> Result<StageOutcome, EngineError> {
    let raw = run_raw(file, code, handler, &ctx.to_string())?;
    let out: RawOut = serde_json::from_str(&raw).map_err(|source| EngineError::Output {
        file: file.to_owned(),
        source,
    })?;
    let outcome = match out.thrown {
        None => Outcome::Returned(out.returned),
        Some(RawThrown { error: Some(e), .. }) => Outcome::Error(e.into_error()),
        Some(RawThrown {
            early_return: Some(early),
            ..
        }) => Outcome::EarlyReturn(early.value),
        Some(RawThrown { exception, .. }) => Outcome::Error(ResolverError::new(
            "Code",
            format!(
                "{file}: {}",
                exception.unwrap_or_else(|| "the handler threw".into())
            ),
        )),
    };
    Ok(StageOutcome {
        outcome,
        stash: out.ctx.stash,
        args: out.ctx.args,
        subscription_filter: match out.state.subscription_filter {
            Value::Null => None,
            v => Some(v),
        },
        appended_errors: out
            .state
            .errors
            .into_iter()
            .map(RawError::into_error)
            .collect(),
    })
}

/// Evaluates `code` as a module and calls its `handler` through the prelude's
/// `__appsync.call`, which answers with JSON.
fn run_raw(
    file: &str,
    code: &str,
    handler: Handler,
    ctx_json: &str,
) -> Result<String, EngineError> {
    let prelude = bytecode(PRELUDE_NAME, PRELUDE).map_err(|message| EngineError::Code {
        file: file.to_owned(),
        message: format!("the utilities failed to load: {message}"),
    })?;
    let module = bytecode(file, code).map_err(|message| EngineError::Code {
        file: file.to_owned(),
        message,
    })?;
    let runtime = new_runtime()?;
    let context = Context::full(&runtime)?;
    let code_error = |message: String| EngineError::Code {
        file: file.to_owned(),
        message,
    };
    context.with(|ctx| {
        install_host(&ctx)?;
        evaluate(&ctx, &prelude)
            .map_err(|e| code_error(format!("the utilities failed to load: {e}")))?;
        let module = evaluate(&ctx, &module).map_err(code_error)?;
        let function: Function = match module.get(handler.name()) {
            Ok(f) => f,
            Err(_) => {
                return Err(EngineError::MissingHandler {
                    file: file.to_owned(),
                    handler: handler.name(),
                });
            }
        };
        let appsync: Object = ctx.globals().get("__appsync")?;
        let call: Function = appsync.get("call")?;
        call.call::<_, String>((function, ctx_json))
            .catch(&ctx)
            .map_err(|e| code_error(describe(e)))
    })
}

/// A runtime with the handler's limits (memory, stack, [`TIME_LIMIT`]) and
/// `@aws-appsync/utils` to import.
fn new_runtime() -> Result<Runtime, EngineError> {
    let runtime = Runtime::new()?;
    runtime.set_memory_limit(MEMORY_LIMIT);
    runtime.set_max_stack_size(1024 * 1024);
    let deadline = Instant::now() + TIME_LIMIT;
    runtime.set_interrupt_handler(Some(Box::new(move || Instant::now() > deadline)));
    runtime.set_loader(
        BuiltinResolver::default().with_module(UTILS_MODULE),
        BuiltinLoader::default().with_module(UTILS_MODULE, UTILS_MODULE_SOURCE),
    );
    Ok(runtime)
}

/// Bytecode compiled so far, by module name and source.
type BytecodeCache = HashMap<(String, String), Arc<Vec<u8>>>;

/// The most modules [`BYTECODE`] keeps.
const MAX_CACHED_MODULES: usize = 512;

/// Every module compiled by this process, up to [`MAX_CACHED_MODULES`].
static BYTECODE: LazyLock<Mutex<BytecodeCache>> = LazyLock::new(Mutex::default);

/// The bytecode of the module `code` named `name`, compiled on first use.
/// A source that does not compile is not kept, and its error (`Name:
/// message`) is the `Err`.
fn bytecode(name: &str, code: &str) -> Result<Arc<Vec<u8>>, String> {
    let key = (name.to_owned(), code.to_owned());
    let cached = BYTECODE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
        .cloned();
    if let Some(bytes) = cached {
        return Ok(bytes);
    }
    let bytes = Arc::new(compile(name, code)?);
    let mut cache = BYTECODE.lock().unwrap_or_else(PoisonError::into_inner);
    // An API's resolvers are a few dozen modules; a process that loads many
    // APIs (the tests) starts over rather than keep every one it has seen.
    if cache.len() >= MAX_CACHED_MODULES {
        cache.clear();
    }
    cache.insert(key, Arc::clone(&bytes));
    Ok(bytes)
}

/// Compiles `code` as the module `name` in a throwaway runtime.
fn compile(name: &str, code: &str) -> Result<Vec<u8>, String> {
    let runtime = new_runtime().map_err(|e| e.to_string())?;
    let context = Context::full(&runtime).map_err(|e| e.to_string())?;
    context.with(|ctx| {
        let module = Module::declare(ctx.clone(), name, code)
            .catch(&ctx)
            .map_err(describe)?;
        module
            .write(WriteOptions::default())
            .catch(&ctx)
            .map_err(describe)
    })
}

/// Loads `bytecode` (from [`bytecode`]) and evaluates it as a module.
fn evaluate<'js>(ctx: &Ctx<'js>, bytecode: &[u8]) -> Result<Module<'js, Evaluated>, String> {
    // SAFETY: `Module::load` needs valid bytecode of this QuickJS build, and
    // these bytes were written by `Module::write` of this build in this
    // process (see `bytecode`).
    let module = unsafe { Module::load(ctx.clone(), bytecode) }
        .catch(ctx)
        .map_err(describe)?;
    let (module, promise) = module.eval().catch(ctx).map_err(describe)?;
    promise.finish::<()>().catch(ctx).map_err(describe)?;
    Ok(module)
}

/// The natives the prelude uses: `autoId`, `nowMillis` and `log`.
fn install_host(ctx: &Ctx<'_>) -> Result<(), EngineError> {
    let host = Object::new(ctx.clone())?;
    host.set(
        "autoId",
        Function::new(ctx.clone(), || uuid::Uuid::new_v4().to_string())?,
    )?;
    host.set("nowMillis", Function::new(ctx.clone(), now_millis)?)?;
    host.set(
        "log",
        Function::new(ctx.clone(), |level: String, message: String| {
            match level.as_str() {
                "error" => tracing::error!(target: "appsync_js", "{message}"),
                "warn" => tracing::warn!(target: "appsync_js", "{message}"),
                "debug" => tracing::debug!(target: "appsync_js", "{message}"),
                _ => tracing::info!(target: "appsync_js", "{message}"),
            }
        })?,
    )?;
    ctx.globals().set("__devstack_host", host)?;
    Ok(())
}

/// Milliseconds since the epoch, as a JS number.
fn now_millis() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as f64)
        .unwrap_or_default()
}

/// A caught exception as `Name: message`.
fn describe(e: CaughtError<'_>) -> String {
    match e {
        CaughtError::Exception(ex) => {
            let message = ex.message().unwrap_or_default();
            let name: Option<String> = ex.as_object().get("name").ok();
            match name {
                Some(name) if !name.is_empty() => format!("{name}: {message}"),
                _ => message,
            }
        }
        CaughtError::Value(v) => format!("uncaught value {v:?}"),
        CaughtError::Error(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Value {
        json!({
            "args": {"a": 1},
            "identity": {"sub": "user-1"},
            "source": null,
            "stash": {},
            "prev": {},
            "info": {"fieldName": "f", "parentTypeName": "Query", "variables": {},
                     "selectionSetList": []},
            "request": {"headers": {}, "domainName": null},
            "env": {},
        })
    }

    fn request(code: &str) -> StageOutcome {
        match run("test.js", code, Handler::Request, &ctx()) {
            Ok(o) => o,
            Err(e) => panic!("engine error: {e}"),
        }
    }

    fn returned(code: &str) -> Value {
        match request(code).outcome {
            Outcome::Returned(v) => v,
            other => panic!("not returned: {other:?}"),
        }
    }

    const IMPORT: &str = "import { util, extensions, runtime } from '@aws-appsync/utils';\n";

    #[test]
    fn the_bytecode_cache_keeps_at_most_its_limit() {
        for n in 0..=MAX_CACHED_MODULES {
            let code = format!("export function request(ctx) {{ return {n}; }}");
            bytecode("cache-test.js", &code).expect("compiles");
            let kept = BYTECODE
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len();
            assert!(kept <= MAX_CACHED_MODULES, "{kept} modules kept");
        }
    }

    #[test]
    fn returns_the_handlers_value_and_the_stash() {
        let out = request(
            "export function request(ctx) { ctx.stash.x = ctx.arguments.a + 1; \
             return { payload: ctx.args.a }; }",
        );
        assert_eq!(out.outcome, Outcome::Returned(json!({"payload": 1})));
        assert_eq!(out.stash, json!({"x": 2}));
        assert_eq!(out.args, json!({"a": 1}));
    }

    #[test]
    fn util_error_is_a_typed_resolver_error() {
        let out = request(&format!(
            "{IMPORT}export function request(ctx) {{ util.error('bad', 'ValidationException'); }}"
        ));
        assert_eq!(
            out.outcome,
            Outcome::Error(ResolverError::new("ValidationException", "bad"))
        );
    }

    #[test]
    fn unauthorized_names_the_field_and_type() {
        let out = request(&format!(
            "{IMPORT}export function request(ctx) {{ util.unauthorized(); }}"
        ));
        assert_eq!(
            out.outcome,
            Outcome::Error(ResolverError::new(
                "Unauthorized",
                "Not Authorized to access f on type Query"
            ))
        );
    }

    #[test]
    fn other_exceptions_are_code_errors() {
        let out = request("export function request(ctx) { return ctx.nothing.here; }");
        match out.outcome {
            Outcome::Error(e) => {
                assert_eq!(e.error_type, "Code");
                assert!(e.message.contains("TypeError"), "{}", e.message);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn syntax_errors_and_missing_handlers_are_engine_errors() {
        assert!(matches!(
            run(
                "bad.js",
                "export function request( {",
                Handler::Request,
                &ctx()
            ),
            Err(EngineError::Code { .. })
        ));
        assert!(matches!(
            run(
                "none.js",
                "export function request() {}",
                Handler::Response,
                &ctx()
            ),
            Err(EngineError::MissingHandler { .. })
        ));
        assert!(matches!(
            run(
                "imp.js",
                "import { x } from 'fs'; export function request() {}",
                Handler::Request,
                &ctx()
            ),
            Err(EngineError::Code { .. })
        ));
    }

    #[test]
    fn endless_loops_are_stopped() {
        let out = run(
            "loop.js",
            "export function request() { for (;;) {} }",
            Handler::Request,
            &ctx(),
        );
        let failed = match out {
            Err(_) => true,
            Ok(o) => matches!(o.outcome, Outcome::Error(_)),
        };
        assert!(failed);
    }

    #[test]
    fn early_return_and_append_error_and_filters_are_reported() {
        let out = request(&format!(
            "{IMPORT}export function request(ctx) {{ util.appendError('soft', 'Warn'); \
             extensions.setSubscriptionFilter({{ filterGroup: [] }}); runtime.earlyReturn({{ a: 1 }}); }}"
        ));
        assert_eq!(out.outcome, Outcome::EarlyReturn(json!({"a": 1})));
        assert_eq!(
            out.appended_errors,
            vec![ResolverError::new("Warn", "soft")]
        );
        assert_eq!(out.subscription_filter, Some(json!({"filterGroup": []})));
    }

    #[test]
    fn util_helpers() {
        let v = returned(&format!(
            "{IMPORT}export function request() {{ return {{
                id: util.autoId(),
                iso: util.time.nowISO8601(),
                s: util.time.nowEpochSeconds(),
                ms: util.time.nowEpochMilliSeconds(),
                empty: [util.isNullOrEmpty(null), util.isNullOrEmpty(''), util.isNullOrEmpty('x')],
                blank: util.isNullOrBlank('  '),
                dflt: util.defaultIfNull(null, 3),
                types: [util.typeOf([]), util.typeOf({{}}), util.typeOf('s'), util.typeOf(null)],
                matches: util.matches('a+b', 'aaab'),
            }}; }}"
        ));
        let id = v["id"].as_str().unwrap_or_default();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        let iso = v["iso"].as_str().unwrap_or_default();
        assert!(chrono::DateTime::parse_from_rfc3339(iso).is_ok(), "{iso}");
        let (s, ms) = (
            v["s"].as_f64().unwrap_or(0.0),
            v["ms"].as_f64().unwrap_or(0.0),
        );
        assert!(s > 1.0e9 && (ms / 1000.0 - s).abs() < 2.0, "{s} {ms}");
        assert_eq!(v["empty"], json!([true, true, false]));
        assert_eq!(v["blank"], json!(true));
        assert_eq!(v["dflt"], json!(3));
        assert_eq!(v["types"], json!(["List", "Map", "String", "Null"]));
        assert_eq!(v["matches"], json!(true));
    }

    #[test]
    fn util_dynamodb_writes_typed_values_as_appsync_does() {
        let v = returned(&format!(
            "{IMPORT}export function request() {{ const d = util.dynamodb; return {{
                map: d.toMapValues({{ pk: 'u#c', n: 12345, ok: true, none: null, skip: undefined,
                                     list: ['a', 1], nested: {{ x: 'y' }} }}),
                one: d.toDynamoDB('foo'),
                s: d.toString('x'),
                ss: d.toStringSet(['a', 'b']),
                ns: d.toNumberSet([1, 2]),
                m: d.toMap({{ a: 1 }}),
                l: d.toList([true]),
                nul: d.toNull(),
            }}; }}"
        ));
        assert_eq!(
            v["map"],
            json!({
                "pk": {"S": "u#c"},
                "n": {"N": 12345},
                "ok": {"BOOL": true},
                "none": {"NULL": null},
                "list": {"L": [{"S": "a"}, {"N": 1}]},
                "nested": {"M": {"x": {"S": "y"}}},
            })
        );
        assert_eq!(v["one"], json!({"S": "foo"}));
        assert_eq!(v["s"], json!({"S": "x"}));
        assert_eq!(v["ss"], json!({"SS": ["a", "b"]}));
        assert_eq!(v["ns"], json!({"NS": [1, 2]}));
        assert_eq!(v["m"], json!({"M": {"a": {"N": 1}}}));
        assert_eq!(v["l"], json!({"L": [{"BOOL": true}]}));
        assert_eq!(v["nul"], json!({"NULL": null}));
    }

    fn to_filter(obj: &str) -> Value {
        returned(&format!(
            "{IMPORT}export function request() {{ return util.transform.toSubscriptionFilter({obj}); }}"
        ))
    }

    #[test]
    fn to_subscription_filter_ands_the_fields_of_one_object() {
        assert_eq!(
            to_filter("{ owner: { eq: 'u' }, seq: { ge: 2, le: 5 } }"),
            json!({"filterGroup": [{"filters": [
                {"fieldName": "owner", "operator": "eq", "value": "u"},
                {"fieldName": "seq", "operator": "ge", "value": 2},
                {"fieldName": "seq", "operator": "le", "value": 5},
            ]}]})
        );
    }

    #[test]
    fn to_subscription_filter_turns_or_into_groups() {
        assert_eq!(
            to_filter("{ owner: { eq: 'u' }, or: [{ seq: { eq: 0 } }, { final: { eq: true } }] }"),
            json!({"filterGroup": [
                {"filters": [
                    {"fieldName": "owner", "operator": "eq", "value": "u"},
                    {"fieldName": "seq", "operator": "eq", "value": 0},
                ]},
                {"filters": [
                    {"fieldName": "owner", "operator": "eq", "value": "u"},
                    {"fieldName": "final", "operator": "eq", "value": true},
                ]},
            ]})
        );
    }

    #[test]
    fn to_subscription_filter_and_nesting_and_ignored_fields() {
        assert_eq!(
            to_filter(
                "{ and: [{ a: { eq: 1 } }, { or: [{ b: { in: [1, 2] } }, { c: { beginsWith: 'x' } }] }], \
                 meta: { kind: { ne: 'y' } } }"
            ),
            json!({"filterGroup": [
                {"filters": [
                    {"fieldName": "a", "operator": "eq", "value": 1},
                    {"fieldName": "b", "operator": "in", "value": [1, 2]},
                    {"fieldName": "meta.kind", "operator": "ne", "value": "y"},
                ]},
                {"filters": [
                    {"fieldName": "a", "operator": "eq", "value": 1},
                    {"fieldName": "c", "operator": "beginsWith", "value": "x"},
                    {"fieldName": "meta.kind", "operator": "ne", "value": "y"},
                ]},
            ]})
        );
        let v = returned(&format!(
            "{IMPORT}export function request() {{ return util.transform.toSubscriptionFilter(\
             {{ a: {{ eq: 1 }}, b: {{ eq: 2 }} }}, ['b']); }}"
        ));
        assert_eq!(
            v,
            json!({"filterGroup": [{"filters": [{"fieldName": "a", "operator": "eq", "value": 1}]}]})
        );
    }

    #[test]
    fn the_filter_json_is_what_filter_deserialises() {
        let v =
            to_filter("{ owner: { eq: 'u' }, or: [{ seq: { ge: 2 } }, { final: { eq: true } }] }");
        let filter: crate::appsync::filter::Filter = match serde_json::from_value(v) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        assert!(filter.matches(&json!({"owner": "u", "seq": 3, "final": false})));
        assert!(filter.matches(&json!({"owner": "u", "seq": 0, "final": true})));
        assert!(!filter.matches(&json!({"owner": "u", "seq": 1, "final": false})));
        assert!(!filter.matches(&json!({"owner": "v", "seq": 3, "final": true})));
    }

    #[test]
    fn no_state_leaks_between_calls() {
        let code = "export function request(ctx) { const seen = globalThis.seen || 0; \
                    globalThis.seen = seen + 1; ctx.stash.n = (ctx.stash.n || 0) + 1; return seen; }";
        for _ in 0..2 {
            let out = request(code);
            assert_eq!(out.outcome, Outcome::Returned(json!(0)));
            assert_eq!(out.stash, json!({"n": 1}));
        }
    }
}
