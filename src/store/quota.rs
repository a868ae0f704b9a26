//! Place in the data path: the end of every turn, handler -> **quota
//! release** -> the conversations table. `sendPrompt`'s pipeline
//! (`infra/resolvers/Function.takeTurnSlot.js`) takes one of the user's
//! in-flight slots before it invokes this function, in the user's quota item
//! `({sub}, QUOTA)`: `slots.{conversationId}#{turnId}` holds the epoch
//! second until which the turn holds it. When the turn ends, however it ends,
//! the function gives the slot back and adds the turn's tokens to the day's
//! count, in one `UpdateItem` (`REMOVE slots.#turn ADD tokensUsed :n`,
//! <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.UpdateExpressions.html>).
//!
//! Tokens are Bedrock's: the ConverseStream `metadata` event's
//! `usage.totalTokens` (input plus output). A turn that ends before that
//! event (cancelled, cut off by an error or the deadline) was still billed
//! for what the model read and wrote, so its tokens are estimated from
//! characters ([`estimated_tokens`]); a turn that failed before the model
//! wrote anything (refused, throttled) counts none.

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::items::quota_key;
use super::{Store, StoreError};
use crate::event::TurnIds;

/// Characters per token of the estimate: the common rule of thumb for
/// English text, which overcounts code and undercounts some scripts.
const CHARS_PER_TOKEN: usize = 4;

/// The tokens of `chars` characters of prompt, history and answer, for a
/// turn without Bedrock's usage: one per [`CHARS_PER_TOKEN`], rounded up.
pub(crate) fn estimated_tokens(chars: usize) -> u64 {
    u64::try_from(chars.div_ceil(CHARS_PER_TOKEN)).unwrap_or(u64::MAX)
}

/// The key of turn `ids`'s slot in the quota item's `slots` map:
/// `{conversationId}#{turnId}` (ids never contain `#`), as
/// `Function.takeTurnSlot.js` writes it. A turn is its conversation and its
/// turn id: the same turn id in two conversations is two turns.
pub(crate) fn slot_key(ids: &TurnIds) -> String {
    format!("{}#{}", ids.conversation_id, ids.turn_id)
}

/// `t`'s UTC day as the quota item's `quotaDay` holds it (`YYYY-MM-DD`).
fn day_of(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

impl Store {
    /// Gives back turn `ids`'s in-flight slot and adds `tokens` to its
    /// owner's count for the day the turn ends on (a count of an earlier day
    /// starts again from these). Releasing a slot that is gone already (a
    /// second ending of the same turn) only counts the tokens; an owner
    /// without a quota item (a turn not started through `sendPrompt`'s
    /// pipeline) is left without one.
    ///
    /// The same write puts the turn's conversation back in its owner's set of
    /// conversations (`sendPrompt`'s pipeline added it when the turn began):
    /// a `deleteConversation` that finished while the turn ran took it out,
    /// and the turn's record, written next, brings the conversation back.
    ///
    /// # Errors
    /// [`StoreError`] when a write fails for any reason but its condition.
    pub(crate) async fn release_slot(&self, ids: &TurnIds, tokens: u64) -> Result<(), StoreError> {
        if tokens == 0 {
            return self
                .update_quota(ids, "REMOVE #slots.#turn ADD #convs :conv", None)
                .await
                .map(|_| ());
        }
        let today = day_of(Utc::now());
        let same_day = self
            .update_quota(
                ids,
                "REMOVE #slots.#turn ADD #used :used, #convs :conv",
                Some(("#day = :today", &today, tokens)),
            )
            .await?;
        if same_day {
            return Ok(());
        }
        self.update_quota(
            ids,
            "REMOVE #slots.#turn SET #day = :today, #used = :used ADD #convs :conv",
            Some(("#day <> :today", &today, tokens)),
        )
        .await
        .map(|_| ())
    }

    /// One conditional `UpdateItem` of `ids`'s owner's quota item, on an
    /// item the pipeline made (it has `slots`) and, with `day`, only when
    /// the day condition holds. `true` when it was written.
    async fn update_quota(
        &self,
        ids: &TurnIds,
        expression: &str,
        day: Option<(&str, &str, u64)>,
    ) -> Result<bool, StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(quota_key(&ids.owner)))
            .update_expression(expression)
            .expression_attribute_names("#slots", "slots")
            .expression_attribute_names("#turn", slot_key(ids))
            .expression_attribute_names("#convs", "conversations")
            .expression_attribute_values(
                ":conv",
                AttributeValue::Ss(vec![ids.conversation_id.clone()]),
            );
        let Some((condition, today, tokens)) = day else {
            update = update.condition_expression("attribute_exists(#slots)");
            return self.sent(update).await;
        };
        update = update
            .condition_expression(format!("attribute_exists(#slots) AND {condition}"))
            .expression_attribute_names("#day", "quotaDay")
            .expression_attribute_names("#used", "tokensUsed")
            .expression_attribute_values(":today", AttributeValue::S(today.to_owned()))
            .expression_attribute_values(":used", AttributeValue::N(tokens.to_string()));
        self.sent(update).await
    }

    /// Sends a quota update: `false` when its condition did not hold.
    async fn sent(
        &self,
        update: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    ) -> Result<bool, StoreError> {
        match update.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(self.error("UpdateItem", &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_its_conversation_and_turn() {
        let ids = TurnIds::fixture();
        assert_eq!(slot_key(&ids), "c1#t1");
        let at = DateTime::from_timestamp(1_795_830_000, 0).expect("in range");
        assert_eq!(day_of(at), "2026-11-28");
    }

    #[test]
    fn estimates_round_up_and_count_nothing_for_nothing() {
        assert_eq!(estimated_tokens(0), 0);
        assert_eq!(estimated_tokens(1), 1);
        assert_eq!(estimated_tokens(4), 1);
        assert_eq!(estimated_tokens(5), 2);
        assert_eq!(estimated_tokens(4_000), 1_000);
    }
}
