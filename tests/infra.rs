//! Offline checks of `infra/`, the AWS deployment: the SAM template, the
//! APPSYNC_JS resolvers and the schema as AppSync sees it.
//!
//! - [`infra_lints_pass`] runs `scripts/lint-infra` (cfn-lint, checkov,
//!   `sam validate`, graphql-js and the AppSync ESLint rules; tools are
//!   installed once under `target/`). The resolvers' behaviour is tested where
//!   it runs: the devstack executes these very files (`tests/js_resolvers.rs`,
//!   and every whole-path test sends its prompt through them).
//! - The other tests need no tools: they tie the template to the schema, the
//!   resolver files and the environment `src/config.rs` reads.
//!
//! `INFRA_LINT=skip` skips the tool run (for machines without Python or Node).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The root fields of `schema.graphql`, as `Type.field`.
fn schema_root_fields() -> BTreeSet<String> {
    let schema = read("schema.graphql");
    let mut fields = BTreeSet::new();
    let mut current: Option<&str> = None;
    for line in schema.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("type ") {
            let name = rest.split([' ', '{']).next().unwrap_or_default();
            current = ["Query", "Mutation", "Subscription"]
                .into_iter()
                .find(|root| *root == name);
            continue;
        }
        if line.starts_with('}') {
            current = None;
            continue;
        }
        let Some(root) = current else { continue };
        // A field line starts with its name, then `(` or `:`; skip descriptions
        // and directive continuation lines.
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let rest = &line[name.len()..];
        if !name.is_empty() && (rest.starts_with('(') || rest.starts_with(':')) {
            fields.insert(format!("{root}.{name}"));
        }
    }
    fields
}

/// The template's resources, each as its logical id and its lines.
fn template_resources(template: &str) -> Vec<(String, Vec<&str>)> {
    let mut out: Vec<(String, Vec<&str>)> = Vec::new();
    let body = template
        .split("\nResources:\n")
        .nth(1)
        .expect("a Resources section");
    for line in body.lines() {
        if !line.starts_with(' ') && !line.is_empty() && !line.starts_with('#') {
            break; // the next top-level section
        }
        let is_key =
            line.starts_with("  ") && line.chars().nth(2).is_some_and(|c| c.is_ascii_alphabetic());
        if is_key {
            out.push((line.trim().trim_end_matches(':').to_owned(), Vec::new()));
        } else if let Some((_, lines)) = out.last_mut() {
            lines.push(line);
        }
    }
    out
}

/// The template's resources of `resource_type`, each as its logical id and a
/// reader of its one-line properties.
fn resources_of<'a>(
    template: &'a str,
    resource_type: &str,
) -> Vec<(String, impl Fn(&str) -> Option<String> + 'a)> {
    let wanted = format!("Type: {resource_type}");
    template_resources(template)
        .into_iter()
        .filter(|(_, lines)| lines.iter().any(|l| l.trim() == wanted))
        .map(|(id, lines)| {
            let value = move |key: &str| {
                lines
                    .iter()
                    .find_map(|l| l.trim().strip_prefix(key))
                    .map(|v| v.trim().to_owned())
            };
            (id, value)
        })
        .collect()
}

/// The template's AppSync resolvers as (`Type.field`, CodeS3Location,
/// DataSourceName, or `PIPELINE` for a pipeline resolver, which has none).
fn template_resolvers(template: &str) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for (id, value) in resources_of(template, "AWS::AppSync::Resolver") {
        let value = |key: &str| value(key).unwrap_or_else(|| panic!("resolver {id} without {key}"));
        let source = if value("Kind:") == "PIPELINE" {
            "PIPELINE".to_owned()
        } else {
            value("DataSourceName:")
        };
        out.insert((
            format!("{}.{}", value("TypeName:"), value("FieldName:")),
            value("CodeS3Location:"),
            source,
        ));
    }
    out
}

/// The template's pipeline functions as (CodeS3Location, DataSourceName).
fn template_functions(template: &str) -> BTreeSet<(String, String)> {
    resources_of(template, "AWS::AppSync::FunctionConfiguration")
        .into_iter()
        .map(|(id, value)| {
            let value =
                |key: &str| value(key).unwrap_or_else(|| panic!("function {id} without {key}"));
            (value("CodeS3Location:"), value("DataSourceName:"))
        })
        .collect()
}

