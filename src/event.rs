//! Place in the data path: AppSync --Invoke(Event)--> **event** -> handler:
//! what AppSync hands the resolver Lambda for `sendPrompt`.
//!
//! The payload mirrors AppSync's Lambda resolver request
//! (<https://docs.aws.amazon.com/appsync/latest/devguide/resolver-reference-lambda-js.html>)
//! with the caller identity of the resolver context
//! (<https://docs.aws.amazon.com/appsync/latest/devguide/resolver-context-reference-js.html>).
//! These are our own types, not `aws_lambda_events`': its untagged identity
//! parses a Cognito caller as IAM and loses `sub` and `claims`.
//!
//! [`AppSyncEvent::into_turn_request`] validates the input into a [`TurnRequest`].

use serde::Deserialize;
use serde_json::{Map, Value};
use thiserror::Error;

use crate::config::Config;
use crate::limits::{
    MAX_ID_CHARS, MAX_MODEL_ID_CHARS, MAX_OWNER_BYTES, MAX_PROMPT_CHARS, MAX_SYSTEM_CHARS,
    MAX_TOKENS, TEMPERATURE_RANGE,
};
use crate::vocabulary::ErrorType;

/// The invocation payload: `{arguments, identity, source, request, prev, info, stash}`.
/// Every member except `arguments` may be absent or null.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppSyncEvent {
    /// The field arguments: `{"input": SendPromptInput}`.
    pub arguments: SendPromptArguments,
    /// The caller; `null` for API-key callers.
    #[serde(default)]
    pub identity: Option<Identity>,
    /// The parent object's resolved value (null for a root mutation).
    #[serde(default)]
    pub source: Option<Value>,
    /// Request headers and the custom domain, if any.
    #[serde(default)]
    pub request: Option<RequestInfo>,
    /// The previous pipeline function's result.
    #[serde(default)]
    pub prev: Option<Value>,
    /// The resolver's stash.
    #[serde(default)]
    pub stash: Option<Map<String, Value>>,
    /// The GraphQL field being resolved.
    #[serde(default)]
    pub info: Option<Info>,
}

/// `arguments` of `sendPrompt(input: SendPromptInput!)`.
#[derive(Debug, Clone, Deserialize)]
pub struct SendPromptArguments {
    /// The prompt.
    pub input: SendPromptInput,
}

/// `SendPromptInput` of schema.graphql, as received (not yet validated).
/// Numbers are kept wide so that out-of-range values reach validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendPromptInput {
    /// 1 to 128 of `A-Z a-z 0-9 - _ . :`.
    pub conversation_id: String,
    /// The user's message, 1 to 32,000 characters, not blank.
    pub prompt: String,
    /// Same alphabet as `conversation_id`; set by the `sendPrompt` resolver.
    #[serde(default)]
    pub turn_id: Option<String>,
    /// A Bedrock model id or ARN; the configured default when absent.
    #[serde(default)]
    pub model_id: Option<String>,
    /// A system prompt.
    #[serde(default)]
    pub system: Option<String>,
    /// Bedrock `inferenceConfig.maxTokens`, 1 to 8192.
    #[serde(default)]
    pub max_tokens: Option<i64>,
    /// Bedrock `inferenceConfig.temperature`, 0 to 1.
    #[serde(default)]
    pub temperature: Option<f64>,
}

/// `request` of the resolver context.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestInfo {
    /// Request headers, lower-case names.
    #[serde(default)]
    pub headers: Option<Map<String, Value>>,
    /// The custom domain name, if the API has one.
    #[serde(default)]
    pub domain_name: Option<String>,
}

/// `info` of the resolver context.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Info {
    /// e.g. `sendPrompt`.
    #[serde(default)]
    pub field_name: Option<String>,
    /// e.g. `Mutation`.
    #[serde(default)]
    pub parent_type_name: Option<String>,
    /// The operation's variables.
    #[serde(default)]
    pub variables: Option<Map<String, Value>>,
    /// The selected fields, e.g. `["conversationId", "turnId", "owner"]`.
    #[serde(default)]
    pub selection_set_list: Option<Vec<String>>,
    /// The selection set in GraphQL syntax.
    #[serde(default, rename = "selectionSetGraphQL")]
    pub selection_set_graphql: Option<String>,
}

