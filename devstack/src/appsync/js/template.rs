//! The API definition the devstack serves, read from the deployment's own
//! `infra/template.yaml` and resolver files.
//!
//! Place in the data path: client -> AppSync **resolver (which file, which
//! data source)** -> data source (NONE, Lambda --Invoke--> resolver Lambda, or
//! DynamoDB --> the local table).
//!
//! Only what maps a field to its code and data source is read: the
//! `AWS::AppSync::Resolver`, `AWS::AppSync::FunctionConfiguration` and
//! `AWS::AppSync::DataSource` resources, and the `AWS::AppSync::GraphQLApi`'s
//! `EnvironmentVariables` (`ctx.env`). Intrinsics are followed only as far as
//! that needs (`!GetAtt X.Name`, `!GetAtt F.FunctionId`, `!Ref` of a parameter
//! (its default) or of an `AWS::DynamoDB::Table` (its logical id, the local
//! table's name), `!Join` of those); `Fn::ForEach::*` keys are skipped.
//! <https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-appsync-resolver.html>
//! <https://docs.aws.amazon.com/appsync/latest/devguide/environment-variables.html>

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value as Yaml};

/// The template, relative to the infra directory.
pub const TEMPLATE_FILE: &str = "template.yaml";

/// The compiled-in copy of `infra/`: the template and every resolver file
/// (a test checks that no file of `infra/resolvers/` is missing here).
pub const EMBEDDED_INFRA: &[(&str, &str)] = &[
    (
        TEMPLATE_FILE,
        include_str!("../../../../infra/template.yaml"),
    ),
    (
        "resolvers/Function.deleteConversationKeys.js",
        include_str!("../../../../infra/resolvers/Function.deleteConversationKeys.js"),
    ),
    (
        "resolvers/Function.findConversationKeys.js",
        include_str!("../../../../infra/resolvers/Function.findConversationKeys.js"),
    ),
    (
        "resolvers/Function.forgetConversation.js",
        include_str!("../../../../infra/resolvers/Function.forgetConversation.js"),
    ),
    (
        "resolvers/Function.invokeTurn.js",
        include_str!("../../../../infra/resolvers/Function.invokeTurn.js"),
    ),
    (
        "resolvers/Function.readQuota.js",
        include_str!("../../../../infra/resolvers/Function.readQuota.js"),
    ),
    (
        "resolvers/Function.takeTurnSlot.js",
        include_str!("../../../../infra/resolvers/Function.takeTurnSlot.js"),
    ),
    (
        "resolvers/Mutation.cancelTurn.js",
        include_str!("../../../../infra/resolvers/Mutation.cancelTurn.js"),
    ),
    (
        "resolvers/Mutation.deleteConversation.js",
        include_str!("../../../../infra/resolvers/Mutation.deleteConversation.js"),
    ),
    (
        "resolvers/Mutation.publishChunk.js",
        include_str!("../../../../infra/resolvers/Mutation.publishChunk.js"),
    ),
    (
        "resolvers/Mutation.sendPrompt.js",
        include_str!("../../../../infra/resolvers/Mutation.sendPrompt.js"),
    ),
    (
        "resolvers/Query.listConversations.js",
        include_str!("../../../../infra/resolvers/Query.listConversations.js"),
    ),
    (
        "resolvers/Query.listMessages.js",
        include_str!("../../../../infra/resolvers/Query.listMessages.js"),
    ),
    (
        "resolvers/Query.myQuota.js",
        include_str!("../../../../infra/resolvers/Query.myQuota.js"),
    ),
    (
        "resolvers/Query.ping.js",
        include_str!("../../../../infra/resolvers/Query.ping.js"),
    ),
    (
        "resolvers/Query.turnChunks.js",
        include_str!("../../../../infra/resolvers/Query.turnChunks.js"),
    ),
    (
        "resolvers/Subscription.onCancel.js",
        include_str!("../../../../infra/resolvers/Subscription.onCancel.js"),
    ),
    (
        "resolvers/Subscription.onChunk.js",
        include_str!("../../../../infra/resolvers/Subscription.onChunk.js"),
    ),
];

