//! Place in the data path: beside the stack, at start: the tables the
//! deployed stack would have, read from `infra/template.yaml`'s
//! `AWS::DynamoDB::Table` resources and created in the local DynamoDB with the
//! same key schema, local secondary indexes, billing mode and TTL attribute
//! (<https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-dynamodb-table.html>).
//! A table is named after its logical id, as the devstack has no stack name
//! to prefix.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, LocalSecondaryIndex, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};
use serde_norway::Value as Yaml;
use thiserror::Error;

/// How long a new table may stay `CREATING`.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// One table of the template: what `CreateTable` and `UpdateTimeToLive` need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDefinition {
    /// The table's name: the resource's logical id (e.g. `ConversationsTable`).
    pub name: String,
    /// `AttributeDefinitions`: attribute name and type (`S`, `N` or `B`).
    pub attributes: Vec<(String, String)>,
    /// `KeySchema`: attribute name and key type (`HASH` or `RANGE`).
    pub key_schema: Vec<(String, String)>,
    /// `BillingMode` (`PAY_PER_REQUEST` or `PROVISIONED`).
    pub billing_mode: String,
    /// `TimeToLiveSpecification.AttributeName`, when TTL is enabled.
    pub ttl_attribute: Option<String>,
    /// `LocalSecondaryIndexes`, which exist only if made with the table.
    pub local_secondary_indexes: Vec<LocalIndexDefinition>,
}

/// One entry of a table's `LocalSecondaryIndexes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalIndexDefinition {
    /// `IndexName`, e.g. `byUpdatedAt`.
    pub name: String,
    /// `KeySchema`: attribute name and key type (`HASH` or `RANGE`).
    pub key_schema: Vec<(String, String)>,
    /// `Projection.ProjectionType` (`ALL`, `KEYS_ONLY` or `INCLUDE`).
    pub projection_type: String,
    /// `Projection.NonKeyAttributes` (for `INCLUDE`).
    pub non_key_attributes: Vec<String>,
}

/// Why the tables could not be read or created.
#[derive(Debug, Error)]
pub enum TableError {
    /// The template is not YAML.
    #[error("infra/template.yaml is not valid YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    /// A table resource lacks a property the devstack needs.
    #[error("table {table}: {problem}")]
    Definition {
        /// The logical id.
        table: String,
        /// What is missing or wrong.
        problem: String,
    },
    /// The local DynamoDB refused a request.
    #[error("table {table}: {operation} failed: {detail}")]
    Request {
        /// The logical id.
        table: String,
        /// `DescribeTable`, `CreateTable` or `UpdateTimeToLive`.
        operation: &'static str,
        /// The SDK's error, with its source chain.
        detail: String,
    },
}

/// Every `AWS::DynamoDB::Table` of `template` (the text of
/// `infra/template.yaml`), in template order.
///
/// # Errors
/// [`TableError::Yaml`] or [`TableError::Definition`].
pub fn tables_from_template(template: &str) -> Result<Vec<TableDefinition>, TableError> {
    let doc: Yaml = serde_norway::from_str(template)?;
    let Some(resources) = doc.get("Resources").and_then(Yaml::as_mapping) else {
        return Ok(Vec::new());
    };
    let mut tables = Vec::new();
    for (id, resource) in resources {
        let Some(id) = id.as_str() else { continue };
        if resource.get("Type").and_then(Yaml::as_str) != Some("AWS::DynamoDB::Table") {
            continue;
        }
        tables.push(definition(id, resource.get("Properties"))?);
    }
    Ok(tables)
}

