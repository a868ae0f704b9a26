//! The web example (`client-examples/web`) in a real browser: headless
//! Chromium, driven by Playwright (`tests/web/browser.mjs`), opens the page the
//! devstack serves over HTTPS and uses it as a person would. Place in the data
//! path: AppSync -> **subscriber** (the page, through Amplify JS v6).
//!
//! - `browser_streams_an_answer_progressively`: the answer grows on screen in
//!   several steps, ends as the scripted answer with its stop reason and usage
//!   (a chunk delivered twice shown once), a second turn stays below the
//!   first; a screenshot is saved.
//! - `browser_stop_cancels_a_long_answer`: Stop mid-answer ends the turn
//!   `cancelled`, short of the whole answer.
//! - `browser_pages_of_two_users_see_only_their_own_chunks`: alice's and bob's
//!   pages on one conversation id; bob's page receives nothing of alice's turn.
//! - `browser_page_reconnects_after_the_socket_drops`: the devstack cuts every
//!   real-time socket; the page subscribes again and finishes a new turn.
//! - `browser_renders_markdown_lists_and_code`: an answer with a list, an
//!   ordered list and a fenced code block (the scripted model's Markdown
//!   passage, asked for with a prompt starting `/markdown`) shows as `<ul>`,
//!   `<ol>` and `<pre><code>`.
//! - `browser_keeps_html_from_the_model_inert`: answers echoing `<img
//!   onerror>`, `<svg onload>`, `<script>` and `javascript:` links show them
//!   as text; no handler runs, live or read back after a reload.
//! - `browser_recovers_an_answer_cut_by_a_socket_drop`: the devstack cuts
//!   every real-time socket mid-answer; the page fills the gap with
//!   `turnChunks` and shows the whole answer exactly once; a second answer
//!   cut by a reload is resumed from the store and finished exactly once.
//! - `browser_reload_shows_history_and_a_follow_up_continues`: after a reload
//!   the conversation's turns are shown again (`listMessages`), and a
//!   follow-up reaches the model with the first turn as history; the list of
//!   conversations, opening one, and deleting one.
//! - `web_example_unit_tests_pass`: the page's own unit tests (`npm test`),
//!   without a browser.
//!
//! Every page stack has a local DynamoDB (as `devstack up` does), so the
//! page's conversations API works; its data goes to a temporary directory
//! removed at the end of the test.
//!
//! What it needs is installed on first use: Debian's `chromium`
//! (`scripts/install-chromium`, root or sudo), the pinned `playwright-core`
//! into `target/web-driver`, the page's own dependencies into
//! `target/web-example` where it is built. Screenshots go to
//! `target/web-screenshots`. `WEB_TEST=skip` skips these tests.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use devstack::Stack;
use devstack::appsync::faults::PublishFault;
use devstack::bedrock::model::{ChatMessage, Role};
use devstack::bedrock::scripted_answer;
use devstack::testing::node::{events, one};
use serde_json::{Value, json};

/// How long one run of `browser.mjs` may take (it stops itself after 90 s).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(150);

/// One browser at a time: the machines this runs on may have two cores, and
/// the test asserts that text appears progressively.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Everything a scenario needs, once per test binary.
struct Browser {
    driver: node::Driver,
    chromium: PathBuf,
    page_dir: PathBuf,
    screenshots: PathBuf,
}

fn browser() -> Option<&'static Browser> {
    static BROWSER: OnceLock<Option<Browser>> = OnceLock::new();
    BROWSER
        .get_or_init(|| {
            let page = page_dir()?;
            let major = node::node_major("WEB_TEST");
            let driver = node::install(&node::repo().join("tests/web/package.json"), "web-driver");
            let script = node::copy_script(&node::repo().join("tests/web/browser.mjs"), &driver);
            let screenshots = node::repo().join("target/web-screenshots");
            std::fs::create_dir_all(&screenshots).expect("screenshot directory");
            Some(Browser {
                driver: node::Driver {
                    args: node::websocket_args(major),
                    script,
                    timeout: BROWSER_TIMEOUT,
                },
                chromium: chromium(),
                page_dir: build_page(page),
                screenshots,
            })
        })
        .as_ref()
}

