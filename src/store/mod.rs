//! Place in the data path: handler -> **store** -> model, and turn driver ->
//! sinks -> **store**. The conversations table in DynamoDB: the claim that
//! makes a turn run once in whatever execution environment its event lands,
//! the history sent to the model, the turn's chunks for recovery, the
//! messages a client lists, and the user's quota, whose in-flight slot every
//! turn gives back when it ends ([`quota`]). Items and keys: [`items`].
//!
//! Lambda delivers an asynchronous event at least once
//! (<https://docs.aws.amazon.com/lambda/latest/dg/invocation-async.html>); a
//! repeat may land in another execution environment, where the in-process
//! record ([`crate::idempotency`]) cannot see it. At turn start the handler
//! claims `turnId` for its owner with a conditional write
//! (`attribute_not_exists(pk)`,
//! <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.ConditionExpressions.html>);
//! the first delivery's write succeeds and every repeat's is refused.
//!
//! The store is never allowed to stop a turn: calls time out after
//! [`OPERATION_TIMEOUT`], and a failure is reported to the caller, which
//! streams anyway, without history or persistence.

mod claim;
mod history;
mod items;
mod quota;
mod record;
mod slot;
mod writer;

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use chrono::{DateTime, Utc};
use thiserror::Error;

use crate::event::TurnIds;

pub(crate) use claim::{Claim, ClaimState};
pub use history::HistoryBudget;
pub(crate) use history::{HistoryMessage, Role};
pub(crate) use items::{AnswerEnd, chunk_item};
pub(crate) use quota::estimated_tokens;
pub(crate) use record::TurnRecord;
pub(crate) use slot::{QuotaLimits, SlotRefusal};
pub(crate) use writer::{ChunkWriter, WriterReport};

use items::{
    Item, answer_item, conversation_key, conversation_partition, iso, prompt_item, title_of,
};

/// Longest a store call may take, retries included, before the turn goes on
/// without it.
pub(crate) const OPERATION_TIMEOUT: Duration = Duration::from_secs(2);

/// Times a `BatchWriteItem` is sent for the items DynamoDB left unprocessed
/// (the first call included).
const BATCH_ATTEMPTS: u32 = 3;

/// Why the store could not answer.
#[derive(Debug, Error)]
#[error("DynamoDB {operation} on {table} failed: {detail}")]
pub(crate) struct StoreError {
    /// The DynamoDB operation, e.g. `PutItem`.
    operation: &'static str,
    /// The table.
    table: String,
    /// The SDK error's chain, for logs (no item contents).
    detail: String,
}

/// The conversations table. Build it once per process.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    client: Client,
    table: String,
}

