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
    registry: Mutex<Registry>,
}

/// The subscriptions, each tagged with its audience: subscriptions with the
/// same audience get the same messages, so a publish decides and completes
/// once per audience, not once per subscriber.
#[derive(Default)]
struct Registry {
    subscriptions: HashMap<(u64, String), Registered>,
    /// The audience the next subscription with a new one gets.
    next_audience: u64,
}

/// A subscription and its audience.
struct Registered {
    sub: Subscription,
    audience: u64,
}

impl PubSub {
    /// Adds a subscription, refusing a reused id or more than `max` on one connection.
    ///
    /// # Errors
    ///
    /// [`RegisterError::Duplicated`] for an id already active on the
    /// connection, [`RegisterError::MaxReached`] when it holds `max` already.
    pub fn register(&self, sub: Subscription, max: usize) -> Result<(), RegisterError> {
        let mut registry = self.lock();
        let key = (sub.connection, sub.id.clone());
        if registry.subscriptions.contains_key(&key) {
            return Err(RegisterError::Duplicated);
        }
        let on_connection = registry
            .subscriptions
            .keys()
            .filter(|(c, _)| *c == sub.connection)
            .count();
        if on_connection >= max {
            return Err(RegisterError::MaxReached);
        }
        let shared = registry
            .subscriptions
            .values()
            .find(|other| same_audience(&other.sub, &sub))
            .map(|other| other.audience);
        let audience = shared.unwrap_or_else(|| {
            registry.next_audience += 1;
            registry.next_audience
        });
        registry
            .subscriptions
            .insert(key, Registered { sub, audience });
        Ok(())
    }

    /// Removes one subscription; true if it existed.
    pub fn remove(&self, connection: u64, id: &str) -> bool {
        let key = (connection, id.to_owned());
        self.lock().subscriptions.remove(&key).is_some()
    }

    /// Removes every subscription of a closed connection.
    pub fn remove_connection(&self, connection: u64) {
        self.lock()
            .subscriptions
            .retain(|(c, _), _| *c != connection);
    }

    /// How many subscriptions are active (for tests and `up`'s status).
    pub fn len(&self) -> usize {
        self.lock().subscriptions.len()
    }

    /// How many active subscriptions listen for `mutation` (e.g. how many
    /// `onCancel` subscriptions wait for `cancelTurn`).
    pub fn listening_for(&self, mutation: &str) -> usize {
        self.connections_listening_for(mutation).len()
    }

    /// The connection of each active subscription that listens for
    /// `mutation`, in no particular order.
    pub fn connections_listening_for(&self, mutation: &str) -> Vec<u64> {
        self.lock()
            .subscriptions
            .values()
            .filter(|r| r.sub.mutations.iter().any(|m| m == mutation))
            .map(|r| r.sub.connection)
            .collect()
    }

    /// Whether no subscription is active.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Delivers a mutation's result (already cut to its selection set, keyed by
    /// field name) to every subscription it matches.
    ///
    /// Whether a subscription gets the result, and the payload it gets, are
    /// decided once per audience and shared by the subscriptions in it; only
    /// the `data` message (which names the subscription) is written per
    /// subscriber. With a thousand subscribers of one conversation, running
    /// the filters and searching the payloads completed so far for each
    /// subscriber held the registry's lock for much of a publish.
    pub fn publish(&self, appsync: &AppSync, mutation: &str, result: &Value) {
        let registry = self.lock();
        let mut payloads: HashMap<u64, Option<String>> = HashMap::new();
        for registered in registry.subscriptions.values() {
            let payload = payloads
                .entry(registered.audience)
                .or_insert_with(|| delivery(appsync, &registered.sub, mutation, result));
            let message = payload
                .as_deref()
                .and_then(|payload| data_message(&registered.sub.id, payload));
            if let Some(message) = message {
                let _ = registered.sub.sender.send(message);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether `a` and `b` are delivered the same messages for any result: the
/// same mutations, filters and view (selection set, type, and the caller's
/// auth mode and groups). Completion reads nothing else of the caller (its
/// field-level auth checks mode and groups only); if it ever reads more, it
/// must be compared here too, or one user could get another's view.
fn same_audience(a: &Subscription, b: &Subscription) -> bool {
    a.mutations == b.mutations
        && a.argument_filter == b.argument_filter
        && a.enhanced_filter == b.enhanced_filter
        && a.caller.mode == b.caller.mode
        && a.caller.groups == b.caller.groups
        && a.ty == b.ty
        && a.selected == b.selected
}

/// The payload `sub` (and its audience) gets for `mutation`'s `result`, or
/// `None` when the mutation is not one it listens for or a filter rejects it.
fn delivery(
    appsync: &AppSync,
    sub: &Subscription,
    mutation: &str,
    result: &Value,
) -> Option<String> {
    if !sub.mutations.iter().any(|m| m == mutation) {
        return None;
    }
    let passes = |f: &Option<Filter>| f.as_ref().is_none_or(|f| f.matches(result));
    if !passes(&sub.argument_filter) || !passes(&sub.enhanced_filter) {
        return None;
    }
    Some(payload_text(appsync, sub, result))
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
