//! Place in the data path: the `$connect` authorizer's entry point, in front
//! of every WebSocket connection: "token -> Cognito check -> IAM policy".
//! Deployed as the `bootstrap` of the API's authorizer function; see
//! [`bedrock_appsync_stream::websocket::authorizer::run`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    bedrock_appsync_stream::websocket::authorizer::run().await
}