/// `$CHROMIUM`, or Debian's, installed by `scripts/install-chromium` when missing.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(path);
    }
    let output = Command::new(node::repo().join("scripts/install-chromium"))
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/install-chromium runs");
    assert!(
        output.status.success(),
        "could not install Chromium (root or sudo and Debian's archive are needed); \
         set CHROMIUM to a browser, or WEB_TEST=skip to skip these tests"
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// The page's copy under `target/web-example`: its dependencies installed
/// (`npm install`) and its sources copied, so the source tree stays clean.
/// Once per test binary; `None` with `WEB_TEST=skip`. Needs no browser.
fn page_dir() -> Option<&'static Path> {
    static PAGE: OnceLock<Option<PathBuf>> = OnceLock::new();
    PAGE.get_or_init(|| {
        if skip_requested("WEB_TEST") {
            return None;
        }
        node::node_major("WEB_TEST");
        let source = node::repo().join("client-examples/web");
        let dir = node::install(&source.join("package.json"), "web-example");
        copy_sources(&source, &dir);
        Some(dir)
    })
    .as_deref()
}

/// Builds the page as its README says (`npm run build`) in `dir`; returns
/// its `dist/`.
fn build_page(dir: &Path) -> PathBuf {
    let status = Command::new("npm")
        .args(["run", "build", "--silent"])
        .current_dir(dir)
        .status()
        .expect("npm runs");
    assert!(
        status.success(),
        "the web example does not build ({status})"
    );
    let dist = dir.join("dist");
    assert!(dist.join("index.html").is_file(), "no dist/index.html");
    dist
}

/// Copies the page's sources (not its dependencies, build output or a local
/// `public/config.json`, which the devstack's own replaces).
fn copy_sources(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("client-examples/web") {
        let entry = entry.expect("a directory entry");
        let name = entry.file_name();
        let skipped = ["node_modules", "dist", "package.json", "config.json"];
        if skipped.iter().any(|s| name == *s) {
            continue;
        }
        let target = to.join(&name);
        if entry.path().is_dir() {
            let _ = std::fs::remove_dir_all(&target);
            std::fs::create_dir_all(&target).expect("a directory");
            copy_sources(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("a file copied");
        }
    }
}

/// The local DynamoDB's data directory of one test, removed when dropped.
struct DataDir(PathBuf);

impl DataDir {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!("web-{}", uuid::Uuid::new_v4())))
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A stack serving the built page over HTTPS, its scripted model paced at
/// `tokens_per_second` so a person (and the sampler) can watch it stream,
/// with a local DynamoDB for the conversations API (its data in the returned
/// directory: keep it until the stack is shut down).
async fn page_stack(browser: &Browser, tokens_per_second: f64) -> (Stack, DataDir) {
    page_stack_with(browser, tokens_per_second, |_| {}).await
}

/// As [`page_stack`], adjusted by `adjust` before it starts.
async fn page_stack_with(
    browser: &Browser,
    tokens_per_second: f64,
    adjust: impl FnOnce(&mut devstack::StackConfig),
) -> (Stack, DataDir) {
    let data = DataDir::new();
    let stack = tls_stack_with(resolver(), |c| {
        c.web_dir = Some(browser.page_dir.clone());
        c.bedrock.scripted_tokens_per_second = tokens_per_second;
        c.dynamodb = Some(dynamodb_config(&data.0));
        adjust(c);
    })
    .await;
    assert!(stack.dynamodb.is_some(), "the local DynamoDB started");
    (stack, data)
}

/// Runs one scenario of `browser.mjs` against `stack`, one browser at a
/// time (see [`node::Driver::run`] for `on_event`).
async fn run(
    browser: &Browser,
    stack: &Stack,
    scenario: &str,
    env: &[(&str, String)],
    on_event: impl FnMut(&Value) -> Option<String>,
) -> (Vec<Value>, bool) {
    let _one = ONE_BROWSER.lock().await;
    let mut env = env.to_vec();
    env.extend([
        ("PAGE_URL", stack.https_url().expect("TLS")),
        ("CHROMIUM", browser.chromium.display().to_string()),
        ("SCREENSHOT_DIR", browser.screenshots.display().to_string()),
    ]);
    browser.driver.run(scenario, &env, on_event).await
}

