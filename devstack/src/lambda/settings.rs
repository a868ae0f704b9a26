//! Place in the data path: beside the stack, before it starts: the resolver
//! function's configuration, read from the deployment's own
//! `infra/template.yaml`, so the devstack runs it as Lambda would.
//!
//! Read from the `AWS::Serverless::Function`: `Timeout`, `MemorySize`,
//! `ReservedConcurrentExecutions`, `Environment.Variables` (the values the
//! devstack can follow: literals, parameter defaults, table names; the rest,
//! such as the API's URLs, the devstack sets itself) and `EventInvokeConfig`
//! (`MaximumRetryAttempts`, `MaximumEventAgeInSeconds`).
//! <https://github.com/aws/serverless-application-model/blob/develop/docs/globals.rst>,
//! <https://docs.aws.amazon.com/serverless-application-model/latest/developerguide/sam-resource-function.html>

use std::time::Duration;

use serde_norway::Value as Yaml;
use thiserror::Error;

use crate::appsync::js::template::template_scalar;

/// What the template says of the function. Absent properties take
/// Lambda's defaults (3 s, 128 MB, no reserved concurrency, 2 retries, 6 h).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionSettings {
    /// `Timeout`.
    pub timeout: Duration,
    /// `MemorySize`, in MB.
    pub memory_size_mb: u64,
    /// `ReservedConcurrentExecutions`, if set.
    pub reserved_concurrency: Option<usize>,
    /// `Environment.Variables` whose values the devstack can follow.
    pub environment: Vec<(String, String)>,
    /// `EventInvokeConfig.MaximumRetryAttempts`.
    pub max_retry_attempts: u32,
    /// `EventInvokeConfig.MaximumEventAgeInSeconds`.
    pub max_event_age: Duration,
}

impl Default for FunctionSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3),
            memory_size_mb: 128,
            reserved_concurrency: None,
            environment: Vec::new(),
            max_retry_attempts: 2,
            max_event_age: Duration::from_secs(6 * 3600),
        }
    }
}

/// Why the function's settings could not be read.
#[derive(Debug, Error)]
pub enum SettingsError {
    /// The template is not YAML.
    #[error("the template is not valid YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    /// The template has no `AWS::Serverless::Function`, or several and none
    /// named [`RESOLVER_FUNCTION`].
    #[error(
        "the template has {0} AWS::Serverless::Function resources and none is ResolverFunction"
    )]
    Functions(usize),
    /// A property is not a number in its range.
    #[error("the function's {0} is not a number the devstack can use")]
    Property(&'static str),
}

/// The resolver's logical id in a template with more than one function.
pub const RESOLVER_FUNCTION: &str = "ResolverFunction";