/// Why the API definition could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template or a resolver file could not be read.
    #[error("could not read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The template names a file the compiled-in copy lacks.
    #[error("{0} is not in the compiled-in infra/ copy")]
    NotEmbedded(String),
    /// The template is not YAML.
    #[error("the template is not valid YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    /// The template has no `Resources` mapping.
    #[error("the template has no Resources")]
    NoResources,
    /// A resource the devstack needs is incomplete or of a kind it cannot run.
    #[error("resource {resource}: {message}")]
    Resource {
        /// The resource's logical id.
        resource: String,
        /// What is wrong with it.
        message: String,
    },
}

/// A data source's type, as far as the devstack can run it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSourceKind {
    /// `NONE`: the request's `payload` is the result.
    None,
    /// `AWS_LAMBDA`: the project's one Lambda function.
    Lambda,
    /// `AMAZON_DYNAMODB`: a table of the local DynamoDB.
    DynamoDb {
        /// `DynamoDBConfig.TableName`: a `!Ref` of the template's table
        /// resolved to its logical id, which names the local table.
        table: String,
    },
}

/// A handler file: its path (as in `CodeS3Location`, or `inline:<resource>`) and source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Code {
    /// The path relative to the infra directory, or `inline:<resource>`.
    pub path: String,
    /// The JavaScript module's text.
    pub source: String,
}

/// An `AWS::AppSync::FunctionConfiguration` of a pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionDef {
    /// Its `Name` (or its logical id when it has none).
    pub name: String,
    /// The data source its `request` handler's result is sent to.
    pub data_source: DataSourceKind,
    /// Its handlers.
    pub code: Code,
}

/// What a resolver runs between its `request` and `response` handlers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolverKind {
    /// `UNIT`: one data source.
    Unit {
        /// The data source the `request` handler's result is sent to.
        data_source: DataSourceKind,
    },
    /// `PIPELINE`: functions run in order between the before and after handlers.
    Pipeline {
        /// The functions, in order.
        functions: Vec<FunctionDef>,
    },
}

/// One `AWS::AppSync::Resolver`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolverDef {
    /// The type of the field it resolves (`TypeName`), e.g. `Mutation`.
    pub type_name: String,
    /// The field it resolves (`FieldName`), e.g. `sendPrompt`.
    pub field_name: String,
    /// Unit or pipeline.
    pub kind: ResolverKind,
    /// Its `request` and `response` handlers (a pipeline's before and after).
    pub code: Code,
}

/// The text of the compiled-in `infra/template.yaml`.
pub fn embedded_template() -> &'static str {
    EMBEDDED_INFRA
        .iter()
        .find(|(path, _)| *path == TEMPLATE_FILE)
        .map_or("", |(_, text)| text)
}

/// The resolvers and `ctx.env` of one GraphQL API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiDefinition {
    /// By (type name, field name).
    pub resolvers: BTreeMap<(String, String), ResolverDef>,
    /// `ctx.env`: the variables whose values the template gives (literals or
    /// parameter defaults).
    pub env: BTreeMap<String, String>,
}

