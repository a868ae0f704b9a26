//! Place in the data path: set-up for every step of
//! "handler -> model -> coalescer -> turn driver -> sink".
//!
//! The resolver's environment, read once per process at Lambda init (never per
//! invocation). Environment variables of a Lambda function:
//! <https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html>

use std::time::Duration;

use thiserror::Error;

use appsync_client::realtime_url_for;

use crate::coalesce::Strategy;
use crate::limits::{CHUNK_BYTES_RANGE, MAX_HOLD_MS_RANGE, MAX_TOKENS};
use crate::store::HistoryBudget;

/// Model used when a prompt names none and `BEDROCK_MODEL_ID` is unset.
pub(crate) const DEFAULT_MODEL_ID: &str = "anthropic.claude-3-haiku-20240307-v1:0";
/// `maxTokens` used when a prompt names none and `DEFAULT_MAX_TOKENS` is unset.
pub(crate) const DEFAULT_MAX_TOKENS: i32 = 1024;
/// Largest chunk text in UTF-8 bytes when `MAX_CHUNK_BYTES` is unset.
pub(crate) const DEFAULT_MAX_CHUNK_BYTES: usize = 16 * 1024;
/// How long pending text may wait behind a slow publish before a second one
/// starts, when `MAX_HOLD_MS` is unset.
pub(crate) const DEFAULT_MAX_HOLD: Duration = Duration::from_millis(1000);

/// How much history goes with a prompt when `HISTORY_MAX_*` are unset: the
/// last 20 messages (10 turns) within 24,000 characters (about 6,000 tokens).
pub(crate) const DEFAULT_HISTORY: HistoryBudget = HistoryBudget {
    max_messages: 20,
    max_chars: 24_000,
};
/// A claim's lease when `CLAIM_LEASE_SECONDS` is unset: renewed every 10 s,
/// so a dead environment is noticed within 30 s (Lambda's first retry comes
/// about a minute after the failure).
pub(crate) const DEFAULT_CLAIM_LEASE: Duration = Duration::from_secs(30);
/// Allowed `CLAIM_LEASE_SECONDS`.
/// At least 3 s: one renewal may take up to the store's 2 s operation timeout.
pub(crate) const CLAIM_LEASE_RANGE: std::ops::RangeInclusive<u64> = 3..=900;
/// Allowed `HISTORY_MAX_MESSAGES`.
pub(crate) const HISTORY_MESSAGES_RANGE: std::ops::RangeInclusive<usize> = 0..=200;
/// Allowed `HISTORY_MAX_CHARS`.
pub(crate) const HISTORY_CHARS_RANGE: std::ops::RangeInclusive<usize> = 0..=400_000;

/// Why the environment could not be turned into a [`Config`].
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("environment variable {name} is required but not set")]
    Missing {
        /// The variable's name.
        name: &'static str,
    },
    /// A variable is set to a value that cannot be used.
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable's name.
        name: &'static str,
        /// The value found.
        value: String,
        /// What a valid value looks like.
        reason: String,
    },
}

