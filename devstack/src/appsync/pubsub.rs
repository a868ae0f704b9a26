//! `@aws_subscribe` fan-out: which subscriptions a mutation result reaches, and
//! what each receives.
//!
//! Place in the data path: resolver Lambda --publishChunk--> AppSync ->
//! **fan-out** --onChunk--> subscriber.
//!
//! As the service behaves
//! (<https://docs.aws.amazon.com/appsync/latest/devguide/aws-appsync-real-time-data.html>):
//! a subscriber gets the mutation's result cut down to the mutation's own
//! selection set; subscription arguments filter on fields of that result (a
//! field the mutation did not select never matches); fields the subscriber asks
//! for that the mutation did not select arrive as null, with the non-null error
//! where the schema forbids null; a message over 240 KB is dropped silently.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::AppSync;
use super::auth::Caller;
use super::filter::Filter;
use super::operation::{GraphQlError, Selected};
use super::schema::TypeRef;

/// AppSync's subscription message limit, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 240 * 1024;

/// One active subscription on one WebSocket connection.
pub struct Subscription {
    /// The connection it was started on (a per-API counter).
    pub connection: u64,
    /// The id the client gave in `start`, unique on its connection.
    pub id: String,
    /// The subscription field's type, e.g. `Chunk`.
    pub ty: TypeRef,
    /// The subscription field as selected, arguments and sub-selection included.
    pub selected: Selected,
    /// The mutations its `@aws_subscribe` names.
    pub mutations: Vec<String>,
    /// The filter its arguments imply.
    pub argument_filter: Option<Filter>,
    /// The filter its resolver set.
    pub enhanced_filter: Option<Filter>,
    /// Who subscribed: each delivery is completed for (and authorized against) them.
    pub caller: Caller,
    /// Where its `data` messages go (the connection's writer).
    pub sender: mpsc::UnboundedSender<String>,
}

/// Why a subscription could not be registered.
#[derive(Debug, PartialEq)]
pub enum RegisterError {
    /// The connection already has a subscription with this id
    /// (`DuplicatedOperationError`).
    Duplicated,
    /// The connection holds the most subscriptions allowed
    /// (`MaxSubscriptionsReachedError`).
    MaxReached,
}

/// Every active subscription of the API.
#[derive(Default)]
pub struct PubSub {
    subscriptions: Mutex<HashMap<(u64, String), Subscription>>,
}

impl PubSub {
    /// Adds a subscription, refusing a reused id or more than `max` on one connection.
    ///
    /// # Errors
    ///
    /// [`RegisterError::Duplicated`] for an id already active on the
    /// connection, [`RegisterError::MaxReached`] when it holds `max` already.
    pub fn register(&self, sub: Subscription, max: usize) -> Result<(), RegisterError> {
        let mut subs = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        let key = (sub.connection, sub.id.clone());
        if subs.contains_key(&key) {
            return Err(RegisterError::Duplicated);
        }
        if subs.keys().filter(|(c, _)| *c == sub.connection).count() >= max {
            return Err(RegisterError::MaxReached);
        }
        subs.insert(key, sub);
        Ok(())
    }

    /// Removes one subscription; true if it existed.
    pub fn remove(&self, connection: u64, id: &str) -> bool {
        let mut subs = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        subs.remove(&(connection, id.to_owned())).is_some()
    }