fn definition(id: &str, properties: Option<&Yaml>) -> Result<TableDefinition, TableError> {
    let problem = |problem: &str| TableError::Definition {
        table: id.to_owned(),
        problem: problem.to_owned(),
    };
    let properties = properties.ok_or_else(|| problem("no Properties"))?;
    let pairs_in =
        |owner: &Yaml, list: &str, a: &str, b: &str| -> Result<Vec<(String, String)>, TableError> {
            let items = owner
                .get(list)
                .and_then(Yaml::as_sequence)
                .ok_or_else(|| problem(&format!("no {list}")))?;
            items
                .iter()
                .map(|item| {
                    let field =
                        |name: &str| item.get(name).and_then(Yaml::as_str).map(str::to_owned);
                    field(a)
                        .zip(field(b))
                        .ok_or_else(|| problem(&format!("an entry of {list} lacks {a} or {b}")))
                })
                .collect()
        };
    let pairs = |list: &str, a: &str, b: &str| pairs_in(properties, list, a, b);
    let mut local_secondary_indexes = Vec::new();
    let indexes = properties
        .get("LocalSecondaryIndexes")
        .and_then(Yaml::as_sequence);
    for index in indexes.into_iter().flatten() {
        let name = index
            .get("IndexName")
            .and_then(Yaml::as_str)
            .ok_or_else(|| problem("a local secondary index without IndexName"))?;
        let projection = index.get("Projection");
        local_secondary_indexes.push(LocalIndexDefinition {
            name: name.to_owned(),
            key_schema: pairs_in(index, "KeySchema", "AttributeName", "KeyType")?,
            projection_type: projection
                .and_then(|p| p.get("ProjectionType"))
                .and_then(Yaml::as_str)
                .unwrap_or("ALL")
                .to_owned(),
            non_key_attributes: projection
                .and_then(|p| p.get("NonKeyAttributes"))
                .and_then(Yaml::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(Yaml::as_str)
                .map(str::to_owned)
                .collect(),
        });
    }
    let ttl = properties.get("TimeToLiveSpecification");
    let ttl_enabled = ttl
        .and_then(|t| t.get("Enabled"))
        .and_then(Yaml::as_bool)
        .unwrap_or(false);
    Ok(TableDefinition {
        name: id.to_owned(),
        attributes: pairs("AttributeDefinitions", "AttributeName", "AttributeType")?,
        key_schema: pairs("KeySchema", "AttributeName", "KeyType")?,
        billing_mode: properties
            .get("BillingMode")
            .and_then(Yaml::as_str)
            .unwrap_or("PROVISIONED")
            .to_owned(),
        ttl_attribute: ttl
            .filter(|_| ttl_enabled)
            .and_then(|t| t.get("AttributeName"))
            .and_then(Yaml::as_str)
            .map(str::to_owned),
        local_secondary_indexes,
    })
}

/// Creates `table` through `client` unless a table of that name exists (its
/// data is kept across restarts), waits until it is `ACTIVE`, then turns on
/// its TTL where the server has
/// TTL (dynalite has not: its items never expire).
///
/// # Errors
/// [`TableError::Request`] when the local DynamoDB refuses a request.
pub async fn ensure_table(client: &Client, table: &TableDefinition) -> Result<(), TableError> {
    let failed = |operation: &'static str, error: &dyn std::error::Error| TableError::Request {
        table: table.name.clone(),
        operation,
        detail: DisplayErrorContext(error).to_string(),
    };
    let exists = match client.describe_table().table_name(&table.name).send().await {
        Ok(described) => {
            warn_about_missing_indexes(table, described.table());
            true
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            false
        }
        Err(e) => return Err(failed("DescribeTable", &e)),
    };
    if !exists {
        create(client, table)
            .await
            .map_err(|e| failed("CreateTable", e.as_ref()))?;
    }
    wait_until_active(client, &table.name)
        .await
        .map_err(|e| failed("DescribeTable", e.as_ref()))?;
    if let Some(attribute) = &table.ttl_attribute {
        let spec = TimeToLiveSpecification::builder()
            .attribute_name(attribute)
            .enabled(true)
            .build()
            .map_err(|e| failed("UpdateTimeToLive", &e))?;
        let updated = client
            .update_time_to_live()
            .table_name(&table.name)
            .time_to_live_specification(spec)
            .send()
            .await;
        if let Err(e) = updated {
            match e.code() {
                // A second enable of the same attribute is refused by
                // DynamoDB ("TimeToLive is already enabled"): the state wanted.
                Some("ValidationException") => {}
                // dynalite has no TTL. On AWS too, deletion of expired items
                // is a background process that may lag by days, so readers
                // filter on the attribute themselves and nothing depends on
                // the deletion:
                // https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/howitworks-ttl.html
                Some("UnknownOperationException") => tracing::info!(
                    table = %table.name,
                    attribute = %attribute,
                    "the local DynamoDB does not expire items (no TTL); readers filter them"
                ),
                _ => return Err(failed("UpdateTimeToLive", &e)),
            }
        }
    }
    Ok(())
}

