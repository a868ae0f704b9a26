//! Place in the data path: AppSync --onChunk--> **subscriber**: the real-time
//! link of one conversation. The WebSocket, authorized with the user's ID
//! token, and the `onChunk` subscription on it, opened once and opened again
//! when the connection is lost (the real-time client does not reconnect by
//! itself: its subscription just ends). What was published while the link was
//! down is fetched by the turn afterwards (`turnChunks`).

use std::time::Duration;

use appsync_client::{
    HeaderTransport, ON_CHUNK, RealtimeAuth, RealtimeClient, RealtimeError, Subscription,
};
use serde_json::{Value, json};

use crate::describe_errors;

/// The wait before each attempt to open a lost link again; after the last
/// failed attempt the client gives up.
const RECONNECT_DELAYS: [Duration; 6] = [
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// How long one attempt (connect, then subscribe) may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection and the conversation's `onChunk` subscription on it.
pub(crate) struct Link {
    realtime_url: String,
    graphql_url: String,
    /// The user's ID token, for the connection and the `start`.
    token: String,
    conversation_id: String,
    /// Kept to notice when the connection has closed.
    client: RealtimeClient,
    subscription: Subscription,
}

/// Why opening the link failed, and at which step.
enum Failure {
    /// The WebSocket could not be opened or was refused.
    Connect(RealtimeError),
    /// The `onChunk` subscription was refused or the connection closed first.
    Subscribe(RealtimeError),
    /// No answer within [`ATTEMPT_TIMEOUT`].
    TimedOut,
}

impl Link {
    /// Connects and subscribes to the conversation's chunks; returns after
    /// `start_ack`, so a prompt sent from now on is never missed.
    ///
    /// # Errors
    /// A one-line, actionable message when the endpoint cannot be reached or
    /// AppSync refuses the connection or the subscription.
    pub(crate) async fn open(
        realtime_url: String,
        graphql_url: String,
        token: String,
        conversation_id: String,
    ) -> anyhow::Result<Self> {
        let (client, subscription) =
            open_once(&realtime_url, &graphql_url, &token, &conversation_id)
                .await
                .map_err(|failure| explain(failure, &realtime_url))?;
        Ok(Self {
            realtime_url,
            graphql_url,
            token,
            conversation_id,
            client,
            subscription,
        })
    }

    /// The subscription's next message; `None` once the connection closed.
    pub(crate) async fn next(&mut self) -> Option<Result<Value, RealtimeError>> {
        self.subscription.next().await
    }

    /// True once the connection has ended (closed by either side, or no
    /// keep-alive within the connection timeout).
    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Opens the connection and the subscription again, waiting a little
    /// longer before each attempt ([`RECONNECT_DELAYS`]). A refusal (e.g. an
    /// expired token) is not retried.
    ///
    /// # Errors
    /// The refusal, or the last attempt's failure once every attempt failed.
    pub(crate) async fn reconnect(&mut self) -> anyhow::Result<()> {
        let mut last = None;
        for delay in RECONNECT_DELAYS {
            tokio::time::sleep(delay).await;
            let attempt = open_once(
                &self.realtime_url,
                &self.graphql_url,
                &self.token,
                &self.conversation_id,
            );
            let failure = match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
                Ok(Ok((client, subscription))) => {
                    // The old ones are dropped here; their connection is gone.
                    self.client = client;
                    self.subscription = subscription;
                    return Ok(());
                }
                Ok(Err(failure)) => failure,
                Err(_) => Failure::TimedOut,
            };
            if !failure.is_transient() {
                return Err(explain(failure, &self.realtime_url));
            }
            last = Some(failure);
        }
        let reason = match last {
            Some(failure) => explain(failure, &self.realtime_url).to_string(),
            None => "no attempt was made".to_owned(),
        };
        Err(anyhow::anyhow!(
            "the connection to AppSync was lost and could not be opened again ({} attempts): {reason}",
            RECONNECT_DELAYS.len()
        ))
    }
}

impl Failure {
    /// True when trying again may work: the network, not a refusal.
    fn is_transient(&self) -> bool {
        match self {
            Failure::Connect(error) | Failure::Subscribe(error) => matches!(
                error,
                RealtimeError::Connect(_) | RealtimeError::Closed | RealtimeError::KeepAliveTimeout
            ),
            Failure::TimedOut => true,
        }
    }
}

/// Connects with the user's ID token, then subscribes to `onChunk` for the
/// conversation (returning after `start_ack`).
async fn open_once(
    realtime_url: &str,
    graphql_url: &str,
    token: &str,
    conversation_id: &str,
) -> Result<(RealtimeClient, Subscription), Failure> {
    let client = RealtimeClient::connect(
        realtime_url,
        graphql_url,
        RealtimeAuth::Token(token.to_owned()),
        HeaderTransport::Subprotocol,
    )
    .await
    .map_err(Failure::Connect)?;
    let subscription = client
        .subscribe(ON_CHUNK, json!({ "conversationId": conversation_id }))
        .await
        .map_err(Failure::Subscribe)?;
    Ok((client, subscription))
}

/// A one-line, actionable message for a link that could not be opened.
fn explain(failure: Failure, realtime_url: &str) -> anyhow::Error {
    match failure {
        Failure::Connect(RealtimeError::ConnectionRefused(errors)) => {
            let hint = if error_type_of(&errors).contains("Unauthorized") {
                " (is --token a current Cognito ID token of this API's user pool?)"
            } else {
                ""
            };
            anyhow::anyhow!(
                "AppSync refused the connection: {}{hint}",
                describe_errors(&errors)
            )
        }
        Failure::Connect(RealtimeError::Connect(reason)) => {
            anyhow::anyhow!("could not reach the real-time endpoint {realtime_url}: {reason}")
        }
        Failure::Connect(other) => anyhow::anyhow!("could not connect to {realtime_url}: {other}"),
        Failure::Subscribe(RealtimeError::Subscription(errors)) => anyhow::anyhow!(
            "AppSync refused the onChunk subscription: {}",
            describe_errors(&errors)
        ),
        Failure::Subscribe(other) => anyhow::anyhow!("could not subscribe: {other}"),
        Failure::TimedOut => anyhow::anyhow!(
            "no answer from the real-time endpoint {realtime_url} within {} s",
            ATTEMPT_TIMEOUT.as_secs()
        ),
    }
}

/// The `errorType` of the first error in AppSync's `errors` array.
fn error_type_of(errors: &Value) -> &str {
    errors
        .pointer("/0/errorType")
        .and_then(Value::as_str)
        .unwrap_or_default()
}