/// The resolver's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The AppSync API the resolver publishes to and listens on, when
    /// `APPSYNC_GRAPHQL_URL` is set (the AppSync resolver requires it; the
    /// function URL's function does not use it).
    pub appsync: Option<AppSyncEndpoints>,
    /// `BEDROCK_MODEL_ID`: model id used when the prompt names none
    /// (default [`DEFAULT_MODEL_ID`]).
    pub default_model_id: String,
    /// `DEFAULT_MAX_TOKENS`: `inferenceConfig.maxTokens` when the prompt names none,
    /// 1 to [`MAX_TOKENS`] (default [`DEFAULT_MAX_TOKENS`]).
    pub default_max_tokens: i32,
    /// `MAX_CHUNK_BYTES`: most UTF-8 bytes of answer text in one chunk, within
    /// [`CHUNK_BYTES_RANGE`] (default [`DEFAULT_MAX_CHUNK_BYTES`]).
    pub max_chunk_bytes: usize,
    /// `MAX_HOLD_MS`: how long pending text may wait behind a slow publish
    /// before the adaptive strategy starts a second one, within
    /// [`MAX_HOLD_MS_RANGE`] milliseconds (default [`DEFAULT_MAX_HOLD`]).
    pub max_hold: Duration,
    /// `COALESCE_STRATEGY`: `adaptive` (default), `per-delta`,
    /// `fixed-deltas:N`, `timer:MS` or `chars:N`; see [`Strategy`].
    pub strategy: Strategy,
    /// `CONVERSATIONS_TABLE`: the DynamoDB table turns are claimed in, so a
    /// repeated event streams nothing in any execution environment. Unset
    /// (or empty): no table, and only the in-process record guards repeats.
    pub conversations_table: Option<String>,
    /// `HISTORY_MAX_MESSAGES` (0 to [`HISTORY_MESSAGES_RANGE`]'s end, default
    /// [`DEFAULT_HISTORY`]'s) and `HISTORY_MAX_CHARS` (0 to
    /// [`HISTORY_CHARS_RANGE`]'s end): how much of the conversation's earlier
    /// messages goes to the model with a prompt, when there is a
    /// conversations table. 0 sends none.
    pub history: HistoryBudget,
    /// `CLAIM_LEASE_SECONDS` (within [`CLAIM_LEASE_RANGE`], default
    /// [`DEFAULT_CLAIM_LEASE`]): how long a turn's claim holds without being
    /// renewed. A repeated event waits while the lease holds; once it has
    /// gone unrenewed for a further lease, the environment that streamed the
    /// turn is taken for dead and the repeat ends the turn as `Interrupted`.
    pub claim_lease: Duration,
}

/// Where the AppSync API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSyncEndpoints {
    /// `APPSYNC_GRAPHQL_URL`: the AppSync GraphQL endpoint the `publishChunk`
    /// mutation is POSTed to, e.g.
    /// `https://<id>.appsync-api.<region>.amazonaws.com/graphql`. Must be http(s).
    pub graphql_url: String,
    /// `APPSYNC_REALTIME_URL`: the API's real-time endpoint (`ws://` or
    /// `wss://`), on which the resolver subscribes to `onCancel`. Derived from
    /// `APPSYNC_GRAPHQL_URL` by [`realtime_url_for`] when unset.
    pub realtime_url: String,
}

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when any variable holds an unusable value.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (variable name -> value), so it
    /// can be tested without touching the process environment. An empty or
    /// all-blank value counts as unset.
    ///
    /// # Errors
    /// As [`Config::from_env`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let appsync = match get("APPSYNC_GRAPHQL_URL") {
            None => None,
            Some(url) => Some(appsync_endpoints(url, get("APPSYNC_REALTIME_URL"))?),
        };

        let default_model_id = get("BEDROCK_MODEL_ID").unwrap_or_else(|| DEFAULT_MODEL_ID.into());

        let default_max_tokens = match get("DEFAULT_MAX_TOKENS") {
            None => DEFAULT_MAX_TOKENS,
            Some(raw) => parse_in_range("DEFAULT_MAX_TOKENS", raw, 1..=MAX_TOKENS)?,
        };

        let max_chunk_bytes = match get("MAX_CHUNK_BYTES") {
            None => DEFAULT_MAX_CHUNK_BYTES,
            Some(raw) => parse_in_range("MAX_CHUNK_BYTES", raw, CHUNK_BYTES_RANGE)?,
        };

        let max_hold = match get("MAX_HOLD_MS") {
            None => DEFAULT_MAX_HOLD,
            Some(raw) => {
                Duration::from_millis(parse_in_range("MAX_HOLD_MS", raw, MAX_HOLD_MS_RANGE)?)
            }
        };

        let strategy_name = "COALESCE_STRATEGY";
        let strategy = match get(strategy_name) {
            None => Strategy::default(),
            Some(raw) => raw
                .parse()
                .map_err(
                    |e: crate::coalesce::StrategyParseError| ConfigError::Invalid {
                        name: strategy_name,
                        value: raw.clone(),
                        reason: e.to_string(),
                    },
                )?,
        };

        Ok(Self {
            appsync,
            default_model_id,
            default_max_tokens,
            max_chunk_bytes,
            max_hold,
            strategy,
            conversations_table: get("CONVERSATIONS_TABLE").filter(|t| !t.trim().is_empty()),
            history: HistoryBudget {
                max_messages: match get("HISTORY_MAX_MESSAGES") {
                    None => DEFAULT_HISTORY.max_messages,
                    Some(raw) => {
                        parse_in_range("HISTORY_MAX_MESSAGES", raw, HISTORY_MESSAGES_RANGE)?
                    }
                },
                max_chars: match get("HISTORY_MAX_CHARS") {
                    None => DEFAULT_HISTORY.max_chars,
                    Some(raw) => parse_in_range("HISTORY_MAX_CHARS", raw, HISTORY_CHARS_RANGE)?,
                },
            },
            claim_lease: match get("CLAIM_LEASE_SECONDS") {
                None => DEFAULT_CLAIM_LEASE,
                Some(raw) => Duration::from_secs(parse_in_range(
                    "CLAIM_LEASE_SECONDS",
                    raw,
                    CLAIM_LEASE_RANGE,
                )?),
            },
        })
    }
}

