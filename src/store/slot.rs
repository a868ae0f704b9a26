//! Place in the data path: a transport's entry point -> **turn slot** ->
//! relay. Takes one of the caller's in-flight slots before a turn starts,
//! for a transport with no AppSync pipeline in front of it (the function
//! URL). It is `infra/resolvers/Function.readQuota.js` and
//! `Function.takeTurnSlot.js` in Rust, on the same quota item
//! `({sub}, QUOTA)` with the same limits, so a user's turns count the same
//! whichever transport started them, and `myQuota` shows them all.
//!
//! One strongly consistent read, then one conditional `UpdateItem` whose
//! condition re-checks on the item as written what the read saw
//! (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.ConditionExpressions.html>),
//! so two prompts at once can never both take the last slot; a write
//! refused because the item changed in between reads and tries once more,
//! and a prompt that loses both races is refused as `TooManyTurns`.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use thiserror::Error;

use super::items::quota_key;
use super::quota::slot_key;
use super::{Store, StoreError};
use crate::event::TurnIds;

/// The limits that apply to a caller, read as the pipeline reads them from
/// the API's environment: `QUOTA_MAX_TURNS_IN_FLIGHT` (3),
/// `QUOTA_DAILY_TOKENS` (200,000), `QUOTA_MAX_CONVERSATIONS` (1,000),
/// `QUOTA_GROUPS` (`group:turns:tokens,...`, the most generous of the
/// caller's groups), `TURN_SLOT_SECONDS` (900).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QuotaLimits {
    /// Turns a caller may have in flight.
    pub(crate) max_turns_in_flight: u64,
    /// Tokens a caller may spend in a UTC day.
    pub(crate) daily_tokens: u64,
    /// Conversations a caller may keep.
    pub(crate) max_conversations: u64,
    /// How long a slot lasts when its turn never ends, in seconds.
    pub(crate) slot_seconds: i64,
}

impl QuotaLimits {
    /// The limits for a caller in `groups`, from `lookup` (variable -> value).
    pub(crate) fn for_groups(groups: &[String], lookup: impl Fn(&str) -> Option<String>) -> Self {
        let whole = |name: &str, fallback: u64| {
            lookup(name)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(fallback)
        };
        let mut limits = Self {
            max_turns_in_flight: whole("QUOTA_MAX_TURNS_IN_FLIGHT", 3),
            daily_tokens: whole("QUOTA_DAILY_TOKENS", 200_000),
            max_conversations: whole("QUOTA_MAX_CONVERSATIONS", 1000),
            slot_seconds: i64::try_from(whole("TURN_SLOT_SECONDS", 900)).unwrap_or(900),
        };
        let chosen = lookup("QUOTA_GROUPS")
            .unwrap_or_default()
            .split(',')
            .filter_map(group_limit)
            .filter(|(group, _, _)| groups.contains(group))
            .map(|(_, turns, tokens)| (turns, tokens))
            .reduce(|a, b| (a.0.max(b.0), a.1.max(b.1)));
        if let Some((turns, tokens)) = chosen {
            limits.max_turns_in_flight = turns;
            limits.daily_tokens = tokens;
        }
        limits
    }
}

/// `group:turns:tokens` (the group name may hold colons).
fn group_limit(entry: &str) -> Option<(String, u64, u64)> {
    let mut parts = entry.trim().rsplitn(3, ':');
    let tokens = parts.next()?.parse().ok()?;
    let turns = parts.next()?.parse().ok()?;
    let group = parts.next().filter(|g| !g.is_empty())?;
    Some((group.to_owned(), turns, tokens))
}

/// Why a turn may not start. The messages are `sendPrompt`'s, safe to show.
#[derive(Debug, Error)]
pub(crate) enum SlotRefusal {
    /// As many turns in flight as allowed.
    #[error(
        "You have {held} answers in progress, the most you can have at once. Send again when one has finished."
    )]
    TooManyTurns {
        /// Turns in flight.
        held: u64,
        /// The limit.
        limit: u64,
    },
    /// A new conversation past the most the caller may keep.
    #[error("You have {kept} conversations, the most you can keep. Delete one to start another.")]
    TooManyConversations {
        /// Conversations kept.
        kept: u64,
        /// The limit.
        limit: u64,
    },
    /// The day's tokens are spent.
    #[error("You have used today's {limit} tokens. Your quota resets at {reset_at}.")]
    QuotaExceeded {
        /// The daily limit.
        limit: u64,
        /// When it resets (ISO-8601, the next UTC midnight).
        reset_at: String,
    },
    /// The quota item could not be read or written.
    #[error("Your usage could not be checked just now; please try again.")]
    Unavailable(#[source] StoreError),
}