#[test]
fn every_root_field_has_a_js_resolver_in_the_template() {
    let fields = schema_root_fields();
    assert!(
        fields.contains("Mutation.sendPrompt") && fields.contains("Subscription.onChunk"),
        "schema parse: {fields:?}"
    );
    let template = read("infra/template.yaml");
    let resolvers = template_resolvers(&template);
    let wired: BTreeSet<String> = resolvers.iter().map(|(f, _, _)| f.clone()).collect();
    assert_eq!(wired, fields, "template resolvers vs schema root fields");

    for (field, code, source) in &resolvers {
        assert_eq!(
            code,
            &format!("resolvers/{field}.js"),
            "{field}: CodeS3Location"
        );
        assert!(
            repo().join("infra").join(code).is_file(),
            "{field}: {code} is missing"
        );
        let expected = match field.as_str() {
            "Query.listConversations" | "Query.listMessages" | "Query.turnChunks" => {
                "!GetAtt ConversationsDataSource.Name"
            }
            "Mutation.sendPrompt" | "Mutation.deleteConversation" | "Query.myQuota" => "PIPELINE",
            _ => "!GetAtt NoneDataSource.Name",
        };
        assert_eq!(source, expected, "{field}: data source");
    }
    // deleteConversation's three files, and sendPrompt's three (two of them
    // configured twice, for the attempt after a lost race).
    let functions = template_functions(&template);
    assert_eq!(functions.len(), 6, "pipeline functions: {functions:?}");
    for (code, source) in &functions {
        assert!(
            code.starts_with("resolvers/Function.") && repo().join("infra").join(code).is_file(),
            "{code} is missing or misnamed"
        );
        let expected = if code == "resolvers/Function.invokeTurn.js" {
            "!GetAtt ResolverDataSource.Name"
        } else {
            "!GetAtt ConversationsDataSource.Name"
        };
        assert_eq!(source, expected, "{code}: data source");
    }
    let files: BTreeSet<PathBuf> = std::fs::read_dir(repo().join("infra/resolvers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        files.len(),
        resolvers.len() + functions.len(),
        "a resolver file the template does not deploy: {files:?}"
    );
}

/// The environment variable names `src/config.rs` reads: its upper-case string
/// literals outside the tests.
fn config_env_names() -> BTreeSet<String> {
    let source = read("src/config.rs");
    let code = source.split("#[cfg(test)]").next().unwrap_or_default();
    code.split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.len() > 3
                && s.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_function_gets_exactly_the_environment_the_resolver_reads() {
    let read_by_config = config_env_names();
    assert!(
        read_by_config.contains("APPSYNC_GRAPHQL_URL"),
        "{read_by_config:?}"
    );
    let template = read("infra/template.yaml");
    let vars = template
        .split("        Variables:\n")
        .nth(1)
        .expect("the function's Environment.Variables");
    let set_by_template: BTreeSet<String> = vars
        .lines()
        .take_while(|l| l.starts_with("          "))
        .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k.to_owned()))
        .collect();
    assert_eq!(
        set_by_template, read_by_config,
        "template Variables vs src/config.rs"
    );
}

#[test]
fn turns_are_invoked_asynchronously_with_retries() {
    let template = read("infra/template.yaml");
    let function = template_resources(&template)
        .into_iter()
        .find(|(id, _)| id == "ResolverFunction")
        .expect("ResolverFunction")
        .1
        .join("\n");
    // A retry ends a turn whose environment died (see the template's comment).
    assert!(function.contains("MaximumRetryAttempts: 2"), "{function}");
    assert!(function.contains("Runtime: provided.al2023"), "{function}");
    // arm64 unless the deployment says otherwise (scripts/build-function builds either).
    assert!(
        function.contains("Architectures: [!Ref Architecture]"),
        "{function}"
    );
    let parameter = template_resources(&template.replace("Parameters:\n", "Resources:\n"))
        .into_iter()
        .find(|(id, _)| id == "Architecture")
        .expect("the Architecture parameter")
        .1
        .join("\n");
    assert!(parameter.contains("Default: arm64"), "{parameter}");
    assert!(
        parameter.contains("AllowedValues: [arm64, x86_64]"),
        "{parameter}"
    );
    let resolver = read("infra/resolvers/Function.invokeTurn.js");
    assert!(resolver.contains("invocationType: 'Event'"));
}

#[test]
fn infra_lints_pass() {
    if devstack::testing::skip_requested("INFRA_LINT") {
        eprintln!("infra lint skipped (INFRA_LINT=skip)");
        return;
    }
    let script = repo().join("scripts/lint-infra");
    let output = Command::new("bash")
        .arg(&script)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scripts/lint-infra failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}

/// A resource's lines, joined.
fn resource(template: &str, id: &str) -> String {
    template_resources(template)
        .into_iter()
        .find(|(name, _)| name == id)
        .unwrap_or_else(|| panic!("no resource {id}"))
        .1
        .join("\n")
}

/// The names under a resource's `Variables:`.
fn variables(resource: &str) -> BTreeSet<String> {
    resource
        .split("        Variables:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no Variables in {resource}"))
        .lines()
        .take_while(|l| l.starts_with("          "))
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k.to_owned()))
        .collect()
}

