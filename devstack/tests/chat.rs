//! `devstack chat` as a user runs it: the binary starts a stack in-process,
//! streams the answer to stdout and prints one stats line on stderr.

use std::process::Command;

/// Runs `devstack chat` over `transport` and checks its answer and stats.
fn chat_over(transport: &str) {
    let cache = std::env::temp_dir().join(format!(
        "devstack-chat-test-{transport}-{}",
        std::process::id()
    ));
    let output = Command::new(env!("CARGO_BIN_EXE_devstack"))
        .args([
            "chat",
            "--transport",
            transport,
            "--model",
            "scripted",
            "--scripted-rate",
            "0",
            "--max-tokens",
            "12",
            "What is AWS Lambda?",
        ])
        .env("DEVSTACK_CACHE_DIR", &cache)
        .output()
        .expect("devstack runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    let (expected, _) = devstack::bedrock::scripted_answer("What is AWS Lambda?", Some(12));
    assert_eq!(stdout.trim_end(), expected.trim_end());
    assert!(
        stderr.contains("time to first chunk") && stderr.contains("12 output tokens"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(cache);
}

#[test]
fn chat_prints_the_streamed_answer_and_a_stats_line() {
    chat_over("appsync");
}

#[test]
fn chat_over_the_function_url_prints_the_same_answer() {
    chat_over("function-url");
}

#[test]
fn chat_over_the_websocket_api_prints_the_same_answer() {
    chat_over("websocket");
}

#[tokio::test]
async fn token_prints_a_token_the_running_stack_accepts() {
    let cache = std::env::temp_dir().join(format!("devstack-token-test-{}", std::process::id()));
    let key =
        devstack::cognito::load_or_create_key(&cache.join("cognito-pool-key.pem")).expect("key");
    let function = devstack::lambda::FunctionCommand {
        program: env!("CARGO_BIN_EXE_devstack").into(),
        args: vec!["worker".into()],
    };
    let mut config = devstack::StackConfig::new(function);
    config.bind = ([127, 0, 0, 1], 0).into();
    config.concurrency = 0;
    config.cognito_key = Some(key);
    let stack = devstack::Stack::start(config).await.expect("stack");
    let output = Command::new(env!("CARGO_BIN_EXE_devstack"))
        .args([
            "token",
            "--user",
            "bob",
            "--endpoint",
            &format!("http://{}", stack.addr),
        ])
        .env("DEVSTACK_CACHE_DIR", &cache)
        .output()
        .expect("devstack runs");
    assert!(output.status.success());
    let token = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let response = reqwest::Client::new()
        .post(stack.graphql_url())
        .header("authorization", &token)
        .body(r#"{"query":"{ ping }"}"#)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["data"]["ping"], "ok");
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(cache);
}

/// The `N input tokens` of a stats line.
fn input_tokens(stderr: &str) -> u64 {
    stderr
        .split(" · ")
        .find_map(|part| part.strip_suffix(" input tokens"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no input tokens in {stderr}"))
}

#[test]
fn chat_continues_a_conversation_and_the_model_gets_its_history() {
    let cache = std::env::temp_dir().join(format!("devstack-chat-history-{}", std::process::id()));
    let conversation = format!("chat-test-{}", std::process::id());
    let run = |prompt: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_devstack"))
            .args(["chat", "--model", "scripted", "--scripted-rate", "0"])
            .args([
                "--max-tokens",
                "12",
                "--conversation",
                &conversation,
                prompt,
            ])
            .env("DEVSTACK_CACHE_DIR", &cache)
            .output()
            .expect("devstack runs");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "stderr: {stderr}");
        assert!(
            stderr.contains(&format!("--conversation {conversation}")),
            "{stderr}"
        );
        (String::from_utf8_lossy(&output.stdout).into_owned(), stderr)
    };
    let (first_answer, first) = run("What is AWS Lambda?");
    assert_eq!(input_tokens(&first), 4, "the prompt alone: {first}");
    let (_, second) = run("And AppSync?");
    // The scripted model counts a word as a token: the first prompt, the
    // first answer and the new prompt.
    let words = |s: &str| s.split_whitespace().count() as u64;
    assert_eq!(
        input_tokens(&second),
        4 + words(&first_answer) + 2,
        "the second call carried the first turn: {second}"
    );
    let _ = std::fs::remove_dir_all(cache);
}