/// The AppSync endpoints from `APPSYNC_GRAPHQL_URL` (`graphql_url`) and
/// `APPSYNC_REALTIME_URL` (`realtime`, derived from the first when unset).
fn appsync_endpoints(
    appsync_graphql_url: String,
    realtime: Option<String>,
) -> Result<AppSyncEndpoints, ConfigError> {
    let url_name = "APPSYNC_GRAPHQL_URL";
    match reqwest::Url::parse(&appsync_graphql_url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
        _ => {
            return Err(ConfigError::Invalid {
                    name: url_name,
                    value: appsync_graphql_url,
                    reason: "expected an absolute http(s) URL such as https://<id>.appsync-api.<region>.amazonaws.com/graphql".into(),
                });
        }
    }

    let realtime_name = "APPSYNC_REALTIME_URL";
    let appsync_realtime_url = match realtime {
        Some(url) => match reqwest::Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "ws" | "wss") && u.host().is_some() => url,
            _ => {
                return Err(ConfigError::Invalid {
                        name: realtime_name,
                        value: url,
                        reason: "expected an absolute ws(s) URL such as wss://<id>.appsync-realtime-api.<region>.amazonaws.com/graphql".into(),
                    });
            }
        },
        None => realtime_url_for(&appsync_graphql_url).ok_or_else(|| ConfigError::Invalid {
            name: url_name,
            value: appsync_graphql_url.clone(),
            reason: "cannot derive the real-time URL from it; set APPSYNC_REALTIME_URL".into(),
        })?,
    };

    Ok(AppSyncEndpoints {
        graphql_url: appsync_graphql_url,
        realtime_url: appsync_realtime_url,
    })
}

