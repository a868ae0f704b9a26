#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    bedrock_appsync_stream::run().await
}
