//! Place in the data path: set-up for every step of
//! "model -> coalescer -> publisher -> AppSync -> subscriber".
//!
//! The resolver's environment, read once per process at Lambda init (never per
//! invocation). Environment variables of a Lambda function:
//! <https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html>

use thiserror::Error;

/// Model used when a prompt names none and `BEDROCK_MODEL_ID` is unset.
pub const DEFAULT_MODEL_ID: &str = "anthropic.claude-3-haiku-20240307-v1:0";
/// `maxTokens` used when a prompt names none and `DEFAULT_MAX_TOKENS` is unset.
pub const DEFAULT_MAX_TOKENS: i32 = 1024;
/// Largest chunk text in UTF-8 bytes when `MAX_CHUNK_BYTES` is unset.
pub const DEFAULT_MAX_CHUNK_BYTES: usize = 16 * 1024;
/// Highest `maxTokens` a prompt or `DEFAULT_MAX_TOKENS` may ask for.
pub const MAX_TOKENS_LIMIT: i32 = 8192;
/// Bounds of `MAX_CHUNK_BYTES`. The lower bound is one UTF-8 character (4 bytes),
/// so a chunk always makes progress; the upper bound keeps a chunk, even after
/// JSON escaping inflates its text, well under AppSync's 240 KB subscription
/// message limit, above which a message is silently dropped:
/// <https://docs.aws.amazon.com/general/latest/gr/appsync.html>
pub const MAX_CHUNK_BYTES_RANGE: std::ops::RangeInclusive<usize> = 4..=65_536;

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
    /// `APPSYNC_GRAPHQL_URL` (required): the AppSync GraphQL endpoint the
    /// `publishChunk` mutation is POSTed to, e.g.
    /// `https://<id>.appsync-api.<region>.amazonaws.com/graphql`. Must be http(s).
    pub appsync_graphql_url: String,
    /// `BEDROCK_MODEL_ID`: model id used when the prompt names none
    /// (default [`DEFAULT_MODEL_ID`]).
    pub default_model_id: String,
    /// `DEFAULT_MAX_TOKENS`: `inferenceConfig.maxTokens` when the prompt names none,
    /// 1 to [`MAX_TOKENS_LIMIT`] (default [`DEFAULT_MAX_TOKENS`]).
    pub default_max_tokens: i32,
    /// `MAX_CHUNK_BYTES`: most UTF-8 bytes of answer text in one chunk, within
    /// [`MAX_CHUNK_BYTES_RANGE`] (default [`DEFAULT_MAX_CHUNK_BYTES`]).
    pub max_chunk_bytes: usize,
}

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// # Errors
    /// [`ConfigError::Missing`] when `APPSYNC_GRAPHQL_URL` is unset,
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

        let url_name = "APPSYNC_GRAPHQL_URL";
        let appsync_graphql_url = get(url_name).ok_or(ConfigError::Missing { name: url_name })?;
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

        let default_model_id = get("BEDROCK_MODEL_ID").unwrap_or_else(|| DEFAULT_MODEL_ID.into());

        let default_max_tokens = match get("DEFAULT_MAX_TOKENS") {
            None => DEFAULT_MAX_TOKENS,
            Some(raw) => parse_in_range("DEFAULT_MAX_TOKENS", raw, 1..=MAX_TOKENS_LIMIT)?,
        };

        let max_chunk_bytes = match get("MAX_CHUNK_BYTES") {
            None => DEFAULT_MAX_CHUNK_BYTES,
            Some(raw) => parse_in_range("MAX_CHUNK_BYTES", raw, MAX_CHUNK_BYTES_RANGE)?,
        };

        Ok(Self {
            appsync_graphql_url,
            default_model_id,
            default_max_tokens,
            max_chunk_bytes,
        })
    }
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
        assert_eq!(c.appsync_graphql_url, "https://x.example/graphql");
        assert_eq!(c.default_model_id, DEFAULT_MODEL_ID);
        assert_eq!(c.default_max_tokens, 1024);
        assert_eq!(c.max_chunk_bytes, 16384);
    }

    #[test]
    fn missing_or_blank_url_is_an_error() {
        assert_eq!(
            config(&[]),
            Err(ConfigError::Missing {
                name: "APPSYNC_GRAPHQL_URL"
            })
        );
        assert!(matches!(
            config(&[("APPSYNC_GRAPHQL_URL", "  ")]),
            Err(ConfigError::Missing { .. })
        ));
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
