//! Place in the data path: the WebSocket function's entry point, behind an
//! API Gateway WebSocket API's routes: "message -> relay -> chunks posted to
//! `@connections`". Deployed as the `bootstrap` of the API's route
//! function; see [`bedrock_appsync_stream::websocket::run`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    bedrock_appsync_stream::websocket::run().await
}