    /// Removes every subscription of a closed connection.
    pub fn remove_connection(&self, connection: u64) {
        let mut subs = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|(c, _), _| *c != connection);
    }

    /// How many subscriptions are active (for tests and `up`'s status).
    pub fn len(&self) -> usize {
        self.subscriptions.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// How many active subscriptions listen for `mutation` (e.g. how many
    /// `onCancel` subscriptions wait for `cancelTurn`).
    pub fn listening_for(&self, mutation: &str) -> usize {
        self.connections_listening_for(mutation).len()
    }

    /// The connection of each active subscription that listens for
    /// `mutation`, in no particular order.
    pub fn connections_listening_for(&self, mutation: &str) -> Vec<u64> {
        self.subscriptions
            .lock()
            .map(|s| {
                s.values()
                    .filter(|sub| sub.mutations.iter().any(|m| m == mutation))
                    .map(|sub| sub.connection)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether no subscription is active.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Delivers a mutation's result (already cut to its selection set, keyed by
    /// field name) to every subscription it matches.
    ///
    /// The payload is completed once per distinct view (selection set, type,
    /// and the caller's auth mode and groups, all that completion depends on)
    /// and shared by the subscriptions with that view: with a thousand
    /// subscribers of one conversation, completing and serialising it for each
    /// was most of the time between the first and the last receiving a chunk.
    pub fn publish(&self, appsync: &AppSync, mutation: &str, result: &Value) {
        let subs = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        let mut views: Vec<(&Subscription, String)> = Vec::new();
        for sub in subs.values() {
            if !sub.mutations.iter().any(|m| m == mutation) {
                continue;
            }
            let passes = |f: &Option<Filter>| f.as_ref().is_none_or(|f| f.matches(result));
            if !passes(&sub.argument_filter) || !passes(&sub.enhanced_filter) {
                continue;
            }
            let payload = match views.iter().find(|(seen, _)| same_view(seen, sub)) {
                Some((_, payload)) => payload.clone(),
                None => {
                    let payload = payload_text(appsync, sub, result);
                    views.push((sub, payload.clone()));
                    payload
                }
            };
            if let Some(message) = data_message(&sub.id, &payload) {
                let _ = sub.sender.send(message);
            }
        }
    }
}

/// Whether `a` and `b` receive the same payload for any result.
fn same_view(a: &Subscription, b: &Subscription) -> bool {
    a.caller.mode == b.caller.mode
        && a.caller.groups == b.caller.groups
        && a.ty == b.ty
        && a.selected == b.selected
}

/// The `payload` of a `data` message for `sub`'s view of `result`, as JSON text.
fn payload_text(appsync: &AppSync, sub: &Subscription, result: &Value) -> String {
    let mut completer = appsync.completer(&sub.caller, true);
    let path = vec![json!(sub.selected.key)];
    let root = appsync.schema.subscription.clone().unwrap_or_default();
    let value = completer
        .complete(result, &sub.ty, &sub.selected, &root, &path)
        .unwrap_or(Value::Null);
    let mut data = Map::new();
    data.insert(sub.selected.key.clone(), value);
    let mut payload = json!({"data": data});
    if !completer.errors.is_empty() {
        let errors = completer.errors.iter().map(GraphQlError::to_json).collect();
        payload["errors"] = Value::Array(errors);
    }
    payload.to_string()
}

/// The `data` message of subscription `id` carrying `payload` (JSON text),
/// or None when it is over the size limit. The keys are in the order
/// serde_json writes an object's: `id`, `payload`, `type`.
fn data_message(id: &str, payload: &str) -> Option<String> {
    let message = format!(
        r#"{{"id":{},"payload":{payload},"type":"data"}}"#,
        Value::String(id.to_owned())
    );
    if message.len() > MAX_MESSAGE_BYTES {
        tracing::debug!(subscription = %id, bytes = message.len(), "dropped: over the 240 KB message limit");
        return None;
    }
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_message_is_the_json_object_it_always_was() {
        let payload = json!({"data": {"onChunk": {"seq": 1, "text": "h\u{e9} \"q\"\n"}}});
        for id in ["sub-1", "quote\"and\\slash", "\u{1f980}"] {
            let built = data_message(id, &payload.to_string()).expect("small");
            let expected = json!({"id": id, "type": "data", "payload": payload}).to_string();
            assert_eq!(built, expected);
        }
    }

    #[test]
    fn a_message_over_the_limit_is_dropped() {
        let payload = Value::String("x".repeat(MAX_MESSAGE_BYTES)).to_string();
        assert_eq!(data_message("s", &payload), None);
    }
}