impl ApiDefinition {
    /// The compiled-in copy of `infra/`.
    ///
    /// # Errors
    ///
    /// A [`TemplateError`] if the copy is inconsistent (a test keeps it whole).
    pub fn embedded() -> Result<Self, TemplateError> {
        let read = |path: &str| {
            let path = normalise(path);
            EMBEDDED_INFRA
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, s)| (*s).to_owned())
                .ok_or(TemplateError::NotEmbedded(path))
        };
        Self::from_sources(&read(TEMPLATE_FILE)?, read)
    }

    /// `dir/template.yaml` and the files it names, read now.
    ///
    /// # Errors
    ///
    /// [`TemplateError::Read`] for a missing file; the errors of
    /// [`Self::from_sources`] for a template the devstack cannot run.
    pub fn load(dir: &Path) -> Result<Self, TemplateError> {
        let read = |path: &str| {
            let full = dir.join(normalise(path));
            std::fs::read_to_string(&full)
                .map_err(|source| TemplateError::Read { path: full, source })
        };
        Self::from_sources(&read(TEMPLATE_FILE)?, read)
    }

    /// Parses `template` and reads each handler file through `read` (given the
    /// `CodeS3Location`, relative to the template's directory).
    ///
    /// # Errors
    ///
    /// [`TemplateError::Yaml`], [`TemplateError::NoResources`], a
    /// [`TemplateError::Resource`] the devstack cannot follow (a missing
    /// property, an unknown data source, a runtime other than APPSYNC_JS, an
    /// S3 code location), or whatever `read` returns.
    pub fn from_sources(
        template: &str,
        read: impl Fn(&str) -> Result<String, TemplateError>,
    ) -> Result<Self, TemplateError> {
        let doc: Yaml = serde_norway::from_str(template)?;
        let parameters = doc.get("Parameters").and_then(Yaml::as_mapping);
        let resources = doc
            .get("Resources")
            .and_then(Yaml::as_mapping)
            .ok_or(TemplateError::NoResources)?;
        let mut by_type: BTreeMap<&str, Vec<(&str, &Yaml)>> = BTreeMap::new();
        for (id, resource) in resources {
            let Some(id) = id.as_str() else { continue };
            if id.starts_with("Fn::ForEach::") {
                continue;
            }
            if let Some(ty) = resource.get("Type").and_then(Yaml::as_str) {
                by_type.entry(ty).or_default().push((id, resource));
            }
        }
        let kinds = |ty: &str| by_type.get(ty).cloned().unwrap_or_default();
        let data_sources = kinds("AWS::AppSync::DataSource");
        let functions = kinds("AWS::AppSync::FunctionConfiguration");
        let tables: Vec<&str> = kinds("AWS::DynamoDB::Table")
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let refs = Refs {
            parameters,
            tables: &tables,
        };

        let mut api = ApiDefinition::default();
        for (_, graphql_api) in kinds("AWS::AppSync::GraphQLApi") {
            let vars = properties(graphql_api)
                .and_then(|p| p.get("EnvironmentVariables"))
                .and_then(Yaml::as_mapping);
            for (k, v) in vars.into_iter().flatten() {
                if let (Some(k), Some(v)) = (k.as_str(), scalar(v, &refs)) {
                    api.env.insert(k.to_owned(), v);
                }
            }
        }

        let fail = |resource: &str, message: String| TemplateError::Resource {
            resource: resource.to_owned(),
            message,
        };
        let data_source = |resource: &str, props: &Mapping| {
            let reference = props
                .get("DataSourceName")
                .ok_or_else(|| fail(resource, "no DataSourceName".into()))?;
            data_source_kind(reference, &data_sources, &refs).map_err(|m| fail(resource, m))
        };
        let code = |resource: &str, props: &Mapping| -> Result<Code, TemplateError> {
            if let Some(runtime) = props
                .get("Runtime")
                .and_then(|r| r.get("Name"))
                .and_then(Yaml::as_str)
                .filter(|r| *r != "APPSYNC_JS")
            {
                return Err(fail(
                    resource,
                    format!("runtime {runtime} is not supported"),
                ));
            }
            if let Some(source) = props.get("Code").and_then(Yaml::as_str) {
                return Ok(Code {
                    path: format!("inline:{resource}"),
                    source: source.to_owned(),
                });
            }
            let path = props
                .get("CodeS3Location")
                .and_then(Yaml::as_str)
                .ok_or_else(|| fail(resource, "no Code or local CodeS3Location".into()))?;
            if path.starts_with("s3://") || Path::new(path).is_absolute() {
                return Err(fail(
                    resource,
                    format!("{path} is not a path in the infra directory"),
                ));
            }
            Ok(Code {
                path: normalise(path),
                source: read(path)?,
            })
        };

        for (id, resolver) in kinds("AWS::AppSync::Resolver") {
            let props = properties(resolver).ok_or_else(|| fail(id, "no Properties".into()))?;
            let text = |key: &str| {
                props
                    .get(key)
                    .and_then(Yaml::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| fail(id, format!("no {key}")))
            };
            let (type_name, field_name) = (text("TypeName")?, text("FieldName")?);
            let kind = match props.get("Kind").and_then(Yaml::as_str).unwrap_or("UNIT") {
                "PIPELINE" => {
                    let names = props
                        .get("PipelineConfig")
                        .and_then(|p| p.get("Functions"))
                        .and_then(Yaml::as_sequence)
                        .ok_or_else(|| {
                            fail(id, "a PIPELINE without PipelineConfig.Functions".into())
                        })?;
                    let mut list = Vec::new();
                    for name in names {
                        let fid = logical_id(name)
                            .ok_or_else(|| fail(id, format!("cannot follow function {name:?}")))?;
                        let (fid, function) = functions
                            .iter()
                            .find(|(f, _)| *f == fid)
                            .ok_or_else(|| fail(id, format!("no FunctionConfiguration {fid}")))?;
                        let fprops = properties(function)
                            .ok_or_else(|| fail(fid, "no Properties".into()))?;
                        list.push(FunctionDef {
                            name: fprops
                                .get("Name")
                                .and_then(Yaml::as_str)
                                .unwrap_or(fid)
                                .to_owned(),
                            data_source: data_source(fid, fprops)?,
                            code: code(fid, fprops)?,
                        });
                    }
                    ResolverKind::Pipeline { functions: list }
                }
                "UNIT" => ResolverKind::Unit {
                    data_source: data_source(id, props)?,
                },
                other => return Err(fail(id, format!("unknown Kind {other}"))),
            };
            let def = ResolverDef {
                type_name: type_name.clone(),
                field_name: field_name.clone(),
                kind,
                code: code(id, props)?,
            };
            api.resolvers.insert((type_name, field_name), def);
        }
        Ok(api)
    }

    /// The resolver of `type_name.field_name`, if the template has one.
    pub fn resolver(&self, type_name: &str, field_name: &str) -> Option<&ResolverDef> {
        self.resolvers
            .get(&(type_name.to_owned(), field_name.to_owned()))
    }
}