impl Store {
    /// A store on `table`, with the credentials, region and endpoint of `sdk`
    /// (`AWS_ENDPOINT_URL_DYNAMODB` points it at a local server), two
    /// attempts and [`OPERATION_TIMEOUT`].
    pub(crate) fn new(sdk: &aws_config::SdkConfig, table: String) -> Self {
        let config = aws_sdk_dynamodb::config::Builder::from(sdk)
            .retry_config(RetryConfig::standard().with_max_attempts(2))
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            )
            .build();
        Self {
            client: Client::from_conf(config),
            table,
        }
    }

    fn error(&self, operation: &'static str, error: &impl std::error::Error) -> StoreError {
        StoreError {
            operation,
            table: self.table.clone(),
            detail: DisplayErrorContext(error).to_string(),
        }
    }

    /// The history to send with turn `ids`'s prompt: the conversation's
    /// newest messages (one `Query`, newest first, enough for `budget`),
    /// fitted by [`history::fit_history`].
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub(crate) async fn history(
        &self,
        ids: &TurnIds,
        budget: HistoryBudget,
    ) -> Result<Vec<HistoryMessage>, StoreError> {
        if budget.max_messages < 2 || budget.max_chars == 0 {
            return Ok(Vec::new());
        }
        // A few more than the budget: unanswered turns and this turn's own
        // prompt may be among the newest.
        let limit = i32::try_from(budget.max_messages + 4).unwrap_or(i32::MAX);
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :msg)")
            .expression_attribute_values(":pk", AttributeValue::S(conversation_partition(ids)))
            .expression_attribute_values(":msg", AttributeValue::S("MSG#".into()))
            .scan_index_forward(false)
            .limit(limit)
            .send()
            .await
            .map_err(|e| self.error("Query", &e))?;
        let mut items = output.items.unwrap_or_default();
        items.reverse();
        Ok(history::fit_history(&items, &ids.turn_id, budget))
    }

    /// Writes the user's message of turn `ids` and creates or touches its
    /// conversation (the title comes from the conversation's first prompt).
    ///
    /// # Errors
    /// [`StoreError`] for the first write that fails.
    pub(crate) async fn record_prompt(
        &self,
        ids: &TurnIds,
        started: DateTime<Utc>,
        prompt: &str,
    ) -> Result<(), StoreError> {
        self.put(prompt_item(ids, started, prompt)).await?;
        self.touch_conversation(ids, started, Some(&title_of(prompt)))
            .await
    }

    /// Writes the assistant's message of turn `ids`, once, when it ends, and
    /// moves its conversation's `updatedAt`.
    ///
    /// # Errors
    /// [`StoreError`] for the first write that fails.
    pub(crate) async fn record_answer(
        &self,
        ids: &TurnIds,
        started: DateTime<Utc>,
        model_id: &str,
        text: &str,
        end: &AnswerEnd,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        self.put(answer_item(ids, started, now, model_id, text, end))
            .await?;
        self.touch_conversation(ids, now, None).await
    }

    async fn put(&self, item: Item) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("PutItem", &e))
    }

    /// Sets `updatedAt` to `now`, and on the conversation's first turn its
    /// id, `createdAt` and `title`.
    async fn touch_conversation(
        &self,
        ids: &TurnIds,
        now: DateTime<Utc>,
        title: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(conversation_key(ids)))
            .expression_attribute_values(":now", AttributeValue::S(iso(now)))
            .expression_attribute_values(":id", AttributeValue::S(ids.conversation_id.clone()));
        let expression = match title {
            Some(title) => {
                update = update
                    .expression_attribute_values(":title", AttributeValue::S(title.to_owned()));
                "SET conversationId = :id, updatedAt = :now, \
                 createdAt = if_not_exists(createdAt, :now), title = if_not_exists(title, :title)"
            }
            None => {
                "SET conversationId = :id, updatedAt = :now, createdAt = if_not_exists(createdAt, :now)"
            }
        };
        update
            .update_expression(expression)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("UpdateItem", &e))
    }

    /// Writes up to 25 items with `BatchWriteItem`, sending again whatever
    /// DynamoDB leaves unprocessed, [`BATCH_ATTEMPTS`] times in all, within
    /// [`OPERATION_TIMEOUT`] overall.
    ///
    /// # Errors
    /// [`StoreError`] when a call fails, items are still unprocessed, or time
    /// runs out.
    pub(crate) async fn write_items(&self, items: Vec<Item>) -> Result<(), StoreError> {
        tokio::time::timeout(OPERATION_TIMEOUT, self.write_batches(items))
            .await
            .unwrap_or_else(|_| {
                Err(StoreError {
                    operation: "BatchWriteItem",
                    table: self.table.clone(),
                    detail: "timed out".into(),
                })
            })
    }

    async fn write_batches(&self, items: Vec<Item>) -> Result<(), StoreError> {
        let mut requests = items
            .into_iter()
            .map(|item| {
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map(|put| WriteRequest::builder().put_request(put).build())
                    .map_err(|e| self.error("BatchWriteItem", &e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for attempt in 1..=BATCH_ATTEMPTS {
            let output = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .send()
                .await
                .map_err(|e| self.error("BatchWriteItem", &e))?;
            requests = output
                .unprocessed_items
                .and_then(|mut left| left.remove(&self.table))
                .unwrap_or_default();
            if requests.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
        }
        Err(StoreError {
            operation: "BatchWriteItem",
            table: self.table.clone(),
            detail: format!("{} items still unprocessed", requests.len()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_store_is_an_error_not_a_wait() {
        // Port 9 on loopback: nothing listens, the connection is refused.
        let sdk = aws_config::SdkConfig::builder()
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(
                    aws_credential_types::Credentials::new("AKID", "SECRET", None, None, "test"),
                ),
            )
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let store = Store::new(&sdk, "T".into());
        let started = std::time::Instant::now();
        let error = store
            .claim(&TurnIds::fixture(), Utc::now(), Duration::from_secs(30))
            .await
            .expect_err("no store");
        assert!(error.to_string().contains("PutItem"), "{error}");
        assert!(started.elapsed() < OPERATION_TIMEOUT + Duration::from_secs(1));
    }
}
