//! Place in the data path: the resolver Lambda's entry point, in front of
//! "handler -> model -> coalescer -> turn driver -> sink". Tracing, state
//! built once, then the Lambda runtime loop: see [`bedrock_appsync_stream::run`].
//! Custom runtime on Amazon Linux: <https://docs.aws.amazon.com/lambda/latest/dg/lambda-rust.html>

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    bedrock_appsync_stream::run().await
}