/// The caller, by authorization mode. Variants are tried in this order, so a
/// Cognito identity (which has every OIDC field too) is never mistaken for
/// another kind. Anything else ends up in [`Identity::Unknown`].
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Identity {
    /// `AMAZON_COGNITO_USER_POOLS`.
    Cognito(CognitoIdentity),
    /// `OPENID_CONNECT`.
    Oidc(OidcIdentity),
    /// `AWS_IAM`.
    Iam(IamIdentity),
    /// `AWS_LAMBDA` (Lambda authorizer).
    Lambda(LambdaIdentity),
    /// A shape none of the above matches.
    Unknown(Value),
}

/// A Cognito user pool caller.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CognitoIdentity {
    /// The user's `sub` (a UUID): the owner of every chunk of the turn.
    pub sub: String,
    /// The token issuer, `https://cognito-idp.<region>.amazonaws.com/<poolId>`.
    pub issuer: String,
    /// The user name.
    pub username: String,
    /// All claims of the token.
    pub claims: Map<String, Value>,
    /// Caller IP addresses.
    #[serde(default)]
    pub source_ip: Option<Vec<String>>,
    /// `ALLOW` or `DENY`.
    #[serde(default)]
    pub default_auth_strategy: Option<String>,
    /// The user's `cognito:groups`.
    #[serde(default)]
    pub groups: Option<Vec<String>>,
}

/// An OpenID Connect caller.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OidcIdentity {
    /// All claims of the token.
    pub claims: Map<String, Value>,
    /// The token issuer.
    pub issuer: String,
    /// The subject.
    pub sub: String,
}

/// An IAM caller.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IamIdentity {
    /// The caller's AWS account.
    pub account_id: String,
    /// The caller's ARN.
    pub user_arn: String,
    /// The IAM user id or role session.
    #[serde(default)]
    pub username: Option<String>,
    /// Caller IP addresses.
    #[serde(default)]
    pub source_ip: Option<Vec<String>>,
    /// Cognito identity pool id, for identity-pool credentials.
    #[serde(default)]
    pub cognito_identity_pool_id: Option<String>,
    /// Cognito identity id.
    #[serde(default)]
    pub cognito_identity_id: Option<String>,
    /// `authenticated` or `unauthenticated`.
    #[serde(default)]
    pub cognito_identity_auth_type: Option<String>,
    /// The identity provider.
    #[serde(default)]
    pub cognito_identity_auth_provider: Option<String>,
}

/// A Lambda authorizer caller.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LambdaIdentity {
    /// What the authorizer returned as `resolverContext`.
    pub resolver_context: Value,
}

impl Identity {
    /// The authorization mode's name, for messages and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Identity::Cognito(_) => "AMAZON_COGNITO_USER_POOLS",
            Identity::Oidc(_) => "OPENID_CONNECT",
            Identity::Iam(_) => "AWS_IAM",
            Identity::Lambda(_) => "AWS_LAMBDA",
            Identity::Unknown(_) => "unknown",
        }
    }

    /// The caller's `sub` for Cognito and OIDC callers, `None` otherwise.
    pub fn sub(&self) -> Option<&str> {
        match self {
            Identity::Cognito(c) => Some(&c.sub),
            Identity::Oidc(o) => Some(&o.sub),
            _ => None,
        }
    }
}