/// `a/./b` -> `a/b`; the embedded table is keyed without `./`.
fn normalise(path: &str) -> String {
    path.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/")
}

fn properties(resource: &Yaml) -> Option<&Mapping> {
    resource.get("Properties").and_then(Yaml::as_mapping)
}

/// An intrinsic's name and argument: `!Name arg` or `{"Fn::Name": arg}` / `{"Ref": arg}`.
fn intrinsic(v: &Yaml) -> Option<(String, &Yaml)> {
    match v {
        Yaml::Tagged(t) => {
            let tag = t.tag.to_string();
            Some((tag.trim_start_matches('!').to_owned(), &t.value))
        }
        Yaml::Mapping(m) if m.len() == 1 => {
            let (k, arg) = m.iter().next()?;
            let k = k.as_str()?;
            let name = if k == "Ref" {
                k
            } else {
                k.strip_prefix("Fn::")?
            };
            Some((name.to_owned(), arg))
        }
        _ => None,
    }
}

/// The logical id an `!GetAtt X.Attr` / `!Ref X` points at.
fn logical_id(v: &Yaml) -> Option<String> {
    let (name, arg) = intrinsic(v)?;
    match (name.as_str(), arg) {
        ("GetAtt", Yaml::String(s)) => s.split('.').next().map(str::to_owned),
        ("GetAtt", Yaml::Sequence(parts)) => parts.first()?.as_str().map(str::to_owned),
        ("Ref", Yaml::String(s)) => Some(s.clone()),
        _ => None,
    }
}

/// A `DataSourceName`: a literal name, or an intrinsic naming the resource.
fn data_source_kind(
    reference: &Yaml,
    data_sources: &[(&str, &Yaml)],
    refs: &Refs<'_>,
) -> Result<DataSourceKind, String> {
    // (`as_str` would also see through a tag, so intrinsics come first.)
    let found = match (intrinsic(reference), reference) {
        (None, Yaml::String(name)) => data_sources.iter().find(|(id, ds)| {
            id == name
                || properties(ds)
                    .and_then(|p| p.get("Name"))
                    .and_then(Yaml::as_str)
                    == Some(name.as_str())
        }),
        _ => {
            let id = logical_id(reference)
                .ok_or_else(|| format!("cannot follow DataSourceName {reference:?}"))?;
            data_sources.iter().find(|(d, _)| *d == id)
        }
    };
    let (id, ds) = found.ok_or_else(|| format!("no data source {reference:?}"))?;
    let props = properties(ds);
    match props.and_then(|p| p.get("Type")).and_then(Yaml::as_str) {
        Some("NONE") => Ok(DataSourceKind::None),
        Some("AWS_LAMBDA") => Ok(DataSourceKind::Lambda),
        Some("AMAZON_DYNAMODB") => {
            let table = props
                .and_then(|p| p.get("DynamoDBConfig"))
                .and_then(|c| c.get("TableName"))
                .ok_or_else(|| format!("data source {id} has no DynamoDBConfig.TableName"))?;
            let table = scalar(table, refs)
                .ok_or_else(|| format!("data source {id}: cannot follow TableName {table:?}"))?;
            Ok(DataSourceKind::DynamoDb { table })
        }
        other => Err(format!(
            "data source {id} has type {other:?}, which the devstack cannot run"
        )),
    }
}