/// A local secondary index can only be made with its table, so a table kept
/// from before the template gained one lacks it: say so, and how to get it.
fn warn_about_missing_indexes(
    table: &TableDefinition,
    described: Option<&aws_sdk_dynamodb::types::TableDescription>,
) {
    let present: Vec<&str> = described
        .map(|d| {
            d.local_secondary_indexes()
                .iter()
                .filter_map(|i| i.index_name())
                .collect()
        })
        .unwrap_or_default();
    for index in &table.local_secondary_indexes {
        if !present.contains(&index.name.as_str()) {
            tracing::warn!(
                table = %table.name,
                index = %index.name,
                "the local table predates this local secondary index, which DynamoDB can \
                 only create with the table; queries on it fail until the devstack's \
                 DynamoDB data directory is removed and the table made again"
            );
        }
    }
}

async fn create(
    client: &Client,
    table: &TableDefinition,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut request = client
        .create_table()
        .table_name(&table.name)
        .billing_mode(BillingMode::from(table.billing_mode.as_str()));
    for (name, kind) in &table.attributes {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::from(kind.as_str()))
                .build()?,
        );
    }
    for (name, kind) in &table.key_schema {
        request = request.key_schema(key_element(name, kind)?);
    }
    for index in &table.local_secondary_indexes {
        let mut lsi = LocalSecondaryIndex::builder()
            .index_name(&index.name)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::from(index.projection_type.as_str()))
                    .set_non_key_attributes(
                        Some(index.non_key_attributes.clone()).filter(|a| !a.is_empty()),
                    )
                    .build(),
            );
        for (name, kind) in &index.key_schema {
            lsi = lsi.key_schema(key_element(name, kind)?);
        }
        request = request.local_secondary_indexes(lsi.build()?);
    }
    request.send().await?;
    Ok(())
}

/// Waits until `name`'s `TableStatus` is `ACTIVE`. `CreateTable` answers
/// while the table is still `CREATING`, and until it is `ACTIVE` reads and
/// writes on it fail with `ResourceNotFoundException`
/// (<https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_CreateTable.html>).
/// dynalite keeps that state only for the moment it takes to write the
/// table's description, but a write in that moment fails all the same.
async fn wait_until_active(
    client: &Client,
    name: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let deadline = tokio::time::Instant::now() + ACTIVE_TIMEOUT;
    loop {
        let described = client.describe_table().table_name(name).send().await?;
        let status = described.table().and_then(|t| t.table_status());
        if status == Some(&TableStatus::Active) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("not ACTIVE after {ACTIVE_TIMEOUT:?} (status {status:?})").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn key_element(
    name: &str,
    kind: &str,
) -> Result<KeySchemaElement, aws_sdk_dynamodb::error::BuildError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(KeyType::from(kind))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conversations_table_is_read_from_the_template() {
        let template = include_str!("../../../infra/template.yaml");
        let tables = tables_from_template(template).expect("tables");
        let table = tables
            .iter()
            .find(|t| t.name == "ConversationsTable")
            .expect("the conversations table");
        assert_eq!(
            table.key_schema,
            [("pk".into(), "HASH".into()), ("sk".into(), "RANGE".into())]
        );
        assert_eq!(table.billing_mode, "PAY_PER_REQUEST");
        assert_eq!(table.ttl_attribute.as_deref(), Some("expiresAt"));
        assert_eq!(
            table.local_secondary_indexes,
            [LocalIndexDefinition {
                name: "byUpdatedAt".into(),
                key_schema: vec![
                    ("pk".into(), "HASH".into()),
                    ("updatedAt".into(), "RANGE".into())
                ],
                projection_type: "ALL".into(),
                non_key_attributes: Vec::new(),
            }]
        );
        assert!(
            table.attributes.contains(&("updatedAt".into(), "S".into())),
            "{:?}",
            table.attributes
        );
    }

    #[test]
    fn a_table_without_a_key_schema_is_refused() {
        let template = "Resources:\n  T:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      AttributeDefinitions: []\n";
        let error = tables_from_template(template).expect_err("refused");
        assert!(error.to_string().contains("no KeySchema"), "{error}");
    }
}
