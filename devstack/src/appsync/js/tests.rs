//! The infra/ resolver files run through the engine. The sendPrompt and
//! cancelTurn validation (once Rust code in resolvers.rs) is asserted here
//! against the deployed JavaScript itself.
//!
//! Place in the data path: client -> AppSync **resolver
//! (infra/resolvers/*.js)** -> data source (NONE, or Lambda).

use serde_json::{Map, Value, json};

use super::*;
use crate::appsync::auth::{AuthMode, Caller};
use crate::lambda::{FunctionCommand, LambdaConfig};

/// A Lambda service that never started: `Event` invokes just queue.
fn idle_lambda() -> LambdaService {
    LambdaService::new(LambdaConfig::new(
        "test",
        FunctionCommand {
            program: "true".into(),
            args: Vec::new(),
        },
    ))
}

fn resolvers_for(api: ApiDefinition) -> JsResolvers {
    JsResolvers::new(
        api,
        idle_lambda(),
        [(
            "ALLOWED_MODEL_IDS".to_owned(),
            "scripted, smollm2".to_owned(),
        )],
    )
}

fn infra() -> JsResolvers {
    match ApiDefinition::embedded() {
        Ok(api) => resolvers_for(api),
        Err(e) => panic!("{e}"),
    }
}

fn user() -> Caller {
    Caller {
        mode: AuthMode::CognitoUserPools,
        identity: json!({"sub": "user-1", "username": "alice"}),
        groups: Vec::new(),
    }
}

fn api_key() -> Caller {
    Caller {
        mode: AuthMode::ApiKey,
        identity: Value::Null,
        groups: Vec::new(),
    }
}

