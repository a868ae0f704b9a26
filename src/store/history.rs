//! Place in the data path: handler -> **history** -> model. A conversation's
//! earlier turns, as Converse `messages` before the new prompt.
//!
//! Bedrock's Converse API takes the conversation as `messages`, starting with
//! a `user` message and alternating `user` / `assistant`
//! (<https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Message.html>,
//! <https://docs.aws.amazon.com/bedrock/latest/userguide/conversation-inference-call.html>).
//! History is therefore kept in whole turns, a prompt and its answer:
//! - a turn whose answer has text (finished, cancelled, cut by its deadline or
//!   failed part-way) is sent as the prompt and the text the user saw;
//! - a turn without answer text (failed before any text, still running, or
//!   lost) is left out, prompt and all, because an unanswered prompt would
//!   put two `user` messages in a row;
//! - the newest turns are kept within a [`HistoryBudget`]; the oldest go first.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::items::Item;

/// How much of a conversation is sent to the model with a new prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryBudget {
    /// Most earlier messages (prompts and answers), 0 for none. Kept even: a
    /// budget of 5 sends 2 whole turns.
    pub max_messages: usize,
    /// Most characters of earlier messages, all together.
    pub max_chars: usize,
}

/// Who said a message, in Converse's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The person.
    User,
    /// The model.
    Assistant,
}

/// One earlier message, for Converse's `messages`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HistoryMessage {
    /// `user` or `assistant`.
    pub role: Role,
    /// The message's text, never blank.
    pub text: String,
}

/// One stored message, as read from the table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    turn_id: String,
    role: Role,
    text: String,
}

impl Stored {
    fn from_item(item: &Item) -> Option<Self> {
        let get = |name: &str| item.get(name).and_then(|v: &AttributeValue| v.as_s().ok());
        let role = match get("role")?.as_str() {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            _ => return None,
        };
        Some(Self {
            turn_id: get("turnId")?.clone(),
            role,
            text: get("text")?.clone(),
        })
    }
}

/// The history to send before the prompt of turn `current_turn`, from the
/// conversation's message items in ascending key order (older turns first).
/// Messages of `current_turn` itself are never included.
pub(crate) fn fit_history(
    items: &[Item],
    current_turn: &str,
    budget: HistoryBudget,
) -> Vec<HistoryMessage> {
    let mut order: Vec<String> = Vec::new();
    let mut turns: HashMap<String, (Option<String>, Option<String>)> = HashMap::new();
    for stored in items.iter().filter_map(Stored::from_item) {
        if stored.turn_id == current_turn {
            continue;
        }
        let entry = turns.entry(stored.turn_id.clone()).or_insert_with(|| {
            order.push(stored.turn_id.clone());
            (None, None)
        });
        match stored.role {
            Role::User => entry.0 = Some(stored.text),
            Role::Assistant => entry.1 = Some(stored.text),
        }
    }
    let whole: Vec<(String, String)> = order
        .iter()
        .filter_map(|turn| match turns.remove(turn) {
            Some((Some(prompt), Some(answer)))
                if !prompt.trim().is_empty() && !answer.trim().is_empty() =>
            {
                Some((prompt, answer))
            }
            _ => None,
        })
        .collect();

    let mut kept = Vec::new();
    let mut chars = 0;
    for (prompt, answer) in whole.into_iter().rev() {
        let size = prompt.chars().count() + answer.chars().count();
        if (kept.len() + 1) * 2 > budget.max_messages || chars + size > budget.max_chars {
            break;
        }
        chars += size;
        kept.push((prompt, answer));
    }
    kept.into_iter()
        .rev()
        .flat_map(|(prompt, answer)| {
            [
                HistoryMessage {
                    role: Role::User,
                    text: prompt,
                },
                HistoryMessage {
                    role: Role::Assistant,
                    text: answer,
                },
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(turn: &str, role: &str, text: &str) -> Item {
        HashMap::from([
            ("turnId".to_owned(), AttributeValue::S(turn.into())),
            ("role".to_owned(), AttributeValue::S(role.into())),
            ("text".to_owned(), AttributeValue::S(text.into())),
        ])
    }

    const ROOMY: HistoryBudget = HistoryBudget {
        max_messages: 100,
        max_chars: 100_000,
    };

    fn texts(history: &[HistoryMessage]) -> Vec<&str> {
        history.iter().map(|m| m.text.as_str()).collect()
    }

    #[test]
    fn whole_turns_in_order_with_roles_alternating() {
        let items = [
            message("a", "user", "q1"),
            message("a", "assistant", "a1"),
            message("b", "user", "q2"),
            message("b", "assistant", "a2"),
        ];
        let history = fit_history(&items, "now", ROOMY);
        assert_eq!(texts(&history), ["q1", "a1", "q2", "a2"]);
        for (i, m) in history.iter().enumerate() {
            let expected = if i % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            };
            assert_eq!(m.role, expected);
        }
    }

    #[test]
    fn an_unanswered_turn_and_the_current_one_are_left_out() {
        let items = [
            message("failed", "user", "q0"),
            message("failed", "assistant", ""),
            message("lost", "user", "q1"),
            message("a", "user", "q2"),
            message("a", "assistant", "partial, then cancelled"),
            message("now", "user", "this prompt"),
        ];
        let history = fit_history(&items, "now", ROOMY);
        assert_eq!(texts(&history), ["q2", "partial, then cancelled"]);
    }

    #[test]
    fn the_oldest_turns_go_first() {
        let items: Vec<Item> = (0..5)
            .flat_map(|i| {
                let turn = format!("t{i}");
                [
                    message(&turn, "user", &format!("q{i}")),
                    message(&turn, "assistant", &format!("a{i}")),
                ]
            })
            .collect();
        let by_messages = HistoryBudget {
            max_messages: 5,
            max_chars: 1000,
        };
        assert_eq!(
            texts(&fit_history(&items, "x", by_messages)),
            ["q3", "a3", "q4", "a4"]
        );
        let by_chars = HistoryBudget {
            max_messages: 100,
            max_chars: 7,
        };
        assert_eq!(texts(&fit_history(&items, "x", by_chars)), ["q4", "a4"]);
        let none = HistoryBudget {
            max_messages: 0,
            max_chars: 1000,
        };
        assert!(fit_history(&items, "x", none).is_empty());
    }

    #[test]
    fn unreadable_items_are_skipped() {
        let mut odd = message("a", "system", "x");
        odd.insert("role".into(), AttributeValue::N("1".into()));
        let items = [
            odd,
            message("b", "user", "q"),
            message("b", "assistant", "a"),
        ];
        assert_eq!(texts(&fit_history(&items, "x", ROOMY)), ["q", "a"]);
    }
}
