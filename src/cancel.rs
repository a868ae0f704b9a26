//! Place in the data path: the way back, AppSync -> **cancel listener** -> turn,
//! which stops "model -> coalescer -> turn driver -> sink".
//!
//! A user stops a turn with the Cognito mutation `cancelTurn(conversationId,
//! turnId)`; AppSync builds its result `{conversationId, turnId, owner}` with
//! `owner` = the caller's `sub`, and broadcasts it to `onCancel(turnId, owner)`
//! subscribers (IAM only). The resolver holds one IAM-signed real-time
//! connection per execution environment (opened on the first turn, kept across
//! invocations, reopened once it has closed) and, per turn, subscribes with the
//! turn's id and owner, so only the owner's cancellation matches.
//!
//! Lambda freezes the environment between invocations, and may purge its idle
//! connections while it is frozen
//! (<https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html>).
//! A kept connection unused for longer than AppSync's `connectionTimeoutMs`
//! can no longer be told from a dead one (its keep-alives were not read while
//! frozen), so it is replaced rather than trusted: the subscription then
//! costs one connection handshake, which runs beside the model call.
//! Real-time protocol and IAM auth:
//! <https://docs.aws.amazon.com/appsync/latest/devguide/real-time-websocket-client.html>.
//!
//! Cancellation is best effort: if the subscription cannot be set up the turn
//! runs without it (a warning is logged), and a cancellation sent before the
//! subscription is acknowledged is not seen.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use thiserror::Error;
use tracing::{debug, warn};

use appsync_client::{
    CredentialsCache, CredentialsError, HeaderTransport, ON_CANCEL, RealtimeAuth, RealtimeClient,
    RealtimeError, Subscription,
};

use crate::event::TurnIds;

/// Longest wait for connecting and subscribing before a turn gives up on
/// cancellation.
pub(crate) const SETUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait for AppSync's `complete` after `stop` at the end of a turn.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a turn runs without cancellation.
#[derive(Debug, Error)]
pub(crate) enum CancelError {
    /// No credentials to sign the connection or the `start` with.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// Connecting or subscribing failed.
    #[error("the onCancel subscription failed: {0}")]
    Realtime(#[from] RealtimeError),
    /// Connecting and subscribing took longer than [`SETUP_TIMEOUT`].
    #[error("the onCancel subscription was not acknowledged within {0:?}")]
    Timeout(Duration),
}

/// The source of cancellations for every turn of the process: one real-time
/// connection, opened lazily. Build it once per process.
pub(crate) struct CancelListener {
    realtime_url: String,
    graphql_url: String,
    region: String,
    credentials: Arc<CredentialsCache>,
    connection: tokio::sync::Mutex<Option<Kept>>,
}

/// The kept connection and when a turn last used it.
struct Kept {
    client: RealtimeClient,
    last_used: Instant,
}

impl Kept {
    /// Open, and used within its keep-alive window (see the module doc).
    fn is_trusted(&self) -> bool {
        !self.client.is_closed() && self.last_used.elapsed() < self.client.connection_timeout
    }
}

impl fmt::Debug for CancelListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelListener")
            .field("realtime_url", &self.realtime_url)
            .field("graphql_url", &self.graphql_url)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl CancelListener {
    /// A listener for the API whose real-time endpoint is `realtime_url` and
    /// GraphQL endpoint `graphql_url` (whose host every IAM header object
    /// names), signing for `region` with `credentials`. Connects on first use.
    pub(crate) fn new(
        realtime_url: impl Into<String>,
        graphql_url: impl Into<String>,
        region: impl Into<String>,
        credentials: Arc<CredentialsCache>,
    ) -> Self {
        Self {
            realtime_url: realtime_url.into(),
            graphql_url: graphql_url.into(),
            region: region.into(),
            credentials,
            connection: tokio::sync::Mutex::new(None),
        }
    }

    /// Subscribes to `onCancel` for `ids` (turn id and owner), connecting
    /// first if there is no open connection. A connection found closed, or
    /// one AppSync refuses more subscriptions on, is replaced once.
    ///
    /// # Errors
    /// [`CancelError::Credentials`] or [`CancelError::Realtime`].
    pub(crate) async fn subscribe(&self, ids: &TurnIds) -> Result<Subscription, CancelError> {
        let credentials = self.credentials.get().await?;
        let auth = RealtimeAuth::Iam {
            credentials,
            region: self.region.clone(),
        };
        let variables = json!({"turnId": ids.turn_id, "owner": ids.owner});
        let mut connection = self.connection.lock().await;
        let mut attempt = 1;
        loop {
            let client = match connection.take() {
                Some(kept) if kept.is_trusted() => kept.client,
                stale => {
                    if stale.is_some() {
                        debug!("the kept connection outlived its keep-alive window; replacing it");
                    }
                    debug!("opening the real-time connection for cancellations");
                    RealtimeClient::connect(
                        &self.realtime_url,
                        &self.graphql_url,
                        auth.clone(),
                        HeaderTransport::Subprotocol,
                    )
                    .await?
                }
            };
            let result = client
                .subscribe_with(ON_CANCEL, variables.clone(), &auth)
                .await;
            let replace = match &result {
                Err(RealtimeError::Closed) => true,
                Err(e) => matches!(
                    e.error_type(),
                    Some("MaxSubscriptionsReachedError" | "LimitExceededError")
                ),
                Ok(_) => false,
            };
            if !replace && !client.is_closed() {
                *connection = Some(Kept {
                    client,
                    last_used: Instant::now(),
                });
            }
            match result {
                Err(e) if replace && attempt == 1 => {
                    debug!(error = %e, "replacing the real-time connection");
                    attempt += 1;
                }
                other => return other.map_err(CancelError::from),
            }
        }
    }

    /// The kept connection was just used (a turn ended on it).
    async fn touch(&self) {
        if let Some(kept) = self.connection.lock().await.as_mut() {
            kept.last_used = Instant::now();
        }
    }

    /// The cancel watch of one turn; see [`CancelWatch`].
    pub(crate) fn watch<'a>(&'a self, ids: &'a TurnIds) -> CancelWatch<'a> {
        CancelWatch {
            listener: self,
            ids,
            subscription: None,
        }
    }
}

/// One turn's cancel signal: [`CancelWatch::cancelled`] subscribes (when first
/// polled) and resolves when the turn's owner cancels it;
/// [`CancelWatch::stop`] unsubscribes at the end of the turn.
pub(crate) struct CancelWatch<'a> {
    listener: &'a CancelListener,
    ids: &'a TurnIds,
    subscription: Option<Subscription>,
}