fn turns(all: &[Value]) -> Vec<&Value> {
    events(all, "turn")
}

/// The `active` events: what could run in the page, and its canary.
fn active(all: &[Value]) -> Vec<&Value> {
    events(all, "active")
}

fn said(role: Role, text: &Value) -> ChatMessage {
    ChatMessage {
        role,
        text: text.as_str().expect("a text").to_owned(),
    }
}

/// The turn's text is exactly the scripted model's answer to its prompt.
fn assert_scripted_answer(turn: &Value, max_tokens: Option<u32>) {
    let prompt = turn["prompt"].as_str().expect("the turn's prompt");
    let (text, tokens) = scripted_answer(prompt, max_tokens);
    assert_eq!(turn["text"], text.as_str(), "the answer on the page");
    assert_eq!(turn["usage"]["outputTokens"], tokens);
}

/// The page's unit tests (`npm test`: Vitest on `src/*.test.ts`), which need
/// Node but no browser.
#[test]
fn web_example_unit_tests_pass() {
    let Some(dir) = page_dir() else {
        eprintln!("skipped: WEB_TEST=skip");
        return;
    };
    let output = Command::new("npm")
        .args(["test", "--silent"])
        .current_dir(dir)
        .env("CI", "1")
        .env("NO_COLOR", "1")
        .output()
        .expect("npm runs");
    assert!(
        output.status.success(),
        "`npm test` of the web example failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn browser_streams_an_answer_progressively() {
    let Some(browser) = browser() else {
        eprintln!("skipped: WEB_TEST=skip");
        return;
    };
    let (stack, _data) = page_stack(browser, 40.0).await;
    // The first publish reaches AppSync but its answer is lost, so the
    // resolver sends it again: the page receives that chunk twice and must
    // show it once.
    stack
        .appsync
        .publish_faults
        .push(PublishFault::DropAfterExecute, 1);
    let (events, ok) = run(browser, &stack, "stream", &[], |_| None).await;
    assert!(ok, "browser.mjs stream failed: {events:#?}");

    let lengths: Vec<u64> = one(&events, "samples")["lengths"]
        .as_array()
        .expect("lengths")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let growing: Vec<u64> = lengths.iter().copied().filter(|n| *n > 0).collect();
    assert!(growing.len() >= 3, "the text grew in {lengths:?}");
    assert!(growing.windows(2).all(|w| w[0] < w[1]), "{lengths:?}");

    let turn = turns(&events)[0];
    assert_eq!(turn["state"], "done");
    assert_eq!(turn["stopReason"], "end_turn");
    assert_scripted_answer(turn, None);
    assert!(
        growing
            .last()
            .is_some_and(|n| *n < turn["length"].as_u64().unwrap_or(0)),
        "a sample was taken before the end: {lengths:?}"
    );
    assert_eq!(one(&events, "turns")["count"], 2);

    let shot = PathBuf::from(one(&events, "screenshot")["path"].as_str().expect("path"));
    let png = std::fs::read(&shot).expect("the screenshot was saved");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is a PNG",
        shot.display()
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn browser_stop_cancels_a_long_answer() {
    let Some(browser) = browser() else {
        eprintln!("skipped: WEB_TEST=skip");
        return;
    };
    let max_tokens = 400;
    // At 20 tokens a second the scripted answer takes several seconds.
    let (stack, _data) = page_stack(browser, 20.0).await;
    let env = [("MAX_TOKENS", max_tokens.to_string())];
    let (events, ok) = run(browser, &stack, "stop", &env, |_| None).await;
    assert!(ok, "browser.mjs stop failed: {events:#?}");

    let turn = turns(&events)[0];
    assert_eq!(turn["state"], "cancelled");
    assert_eq!(turn["stopReason"], "cancelled");
    let prompt = turn["prompt"].as_str().expect("prompt");
    let whole = scripted_answer(prompt, Some(max_tokens)).0;
    let shown = turn["text"].as_str().expect("text");
    assert!(
        !shown.is_empty() && shown.len() < whole.len() && whole.starts_with(shown),
        "the stopped answer is a part of the whole: {shown:?}"
    );
    assert_model_stops(&stack, Duration::from_secs(5)).await;
    stack.shutdown().await;
}

#[tokio::test]
async fn browser_pages_of_two_users_see_only_their_own_chunks() {
    let Some(browser) = browser() else {
        eprintln!("skipped: WEB_TEST=skip");
        return;
    };
    let (stack, _data) = page_stack(browser, 200.0).await;
    let (events, ok) = run(browser, &stack, "isolation", &[], |_| None).await;
    assert!(ok, "browser.mjs isolation failed: {events:#?}");
    let turn = turns(&events)[0];
    assert_eq!(turn["state"], "done");
    assert_scripted_answer(turn, None);
    assert!(one(&events, "alice")["chunksReceived"].as_u64() > Some(0));
    assert_eq!(one(&events, "bob")["chunksReceived"], 0);
    assert_eq!(one(&events, "bob")["turns"], 0);
    stack.shutdown().await;
}

#[tokio::test]
async fn browser_page_reconnects_after_the_socket_drops() {
    let Some(browser) = browser() else {
        eprintln!("skipped: WEB_TEST=skip");
        return;
    };
    let (stack, _data) = page_stack(browser, 200.0).await;
    let appsync = stack.appsync.clone();
    let (events, ok) = run(browser, &stack, "reconnect", &[], |event| {
        (event["event"] == "waiting").then(|| {
            appsync.drop_realtime_connections();
            "dropped".to_owned()
        })
    })
    .await;
    assert!(ok, "browser.mjs reconnect failed: {events:#?}");
    one(&events, "notReady");
    one(&events, "readyAgain");
    let states = &one(&events, "connectionStates")["states"];
    assert!(
        states
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s == "ConnectionDisrupted")),
        "{states}"
    );
    let turn = turns(&events)[0];
    assert_eq!(turn["state"], "done");
    assert_scripted_answer(turn, None);
    stack.shutdown().await;
}

