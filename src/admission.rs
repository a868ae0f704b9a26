//! Place in the data path: transport entry point (function URL, API Gateway
//! WebSocket) -> **admission** -> relay. What a turn must pass before any
//! model call when it does not come through AppSync's `sendPrompt`
//! pipeline: the input validated as the resolver validates it, a model the
//! deployment allows, and one of the caller's in-flight quota slots taken on
//! the same quota item with the same conditional write as the pipeline's
//! `takeTurnSlot`.
//!
//! A refusal says which kind it is (the transport picks its own status for
//! each), the error type `sendPrompt` would answer with, and a message safe
//! to show the caller.

use tracing::warn;

use crate::cognito::VerifiedUser;
use crate::config::{Config, ConfigError};
use crate::event::{
    AppSyncEvent, CognitoIdentity, Identity, SendPromptArguments, SendPromptInput, TurnRequest,
};
use crate::state::Core;
use crate::store::{QuotaLimits, SlotRefusal};
use crate::vocabulary::ErrorType;

/// The variables the quota limits are read from, as the AppSync pipeline
/// reads them from the API's environment.
const QUOTA_VARIABLES: [&str; 5] = [
    "QUOTA_MAX_TURNS_IN_FLIGHT",
    "QUOTA_DAILY_TOKENS",
    "QUOTA_MAX_CONVERSATIONS",
    "QUOTA_GROUPS",
    "TURN_SLOT_SECONDS",
];

/// The admission settings of a transport's function, read at init.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AdmissionConfig {
    /// `ALLOWED_MODEL_IDS`: the model ids a prompt may name, comma-separated;
    /// unset, only the default model.
    pub allowed_models: Vec<String>,
    /// The quota variables (`QUOTA_*`, `TURN_SLOT_SECONDS`) as set, read
    /// into the limits of each caller's groups.
    pub quota_environment: Vec<(String, String)>,
}

impl AdmissionConfig {
    /// Reads the settings through `lookup` (variable name -> value); blank
    /// values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let allowed_models = get("ALLOWED_MODEL_IDS")
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let quota_environment = QUOTA_VARIABLES
            .iter()
            .filter_map(|name| get(name).map(|value| ((*name).to_owned(), value)))
            .collect();
        Self {
            allowed_models,
            quota_environment,
        }
    }
}

/// Reads a required, non-blank variable through `lookup`.
///
/// # Errors
/// [`ConfigError::Missing`] when it is unset or blank.
pub(crate) fn required(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<String, ConfigError> {
    lookup(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .ok_or(ConfigError::Missing { name })
}

/// Which kind of refusal: each transport answers each kind its own way
/// (for HTTP: 400, 429, 503).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The input or the model is not acceptable.
    Invalid,
    /// A quota limit is reached.
    Limit,
    /// The quota could not be read; trying again may work.
    Unavailable,
}

/// Why a turn is not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Which kind of refusal.
    pub kind: RefusalKind,
    /// `sendPrompt`'s error type for it, e.g. `ValidationException`,
    /// `TooManyTurns`.
    pub error_type: &'static str,
    /// What the caller is told (no internals).
    pub message: String,
}

/// The checks a turn passes before it starts, built once at init.
#[derive(Debug)]
pub(crate) struct Admission {
    allowed_models: Vec<String>,
    quota_environment: Vec<(String, String)>,
}

impl Admission {
    /// The checks of `config`, with `default_model` the only allowed model
    /// when the config names none.
    pub(crate) fn new(config: &AdmissionConfig, default_model: &str) -> Self {
        let mut allowed_models = config.allowed_models.clone();
        if allowed_models.is_empty() {
            allowed_models.push(default_model.to_owned());
        }
        Self {
            allowed_models,
            quota_environment: config.quota_environment.clone(),
        }
    }

    /// `user`'s `input` (a token from `issuer`) as turn `turn_id`, once it
    /// passed every check and holds a quota slot (which the relay gives
    /// back when the turn ends).
    ///
    /// # Errors
    /// [`Refused`] for the first check that fails.
    pub(crate) async fn admit(
        &self,
        core: &Core,
        user: VerifiedUser,
        issuer: &str,
        mut input: SendPromptInput,
        turn_id: String,
    ) -> Result<TurnRequest, Refused> {
        input.turn_id = Some(turn_id);
        let groups = user.groups.clone();
        let turn = turn_request(&core.config, user, input, issuer).map_err(|e| Refused {
            kind: RefusalKind::Invalid,
            error_type: e.error_type().as_str(),
            message: e.to_string(),
        })?;
        if !self.allowed_models.contains(&turn.model_id) {
            return Err(Refused {
                kind: RefusalKind::Invalid,
                error_type: ErrorType::Validation.as_str(),
                message: format!(
                    "this modelId is not available; use one of: {}.",
                    self.allowed_models.join(", ")
                ),
            });
        }
        if let Some(store) = &core.store {
            let limits = QuotaLimits::for_groups(&groups, |name| {
                self.quota_environment
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            });
            store
                .take_slot(&turn.ids, &limits)
                .await
                .map_err(slot_refusal)?;
        }
        Ok(turn)
    }
}

/// A quota slot not taken, as a refusal.
fn slot_refusal(refusal: SlotRefusal) -> Refused {
    let kind = match refusal {
        SlotRefusal::Unavailable(ref error) => {
            warn!(%error, "could not take the turn's quota slot");
            RefusalKind::Unavailable
        }
        _ => RefusalKind::Limit,
    };
    Refused {
        kind,
        error_type: refusal.error_type(),
        message: refusal.to_string(),
    }
}

/// The verified `user`'s `input` as a turn, validated as the AppSync
/// resolver validates `sendPrompt`.
fn turn_request(
    config: &Config,
    user: VerifiedUser,
    input: SendPromptInput,
    issuer: &str,
) -> Result<TurnRequest, crate::event::ValidationError> {
    let identity = CognitoIdentity {
        sub: user.sub,
        issuer: issuer.to_owned(),
        username: user.username,
        claims: user.claims,
        source_ip: None,
        default_auth_strategy: None,
        groups: Some(user.groups),
    };
    let event = AppSyncEvent {
        arguments: SendPromptArguments { input },
        identity: Some(Identity::Cognito(identity)),
        source: None,
        request: None,
        prev: None,
        stash: None,
        info: None,
    };
    event.into_turn_request(config).map_err(|r| r.error)
}