/// The function URL and WebSocket API are deployed as the code expects
/// them: streamed, public with the token checked in the function, the
/// environment the functions read, routes chosen by `action`, `sendPrompt`
/// asynchronous, and every field the route function reads passed to it.
#[test]
fn the_other_transports_are_deployed_as_their_functions_expect() {
    let template = read("infra/template.yaml");
    let url = resource(&template, "UrlFunction");
    for expected in [
        "Condition: FunctionUrlTransport",
        "AuthType: NONE",
        "InvokeMode: RESPONSE_STREAM",
        "CodeUri: ../target/lambda/function-url/",
        "ExposeHeaders: [content-type]",
    ] {
        assert!(url.contains(expected), "UrlFunction lacks {expected}");
    }
    let relay = config_env_names();
    let admission = [
        "ALLOWED_MODEL_IDS",
        "QUOTA_MAX_TURNS_IN_FLIGHT",
        "QUOTA_DAILY_TOKENS",
        "QUOTA_GROUPS",
        "QUOTA_MAX_CONVERSATIONS",
        "TURN_SLOT_SECONDS",
    ];
    let cognito = ["COGNITO_USER_POOL_ID", "COGNITO_APP_CLIENT_ID"];
    let read_by_code = |names: &[&str]| -> BTreeSet<String> {
        let admission_source = read("src/admission.rs");
        let cognito_source = read("src/cognito.rs");
        for name in names {
            assert!(
                admission_source.contains(name) || cognito_source.contains(name),
                "{name} is read by neither src/admission.rs nor src/cognito.rs"
            );
        }
        names.iter().map(|n| (*n).to_owned()).collect()
    };
    // The relay's variables but the AppSync endpoints, which only the
    // resolver needs.
    let relay_without_appsync: BTreeSet<String> = relay
        .iter()
        .filter(|n| !n.starts_with("APPSYNC_"))
        .cloned()
        .collect();
    let url_expected: BTreeSet<String> = relay_without_appsync
        .iter()
        .cloned()
        .chain(read_by_code(&admission))
        .chain(read_by_code(&cognito))
        .collect();
    assert_eq!(variables(&url), url_expected, "UrlFunction's environment");
    let websocket = resource(&template, "WebSocketFunction");
    let websocket_expected: BTreeSet<String> = relay_without_appsync
        .iter()
        .cloned()
        .chain(read_by_code(&admission))
        .collect();
    assert_eq!(
        variables(&websocket),
        websocket_expected,
        "WebSocketFunction's environment"
    );
    let authorizer = resource(&template, "WebSocketAuthorizerFunction");
    assert_eq!(variables(&authorizer), read_by_code(&cognito));

    let api = resource(&template, "WebSocketApi");
    assert!(api.contains("RouteSelectionExpression: $request.body.action"));
    let token = resource(&template, "WebSocketTokenAuthorizer");
    let source = read("src/websocket/authorizer.rs");
    assert!(source.contains(r#"pub const TOKEN_PARAMETER: &str = "token";"#));
    assert!(token.contains("IdentitySource: [route.request.querystring.token]"));
    let routes: BTreeSet<String> = resources_of(&template, "AWS::ApiGatewayV2::Route")
        .into_iter()
        .filter_map(|(_, value)| value("RouteKey:"))
        .collect();
    let expected: BTreeSet<String> = [
        "$connect",
        "$disconnect",
        "$default",
        "sendPrompt",
        "cancelTurn",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(routes, expected);
    let send_prompt = resource(&template, "WebSocketSendPromptRoute");
    assert!(send_prompt.contains("integrations/${WebSocketAsyncIntegration}"));
    let asynchronous = resource(&template, "WebSocketAsyncIntegration");
    assert!(asynchronous.contains("integration.request.header.X-Amz-Invocation-Type: \"'Event'\""));
    // Every field the route function reads, and every key the authorizer
    // puts in its context, reaches the asynchronous event.
    for field in [
        "routeKey",
        "messageId",
        "connectionId",
        "domainName",
        "stage",
    ] {
        assert!(
            asynchronous.contains(&format!("\"{field}\": \"$context.{field}\"")),
            "the sendPrompt event lacks {field}"
        );
    }
    for key in ["principalId", "username", "groups", "issuer", "expiresAt"] {
        assert!(
            asynchronous.contains(&format!("$context.authorizer.{key}")),
            "the sendPrompt event lacks the authorizer's {key}"
        );
        assert!(
            key == "principalId" || source.contains(&format!("\"{key}\":")),
            "the authorizer does not set {key}"
        );
    }
    let policy = resource(&template, "WebSocketConnectionsPolicy");
    assert!(policy.contains("Action: execute-api:ManageConnections"));
    assert!(policy.contains("/POST/@connections/*"));
}
