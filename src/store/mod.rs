//! Place in the data path: handler -> **store** -> model. The conversations
//! table in DynamoDB, as far as the resolver uses it today: the claim that
//! makes a turn run once in whatever execution environment its event lands.
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
//! Keys begin with the owner's Cognito `sub`: `pk = "{sub}#{conversationId}"`
//! (a conversation id has no `#`, so the last `#` splits it unambiguously),
//! `sk = "TURN#{turnId}"`. Claims expire through TTL (`expiresAt`, epoch
//! seconds) after [`CLAIM_TTL`], far beyond Lambda's six-hour event age.
//!
//! The store is never allowed to stop a turn: calls time out after
//! [`OPERATION_TIMEOUT`], and a failure is reported to the caller, which
//! streams anyway.

use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::AttributeValue;
use thiserror::Error;

use crate::event::TurnIds;

/// How long a turn's claim is kept.
pub(crate) const CLAIM_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Longest a store call may take, retries included, before the turn goes on
/// without it.
pub(crate) const OPERATION_TIMEOUT: Duration = Duration::from_secs(2);

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// This delivery is the turn's first: stream it.
    First,
    /// The turn was claimed before, here or in another execution
    /// environment: stream nothing.
    Repeated,
}

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

    /// Claims turn `ids` for its owner at `now`.
    ///
    /// # Errors
    /// [`StoreError`] when DynamoDB cannot be reached or refuses the write
    /// for any reason but the claim's condition.
    pub(crate) async fn claim(&self, ids: &TurnIds, now: SystemTime) -> Result<Claim, StoreError> {
        let (pk, sk) = turn_key(ids);
        let now_secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(pk))
            .item("sk", AttributeValue::S(sk))
            .item("claimedAt", AttributeValue::N(now_secs.to_string()))
            .item(
                "expiresAt",
                AttributeValue::N((now_secs + CLAIM_TTL.as_secs()).to_string()),
            )
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match written {
            Ok(_) => Ok(Claim::First),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(Claim::Repeated),
            Err(e) => Err(StoreError {
                operation: "PutItem",
                table: self.table.clone(),
                detail: DisplayErrorContext(&e).to_string(),
            }),
        }
    }
}

/// The claim's key: `("{owner}#{conversationId}", "TURN#{turnId}")`.
pub(crate) fn turn_key(ids: &TurnIds) -> (String, String) {
    (
        format!("{}#{}", ids.owner, ids.conversation_id),
        format!("TURN#{}", ids.turn_id),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_begin_with_the_owner() {
        let (pk, sk) = turn_key(&TurnIds::fixture());
        assert_eq!(pk, "o1#c1");
        assert_eq!(sk, "TURN#t1");
    }

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
            .claim(&TurnIds::fixture(), SystemTime::now())
            .await
            .expect_err("no store");
        assert!(error.to_string().contains("PutItem"), "{error}");
        assert!(started.elapsed() < OPERATION_TIMEOUT + Duration::from_secs(1));
    }
}