/// Why a `sendPrompt` payload cannot start a turn. The messages are safe to
/// show the user who sent the prompt.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum ValidationError {
    /// No caller identity (an API-key caller).
    #[error("a signed-in user is required to send a prompt")]
    MissingIdentity,
    /// A caller whose identity has no user `sub` (IAM, Lambda authorizer, ...).
    #[error("callers authorized with {kind} cannot send prompts; sign in as a user")]
    UnsupportedIdentity {
        /// The authorization mode.
        kind: &'static str,
    },
    /// A `sub` that cannot be a chunk owner.
    #[error("the caller's user id is empty or invalid")]
    InvalidOwner,
    /// `turnId` absent (the `sendPrompt` resolver always sets it).
    #[error("turnId is required")]
    MissingTurnId,
    /// `conversationId` or `turnId` outside 1..=[`MAX_ID_CHARS`] of `[A-Za-z0-9-_.:]`.
    #[error("{field} must be 1 to {MAX_ID_CHARS} characters of A-Z, a-z, 0-9, '-', '_', '.', ':'")]
    InvalidId {
        /// `conversationId` or `turnId`.
        field: &'static str,
    },
    /// Prompt empty or only whitespace.
    #[error("prompt must not be empty")]
    BlankPrompt,
    /// Prompt longer than [`MAX_PROMPT_CHARS`].
    #[error("prompt is {chars} characters long; the limit is {MAX_PROMPT_CHARS}")]
    PromptTooLong {
        /// The prompt's length in characters.
        chars: usize,
    },
    /// System prompt longer than [`MAX_SYSTEM_CHARS`].
    #[error("system is {chars} characters long; the limit is {MAX_SYSTEM_CHARS}")]
    SystemTooLong {
        /// The system prompt's length in characters.
        chars: usize,
    },
    /// `modelId` empty, too long or containing whitespace or control characters.
    #[error("modelId must be 1 to {MAX_MODEL_ID_CHARS} characters without spaces")]
    InvalidModelId,
    /// `maxTokens` outside 1..=[`MAX_TOKENS`].
    #[error("maxTokens must be between 1 and {MAX_TOKENS}, got {0}")]
    MaxTokensOutOfRange(i64),
    /// `temperature` outside [`TEMPERATURE_RANGE`].
    #[error("temperature must be between {low} and {high}, got {0}", low = TEMPERATURE_RANGE.start(), high = TEMPERATURE_RANGE.end())]
    TemperatureOutOfRange(f64),
}

impl ValidationError {
    /// A stable machine-readable type: `UnauthorizedException` for identity
    /// problems, `ValidationException` for everything else.
    pub fn error_type(&self) -> ErrorType {
        match self {
            ValidationError::MissingIdentity
            | ValidationError::UnsupportedIdentity { .. }
            | ValidationError::InvalidOwner => ErrorType::Unauthorized,
            _ => ErrorType::Validation,
        }
    }
}

/// What identifies a turn's chunks: the `conversationId`, `turnId` and `owner`
/// every chunk carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnIds {
    /// `conversationId`: 1 to [`MAX_ID_CHARS`] of `A-Z a-z 0-9 - _ . :`.
    pub conversation_id: String,
    /// `turnId`: same alphabet and length as `conversation_id`.
    pub turn_id: String,
    /// The caller's `sub`.
    pub owner: String,
}

#[cfg(test)]
impl TurnIds {
    /// Conversation `c1`, turn `t1`, owner `o1`: the ids unit tests use.
    pub(crate) fn fixture() -> Self {
        Self {
            conversation_id: "c1".into(),
            turn_id: "t1".into(),
            owner: "o1".into(),
        }
    }
}

/// A validated prompt: everything one turn needs.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnRequest {
    /// Where the chunks go.
    pub ids: TurnIds,
    /// The user's message.
    pub prompt: String,
    /// The Bedrock model id or ARN.
    pub model_id: String,
    /// The system prompt, if any (a blank one is dropped).
    pub system: Option<String>,
    /// `inferenceConfig.maxTokens`, 1..=8192.
    pub max_tokens: i32,
    /// `inferenceConfig.temperature`, 0..=1.
    pub temperature: Option<f32>,
}

