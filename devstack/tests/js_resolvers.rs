//! The devstack runs the resolver files of `infra/`, not a copy of their logic:
//! client --sendPrompt--> AppSync **resolver (infra/resolvers/*.js)** --> Lambda;
//! resolver Lambda --publishChunk--> AppSync --onChunk **filter set by the JS**--> client.
//!
//! A copy of `infra/` with one resolver file changed, served by a stack whose
//! `infra_dir` points at it, must behave as the changed file says.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// A fresh copy of `infra/template.yaml` and `infra/resolvers/`.
fn copy_infra() -> PathBuf {
    let source = node::repo().join("infra");
    let target = std::env::temp_dir().join(format!("infra-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(target.join("resolvers")).expect("temp dir");
    std::fs::copy(source.join("template.yaml"), target.join("template.yaml")).expect("template");
    for entry in std::fs::read_dir(source.join("resolvers")).expect("resolvers dir") {
        let entry = entry.expect("entry");
        std::fs::copy(
            entry.path(),
            target.join("resolvers").join(entry.file_name()),
        )
        .expect("resolver file");
    }
    target
}

/// Replaces `anchor` (which must be there) in one resolver file of the copy.
fn edit(infra: &Path, file: &str, anchor: &str, replacement: &str) {
    let path = infra.join("resolvers").join(file);
    let code = std::fs::read_to_string(&path).expect("resolver file");
    assert!(
        code.contains(anchor),
        "{file} no longer contains {anchor:?}"
    );
    std::fs::write(&path, code.replacen(anchor, replacement, 1)).expect("written");
}

async fn send(stack: &devstack::Stack, token: &str, prompt: &str, turn: &str) -> serde_json::Value {
    send_prompt(stack, token, "conv-js", turn, prompt, Some(64)).await
}

#[tokio::test]
async fn a_changed_send_prompt_file_changes_what_is_refused() {
    let infra = copy_infra();
    edit(
        &infra,
        "Mutation.sendPrompt.js",
        "validatePrompt(input, allowedModels(ctx.env?.ALLOWED_MODEL_IDS));",
        "validatePrompt(input, allowedModels(ctx.env?.ALLOWED_MODEL_IDS));\n  \
         if ((input.prompt ?? '').includes('forbidden')) {\n    \
         util.error('No forbidden prompts here.', 'ValidationException');\n  }",
    );
    let changed = stack_with(resolver(), |c| c.infra_dir = Some(infra.clone())).await;
    let token = changed.token("alice");
    let body = send(&changed, &token, "a forbidden prompt", "t-forbidden").await;
    assert_eq!(
        body["errors"][0]["errorType"], "ValidationException",
        "{body}"
    );
    assert_eq!(
        body["errors"][0]["message"], "No forbidden prompts here.",
        "{body}"
    );
    assert!(body["data"]["sendPrompt"].is_null(), "{body}");
    // The unchanged checks of the file still hold.
    let body = send(&changed, &token, "   ", "t-blank").await;
    assert_eq!(
        body["errors"][0]["message"], "prompt must be 1 to 32000 characters and not blank.",
        "{body}"
    );
    changed.shutdown().await;

    // The compiled-in infra/ has no such rule.
    let stock = stack(resolver()).await;
    let token = stock.token("alice");
    let body = send(&stock, &token, "a forbidden prompt", "t-forbidden").await;
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(
        body["data"]["sendPrompt"]["turnId"], "t-forbidden",
        "{body}"
    );
    stock.shutdown().await;
    let _ = std::fs::remove_dir_all(&infra);
}

#[tokio::test]
async fn a_changed_on_chunk_filter_changes_what_is_delivered() {
    let infra = copy_infra();
    edit(
        &infra,
        "Subscription.onChunk.js",
        "owner: { eq: ctx.identity.sub },",
        "owner: { eq: ctx.identity.sub },\n      seq: { ge: 2 },",
    );
    let stack = stack_with(resolver(), |c| {
        c.infra_dir = Some(infra.clone());
        // One chunk per model delta, so that a turn has chunks 0, 1, 2, ...
        c.function_environment
            .push(("COALESCE_STRATEGY".into(), "per-delta".into()));
    })
    .await;
    let token = stack.token("alice");
    let client = connect(&stack, &token).await;
    let mut subscription = subscribe(&client, "conv-js").await;
    let body = send(&stack, &token, "hello there", "t-filter").await;
    assert!(body.get("errors").is_none(), "{body}");

    let mut seqs = Vec::new();
    let until = tokio::time::Instant::now() + TURN_TIMEOUT;
    loop {
        let chunk = next_chunk(&mut subscription, until).await;
        seqs.push(chunk.seq);
        if chunk.done {
            break;
        }
    }
    let (published, _) = stack.appsync.publish_stats.totals();
    assert!(published >= 3, "only {published} chunks were published");
    assert!(seqs.iter().all(|s| *s >= 2), "delivered {seqs:?}");
    assert!(!seqs.is_empty());
    // Nothing else arrives: chunks 0 and 1 were filtered, not late.
    let late = tokio::time::timeout(Duration::from_millis(300), subscription.next()).await;
    assert!(late.is_err(), "unexpected {late:?}");
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(&infra);
}

#[tokio::test]
async fn a_broken_infra_dir_stops_the_stack_from_starting() {
    let infra = copy_infra();
    std::fs::remove_file(infra.join("resolvers").join("Query.ping.js")).expect("removed");
    let mut config = devstack::StackConfig::new(resolver());
    config.bind = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.infra_dir = Some(infra.clone());
    let error = match devstack::Stack::start(config).await {
        Ok(_) => panic!("a stack started without Query.ping.js"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("Query.ping.js"), "{error}");
    let _ = std::fs::remove_dir_all(&infra);
}