/// What a `!Ref` can name: the template's parameters and its tables.
struct Refs<'a> {
    parameters: Option<&'a Mapping>,
    /// The logical ids of the `AWS::DynamoDB::Table` resources.
    tables: &'a [&'a str],
}

/// For a parameter's default, which refers to nothing.
const NO_REFS: Refs<'static> = Refs {
    parameters: None,
    tables: &[],
};

/// The string value of `v`, a property of a resource of the parsed
/// template `doc`, as the devstack follows it (see [`scalar`]): `None` for an
/// intrinsic it cannot follow (e.g. `!GetAtt` of an API's URL).
pub(crate) fn template_scalar(doc: &Yaml, v: &Yaml) -> Option<String> {
    let tables: Vec<&str> = doc
        .get("Resources")
        .and_then(Yaml::as_mapping)
        .into_iter()
        .flatten()
        .filter(|(_, r)| r.get("Type").and_then(Yaml::as_str) == Some("AWS::DynamoDB::Table"))
        .filter_map(|(id, _)| id.as_str())
        .collect();
    let refs = Refs {
        parameters: doc.get("Parameters").and_then(Yaml::as_mapping),
        tables: &tables,
    };
    scalar(v, &refs)
}

/// A string value: a literal, `!Ref Parameter` (its default), `!Ref Table`
/// (its logical id: the devstack names a table so, having no stack name to
/// prefix) or `!Join`.
fn scalar(v: &Yaml, refs: &Refs<'_>) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => {
            let (name, arg) = intrinsic(v)?;
            match name.as_str() {
                "Ref" => {
                    let target = arg.as_str()?;
                    if let Some(table) = refs.tables.iter().find(|t| **t == target) {
                        return Some((*table).to_owned());
                    }
                    let default = refs.parameters?.get(target)?.get("Default")?;
                    match default {
                        Yaml::Sequence(items) => Some(
                            items
                                .iter()
                                .filter_map(|i| scalar(i, &NO_REFS))
                                .collect::<Vec<_>>()
                                .join(","),
                        ),
                        other => scalar(other, &NO_REFS),
                    }
                }
                "Join" => {
                    let parts = arg.as_sequence()?;
                    let separator = parts.first()?.as_str()?;
                    let items: Vec<String> = match parts.get(1)? {
                        Yaml::Sequence(items) => items
                            .iter()
                            .map(|i| scalar(i, refs))
                            .collect::<Option<_>>()?,
                        // A list parameter: its default, already comma joined.
                        other => scalar(other, refs)?.split(',').map(str::to_owned).collect(),
                    };
                    Some(items.join(separator))
                }
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedded() -> ApiDefinition {
        match ApiDefinition::embedded() {
            Ok(api) => api,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn reads_the_projects_resolvers_from_the_template() {
        let api = embedded();
        let table = DataSourceKind::DynamoDb {
            table: "ConversationsTable".into(),
        };
        let steps = |ty: &str, field: &str| -> Vec<(String, DataSourceKind)> {
            let Some(resolver) = api.resolver(ty, field) else {
                panic!("no {ty}.{field} resolver");
            };
            let ResolverKind::Pipeline { functions } = &resolver.kind else {
                panic!("{ty}.{field} is not a pipeline");
            };
            functions
                .iter()
                .map(|f| (f.code.path.clone(), f.data_source.clone()))
                .collect()
        };
        let read = ("resolvers/Function.readQuota.js".to_owned(), table.clone());
        let take = (
            "resolvers/Function.takeTurnSlot.js".to_owned(),
            table.clone(),
        );
        let invoke = (
            "resolvers/Function.invokeTurn.js".to_owned(),
            DataSourceKind::Lambda,
        );
        assert_eq!(
            steps("Mutation", "sendPrompt"),
            vec![read.clone(), take.clone(), read.clone(), take, invoke]
        );
        assert_eq!(steps("Query", "myQuota"), vec![read]);
        for field in ["listConversations", "listMessages", "turnChunks"] {
            let r = api.resolver("Query", field).map(|r| &r.kind);
            assert_eq!(
                r,
                Some(&ResolverKind::Unit {
                    data_source: DataSourceKind::DynamoDb {
                        table: "ConversationsTable".into()
                    }
                }),
                "Query.{field}"
            );
        }
        assert_eq!(
            steps("Mutation", "deleteConversation"),
            vec![
                (
                    "resolvers/Function.findConversationKeys.js".to_owned(),
                    table.clone()
                ),
                (
                    "resolvers/Function.deleteConversationKeys.js".to_owned(),
                    table.clone()
                ),
                ("resolvers/Function.forgetConversation.js".to_owned(), table),
            ]
        );
        for (ty, field) in [
            ("Query", "ping"),
            ("Mutation", "publishChunk"),
            ("Mutation", "cancelTurn"),
            ("Subscription", "onChunk"),
            ("Subscription", "onCancel"),
        ] {
            let r = api.resolver(ty, field).map(|r| &r.kind);
            assert_eq!(
                r,
                Some(&ResolverKind::Unit {
                    data_source: DataSourceKind::None
                }),
                "{ty}.{field}"
            );
        }
        assert_eq!(api.resolvers.len(), 11);
        // `!Ref` of Number and String parameters: their defaults.
        for (name, value) in [
            ("QUOTA_MAX_TURNS_IN_FLIGHT", "3"),
            ("QUOTA_DAILY_TOKENS", "200000"),
            ("QUOTA_GROUPS", "premium:10:2000000"),
            ("TURN_SLOT_SECONDS", "900"),
        ] {
            assert_eq!(api.env.get(name).map(String::as_str), Some(value), "{name}");
        }
        // `!Ref ConversationsTable`: the local table's name.
        assert_eq!(
            api.env.get("CONVERSATIONS_TABLE").map(String::as_str),
            Some(crate::CONVERSATIONS_TABLE)
        );
        // `!Join [",", !Ref AllowedModelIds]` with the parameter's default.
        assert_eq!(
            api.env.get("ALLOWED_MODEL_IDS").map(String::as_str),
            Some("anthropic.claude-3-haiku-20240307-v1:0")
        );
    }

    #[test]
    fn every_resolver_file_is_compiled_in() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/resolvers");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return; // not built from the repository
        };
        for entry in entries.flatten() {
            let name = format!("resolvers/{}", entry.file_name().to_string_lossy());
            assert!(
                EMBEDDED_INFRA.iter().any(|(p, _)| *p == name),
                "{name} is missing from EMBEDDED_INFRA"
            );
        }
    }

    #[test]
    fn follows_pipelines_long_form_intrinsics_and_inline_code() {
        let template = r#"
Parameters:
  Region: {Type: String, Default: here}
Resources:
  Api:
    Type: AWS::AppSync::GraphQLApi
    Properties:
      EnvironmentVariables:
        PLAIN: value
        FROM_PARAM: {Ref: Region}
  Lambda:
    Type: AWS::AppSync::DataSource
    Properties: {Name: TheLambda, Type: AWS_LAMBDA}
  Local:
    Type: AWS::AppSync::DataSource
    Properties: {Name: Local, Type: NONE}
  First:
    Type: AWS::AppSync::FunctionConfiguration
    Properties:
      Name: first
      DataSourceName: {"Fn::GetAtt": [Local, Name]}
      CodeS3Location: fns/first.js
  Second:
    Type: AWS::AppSync::FunctionConfiguration
    Properties:
      Name: second
      DataSourceName: TheLambda
      Code: "export function request() {} export function response() {}"
  Pipe:
    Type: AWS::AppSync::Resolver
    Properties:
      TypeName: Query
      FieldName: pipe
      Kind: PIPELINE
      PipelineConfig:
        Functions: [!GetAtt First.FunctionId, !GetAtt Second.FunctionId]
      CodeS3Location: ./pipe.js
  Fn::ForEach::Skipped:
    - X
    - [a]
    - "R&{X}": {Type: AWS::AppSync::Resolver}
"#;
        let read = |p: &str| Ok(format!("// {p}"));
        let api = match ApiDefinition::from_sources(template, read) {
            Ok(api) => api,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(api.env.get("PLAIN").map(String::as_str), Some("value"));
        assert_eq!(api.env.get("FROM_PARAM").map(String::as_str), Some("here"));
        let Some(pipe) = api.resolver("Query", "pipe") else {
            panic!("no pipe resolver");
        };
        assert_eq!(pipe.code.path, "pipe.js");
        let ResolverKind::Pipeline { functions } = &pipe.kind else {
            panic!("not a pipeline");
        };
        let summary: Vec<_> = functions
            .iter()
            .map(|f| (f.name.as_str(), f.data_source.clone(), f.code.path.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("first", DataSourceKind::None, "fns/first.js"),
                ("second", DataSourceKind::Lambda, "inline:Second"),
            ]
        );
    }
}