impl CancelWatch<'_> {
    /// Resolves when a matching `onCancel` arrives. Never resolves when the
    /// subscription cannot be set up within [`SETUP_TIMEOUT`], fails, or
    /// ends (each logged as a warning): the turn then runs to its end.
    pub(crate) async fn cancelled(&mut self) {
        let listener = self.listener;
        if self.subscription.is_none() {
            match tokio::time::timeout(SETUP_TIMEOUT, listener.subscribe(self.ids)).await {
                Ok(Ok(s)) => {
                    debug!("listening for cancellation");
                    self.subscription = Some(s);
                }
                Ok(Err(error)) => {
                    warn!(%error, "cannot listen for cancellation; the turn runs without it");
                    return std::future::pending().await;
                }
                Err(_) => {
                    warn!(error = %CancelError::Timeout(SETUP_TIMEOUT), "cannot listen for cancellation; the turn runs without it");
                    return std::future::pending().await;
                }
            }
        }
        let Some(subscription) = self.subscription.as_mut() else {
            return std::future::pending().await;
        };
        loop {
            match subscription.next().await {
                Some(Ok(payload)) => {
                    if is_cancellation_of(&payload, self.ids) {
                        return;
                    }
                    debug!("ignoring an onCancel message for another turn");
                }
                Some(Err(error)) => {
                    warn!(%error, "the cancel subscription failed; the turn runs without it");
                    return std::future::pending().await;
                }
                None => {
                    warn!("the cancel subscription ended; the turn runs without it");
                    return std::future::pending().await;
                }
            }
        }
    }

    /// Unsubscribes (waiting up to [`STOP_TIMEOUT`] for AppSync's
    /// `complete`). Call at the end of every turn.
    pub(crate) async fn stop(mut self) {
        if let Some(subscription) = self.subscription.take() {
            if let Err(error) = subscription.unsubscribe(STOP_TIMEOUT).await {
                debug!(%error, "the cancel subscription did not confirm its stop");
            }
            self.listener.touch().await;
        }
    }
}

/// True when a `data` payload `{"data":{"onCancel":{conversationId, turnId,
/// owner}}}` cancels the turn `ids`: turn and owner must match, and the
/// conversation too when given.
pub(crate) fn is_cancellation_of(payload: &Value, ids: &TurnIds) -> bool {
    let Some(c) = payload.pointer("/data/onCancel") else {
        return false;
    };
    let field = |name: &str| c.get(name).and_then(Value::as_str);
    field("turnId") == Some(ids.turn_id.as_str())
        && field("owner") == Some(ids.owner.as_str())
        && field("conversationId").is_none_or(|c| c == ids.conversation_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> TurnIds {
        TurnIds::fixture()
    }

    #[test]
    fn only_the_owners_cancellation_of_this_turn_matches() {
        let msg = |c: &str, t: &str, o: &str| json!({"data": {"onCancel": {"conversationId": c, "turnId": t, "owner": o}}});
        assert!(is_cancellation_of(&msg("c1", "t1", "o1"), &ids()));
        assert!(!is_cancellation_of(&msg("c1", "t1", "mallory"), &ids()));
        assert!(!is_cancellation_of(&msg("c1", "t2", "o1"), &ids()));
        assert!(!is_cancellation_of(&msg("c2", "t1", "o1"), &ids()));
        assert!(!is_cancellation_of(
            &json!({"data": {"onCancel": null}}),
            &ids()
        ));
        assert!(!is_cancellation_of(&json!({}), &ids()));
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_means_no_cancellation_not_a_failure() {
        // Port 9 (discard) on loopback: nothing listens, the connect fails fast.
        let credentials = Arc::new(CredentialsCache::new(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new("AKID", "SECRET", None, None, "test"),
            ),
        ));
        let listener = CancelListener::new(
            "ws://127.0.0.1:9/graphql/realtime",
            "http://127.0.0.1:9/graphql",
            "us-east-1",
            credentials,
        );
        let ids = ids();
        assert!(matches!(
            listener.subscribe(&ids).await,
            Err(CancelError::Realtime(RealtimeError::Connect(_)))
        ));
        let mut watch = listener.watch(&ids);
        let fired = tokio::time::timeout(Duration::from_millis(200), watch.cancelled()).await;
        assert!(fired.is_err(), "never fires");
        watch.stop().await;
    }
}