impl SlotRefusal {
    /// The error type, as `sendPrompt` names it.
    pub(crate) fn error_type(&self) -> &'static str {
        match self {
            SlotRefusal::TooManyTurns { .. } => "TooManyTurns",
            SlotRefusal::TooManyConversations { .. } => "TooManyConversations",
            SlotRefusal::QuotaExceeded { .. } => "QuotaExceeded",
            SlotRefusal::Unavailable(_) => "ServiceUnavailable",
        }
    }
}

/// What the read found, as `Function.readQuota.js` summarises it.
struct Seen {
    has_slots: bool,
    live: u64,
    holds_this: bool,
    expired: Vec<String>,
    day: Option<String>,
    used: u64,
    conversations: Vec<String>,
}

fn seen(item: Option<&HashMap<String, AttributeValue>>, now: i64, slot: &str) -> Seen {
    let slots = item
        .and_then(|i| i.get("slots"))
        .and_then(|v| v.as_m().ok());
    let mut live = 0;
    let mut holds_this = false;
    let mut expired = Vec::new();
    for (key, until) in slots.into_iter().flatten() {
        let until: Option<i64> = until.as_n().ok().and_then(|n| n.parse().ok());
        if until.is_some_and(|u| u > now) {
            live += 1;
            holds_this |= key == slot;
        } else {
            expired.push(key.clone());
        }
    }
    let text = |name: &str| {
        item.and_then(|i| i.get(name))
            .and_then(|v| v.as_s().ok())
            .cloned()
    };
    Seen {
        has_slots: slots.is_some(),
        live,
        holds_this,
        expired,
        day: text("quotaDay"),
        used: item
            .and_then(|i| i.get("tokensUsed"))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        conversations: item
            .and_then(|i| i.get("conversations"))
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default(),
    }
}

/// `t`'s UTC day, `YYYY-MM-DD`, and the next midnight as ISO-8601.
fn today(t: DateTime<Utc>) -> (String, String) {
    let day = t.format("%Y-%m-%d").to_string();
    let next = t.date_naive().succ_opt().unwrap_or(t.date_naive());
    (day, format!("{next}T00:00:00.000Z"))
}

impl Store {
    /// Takes turn `ids`'s in-flight slot under `limits` (see the module
    /// docs); a turn that already holds its slot takes none.
    ///
    /// # Errors
    /// [`SlotRefusal`] naming the limit reached, or `Unavailable`.
    pub(crate) async fn take_slot(
        &self,
        ids: &TurnIds,
        limits: &QuotaLimits,
    ) -> Result<(), SlotRefusal> {
        for _ in 0..2 {
            if self.try_take_slot(ids, limits).await? {
                return Ok(());
            }
        }
        Err(SlotRefusal::TooManyTurns {
            held: limits.max_turns_in_flight,
            limit: limits.max_turns_in_flight,
        })
    }

    /// One read and conditional write; `false` when the item changed between.
    async fn try_take_slot(
        &self,
        ids: &TurnIds,
        limits: &QuotaLimits,
    ) -> Result<bool, SlotRefusal> {
        let read = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(quota_key(&ids.owner)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| SlotRefusal::Unavailable(self.error("GetItem", &e)))?;
        let now_time = Utc::now();
        let now = now_time.timestamp();
        let slot = slot_key(ids);
        let seen = seen(read.item(), now, &slot);
        if seen.holds_this {
            return Ok(true);
        }
        let (today, reset_at) = today(now_time);
        refuse_over_limit(&seen, limits, ids, &today, reset_at)?;
        let mut update = Update::default();
        // The item no longer expires (earlier versions set a TTL on it).
        update.name("#expires", "expiresAt");
        update.remove.push("#expires".into());
        update.name("#convs", "conversations");
        update.name("#slots", "slots");
        update.value(":convId", AttributeValue::S(ids.conversation_id.clone()));
        update.value(":maxConvs", number(limits.max_conversations));
        update.value(
            ":conv",
            AttributeValue::Ss(vec![ids.conversation_id.clone()]),
        );
        update.terms.push(
            "attribute_not_exists(#convs) OR contains(#convs, :convId) OR size(#convs) < :maxConvs"
                .into(),
        );
        let until = now + limits.slot_seconds;
        if seen.has_slots {
            update.name("#turn", &slot);
            update.set.push("#slots.#turn = :until".into());
            update.value(":until", AttributeValue::N(until.to_string()));
            let room = limits.max_turns_in_flight + seen.expired.len() as u64;
            update.value(":room", number(room));
            update.terms.push("size(#slots) < :room".into());
            for (i, expired) in seen.expired.iter().enumerate() {
                let name = if *expired == slot {
                    "#turn".to_owned()
                } else {
                    format!("#e{i}")
                };
                update.name(&name, expired);
                update
                    .terms
                    .push(format!("attribute_exists(#slots.{name})"));
                if *expired != slot {
                    update.remove.push(format!("#slots.{name}"));
                }
            }
        } else {
            update.set.push("#slots = :slots".into());
            update.value(
                ":slots",
                AttributeValue::M(HashMap::from([(
                    slot.clone(),
                    AttributeValue::N(until.to_string()),
                )])),
            );
            update.terms.push("attribute_not_exists(#slots)".into());
        }
        update.name("#day", "quotaDay");
        match &seen.day {
            Some(day) if *day == today => {
                update.name("#used", "tokensUsed");
                update.value(":today", AttributeValue::S(today.clone()));
                update.value(":budget", number(limits.daily_tokens));
                update
                    .terms
                    .push("#day = :today AND #used < :budget".into());
            }
            seen_day => {
                update.name("#used", "tokensUsed");
                update.set.push("#day = :today".into());
                update.set.push("#used = :zero".into());
                update.value(":today", AttributeValue::S(today.clone()));
                update.value(":zero", number(0));
                match seen_day {
                    None => update.terms.push("attribute_not_exists(#day)".into()),
                    Some(day) => {
                        update.value(":seenDay", AttributeValue::S(day.clone()));
                        update.terms.push("#day = :seenDay".into());
                    }
                }
            }
        }
        self.write_slot(ids, update).await
    }