/// The settings of the resolver function in `template`: the one
/// `AWS::Serverless::Function`, or the one named [`RESOLVER_FUNCTION`] (the
/// text of `infra/template.yaml`), with the template's `Globals.Function`
/// underneath.
///
/// # Errors
/// [`SettingsError`] for a template that is not YAML, has no single
/// function, or gives a property the devstack cannot read.
pub fn function_settings(template: &str) -> Result<FunctionSettings, SettingsError> {
    let doc: Yaml = serde_norway::from_str(template)?;
    let functions: Vec<(&Yaml, &Yaml)> = doc
        .get("Resources")
        .and_then(Yaml::as_mapping)
        .into_iter()
        .flatten()
        .filter(|(_, r)| r.get("Type").and_then(Yaml::as_str) == Some("AWS::Serverless::Function"))
        .collect();
    let resolver = functions
        .iter()
        .find(|(id, _)| id.as_str() == Some(RESOLVER_FUNCTION))
        .or(functions.first().filter(|_| functions.len() == 1));
    let Some((_, function)) = resolver else {
        return Err(SettingsError::Functions(functions.len()));
    };
    let globals = doc.get("Globals").and_then(|g| g.get("Function"));
    let properties = function.get("Properties");
    let property = |name: &str| {
        properties
            .and_then(|p| p.get(name))
            .or_else(|| globals.and_then(|g| g.get(name)))
    };
    let number = |value: Option<&Yaml>, name: &'static str| -> Result<Option<u64>, SettingsError> {
        value
            .map(|v| {
                template_scalar(&doc, v)
                    .and_then(|s| s.parse().ok())
                    .ok_or(SettingsError::Property(name))
            })
            .transpose()
    };
    let defaults = FunctionSettings::default();
    let invoke_config = property("EventInvokeConfig");
    let of_invoke_config = |name: &str| invoke_config.and_then(|c| c.get(name));
    let mut environment = Vec::new();
    for variables in [globals, properties]
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("Environment")?.get("Variables")?.as_mapping())
    {
        for (name, value) in variables {
            if let (Some(name), Some(value)) = (name.as_str(), template_scalar(&doc, value)) {
                environment.retain(|(n, _): &(String, String)| n != name);
                environment.push((name.to_owned(), value));
            }
        }
    }
    Ok(FunctionSettings {
        timeout: number(property("Timeout"), "Timeout")?
            .map_or(defaults.timeout, Duration::from_secs),
        memory_size_mb: number(property("MemorySize"), "MemorySize")?
            .unwrap_or(defaults.memory_size_mb),
        reserved_concurrency: number(
            property("ReservedConcurrentExecutions"),
            "ReservedConcurrentExecutions",
        )?
        .and_then(|n| usize::try_from(n).ok()),
        environment,
        max_retry_attempts: number(
            of_invoke_config("MaximumRetryAttempts"),
            "EventInvokeConfig.MaximumRetryAttempts",
        )?
        .map_or(defaults.max_retry_attempts, |n| n.min(2) as u32),
        max_event_age: number(
            of_invoke_config("MaximumEventAgeInSeconds"),
            "EventInvokeConfig.MaximumEventAgeInSeconds",
        )?
        .map_or(defaults.max_event_age, Duration::from_secs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resolver_function_is_read_from_the_template() {
        let template = include_str!("../../../infra/template.yaml");
        let settings = function_settings(template).expect("settings");
        assert_eq!(settings.timeout, Duration::from_secs(300));
        assert_eq!(settings.memory_size_mb, 256);
        assert_eq!(settings.max_retry_attempts, 2);
        assert_eq!(settings.max_event_age, Duration::from_secs(600));
        let var = |name: &str| {
            settings
                .environment
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        // Parameter defaults, literals and the table's name are followed...
        assert_eq!(var("DEFAULT_MAX_TOKENS"), Some("1024"));
        assert_eq!(var("COALESCE_STRATEGY"), Some("adaptive"));
        assert_eq!(var("CLAIM_LEASE_SECONDS"), Some("30"));
        assert_eq!(var("CONVERSATIONS_TABLE"), Some("ConversationsTable"));
        // ...the API's URLs (`!GetAtt`) are the devstack's to set.
        assert_eq!(var("APPSYNC_GRAPHQL_URL"), None);
    }

    #[test]
    fn globals_lie_under_the_function_and_defaults_under_both() {
        let template = "Globals:\n  Function:\n    Timeout: 7\n    Environment:\n      Variables: {A: g, B: g}\nResources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      ReservedConcurrentExecutions: 4\n      Environment:\n        Variables: {B: f}\n";
        let settings = function_settings(template).expect("settings");
        assert_eq!(settings.timeout, Duration::from_secs(7));
        assert_eq!(settings.memory_size_mb, 128);
        assert_eq!(settings.reserved_concurrency, Some(4));
        assert_eq!(
            settings.environment,
            [("A".into(), "g".into()), ("B".into(), "f".into())]
        );
    }

    #[test]
    fn a_template_the_devstack_cannot_run_is_refused_with_a_reason() {
        assert!(matches!(
            function_settings("Resources: {}\n"),
            Err(SettingsError::Functions(0))
        ));
        let bad = "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties: {Timeout: soon}\n";
        assert!(matches!(
            function_settings(bad),
            Err(SettingsError::Property("Timeout"))
        ));
        let two = "Resources:\n  A:\n    Type: AWS::Serverless::Function\n  B:\n    Type: AWS::Serverless::Function\n";
        assert!(matches!(
            function_settings(two),
            Err(SettingsError::Functions(2))
        ));
    }

    #[test]
    fn with_several_functions_the_resolver_is_the_one_named_resolver_function() {
        let template = "Resources:\n  UrlFunction:\n    Type: AWS::Serverless::Function\n    Properties: {Timeout: 9}\n  ResolverFunction:\n    Type: AWS::Serverless::Function\n    Properties: {Timeout: 300}\n";
        let settings = function_settings(template).expect("settings");
        assert_eq!(settings.timeout, Duration::from_secs(300));
    }
}
