//! AppSync's DynamoDB data source, run against the devstack's local DynamoDB.
//!
//! Place in the data path: client --listConversations | listMessages |
//! turnChunks | deleteConversation--> AppSync **resolver request object ->
//! DynamoDB data source** --DynamoDB JSON protocol--> local DynamoDB; what
//! DynamoDB answers goes back to the response handler as `ctx.result` (or
//! `ctx.error`).
//!
//! A request object is what an APPSYNC_JS handler returns for an
//! `AMAZON_DYNAMODB` data source: `{operation: 'Query', query: {...}, ...}`
//! with keys and values typed (`{"S": "..."}`), as `util.dynamodb` writes them.
//! It becomes the one DynamoDB call AppSync makes for it (Query becomes
//! `Query` with the query's, filter's and projection's names and values
//! merged; BatchDeleteItem becomes `BatchWriteItem`), and the answer comes back
//! as plain JSON (numbers as numbers, maps as objects, sets as lists): an
//! item, `{items, nextToken, scannedCount}`, or `{data, unprocessedKeys}`.
//! A DynamoDB error becomes `ctx.error` = `{message, type: "DynamoDB:<code>"}`;
//! a request object AppSync would refuse is a [`RequestError`].
//! <https://docs.aws.amazon.com/appsync/latest/devguide/js-resolver-reference-dynamodb.html>

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::RequestId;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, KeysAndAttributes, PutRequest, ReturnValue, Select, WriteRequest,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// A DynamoDB item or key: attribute name to value.
pub type Item = HashMap<String, AttributeValue>;

/// What the data source hands the response handler: `ctx.result` and, when
/// DynamoDB refused the call, `ctx.error`.
pub type Answer = (Value, Option<Value>);