fn object(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

async fn call(
    resolvers: &JsResolvers,
    parent: &str,
    field: &str,
    args: Value,
    caller: &Caller,
) -> Result<Value, ResolverError> {
    let arguments = object(args);
    let request = ResolveRequest {
        parent_type: parent,
        field,
        arguments: &arguments,
        caller,
        selection_set_list: vec!["conversationId".into(), "turnId".into(), "owner".into()],
    };
    resolvers.resolve(request).await
}

async fn send(input: Value) -> Result<Value, ResolverError> {
    call(
        &infra(),
        "Mutation",
        "sendPrompt",
        json!({"input": input}),
        &user(),
    )
    .await
}

fn id_message(name: &str) -> String {
    format!("{name} must be 1 to 128 characters of A-Z, a-z, 0-9, '-', '_', '.', ':'.")
}

/// The before handler of sendPrompt's pipeline on `input`, as alice
/// (`user-1`): its outcome and the stash it leaves for the functions.
fn before_send_prompt(input: Value) -> StageOutcome {
    let resolvers = infra();
    let Some(def) = resolvers.api().resolver("Mutation", "sendPrompt") else {
        panic!("no sendPrompt resolver");
    };
    let arguments = object(json!({"input": input}));
    let caller = user();
    let request = ResolveRequest {
        parent_type: "Mutation",
        field: "sendPrompt",
        arguments: &arguments,
        caller: &caller,
        selection_set_list: vec!["turnId".into()],
    };
    let carried = Carried {
        stash: json!({}),
        args: Value::Object(arguments.clone()),
        filter: None,
        appended: Vec::new(),
    };
    let ctx = resolvers.context(&request, &carried, &json!({}), None);
    match engine::run(&def.code.path, &def.code.source, Handler::Request, &ctx) {
        Ok(stage) => stage,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn send_prompt_fills_in_the_turn_for_its_functions() {
    let stage = before_send_prompt(
        json!({"conversationId": "c-1", "prompt": "hi", "turnId": "t:1",
        "modelId": "scripted", "maxTokens": 8192, "temperature": 0}),
    );
    assert_eq!(stage.outcome, Outcome::Returned(json!({})));
    assert_eq!(stage.stash["turnId"], "t:1");
    assert_eq!(stage.stash["owner"], "user-1");
    assert_eq!(stage.stash["conversationId"], "c-1");
    assert_eq!(stage.stash["input"]["prompt"], "hi");

    let generated = before_send_prompt(json!({"conversationId": "c-1", "prompt": "hi"}));
    let turn_id = generated.stash["turnId"].as_str().unwrap_or_default();
    assert!(
        uuid::Uuid::parse_str(turn_id).is_ok(),
        "{:?}",
        generated.stash
    );
    assert_eq!(
        generated.stash["input"]["turnId"], turn_id,
        "the Lambda gets it too"
    );
}

#[tokio::test]
async fn a_valid_prompt_goes_on_to_the_quota_step() {
    // Without a local DynamoDB the pipeline stops at readQuota: the checks
    // of the before handler passed.
    let result = send(json!({"conversationId": "c-1", "prompt": "hi"})).await;
    let Err(error) = result else {
        panic!("no table, no turn: {result:?}");
    };
    assert_eq!(error.error_type, "InternalFailure", "{error:?}");
    assert!(error.message.contains("local DynamoDB"), "{error:?}");
}

#[tokio::test]
async fn send_prompt_refuses_each_limit_with_its_validation_message() {
    let prompt_message = "prompt must be 1 to 32000 characters and not blank.";
    let cases = [
        (
            json!({"conversationId": "c", "prompt": "   "}),
            prompt_message.to_owned(),
        ),
        (
            json!({"conversationId": "c", "prompt": "\u{3000}\u{85}\n"}),
            prompt_message.to_owned(),
        ),
        (
            json!({"conversationId": "c", "prompt": "x".repeat(32_001)}),
            prompt_message.to_owned(),
        ),
        (
            json!({"conversationId": "c", "system": "s".repeat(32_001), "prompt": "hi"}),
            "system must be at most 32000 characters.".to_owned(),
        ),
        (
            json!({"conversationId": "c d", "prompt": "hi"}),
            id_message("conversationId"),
        ),
        (json!({"prompt": "hi"}), id_message("conversationId")),
        (
            json!({"conversationId": "x".repeat(129), "prompt": "hi"}),
            id_message("conversationId"),
        ),
        (
            json!({"conversationId": "c", "prompt": "hi", "turnId": "t/1"}),
            id_message("turnId"),
        ),
        (
            json!({"conversationId": "c", "prompt": "hi", "modelId": "gpt"}),
            "modelId 'gpt' is not available; use one of: scripted, smollm2.".to_owned(),
        ),
        (
            json!({"conversationId": "c", "prompt": "hi", "maxTokens": 0}),
            "maxTokens must be between 1 and 8192.".to_owned(),
        ),
        (
            json!({"conversationId": "c", "prompt": "hi", "maxTokens": 8193}),
            "maxTokens must be between 1 and 8192.".to_owned(),
        ),
        (
            json!({"conversationId": "c", "prompt": "hi", "temperature": 1.5}),
            "temperature must be between 0 and 1.".to_owned(),
        ),
    ];
    for (input, message) in cases {
        let shown = input.to_string().chars().take(80).collect::<String>();
        assert_eq!(
            send(input).await,
            Err(ResolverError::new("ValidationException", message)),
            "{shown}"
        );
    }
    // 32000 characters of two UTF-16 units each are within the limit.
    let wide = "\u{1F600}".repeat(32_000);
    let stage = before_send_prompt(json!({"conversationId": "c", "prompt": wide}));
    assert_eq!(stage.outcome, Outcome::Returned(json!({})));
}

#[tokio::test]
async fn callers_without_a_sub_are_unauthorized() {
    let r = call(
        &infra(),
        "Mutation",
        "sendPrompt",
        json!({"input": {"conversationId": "c", "prompt": "hi"}}),
        &api_key(),
    )
    .await;
    assert_eq!(
        r,
        Err(ResolverError::new(
            "Unauthorized",
            "Not Authorized to access sendPrompt on type Mutation"
        ))
    );
    let r = call(
        &infra(),
        "Mutation",
        "cancelTurn",
        json!({"conversationId": "c", "turnId": "t"}),
        &api_key(),
    )
    .await;
    assert_eq!(
        r,
        Err(ResolverError::new(
            "Unauthorized",
            "Not Authorized to access cancelTurn on type Mutation"
        ))
    );
}

#[tokio::test]
async fn cancel_turn_names_the_caller_and_checks_ids() {
    let r = call(
        &infra(),
        "Mutation",
        "cancelTurn",
        json!({"conversationId": "c", "turnId": "t-1"}),
        &user(),
    )
    .await;
    assert_eq!(
        r,
        Ok(json!({"conversationId": "c", "turnId": "t-1", "owner": "user-1"}))
    );
    let r = call(
        &infra(),
        "Mutation",
        "cancelTurn",
        json!({"conversationId": "c", "turnId": "t 1"}),
        &user(),
    )
    .await;
    assert_eq!(
        r,
        Err(ResolverError::new(
            "ValidationException",
            id_message("turnId")
        ))
    );
}

#[tokio::test]
async fn local_resolvers_echo_and_ping() {
    let resolvers = infra();
    let chunk = json!({"conversationId": "c", "turnId": "t", "owner": "o", "seq": 0});
    let r = call(
        &resolvers,
        "Mutation",
        "publishChunk",
        json!({"input": chunk}),
        &user(),
    )
    .await;
    assert_eq!(r, Ok(chunk));
    assert_eq!(
        call(&resolvers, "Query", "ping", json!({}), &user()).await,
        Ok(json!("ok"))
    );
    assert_eq!(
        call(&resolvers, "Query", "unknown", json!({}), &user()).await,
        Ok(Value::Null)
    );
}

fn subscribe(
    resolvers: &JsResolvers,
    field: &str,
    args: Value,
    caller: &Caller,
) -> Result<Option<Filter>, ResolverError> {
    let arguments = object(args);
    resolvers.subscribe(ResolveRequest {
        parent_type: "Subscription",
        field,
        arguments: &arguments,
        caller,
        selection_set_list: Vec::new(),
    })
}

#[test]
fn on_chunk_sets_the_owner_filter() {
    let resolvers = infra();
    let filter = subscribe(
        &resolvers,
        "onChunk",
        json!({"conversationId": "c-1"}),
        &user(),
    );
    let filter = match filter {
        Ok(Some(f)) => f,
        other => panic!("{other:?}"),
    };
    assert!(filter.matches(&json!({"owner": "user-1", "conversationId": "c-1"})));
    assert!(!filter.matches(&json!({"owner": "user-2", "conversationId": "c-1"})));
    assert!(!filter.matches(&json!({"owner": "user-1", "conversationId": "c-2"})));
    assert_eq!(
        subscribe(
            &resolvers,
            "onChunk",
            json!({"conversationId": "c-1"}),
            &api_key()
        ),
        Err(ResolverError::new(
            "Unauthorized",
            "Not Authorized to access onChunk on type Subscription"
        ))
    );
    let iam = Caller {
        mode: AuthMode::Iam,
        identity: json!({"accountId": "123"}),
        groups: Vec::new(),
    };
    assert_eq!(
        subscribe(
            &resolvers,
            "onCancel",
            json!({"turnId": "t", "owner": "o"}),
            &iam
        ),
        Ok(None)
    );
}

/// A pipeline of NONE functions, with an early return and the stash.
#[tokio::test]
async fn pipelines_pass_prev_result_and_the_stash() {
    let template = r#"
Resources:
  Local:
    Type: AWS::AppSync::DataSource
    Properties: {Name: Local, Type: NONE}
  Double:
    Type: AWS::AppSync::FunctionConfiguration
    Properties:
      DataSourceName: Local
      CodeS3Location: double.js
  Skip:
    Type: AWS::AppSync::FunctionConfiguration
    Properties:
      DataSourceName: Local
      CodeS3Location: skip.js
  Pipe:
    Type: AWS::AppSync::Resolver
    Properties:
      TypeName: Query
      FieldName: pipe
      Kind: PIPELINE
      PipelineConfig: {Functions: [!GetAtt Double.FunctionId, !GetAtt Skip.FunctionId, !GetAtt Double.FunctionId]}
      CodeS3Location: pipe.js
  Early:
    Type: AWS::AppSync::Resolver
    Properties:
      TypeName: Query
      FieldName: early
      DataSourceName: !GetAtt Local.Name
      CodeS3Location: early.js
"#;
    let read = |path: &str| -> Result<String, TemplateError> {
        Ok(match path {
            "pipe.js" => "export function request(ctx) { ctx.stash.seen = ['before']; return ctx.args.n; }\n\
                          export function response(ctx) { return { n: ctx.prev.result, seen: ctx.stash.seen, same: ctx.result === ctx.prev.result }; }",
            "double.js" => "export function request(ctx) { ctx.stash.seen.push('double'); return { payload: ctx.prev.result * 2 }; }\n\
                            export function response(ctx) { return ctx.result; }",
            "skip.js" => "import { runtime } from '@aws-appsync/utils';\n\
                          export function request(ctx) { ctx.stash.seen.push('skip'); runtime.earlyReturn(ctx.prev.result + 1); }\n\
                          export function response(ctx) { return 'never'; }",
            "early.js" => "import { runtime } from '@aws-appsync/utils';\n\
                           export function request(ctx) { if (ctx.args.stop) { runtime.earlyReturn('early'); } return { payload: 'late' }; }\n\
                           export function response(ctx) { return ctx.result + '!'; }",
            other => return Err(TemplateError::NotEmbedded(other.to_owned())),
        }
        .to_owned())
    };
    let api = match ApiDefinition::from_sources(template, read) {
        Ok(api) => api,
        Err(e) => panic!("{e}"),
    };
    let resolvers = resolvers_for(api);
    let r = call(&resolvers, "Query", "pipe", json!({"n": 3}), &user()).await;
    assert_eq!(
        r,
        Ok(json!({"n": 14, "seen": ["before", "double", "skip", "double"], "same": true}))
    );
    let r = call(&resolvers, "Query", "early", json!({"stop": true}), &user()).await;
    assert_eq!(r, Ok(json!("early")));
    let r = call(
        &resolvers,
        "Query",
        "early",
        json!({"stop": false}),
        &user(),
    )
    .await;
    assert_eq!(r, Ok(json!("late!")));
}