fn parse_in_range<T>(
    name: &'static str,
    raw: String,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    match raw.parse::<T>() {
        Ok(v) if range.contains(&v) => Ok(v),
        _ => Err(ConfigError::Invalid {
            name,
            value: raw,
            reason: format!(
                "expected an integer from {} to {}",
                range.start(),
                range.end()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_apply_when_only_the_url_is_set() {
        let c = config(&[("APPSYNC_GRAPHQL_URL", "https://x.example/graphql")]).unwrap();
        let appsync = c.appsync.as_ref().expect("the AppSync endpoints");
        assert_eq!(appsync.graphql_url, "https://x.example/graphql");
        assert_eq!(c.default_model_id, DEFAULT_MODEL_ID);
        assert_eq!(c.default_max_tokens, 1024);
        assert_eq!(c.max_chunk_bytes, 16384);
        assert_eq!(c.max_hold, Duration::from_millis(1000));
        assert_eq!(c.strategy, Strategy::Adaptive);
        assert_eq!(appsync.realtime_url, "wss://x.example/graphql/realtime");
    }

    #[test]
    fn strategy_hold_and_realtime_url_can_be_set() {
        let url = ("APPSYNC_GRAPHQL_URL", "http://127.0.0.1:4000/graphql");
        let c = config(&[
            url,
            ("COALESCE_STRATEGY", "fixed-deltas:6"),
            ("MAX_HOLD_MS", "250"),
            ("APPSYNC_REALTIME_URL", "wss://rt.example/graphql/realtime"),
        ])
        .unwrap();
        assert_eq!(c.strategy.to_string(), "fixed-deltas:6");
        assert_eq!(c.max_hold, Duration::from_millis(250));
        assert_eq!(
            c.appsync.map(|a| a.realtime_url).as_deref(),
            Some("wss://rt.example/graphql/realtime")
        );

        let err = config(&[url, ("COALESCE_STRATEGY", "fastest")]).unwrap_err();
        let ConfigError::Invalid { name, reason, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*name, "COALESCE_STRATEGY");
        assert!(
            reason.contains("adaptive") && reason.contains("timer:MS"),
            "{reason}"
        );
        assert!(err.to_string().contains("\"fastest\""), "{err}");
        assert!(matches!(
            config(&[url, ("MAX_HOLD_MS", "0")]),
            Err(ConfigError::Invalid {
                name: "MAX_HOLD_MS",
                ..
            })
        ));
        assert!(matches!(
            config(&[url, ("APPSYNC_REALTIME_URL", "https://x/graphql")]),
            Err(ConfigError::Invalid {
                name: "APPSYNC_REALTIME_URL",
                ..
            })
        ));
    }

    #[test]
    fn without_a_url_there_is_no_appsync_api() {
        assert_eq!(config(&[]).map(|c| c.appsync), Ok(None));
        assert_eq!(
            config(&[("APPSYNC_GRAPHQL_URL", "  ")]).map(|c| c.appsync),
            Ok(None)
        );
    }

    #[test]
    fn invalid_values_are_typed_errors() {
        let url = ("APPSYNC_GRAPHQL_URL", "http://127.0.0.1:4000/graphql");
        assert!(matches!(
            config(&[("APPSYNC_GRAPHQL_URL", "not a url")]),
            Err(ConfigError::Invalid {
                name: "APPSYNC_GRAPHQL_URL",
                ..
            })
        ));
        assert!(matches!(
            config(&[("APPSYNC_GRAPHQL_URL", "ftp://x/graphql")]),
            Err(ConfigError::Invalid { .. })
        ));
        assert!(matches!(
            config(&[url, ("DEFAULT_MAX_TOKENS", "0")]),
            Err(ConfigError::Invalid {
                name: "DEFAULT_MAX_TOKENS",
                ..
            })
        ));
        assert!(matches!(
            config(&[url, ("DEFAULT_MAX_TOKENS", "lots")]),
            Err(ConfigError::Invalid {
                name: "DEFAULT_MAX_TOKENS",
                ..
            })
        ));
        assert!(matches!(
            config(&[url, ("MAX_CHUNK_BYTES", "3")]),
            Err(ConfigError::Invalid {
                name: "MAX_CHUNK_BYTES",
                ..
            })
        ));
    }

    #[test]
    fn explicit_values_are_used() {
        let c = config(&[
            ("APPSYNC_GRAPHQL_URL", "http://127.0.0.1:4000/graphql"),
            ("BEDROCK_MODEL_ID", "scripted"),
            ("DEFAULT_MAX_TOKENS", "8192"),
            ("MAX_CHUNK_BYTES", "64"),
        ])
        .unwrap();
        assert_eq!(c.default_model_id, "scripted");
        assert_eq!(c.default_max_tokens, 8192);
        assert_eq!(c.max_chunk_bytes, 64);
    }
}