    async fn write_slot(&self, ids: &TurnIds, update: Update) -> Result<bool, SlotRefusal> {
        let expression = format!(
            "SET {} REMOVE {} ADD #convs :conv",
            update.set.join(", "),
            update.remove.join(", ")
        );
        let condition = update
            .terms
            .iter()
            .map(|t| format!("({t})"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let written = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(quota_key(&ids.owner)))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(update.names))
            .set_expression_attribute_values(Some(update.values))
            .send()
            .await;
        match written {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(SlotRefusal::Unavailable(self.error("UpdateItem", &e))),
        }
    }
}

/// The refusal for a limit `seen` has reached, in `sendPrompt`'s order.
fn refuse_over_limit(
    seen: &Seen,
    limits: &QuotaLimits,
    ids: &TurnIds,
    today: &str,
    reset_at: String,
) -> Result<(), SlotRefusal> {
    if seen.live >= limits.max_turns_in_flight {
        return Err(SlotRefusal::TooManyTurns {
            held: seen.live,
            limit: limits.max_turns_in_flight,
        });
    }
    let kept = seen.conversations.len() as u64;
    if !seen.conversations.contains(&ids.conversation_id) && kept >= limits.max_conversations {
        return Err(SlotRefusal::TooManyConversations {
            kept,
            limit: limits.max_conversations,
        });
    }
    let used_today = if seen.day.as_deref() == Some(today) {
        seen.used
    } else {
        0
    };
    if used_today >= limits.daily_tokens {
        return Err(SlotRefusal::QuotaExceeded {
            limit: limits.daily_tokens,
            reset_at,
        });
    }
    Ok(())
}

fn number(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

/// An update expression and its condition, being built.
#[derive(Default)]
struct Update {
    set: Vec<String>,
    remove: Vec<String>,
    terms: Vec<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Update {
    fn name(&mut self, placeholder: &str, name: &str) {
        self.names.insert(placeholder.to_owned(), name.to_owned());
    }

    fn value(&mut self, placeholder: &str, value: AttributeValue) {
        self.values.insert(placeholder.to_owned(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_limits_take_the_most_generous_of_the_callers_groups() {
        let env = |name: &str| match name {
            "QUOTA_GROUPS" => Some("pro:10:1000000, team:a:5:500000,bad:x:1".to_owned()),
            "QUOTA_MAX_TURNS_IN_FLIGHT" => Some("2".to_owned()),
            _ => None,
        };
        let none = QuotaLimits::for_groups(&[], env);
        assert_eq!((none.max_turns_in_flight, none.daily_tokens), (2, 200_000));
        let both = QuotaLimits::for_groups(&["pro".into(), "team:a".into()], env);
        assert_eq!(
            (both.max_turns_in_flight, both.daily_tokens),
            (10, 1_000_000)
        );
        let team = QuotaLimits::for_groups(&["team:a".into()], env);
        assert_eq!((team.max_turns_in_flight, team.daily_tokens), (5, 500_000));
    }

    #[test]
    fn the_day_resets_at_the_next_utc_midnight() {
        let t = DateTime::parse_from_rfc3339("2026-11-28T23:59:59Z")
            .expect("a time")
            .with_timezone(&Utc);
        assert_eq!(
            today(t),
            (
                "2026-11-28".to_owned(),
                "2026-11-29T00:00:00.000Z".to_owned()
            )
        );
    }
}