#[tokio::test]
async fn browser_renders_markdown_lists_and_code() {
    let Some(browser) = browser() else {
        eprintln!("skipped: WEB_TEST=skip");
        return;
    };
    let (stack, _data) = page_stack(browser, 200.0).await;
    let (events, ok) = run(browser, &stack, "markdown", &[], |_| None).await;
    assert!(ok, "browser.mjs markdown failed: {events:#?}");
    let turn = turns(&events)[0];
    assert_eq!(turn["state"], "done");
    assert_scripted_answer(turn, None);
    let shape = one(&events, "markdown");
    assert!(shape["listItems"].as_u64() >= Some(2), "{shape}");
    assert!(shape["orderedItems"].as_u64() >= Some(2), "{shape}");
    assert!(
        shape["codeBlocks"]
            .as_array()
            .is_some_and(|blocks| !blocks.is_empty()),
        "{shape}"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn browser_keeps_html_from_the_model_inert() {
    let Some(browser) = browser() else {
        eprintln!("skipped: WEB_TEST=skip");
        return;
    };
    let (stack, _data) = page_stack(browser, 200.0).await;
    let (events, ok) = run(browser, &stack, "hostile", &[], |_| None).await;
    assert!(ok, "browser.mjs hostile failed: {events:#?}");
    let answered = turns(&events);
    assert_eq!(answered.len(), 3, "{events:#?}");
    for turn in answered {
        assert_eq!(turn["state"], "done");
        assert_scripted_answer(turn, None);
    }
    let checks = active(&events);
    assert_eq!(
        checks.len(),
        2,
        "checked live and after the reload: {events:#?}"
    );
    for found in checks {
        assert!(found["pwned"].is_null(), "a handler ran: {found}");
        assert_eq!(found["embedded"], 0, "{found}");
        assert_eq!(found["handlers"], json!([]), "{found}");
        assert_eq!(found["links"], json!([]), "{found}");
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn browser_recovers_an_answer_cut_by_a_socket_drop() {
    let Some(browser) = browser() else {
        eprintln!("skipped: WEB_TEST=skip");
        return;
    };
    // At 20 tokens a second the answer takes ~10 s: the drop (and Amplify's
    // 5 s before it reconnects) falls in the middle of it.
    let (stack, _data) = page_stack(browser, 20.0).await;
    let appsync = stack.appsync.clone();
    let (events, ok) = run(browser, &stack, "recover", &[], |event| {
        (event["event"] == "waiting").then(|| {
            appsync.drop_realtime_connections();
            "dropped".to_owned()
        })
    })
    .await;
    assert!(ok, "browser.mjs recover failed: {events:#?}");
    one(&events, "notReady");
    one(&events, "readyAgain");
    let answered = turns(&events);
    assert_eq!(
        answered.len(),
        2,
        "the cut answer and the reloaded one: {events:#?}"
    );
    for turn in answered {
        assert_eq!(turn["state"], "done");
        // The whole answer, each fragment once.
        assert_scripted_answer(turn, None);
    }
    let recovery = one(&events, "recovery");
    assert!(
        recovery["chunksMerged"].as_u64() > Some(0),
        "the page took no chunk from turnChunks: {recovery}"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn browser_reload_shows_history_and_a_follow_up_continues() {
    let Some(browser) = browser() else {
        eprintln!("skipped: WEB_TEST=skip");
        return;
    };
    let (stack, _data) = page_stack(browser, 200.0).await;
    let (events, ok) = run(browser, &stack, "history", &[], |_| None).await;
    assert!(ok, "browser.mjs history failed: {events:#?}");
    let answered = turns(&events);
    assert_eq!(answered.len(), 2, "{events:#?}");
    let (first, second) = (answered[0], answered[1]);
    assert_scripted_answer(first, None);
    assert_scripted_answer(second, None);
    let reloaded = &one(&events, "reloaded")["turns"][0];
    assert_eq!(reloaded["text"], first["text"], "the reloaded answer");

    // The follow-up went to the model with the first turn before it.
    let expected = [
        said(Role::User, &first["prompt"]),
        said(Role::Assistant, &first["text"]),
        said(Role::User, &second["prompt"]),
    ];
    let given = stack.bedrock.conversations();
    assert!(
        given.iter().any(|messages| messages[..] == expected[..]),
        "no model call had the first turn as history: {given:#?}"
    );
    let listed = one(&events, "conversations")["ids"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(listed, 1, "one conversation is left after the deletion");
    stack.shutdown().await;
}

/// The page over the relay's other transports, switched with
/// `?transport=`: an answer streams in and is the model's, Stop ends a long
/// one `cancelled` and the model stops, and another user's page on the same
/// conversation id receives nothing.
async fn the_page_streams_stops_and_isolates_over(transport: &str) {
    let Some(browser) = browser() else {
        eprintln!("skipped: WEB_TEST=skip");
        return;
    };
    let (stack, _data) = page_stack_with(browser, 20.0, |c| {
        c.url_function = Some(url_function());
        c.websocket_functions = Some(websocket_functions());
    })
    .await;
    let over = ("TRANSPORT", transport.to_owned());

    let (events, ok) = run(
        browser,
        &stack,
        "stream",
        std::slice::from_ref(&over),
        |_| None,
    )
    .await;
    assert!(ok, "{transport}: browser.mjs stream failed: {events:#?}");
    let turn = turns(&events)[0];
    assert_eq!(turn["state"], "done");
    assert_scripted_answer(turn, None);

    let max_tokens = 400;
    let env = [over.clone(), ("MAX_TOKENS", max_tokens.to_string())];
    let (events, ok) = run(browser, &stack, "stop", &env, |_| None).await;
    assert!(ok, "{transport}: browser.mjs stop failed: {events:#?}");
    let turn = turns(&events)[0];
    assert_eq!(turn["stopReason"], "cancelled");
    assert_model_stops(&stack, Duration::from_secs(5)).await;

    let (events, ok) = run(browser, &stack, "isolation", &[over], |_| None).await;
    assert!(ok, "{transport}: browser.mjs isolation failed: {events:#?}");
    assert_scripted_answer(turns(&events)[0], None);
    assert_eq!(one(&events, "bob")["chunksReceived"], 0);
    assert_eq!(one(&events, "bob")["turns"], 0);
    stack.shutdown().await;
}

#[tokio::test]
async fn browser_page_over_the_function_url_streams_stops_and_isolates() {
    the_page_streams_stops_and_isolates_over("function-url").await;
}

#[tokio::test]
async fn browser_page_over_the_websocket_api_streams_stops_and_isolates() {
    the_page_streams_stops_and_isolates_over("websocket").await;
}