/// A payload that failed validation. `ids` is set when the conversation, turn
/// and owner were valid, so that the failure can still be published to the
/// caller as a terminal error chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The turn's ids, when they were valid.
    pub ids: Option<TurnIds>,
    /// What was wrong.
    pub error: ValidationError,
}

/// True for 1..=128 characters of `[A-Za-z0-9-_.:]`.
pub(crate) fn is_valid_id(id: &str) -> bool {
    (1..=MAX_ID_CHARS).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

impl AppSyncEvent {
    /// Parses an invocation payload.
    ///
    /// # Errors
    /// The JSON error when the payload is not a `sendPrompt` invocation
    /// (`arguments.input.conversationId` and `prompt` are required).
    pub fn from_value(value: Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(value)
    }

    /// Validates the prompt and caller into a [`TurnRequest`], filling
    /// `modelId` and `maxTokens` from `config` when absent.
    ///
    /// Checks, in order: caller identity (Cognito or OIDC with a `sub`),
    /// `conversationId`, `turnId`, then prompt, system, `modelId`, `maxTokens`,
    /// `temperature`.
    ///
    /// # Errors
    /// A [`Rejection`] naming the first problem found.
    pub fn into_turn_request(self, config: &Config) -> Result<TurnRequest, Rejection> {
        let input = self.arguments.input;
        let reject = |ids: Option<TurnIds>, error| Err(Rejection { ids, error });

        let owner = match &self.identity {
            None => return reject(None, ValidationError::MissingIdentity),
            Some(identity) => match identity.sub() {
                None => {
                    return reject(
                        None,
                        ValidationError::UnsupportedIdentity {
                            kind: identity.kind(),
                        },
                    );
                }
                Some(sub) if is_valid_owner(sub) => sub.to_owned(),
                Some(_) => return reject(None, ValidationError::InvalidOwner),
            },
        };
        if !is_valid_id(&input.conversation_id) {
            return reject(
                None,
                ValidationError::InvalidId {
                    field: "conversationId",
                },
            );
        }
        let turn_id = match input.turn_id {
            None => return reject(None, ValidationError::MissingTurnId),
            Some(t) if is_valid_id(&t) => t,
            Some(_) => return reject(None, ValidationError::InvalidId { field: "turnId" }),
        };
        let ids = TurnIds {
            conversation_id: input.conversation_id,
            turn_id,
            owner,
        };

        if input.prompt.trim().is_empty() {
            return reject(Some(ids), ValidationError::BlankPrompt);
        }
        let chars = input.prompt.chars().count();
        if chars > MAX_PROMPT_CHARS {
            return reject(Some(ids), ValidationError::PromptTooLong { chars });
        }
        // Measured before a blank one is dropped, as the sendPrompt resolver
        // measures it, so both refuse the same inputs.
        if let Some(chars) = input
            .system
            .as_deref()
            .map(|s| s.chars().count())
            .filter(|chars| *chars > MAX_SYSTEM_CHARS)
        {
            return reject(Some(ids), ValidationError::SystemTooLong { chars });
        }

        let model_id = match input.model_id {
            None => config.default_model_id.clone(),
            Some(m) if is_valid_model_id(&m) => m,
            Some(_) => return reject(Some(ids), ValidationError::InvalidModelId),
        };

        let max_tokens = match input.max_tokens {
            None => config.default_max_tokens,
            Some(n) => match i32::try_from(n) {
                Ok(n) if (1..=MAX_TOKENS).contains(&n) => n,
                _ => return reject(Some(ids), ValidationError::MaxTokensOutOfRange(n)),
            },
        };

        let temperature = match input.temperature {
            None => None,
            Some(t) if TEMPERATURE_RANGE.contains(&t) => Some(t as f32),
            Some(t) => return reject(Some(ids), ValidationError::TemperatureOutOfRange(t)),
        };

        let system = input.system.filter(|s| !s.trim().is_empty());

        Ok(TurnRequest {
            ids,
            prompt: input.prompt,
            model_id,
            system,
            max_tokens,
            temperature,
        })
    }
}

/// An owner goes into subscription filters, chunk ids and the first part of
/// every conversations-table key: non-empty, at most [`MAX_OWNER_BYTES`], no
/// control characters and no `#`, the keys' separator (a Cognito `sub` is a
/// UUID).
fn is_valid_owner(sub: &str) -> bool {
    !sub.is_empty()
        && sub.len() <= MAX_OWNER_BYTES
        && !sub.chars().any(|c| c.is_control() || c == '#')
}

fn is_valid_model_id(id: &str) -> bool {
    !id.is_empty()
        && id.chars().count() <= MAX_MODEL_ID_CHARS
        && !id.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Config {
        Config {
            appsync: Some(crate::config::AppSyncEndpoints {
                graphql_url: "http://127.0.0.1:4000/graphql".into(),
                realtime_url: "ws://127.0.0.1:4000/graphql/realtime".into(),
            }),
            default_model_id: "default-model".into(),
            default_max_tokens: 1024,
            max_chunk_bytes: 16384,
            max_hold: std::time::Duration::from_millis(1000),
            strategy: crate::coalesce::Strategy::Adaptive,
            conversations_table: None,
            history: crate::config::DEFAULT_HISTORY,
            claim_lease: crate::config::DEFAULT_CLAIM_LEASE,
        }
    }

    fn cognito() -> Value {
        json!({
            "sub": "7d8ca528-4931-4254-9273-ea5ee853f271",
            "issuer": "http://127.0.0.1:4000/us-east-1_devstack",
            "username": "alice",
            "claims": {"sub": "7d8ca528-4931-4254-9273-ea5ee853f271", "token_use": "id"},
            "sourceIp": ["127.0.0.1"],
            "defaultAuthStrategy": "ALLOW",
            "groups": ["admins", "users"]
        })
    }

    fn event(input: Value, identity: Value) -> Value {
        json!({
            "arguments": {"input": input},
            "identity": identity,
            "source": null,
            "request": {"headers": {}, "domainName": null},
            "prev": null,
            "stash": {},
            "info": {
                "fieldName": "sendPrompt",
                "parentTypeName": "Mutation",
                "variables": {},
                "selectionSetList": ["conversationId", "turnId", "owner"],
                "selectionSetGraphQL": "{ conversationId turnId owner }"
            }
        })
    }

    fn input() -> Value {
        json!({"conversationId": "c1", "prompt": "hi", "turnId": "t1",
               "modelId": null, "system": null, "maxTokens": null, "temperature": null})
    }

    fn validate(input: Value, identity: Value) -> Result<TurnRequest, Rejection> {
        AppSyncEvent::from_value(event(input, identity))
            .unwrap()
            .into_turn_request(&config())
    }

    #[test]
    fn an_owner_with_a_key_separator_is_refused() {
        assert!(is_valid_owner("7d8ca528-4931-4254-9273-ea5ee853f271"));
        assert!(!is_valid_owner("x#c1"));
        assert!(!is_valid_owner(""));
        assert!(!is_valid_owner("a\nb"));
    }

    #[test]
    fn cognito_identity_with_groups_parses_as_cognito() {
        let ev = AppSyncEvent::from_value(event(input(), cognito())).unwrap();
        let Some(Identity::Cognito(c)) = &ev.identity else {
            panic!("expected Cognito, got {:?}", ev.identity)
        };
        assert_eq!(c.sub, "7d8ca528-4931-4254-9273-ea5ee853f271");
        assert_eq!(c.username, "alice");
        assert_eq!(
            c.groups.as_deref(),
            Some(&["admins".to_owned(), "users".to_owned()][..])
        );
        assert_eq!(c.claims["token_use"], "id");
        assert_eq!(c.source_ip.as_deref(), Some(&["127.0.0.1".to_owned()][..]));
        let info = ev.info.unwrap();
        assert_eq!(info.field_name.as_deref(), Some("sendPrompt"));
        assert_eq!(
            info.selection_set_graphql.as_deref(),
            Some("{ conversationId turnId owner }")
        );
    }

    #[test]
    fn cognito_identity_with_null_groups_and_no_optionals() {
        let identity = json!({"sub": "s", "issuer": "i", "username": "u", "claims": {},
                              "groups": null});
        let ev = AppSyncEvent::from_value(event(input(), identity)).unwrap();
        let Some(Identity::Cognito(c)) = ev.identity else {
            panic!()
        };
        assert!(c.groups.is_none() && c.source_ip.is_none() && c.default_auth_strategy.is_none());
    }

    #[test]
    fn oidc_identity_parses_as_oidc_and_may_send() {
        let identity = json!({"claims": {"sub": "o1"}, "issuer": "https://idp", "sub": "o1"});
        let ev = AppSyncEvent::from_value(event(input(), identity.clone())).unwrap();
        assert!(matches!(ev.identity, Some(Identity::Oidc(_))));
        assert_eq!(validate(input(), identity).unwrap().ids.owner, "o1");
    }

    #[test]
    fn iam_identity_parses_as_iam_and_is_rejected() {
        let identity = json!({
            "accountId": "123456789012",
            "cognitoIdentityPoolId": null,
            "cognitoIdentityId": null,
            "cognitoIdentityAuthType": null,
            "cognitoIdentityAuthProvider": null,
            "sourceIp": ["10.0.0.1"],
            "username": "AROAEXAMPLE:session",
            "userArn": "arn:aws:sts::123456789012:assumed-role/r/session"
        });
        let ev = AppSyncEvent::from_value(event(input(), identity.clone())).unwrap();
        let Some(Identity::Iam(iam)) = &ev.identity else {
            panic!("{:?}", ev.identity)
        };
        assert_eq!(iam.account_id, "123456789012");
        assert_eq!(iam.username.as_deref(), Some("AROAEXAMPLE:session"));
        let err = validate(input(), identity).unwrap_err();
        assert_eq!(err.ids, None);
        assert_eq!(
            err.error,
            ValidationError::UnsupportedIdentity { kind: "AWS_IAM" }
        );
        assert_eq!(err.error.error_type().as_str(), "UnauthorizedException");
    }

    #[test]
    fn lambda_and_unknown_identities_are_rejected() {
        let lambda = json!({"resolverContext": {"tenant": "x"}});
        let ev = AppSyncEvent::from_value(event(input(), lambda.clone())).unwrap();
        assert!(matches!(ev.identity, Some(Identity::Lambda(_))));
        assert!(validate(input(), lambda).is_err());
        let odd = json!({"something": 1});
        let ev = AppSyncEvent::from_value(event(input(), odd.clone())).unwrap();
        assert!(matches!(ev.identity, Some(Identity::Unknown(_))));
        assert!(validate(input(), odd).is_err());
    }

    #[test]
    fn null_or_absent_identity_is_rejected_without_ids() {
        let err = validate(input(), Value::Null).unwrap_err();
        assert_eq!(
            err,
            Rejection {
                ids: None,
                error: ValidationError::MissingIdentity
            }
        );
        let ev = AppSyncEvent::from_value(json!({"arguments": {"input": input()}})).unwrap();
        assert!(ev.identity.is_none() && ev.info.is_none() && ev.request.is_none());
    }

    #[test]
    fn minimal_event_tolerates_absent_and_null_members() {
        let ev = AppSyncEvent::from_value(json!({
            "arguments": {"input": {"conversationId": "c", "prompt": "p", "turnId": "t"}},
            "identity": cognito(),
            "request": null, "info": null, "stash": null, "prev": null, "source": null
        }))
        .unwrap();
        let req = ev.into_turn_request(&config()).unwrap();
        assert_eq!(req.model_id, "default-model");
        assert_eq!(req.max_tokens, 1024);
        assert_eq!(req.temperature, None);
        assert_eq!(req.system, None);
    }

    #[test]
    fn payload_without_arguments_is_a_parse_error() {
        assert!(AppSyncEvent::from_value(json!({"identity": null})).is_err());
        assert!(AppSyncEvent::from_value(json!([1, 2])).is_err());
    }

    #[test]
    fn valid_input_becomes_a_turn_request() {
        let req = validate(
            json!({"conversationId": "conv-1_a.b:c", "prompt": "hello", "turnId": "t-9",
                   "modelId": "amazon.nova-micro-v1:0", "system": "be brief",
                   "maxTokens": 8192, "temperature": 0.5}),
            cognito(),
        )
        .unwrap();
        assert_eq!(
            req.ids,
            TurnIds {
                conversation_id: "conv-1_a.b:c".into(),
                turn_id: "t-9".into(),
                owner: "7d8ca528-4931-4254-9273-ea5ee853f271".into()
            }
        );
        assert_eq!(req.model_id, "amazon.nova-micro-v1:0");
        assert_eq!(req.system.as_deref(), Some("be brief"));
        assert_eq!(req.max_tokens, 8192);
        assert_eq!(req.temperature, Some(0.5));
    }

    #[test]
    fn bad_ids_are_rejected_without_ids() {
        for (field, input) in [
            (
                "conversationId",
                json!({"conversationId": "", "prompt": "p", "turnId": "t"}),
            ),
            (
                "conversationId",
                json!({"conversationId": "a b", "prompt": "p", "turnId": "t"}),
            ),
            (
                "conversationId",
                json!({"conversationId": "x".repeat(129), "prompt": "p", "turnId": "t"}),
            ),
            (
                "turnId",
                json!({"conversationId": "c", "prompt": "p", "turnId": "é"}),
            ),
        ] {
            let err = validate(input, cognito()).unwrap_err();
            assert_eq!(
                err,
                Rejection {
                    ids: None,
                    error: ValidationError::InvalidId { field }
                }
            );
        }
        let err = validate(json!({"conversationId": "c", "prompt": "p"}), cognito()).unwrap_err();
        assert_eq!(err.error, ValidationError::MissingTurnId);
        assert!(is_valid_id(&"x".repeat(128)));
    }

    #[test]
    fn bad_fields_are_rejected_with_ids() {
        let cases = [
            (json!({"prompt": " \n\t"}), ValidationError::BlankPrompt),
            (
                json!({"prompt": "é".repeat(32_001)}),
                ValidationError::PromptTooLong { chars: 32_001 },
            ),
            (
                json!({"system": "s".repeat(32_001)}),
                ValidationError::SystemTooLong { chars: 32_001 },
            ),
            (json!({"modelId": ""}), ValidationError::InvalidModelId),
            (json!({"modelId": "a b"}), ValidationError::InvalidModelId),
            (
                json!({"maxTokens": 0}),
                ValidationError::MaxTokensOutOfRange(0),
            ),
            (
                json!({"maxTokens": 8193}),
                ValidationError::MaxTokensOutOfRange(8193),
            ),
            (
                json!({"maxTokens": 5_000_000_000i64}),
                ValidationError::MaxTokensOutOfRange(5_000_000_000),
            ),
            (
                json!({"temperature": -0.1}),
                ValidationError::TemperatureOutOfRange(-0.1),
            ),
            (
                json!({"temperature": 1.5}),
                ValidationError::TemperatureOutOfRange(1.5),
            ),
        ];
        for (overrides, expected) in cases {
            let mut input = input();
            for (k, v) in overrides.as_object().unwrap() {
                input[k] = v.clone();
            }
            let err = validate(input, cognito()).unwrap_err();
            assert_eq!(err.error, expected);
            assert_eq!(err.error.error_type().as_str(), "ValidationException");
            assert_eq!(err.ids.unwrap().turn_id, "t1");
        }
        // 32,000 multi-byte characters are within the limit.
        let mut ok = input();
        ok["prompt"] = json!("é".repeat(32_000));
        ok["system"] = json!("é".repeat(32_000));
        assert!(validate(ok, cognito()).is_ok());
    }
}
