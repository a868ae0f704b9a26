//! Place in the data path: the function URL function's entry point, in
//! front of "request -> Cognito check -> relay -> SSE stream". Deployed as
//! the `bootstrap` of the function behind the Lambda function URL; see
//! [`bedrock_appsync_stream::function_url::run`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    bedrock_appsync_stream::function_url::run().await
}