/// A request object AppSync would refuse before calling DynamoDB.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Not an object of a known operation with the fields that operation has.
    #[error("invalid DynamoDB request object: {0}")]
    Shape(String),
    /// A key or value is not a DynamoDB typed value.
    #[error("invalid DynamoDB request object: {path}: {problem}")]
    Value {
        /// Where in the request, e.g. `key.pk`.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A documented option the devstack does not run.
    #[error("{0} is not supported by the devstack's DynamoDB data source")]
    Unsupported(&'static str),
}

/// The DynamoDB data source of every `AMAZON_DYNAMODB` resolver and function:
/// one SDK client for the local DynamoDB, and the key that seals `nextToken`s.
#[derive(Clone, Debug)]
pub struct DynamoDbSource {
    client: Client,
    tokens: PageTokens,
}

impl DynamoDbSource {
    /// A data source calling DynamoDB through `client` (the local server's).
    pub fn new(client: Client) -> Self {
        Self {
            client,
            tokens: PageTokens {
                key: *uuid::Uuid::new_v4().as_bytes(),
            },
        }
    }

    /// Runs one request object against `table` (the data source's
    /// `DynamoDBConfig.TableName`; batch operations name their tables).
    ///
    /// # Errors
    ///
    /// A [`RequestError`] when the request object is malformed; DynamoDB's
    /// own refusals are an `Ok` with `ctx.error` set.
    pub async fn execute(&self, table: &str, request: &Value) -> Result<Answer, RequestError> {
        match parse(request)? {
            Request::GetItem(r) => self.get_item(table, r).await,
            Request::PutItem(r) => self.put_item(table, r).await,
            Request::UpdateItem(r) => self.update_item(table, r).await,
            Request::DeleteItem(r) => self.delete_item(table, r).await,
            Request::Query(r) => self.query(table, r).await,
            Request::Scan(r) => self.scan(table, r).await,
            Request::BatchGetItem(r) => self.batch_get_item(r).await,
            Request::BatchPutItem(r) => self.batch_put_item(r).await,
            Request::BatchDeleteItem(r) => self.batch_delete_item(r).await,
        }
    }

    async fn get_item(&self, table: &str, r: GetItem) -> Result<Answer, RequestError> {
        let key = item(&r.key, "key")?;
        let mut names = Placeholders::default();
        if let Some(p) = &r.projection {
            names.add_names(&p.expression_names);
        }
        let (names, _) = names.into_parts();
        let out = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key))
            .set_consistent_read(r.consistent_read)
            .set_projection_expression(r.projection.map(|p| p.expression))
            .set_expression_attribute_names(names)
            .send()
            .await;
        Ok(match out {
            Ok(o) => (o.item().map_or(Value::Null, plain_item), None),
            Err(e) => (Value::Null, Some(service_error(&e))),
        })
    }

    async fn put_item(&self, table: &str, r: PutItem) -> Result<Answer, RequestError> {
        let key = item(&r.key, "key")?;
        let mut written = key.clone();
        if let Some(values) = &r.attribute_values {
            written.extend(item(values, "attributeValues")?);
        }
        let mut placeholders = Placeholders::default();
        if let Some(c) = &r.condition {
            c.check_strategy()?;
            placeholders.add(&c.expression_names, &c.expression_values, "condition")?;
        }
        let (names, values) = placeholders.into_parts();
        let out = self
            .client
            .put_item()
            .table_name(table)
            .set_item(Some(written.clone()))
            .set_condition_expression(r.condition.as_ref().map(|c| c.expression.clone()))
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .send()
            .await;
        match out {
            Ok(_) => Ok((plain_item(&written), None)),
            Err(e) if is_condition_failure(&e) => {
                // AppSync reads the item again: a put whose stored item is
                // the one asked for (but for `equalsIgnore`) succeeded.
                // https://docs.aws.amazon.com/appsync/latest/devguide/js-aws-appsync-resolver-reference-dynamodb-condition-expressions.html
                let condition = r.condition.as_ref();
                let current = self
                    .current(table, &key, condition.and_then(|c| c.consistent_read))
                    .await;
                let ignored = condition
                    .and_then(|c| c.equals_ignore.as_deref())
                    .unwrap_or_default();
                match current {
                    Some(stored) if same_except(&stored, &written, ignored) => {
                        Ok((plain_item(&stored), None))
                    }
                    stored => Ok(rejected(&e, stored.as_ref())),
                }
            }
            Err(e) => Ok((Value::Null, Some(service_error(&e)))),
        }
    }

    async fn update_item(&self, table: &str, r: UpdateItem) -> Result<Answer, RequestError> {
        let key = item(&r.key, "key")?;
        let mut placeholders = Placeholders::default();
        placeholders.add(
            &r.update.expression_names,
            &r.update.expression_values,
            "update",
        )?;
        if let Some(c) = &r.condition {
            c.check_strategy()?;
            placeholders.add(&c.expression_names, &c.expression_values, "condition")?;
        }
        let (names, values) = placeholders.into_parts();
        let out = self
            .client
            .update_item()
            .table_name(table)
            .set_key(Some(key.clone()))
            .update_expression(r.update.expression)
            .set_condition_expression(r.condition.as_ref().map(|c| c.expression.clone()))
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(o) => Ok((o.attributes().map_or(Value::Null, plain_item), None)),
            // An update's outcome cannot be told from the stored item: the
            // strategy (Reject) always applies.
            Err(e) if is_condition_failure(&e) => {
                let consistent = r.condition.as_ref().and_then(|c| c.consistent_read);
                let stored = self.current(table, &key, consistent).await;
                Ok(rejected(&e, stored.as_ref()))
            }
            Err(e) => Ok((Value::Null, Some(service_error(&e)))),
        }
    }

    async fn delete_item(&self, table: &str, r: DeleteItem) -> Result<Answer, RequestError> {
        let key = item(&r.key, "key")?;
        let mut placeholders = Placeholders::default();
        if let Some(c) = &r.condition {
            c.check_strategy()?;
            placeholders.add(&c.expression_names, &c.expression_values, "condition")?;
        }
        let (names, values) = placeholders.into_parts();
        let out = self
            .client
            .delete_item()
            .table_name(table)
            .set_key(Some(key.clone()))
            .set_condition_expression(r.condition.as_ref().map(|c| c.expression.clone()))
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match out {
            // The deleted item, or null when there was none.
            Ok(o) => Ok((o.attributes().map_or(Value::Null, plain_item), None)),
            Err(e) if is_condition_failure(&e) => {
                // A delete succeeded when the item is gone anyway.
                let consistent = r.condition.as_ref().and_then(|c| c.consistent_read);
                match self.current(table, &key, consistent).await {
                    None => Ok((Value::Null, None)),
                    stored => Ok(rejected(&e, stored.as_ref())),
                }
            }
            Err(e) => Ok((Value::Null, Some(service_error(&e)))),
        }
    }

    async fn query(&self, table: &str, r: Query) -> Result<Answer, RequestError> {
        let Query {
            query,
            index,
            next_token,
            limit,
            scan_index_forward,
            consistent_read,
            select,
            filter,
            projection,
        } = r;
        let mut placeholders = Placeholders::default();
        placeholders.add(&query.expression_names, &query.expression_values, "query")?;
        if let Some(f) = &filter {
            placeholders.add(&f.expression_names, &f.expression_values, "filter")?;
        }
        if let Some(p) = &projection {
            placeholders.add_names(&p.expression_names);
        }
        let scope = Scope {
            table,
            index: index.as_deref(),
            expression: &query.expression,
            values: query.expression_values.as_ref(),
        };
        let start = match next_token.as_deref() {
            None => None,
            Some(token) => match self.tokens.open(token, &scope) {
                Some(key) => Some(key),
                None => return Ok(invalid_token()),
            },
        };
        let (names, values) = placeholders.into_parts();
        let out = self
            .client
            .query()
            .table_name(table)
            .set_index_name(index.clone())
            .key_condition_expression(query.expression.clone())
            .set_filter_expression(filter.map(|f| f.expression))
            .set_projection_expression(projection.map(|p| p.expression))
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .set_limit(limit)
            .set_scan_index_forward(scan_index_forward)
            .set_consistent_read(consistent_read)
            .set_select(select.as_deref().map(Select::from))
            .set_exclusive_start_key(start)
            .send()
            .await;
        Ok(match out {
            Ok(o) => (
                page(
                    o.items(),
                    o.last_evaluated_key().map(|k| self.tokens.seal(k, &scope)),
                    o.scanned_count(),
                ),
                None,
            ),
            Err(e) => (Value::Null, Some(service_error(&e))),
        })
    }

    async fn scan(&self, table: &str, r: Scan) -> Result<Answer, RequestError> {
        let Scan {
            index,
            limit,
            consistent_read,
            next_token,
            total_segments,
            segment,
            filter,
            projection,
            select,
        } = r;
        let mut placeholders = Placeholders::default();
        if let Some(f) = &filter {
            placeholders.add(&f.expression_names, &f.expression_values, "filter")?;
        }
        if let Some(p) = &projection {
            placeholders.add_names(&p.expression_names);
        }
        let segment_text = format!("{segment:?}/{total_segments:?}");
        let scope = Scope {
            table,
            index: index.as_deref(),
            expression: &segment_text,
            values: None,
        };
        let start = match next_token.as_deref() {
            None => None,
            Some(token) => match self.tokens.open(token, &scope) {
                Some(key) => Some(key),
                None => return Ok(invalid_token()),
            },
        };
        let (names, values) = placeholders.into_parts();
        let out = self
            .client
            .scan()
            .table_name(table)
            .set_index_name(index.clone())
            .set_filter_expression(filter.map(|f| f.expression))
            .set_projection_expression(projection.map(|p| p.expression))
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .set_limit(limit)
            .set_consistent_read(consistent_read)
            .set_segment(segment)
            .set_total_segments(total_segments)
            .set_select(select.as_deref().map(Select::from))
            .set_exclusive_start_key(start)
            .send()
            .await;
        Ok(match out {
            Ok(o) => (
                page(
                    o.items(),
                    o.last_evaluated_key().map(|k| self.tokens.seal(k, &scope)),
                    o.scanned_count(),
                ),
                None,
            ),
            Err(e) => (Value::Null, Some(service_error(&e))),
        })
    }

    async fn batch_get_item(&self, r: BatchGetItem) -> Result<Answer, RequestError> {
        let mut requested: BTreeMap<String, Vec<Item>> = BTreeMap::new();
        let mut call = self.client.batch_get_item();
        for (table, t) in &r.tables {
            let keys = t
                .keys
                .iter()
                .enumerate()
                .map(|(i, k)| item(k, &format!("tables.{table}.keys[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            let mut names = Placeholders::default();
            if let Some(p) = &t.projection {
                names.add_names(&p.expression_names);
            }
            let (names, _) = names.into_parts();
            let keys_and_attributes = KeysAndAttributes::builder()
                .set_keys(Some(keys.clone()))
                .set_consistent_read(t.consistent_read)
                .set_projection_expression(t.projection.as_ref().map(|p| p.expression.clone()))
                .set_expression_attribute_names(names)
                .build()
                .map_err(|e| RequestError::Shape(e.to_string()))?;
            call = call.request_items(table.clone(), keys_and_attributes);
            requested.insert(table.clone(), keys);
        }
        let out = match call.send().await {
            Ok(o) => o,
            Err(e) => return Ok((Value::Null, Some(service_error(&e)))),
        };
        let mut data = Map::new();
        let mut unprocessed_out = Map::new();
        for (table, keys) in &requested {
            let found = out
                .responses()
                .and_then(|r| r.get(table))
                .map(Vec::as_slice)
                .unwrap_or_default();
            let unprocessed = out
                .unprocessed_keys()
                .and_then(|u| u.get(table))
                .map(KeysAndAttributes::keys)
                .unwrap_or_default();
            // In request order: the item, or null when it does not exist or
            // was not processed.
            let items = keys
                .iter()
                .map(|key| {
                    found
                        .iter()
                        .find(|i| has_key(i, key))
                        .map_or(Value::Null, plain_item)
                })
                .collect();
            data.insert(table.clone(), Value::Array(items));
            unprocessed_out.insert(
                table.clone(),
                Value::Array(unprocessed.iter().map(plain_item).collect()),
            );
        }
        Ok((
            json!({"data": data, "unprocessedKeys": unprocessed_out}),
            None,
        ))
    }

    async fn batch_put_item(&self, r: BatchWrite) -> Result<Answer, RequestError> {
        let mut requested: BTreeMap<String, Vec<Item>> = BTreeMap::new();
        let mut call = self.client.batch_write_item();
        for (table, items) in &r.tables {
            let items = items
                .iter()
                .enumerate()
                .map(|(i, v)| item(v, &format!("tables.{table}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            let writes = items
                .iter()
                .map(|i| {
                    PutRequest::builder()
                        .set_item(Some(i.clone()))
                        .build()
                        .map(|p| WriteRequest::builder().put_request(p).build())
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| RequestError::Shape(e.to_string()))?;
            call = call.request_items(table.clone(), writes);
            requested.insert(table.clone(), items);
        }
        let out = match call.send().await {
            Ok(o) => o,
            Err(e) => return Ok((Value::Null, Some(service_error(&e)))),
        };
        let mut data = Map::new();
        let mut unprocessed_out = Map::new();
        for (table, items) in &requested {
            let unprocessed: Vec<&Item> = out
                .unprocessed_items()
                .and_then(|u| u.get(table))
                .map(|writes| {
                    writes
                        .iter()
                        .filter_map(|w| w.put_request().map(PutRequest::item))
                        .collect()
                })
                .unwrap_or_default();
            let written = items
                .iter()
                .map(|i| {
                    if unprocessed.contains(&i) {
                        Value::Null
                    } else {
                        plain_item(i)
                    }
                })
                .collect();
            data.insert(table.clone(), Value::Array(written));
            unprocessed_out.insert(
                table.clone(),
                Value::Array(unprocessed.iter().map(|i| plain_item(i)).collect()),
            );
        }
        Ok((
            json!({"data": data, "unprocessedItems": unprocessed_out}),
            None,
        ))
    }

    async fn batch_delete_item(&self, r: BatchWrite) -> Result<Answer, RequestError> {
        let mut requested: BTreeMap<String, Vec<Item>> = BTreeMap::new();
        let mut call = self.client.batch_write_item();
        for (table, keys) in &r.tables {
            let keys = keys
                .iter()
                .enumerate()
                .map(|(i, v)| item(v, &format!("tables.{table}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            let writes = keys
                .iter()
                .map(|k| {
                    DeleteRequest::builder()
                        .set_key(Some(k.clone()))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| RequestError::Shape(e.to_string()))?;
            call = call.request_items(table.clone(), writes);
            requested.insert(table.clone(), keys);
        }
        let out = match call.send().await {
            Ok(o) => o,
            Err(e) => return Ok((Value::Null, Some(service_error(&e)))),
        };
        Ok((
            batch_delete_result(&requested, out.unprocessed_items()),
            None,
        ))
    }

    /// The item as stored now, for the condition-failure checks.
    async fn current(&self, table: &str, key: &Item, consistent: Option<bool>) -> Option<Item> {
        self.client
            .get_item()
            .table_name(table)
            .set_key(Some(key.clone()))
            // AppSync re-reads strongly consistent unless told otherwise.
            .consistent_read(consistent.unwrap_or(true))
            .send()
            .await
            .ok()?
            .item()
            .cloned()
    }
}

/// BatchDeleteItem's result: per table, in request order, each key that was
/// deleted (null for one that was not), and the unprocessed keys.
/// <https://docs.aws.amazon.com/appsync/latest/devguide/js-aws-appsync-resolver-reference-dynamodb-batch-delete-item.html>
fn batch_delete_result(
    requested: &BTreeMap<String, Vec<Item>>,
    unprocessed_items: Option<&HashMap<String, Vec<WriteRequest>>>,
) -> Value {
    let mut data = Map::new();
    let mut unprocessed_out = Map::new();
    for (table, keys) in requested {
        let unprocessed: Vec<&Item> = unprocessed_items
            .and_then(|u| u.get(table))
            .map(|writes| {
                writes
                    .iter()
                    .filter_map(|w| w.delete_request().map(DeleteRequest::key))
                    .collect()
            })
            .unwrap_or_default();
        let deleted = keys
            .iter()
            .map(|k| {
                if unprocessed.contains(&k) {
                    Value::Null
                } else {
                    plain_item(k)
                }
            })
            .collect();
        data.insert(table.clone(), Value::Array(deleted));
        unprocessed_out.insert(
            table.clone(),
            Value::Array(unprocessed.iter().map(|k| plain_item(k)).collect()),
        );
    }
    json!({"data": data, "unprocessedKeys": unprocessed_out})
}

/// A Query or Scan page as AppSync returns it: `{items, nextToken, scannedCount}`.
fn page(items: &[Item], next_token: Option<String>, scanned_count: i32) -> Value {
    json!({
        "items": items.iter().map(plain_item).collect::<Vec<_>>(),
        "nextToken": next_token,
        "scannedCount": scanned_count,
    })
}

/// Whether `item` has every attribute of `key` with the same value.
fn has_key(item: &Item, key: &Item) -> bool {
    key.iter().all(|(k, v)| item.get(k) == Some(v))
}

/// Whether two items are equal, leaving out the attributes in `ignored`.
fn same_except(a: &Item, b: &Item, ignored: &[String]) -> bool {
    let kept = |item: &Item| -> BTreeMap<String, AttributeValue> {
        item.iter()
            .filter(|(k, _)| !ignored.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    kept(a) == kept(b)
}

fn is_condition_failure<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

/// A failed condition under the `Reject` strategy: `ctx.error`, with the
/// item as stored now in `ctx.result`.
fn rejected<E>(e: &SdkError<E>, stored: Option<&Item>) -> Answer
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    (
        stored.map_or(Value::Null, plain_item),
        Some(service_error(e)),
    )
}

/// `ctx.error` for a DynamoDB refusal: its error code as `DynamoDB:<code>`,
/// its message with AppSync's service suffix.
fn service_error<E>(e: &SdkError<E>) -> Value
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e.code() {
        Some(code) => {
            let message = e.message().unwrap_or(code);
            let status = e.raw_response().map_or(400, |r| r.status().as_u16());
            let request_id = e.request_id().unwrap_or("unknown");
            json!({
                "type": format!("DynamoDB:{code}"),
                "message": format!(
                    "{message} (Service: DynamoDb, Status Code: {status}, Request ID: {request_id})"
                ),
            })
        }
        // No answer from the server (it is down, or the call timed out).
        None => json!({
            "type": "DynamoDB:DynamoDbException",
            "message": DisplayErrorContext(e).to_string(),
        }),
    }
}

/// `ctx.error` for a `nextToken` this data source did not hand out for this
/// query, as AppSync words it.
fn invalid_token() -> Answer {
    (
        Value::Null,
        Some(json!({
            "type": "DynamoDB:UserIllegalArgumentException",
            "message": "Invalid pagination token given.",
        })),
    )
}

/// What a `nextToken` is valid for: AppSync's tokens only continue the query
/// they came from (the same table, index, key condition and values).
struct Scope<'a> {
    table: &'a str,
    index: Option<&'a str>,
    expression: &'a str,
    values: Option<&'a Map<String, Value>>,
}

impl Scope<'_> {
    fn digest(&self) -> String {
        let scope = json!([self.table, self.index, self.expression, self.values]);
        hex::encode(Sha256::digest(scope.to_string().as_bytes()))
    }
}

/// Seals `LastEvaluatedKey`s into opaque `nextToken`s and opens them again:
/// base64 of `<mac>.<json>`, the mac a SHA-256 over a per-stack secret and the
/// JSON, so a token is only accepted unchanged and for its own query.
#[derive(Clone, Debug)]
struct PageTokens {
    key: [u8; 16],
}

impl PageTokens {
    fn mac(&self, payload: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.key);
        hasher.update(payload.as_bytes());
        hex::encode(hasher.finalize())
    }

    fn seal(&self, last_evaluated_key: &Item, scope: &Scope<'_>) -> String {
        let payload = json!({
            "scope": scope.digest(),
            "key": typed_item(last_evaluated_key),
        })
        .to_string();
        STANDARD.encode(format!("{}.{payload}", self.mac(&payload)))
    }

    fn open(&self, token: &str, scope: &Scope<'_>) -> Option<Item> {
        let decoded = String::from_utf8(STANDARD.decode(token).ok()?).ok()?;
        let (mac, payload) = decoded.split_once('.')?;
        if mac != self.mac(payload) {
            return None;
        }
        let v: Value = serde_json::from_str(payload).ok()?;
        if v.get("scope").and_then(Value::as_str) != Some(scope.digest().as_str()) {
            return None;
        }
        item(v.get("key")?.as_object()?, "nextToken").ok()
    }
}

/// The names and values of a request's expressions, merged into the one
/// `ExpressionAttributeNames` / `ExpressionAttributeValues` DynamoDB takes.
#[derive(Default)]
struct Placeholders {
    names: HashMap<String, String>,
    values: Item,
}

impl Placeholders {
    fn add_names(&mut self, names: &Option<HashMap<String, String>>) {
        if let Some(names) = names {
            self.names
                .extend(names.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }

    fn add(
        &mut self,
        names: &Option<HashMap<String, String>>,
        values: &Option<Map<String, Value>>,
        path: &str,
    ) -> Result<(), RequestError> {
        self.add_names(names);
        if let Some(values) = values {
            self.values
                .extend(item(values, &format!("{path}.expressionValues"))?);
        }
        Ok(())
    }

    /// Each map, or none when empty (DynamoDB refuses an empty map).
    fn into_parts(self) -> (Option<HashMap<String, String>>, Option<Item>) {
        (
            Some(self.names).filter(|n| !n.is_empty()),
            Some(self.values).filter(|v| !v.is_empty()),
        )
    }
}

// ---- request objects -------------------------------------------------------
// The shapes of https://docs.aws.amazon.com/appsync/latest/devguide/js-resolver-reference-dynamodb.html
// (GetItem, PutItem, UpdateItem, DeleteItem, Query, Scan, BatchGetItem,
// BatchPutItem, BatchDeleteItem). A field AppSync does not know is refused.

// One request is parsed per call and dropped with it: the size of the larger
// variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Deserialize)]
#[serde(tag = "operation")]
enum Request {
    GetItem(GetItem),
    PutItem(PutItem),
    UpdateItem(UpdateItem),
    DeleteItem(DeleteItem),
    Query(Query),
    Scan(Scan),
    BatchGetItem(BatchGetItem),
    BatchPutItem(BatchWrite),
    BatchDeleteItem(BatchWrite),
}

/// `{expression, expressionNames?, expressionValues?}` (query, filter, update).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Expression {
    expression: String,
    expression_names: Option<HashMap<String, String>>,
    expression_values: Option<Map<String, Value>>,
}

/// `{expression, expressionNames?}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Projection {
    expression: String,
    expression_names: Option<HashMap<String, String>>,
}

/// A write's `condition`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Condition {
    expression: String,
    expression_names: Option<HashMap<String, String>>,
    expression_values: Option<Map<String, Value>>,
    equals_ignore: Option<Vec<String>>,
    consistent_read: Option<bool>,
    conditional_check_failed_handler: Option<FailedHandler>,
}

impl Condition {
    /// Only the default strategy, `Reject`, runs here (`Custom` calls a Lambda).
    fn check_strategy(&self) -> Result<(), RequestError> {
        match &self.conditional_check_failed_handler {
            Some(h) if h.strategy != "Reject" => Err(RequestError::Unsupported(
                "conditionalCheckFailedHandler strategy Custom",
            )),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FailedHandler {
    strategy: String,
    #[allow(dead_code)]
    lambda_arn: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GetItem {
    key: Map<String, Value>,
    consistent_read: Option<bool>,
    projection: Option<Projection>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PutItem {
    key: Map<String, Value>,
    attribute_values: Option<Map<String, Value>>,
    condition: Option<Condition>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateItem {
    key: Map<String, Value>,
    update: Expression,
    condition: Option<Condition>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeleteItem {
    key: Map<String, Value>,
    condition: Option<Condition>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Query {
    query: Expression,
    index: Option<String>,
    next_token: Option<String>,
    limit: Option<i32>,
    scan_index_forward: Option<bool>,
    consistent_read: Option<bool>,
    select: Option<String>,
    filter: Option<Expression>,
    projection: Option<Projection>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Scan {
    index: Option<String>,
    limit: Option<i32>,
    consistent_read: Option<bool>,
    next_token: Option<String>,
    total_segments: Option<i32>,
    segment: Option<i32>,
    filter: Option<Expression>,
    projection: Option<Projection>,
    select: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BatchGetItem {
    tables: BTreeMap<String, BatchGetTable>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BatchGetTable {
    keys: Vec<Map<String, Value>>,
    consistent_read: Option<bool>,
    projection: Option<Projection>,
}

/// BatchPutItem (items) and BatchDeleteItem (keys): `{tables: {name: [...]}}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BatchWrite {
    tables: BTreeMap<String, Vec<Map<String, Value>>>,
}

/// The request object, with `version` (accepted and ignored, as by AppSync's
/// JS runtime) left out.
fn parse(request: &Value) -> Result<Request, RequestError> {
    let Some(object) = request.as_object() else {
        return Err(RequestError::Shape(format!(
            "the request handler returned {request}, not an object"
        )));
    };
    let mut object = object.clone();
    object.remove("version");
    serde_json::from_value(Value::Object(object)).map_err(|e| RequestError::Shape(e.to_string()))
}

// ---- DynamoDB JSON ----------------------------------------------------------
// Typed values: https://docs.aws.amazon.com/appsync/latest/devguide/js-resolver-reference-dynamodb.html#js-aws-appsync-resolver-reference-dynamodb-typed-values-request

/// A map of typed values (a key, an item, `expressionValues`) as SDK values;
/// `path` names the map in errors.
///
/// # Errors
///
/// [`RequestError::Value`] naming the first value that is not DynamoDB JSON.
pub fn item(map: &Map<String, Value>, path: &str) -> Result<Item, RequestError> {
    map.iter()
        .map(|(k, v)| Ok((k.clone(), attribute_value(v, &format!("{path}.{k}"))?)))
        .collect()
}

/// One typed value (`{"S": "x"}`, `{"N": 1}` or `{"N": "1"}`, `{"M": {...}}`,
/// ...) as an SDK value; `path` names it in errors.
///
/// # Errors
///
/// [`RequestError::Value`] when `v` is not DynamoDB JSON.
pub fn attribute_value(v: &Value, path: &str) -> Result<AttributeValue, RequestError> {
    let bad = |problem: String| RequestError::Value {
        path: path.to_owned(),
        problem,
    };
    let Some(object) = v.as_object() else {
        return Err(bad(format!(
            "expected a typed value such as {{\"S\": \"...\"}}, got {v}"
        )));
    };
    let mut entries = object.iter();
    let (Some((ty, inner)), None) = (entries.next(), entries.next()) else {
        return Err(bad(format!(
            "a typed value has exactly one type key, got {v}"
        )));
    };
    let wrong = || bad(format!("{ty} cannot hold {inner}"));
    let list = || inner.as_array().ok_or_else(wrong);
    match ty.as_str() {
        "S" => inner
            .as_str()
            .map(|s| AttributeValue::S(s.to_owned()))
            .ok_or_else(wrong),
        "N" => number(inner).map(AttributeValue::N).ok_or_else(wrong),
        "B" => binary(inner).map(AttributeValue::B).ok_or_else(wrong),
        "BOOL" => inner.as_bool().map(AttributeValue::Bool).ok_or_else(wrong),
        // util.dynamodb writes `{NULL: null}`; DynamoDB's own form is `true`.
        "NULL" => match inner {
            Value::Null | Value::Bool(true) => Ok(AttributeValue::Null(true)),
            _ => Err(wrong()),
        },
        "M" => {
            let map = inner.as_object().ok_or_else(wrong)?;
            Ok(AttributeValue::M(item(map, path)?))
        }
        "L" => list()?
            .iter()
            .enumerate()
            .map(|(i, x)| attribute_value(x, &format!("{path}[{i}]")))
            .collect::<Result<_, _>>()
            .map(AttributeValue::L),
        "SS" => list()?
            .iter()
            .map(|x| x.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .map(AttributeValue::Ss)
            .ok_or_else(wrong),
        "NS" => list()?
            .iter()
            .map(number)
            .collect::<Option<_>>()
            .map(AttributeValue::Ns)
            .ok_or_else(wrong),
        "BS" => list()?
            .iter()
            .map(binary)
            .collect::<Option<_>>()
            .map(AttributeValue::Bs)
            .ok_or_else(wrong),
        other => Err(bad(format!(
            "unknown type {other}; one of S N B BOOL NULL M L SS NS BS"
        ))),
    }
}

/// A number as DynamoDB's decimal string: a JSON number, or a string holding one.
fn number(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if s.trim().parse::<f64>().is_ok_and(f64::is_finite) => {
            Some(s.trim().to_owned())
        }
        _ => None,
    }
}

/// Binary data, given base64-encoded.
fn binary(v: &Value) -> Option<Blob> {
    STANDARD.decode(v.as_str()?).ok().map(Blob::new)
}

/// An item as the plain JSON a response handler reads.
pub fn plain_item(item: &Item) -> Value {
    Value::Object(item.iter().map(|(k, v)| (k.clone(), plain(v))).collect())
}

/// A value as plain JSON: `N` a number, `BOOL` a boolean, `NULL` null, `M`
/// an object, `L` and the sets lists, `B` base64 text.
pub fn plain(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => plain_number(n),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::M(m) => plain_item(m),
        AttributeValue::L(l) => Value::Array(l.iter().map(plain).collect()),
        AttributeValue::Ss(s) => Value::Array(s.iter().cloned().map(Value::String).collect()),
        AttributeValue::Ns(n) => Value::Array(n.iter().map(|x| plain_number(x)).collect()),
        AttributeValue::B(b) => Value::String(STANDARD.encode(b)),
        AttributeValue::Bs(bs) => Value::Array(
            bs.iter()
                .map(|b| Value::String(STANDARD.encode(b)))
                .collect(),
        ),
        // NULL, and a type newer than this SDK.
        _ => Value::Null,
    }
}

/// DynamoDB's decimal string as a JSON number (an integer when it is one).
fn plain_number(n: &str) -> Value {
    if let Ok(i) = n.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(u) = n.parse::<u64>() {
        return Value::from(u);
    }
    n.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or_else(|| Value::String(n.to_owned()), Value::Number)
}

/// An item back as DynamoDB JSON (for `nextToken`s).
fn typed_item(item: &Item) -> Value {
    Value::Object(item.iter().map(|(k, v)| (k.clone(), typed(v))).collect())
}

/// A value back as DynamoDB JSON, numbers as strings.
fn typed(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => json!({"S": s}),
        AttributeValue::N(n) => json!({"N": n}),
        AttributeValue::Bool(b) => json!({"BOOL": b}),
        AttributeValue::M(m) => json!({"M": typed_item(m)}),
        AttributeValue::L(l) => json!({"L": l.iter().map(typed).collect::<Vec<_>>()}),
        AttributeValue::Ss(s) => json!({"SS": s}),
        AttributeValue::Ns(n) => json!({"NS": n}),
        AttributeValue::B(b) => json!({"B": STANDARD.encode(b)}),
        AttributeValue::Bs(bs) => {
            json!({"BS": bs.iter().map(|b| STANDARD.encode(b)).collect::<Vec<_>>()})
        }
        _ => json!({"NULL": true}),
    }
}

#[cfg(test)]
mod tests;
