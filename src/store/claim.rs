//! Place in the data path: handler -> **turn claim** -> model. The claim
//! that makes a turn stream once, and ends it when the execution environment
//! streaming it dies.
//!
//! Lambda delivers an asynchronous event at least once, and retries it after
//! a function error or a crash (out of memory, killed at its timeout)
//! (<https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html>).
//! At turn start the handler claims `turnId` with a conditional write
//! (`attribute_not_exists(pk)`); every repeat's write is refused. The claim
//! carries a lease (`leaseUntil`, epoch milliseconds) that the streaming
//! environment renews while the turn runs, and `finishedAt` once the turn's
//! record is written. A repeat reads the claim: finished, it does nothing;
//! leased, the first delivery is alive and the repeat waits; lease run out
//! and not finished, the environment died, and the repeat takes the turn
//! over (a conditional update on the lease it saw, so only one repeat does)
//! and ends it as `Interrupted`.

use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::items::{Item, chunk_sort_key, claim_item, conversation_partition, turn_key};
use super::{Store, StoreError};
use crate::event::TurnIds;

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// This delivery is the turn's first: stream it.
    First,
    /// The turn was claimed before, here or in another execution
    /// environment: stream nothing (see [`ClaimState`]).
    Repeated,
}

/// A claim as a repeat reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimState {
    /// When the turn started: its messages' sort key.
    pub started_at: Option<DateTime<Utc>>,
    /// Until when the streaming environment holds the turn (epoch ms).
    pub lease_until: i64,
    /// Whether the turn's record is complete.
    pub finished: bool,
}

/// One stored chunk of a turn, as recovery needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredChunk {
    /// Its `seq`.
    pub seq: i64,
    /// Its text.
    pub text: String,
    /// Whether it was the terminal chunk.
    pub done: bool,
}

fn epoch_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn number(item: &Item, name: &str) -> Option<i64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

impl Store {
    /// Claims turn `ids` for its owner, started at `started`, leased for `lease`.
    ///
    /// # Errors
    /// [`StoreError`] when DynamoDB cannot be reached or refuses the write
    /// for any reason but the claim's condition.
    pub(crate) async fn claim(
        &self,
        ids: &TurnIds,
        started: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let lease_until = epoch_ms(started) + lease_ms(lease);
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(claim_item(ids, started, lease_until)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match written {
            Ok(_) => Ok(Claim::First),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(Claim::Repeated),
            Err(e) => Err(self.error("PutItem", &e)),
        }
    }

    /// Extends the lease of a running turn to `lease` from now.
    ///
    /// # Errors
    /// [`StoreError`] when the write fails.
    pub(crate) async fn renew(&self, ids: &TurnIds, lease: Duration) -> Result<(), StoreError> {
        let until = epoch_ms(Utc::now()) + lease_ms(lease);
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(turn_key(ids)))
            .update_expression("SET leaseUntil = :until")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(finishedAt)")
            .expression_attribute_values(":until", AttributeValue::N(until.to_string()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("UpdateItem", &e))
    }

    /// Marks turn `ids` finished: its record is complete.
    ///
    /// # Errors
    /// [`StoreError`] when the write fails.
    pub(crate) async fn finish_claim(&self, ids: &TurnIds) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(turn_key(ids)))
            .update_expression("SET finishedAt = :now")
            .expression_attribute_values(
                ":now",
                AttributeValue::N(epoch_ms(Utc::now()).to_string()),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("UpdateItem", &e))
    }

    /// Asks running turn `ids` to stop: sets `cancelRequested` on its claim,
    /// which the turn's streaming environment reads ([`Self::cancel_requested`]).
    /// The claim's key holds the owner, so a caller reaches only their own
    /// turns. `false` when there is no such turn still running.
    ///
    /// # Errors
    /// [`StoreError`] when the write fails for another reason.
    pub(crate) async fn request_cancel(&self, ids: &TurnIds) -> Result<bool, StoreError> {
        let written = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(turn_key(ids)))
            .update_expression("SET cancelRequested = :yes")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(finishedAt)")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .send()
            .await;
        match written {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(self.error("UpdateItem", &e)),
        }
    }

    /// Whether turn `ids`'s owner has asked it to stop (a strongly consistent
    /// read of its claim).
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    pub(crate) async fn cancel_requested(&self, ids: &TurnIds) -> Result<bool, StoreError> {
        let read = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(turn_key(ids)))
            .consistent_read(true)
            .projection_expression("cancelRequested")
            .send()
            .await
            .map_err(|e| self.error("GetItem", &e))?;
        Ok(read
            .item()
            .and_then(|item| item.get("cancelRequested"))
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false))
    }

    /// The claim of turn `ids` (a strongly consistent read), `None` when
    /// there is none.
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    pub(crate) async fn read_claim(&self, ids: &TurnIds) -> Result<Option<ClaimState>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(turn_key(ids)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", &e))?;
        Ok(output.item.map(|item| ClaimState {
            started_at: item
                .get("startedAt")
                .and_then(|v| v.as_s().ok())
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&Utc)),
            lease_until: number(&item, "leaseUntil").unwrap_or(0),
            finished: item.contains_key("finishedAt"),
        }))
    }

    /// Takes over turn `ids` whose lease ran out at `lease_until`: marks it
    /// finished unless another repeat, or the first delivery, got there
    /// first. `true` when this caller took it.
    ///
    /// # Errors
    /// [`StoreError`] when the write fails for any reason but its condition.
    pub(crate) async fn take_over(
        &self,
        ids: &TurnIds,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let taken = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(turn_key(ids)))
            .update_expression("SET finishedAt = :now, interrupted = :yes")
            .condition_expression(
                "attribute_not_exists(finishedAt) AND (leaseUntil = :seen OR attribute_not_exists(leaseUntil))",
            )
            .expression_attribute_values(
                ":now",
                AttributeValue::N(epoch_ms(Utc::now()).to_string()),
            )
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":seen", AttributeValue::N(lease_until.to_string()))
            .send()
            .await;
        match taken {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(self.error("UpdateItem", &e)),
        }
    }

    /// The stored chunks of turn `ids`, in `seq` order (strongly consistent).
    ///
    /// # Errors
    /// [`StoreError`] when a query fails.
    pub(crate) async fn stored_chunks(
        &self,
        ids: &TurnIds,
    ) -> Result<Vec<StoredChunk>, StoreError> {
        let mut chunks = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :first AND :last")
                .expression_attribute_values(":pk", AttributeValue::S(conversation_partition(ids)))
                .expression_attribute_values(
                    ":first",
                    AttributeValue::S(chunk_sort_key(&ids.turn_id, 0)),
                )
                .expression_attribute_values(
                    ":last",
                    AttributeValue::S(chunk_sort_key(&ids.turn_id, 9_999_999_999)),
                )
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.error("Query", &e))?;
            chunks.extend(output.items.unwrap_or_default().iter().filter_map(|item| {
                Some(StoredChunk {
                    seq: number(item, "seq")?,
                    text: item.get("text")?.as_s().ok()?.clone(),
                    done: matches!(item.get("done"), Some(AttributeValue::Bool(true))),
                })
            }));
            start = output.last_evaluated_key;
            if start.is_none() {
                return Ok(chunks);
            }
        }
    }
}

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2)
}
