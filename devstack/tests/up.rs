//! `devstack up` as a user runs it: the binary prints where it listens, and
//! its HTTPS listener serves the web page, the page's `config.json`, dev
//! tokens and the API, under a certificate from a CA it keeps across restarts.
//! Place in the data path: AppSync -> **the page** (subscriber).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// What `devstack up` printed about its HTTPS side.
struct Up {
    child: Child,
    https: String,
    ca_path: PathBuf,
}

/// Starts `devstack up` on ephemeral ports and reads its banner.
async fn up(cache: &Path, web_dir: &Path) -> Up {
    let mut child = Command::new(env!("CARGO_BIN_EXE_devstack"))
        .args(["up", "--bind", "127.0.0.1:0", "--tls-bind", "127.0.0.1:0"])
        .args(["--concurrency", "1", "--model", "scripted", "--web-dir"])
        .arg(web_dir)
        .env("DEVSTACK_CACHE_DIR", cache)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("devstack runs");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut https, mut ca_path, mut web) = (None, None, None);
    let banner = async {
        while let Ok(Some(line)) = lines.next_line().await {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["over", "HTTPS", url, ..] => {
                    https = url.strip_suffix("/graphql").map(String::from)
                }
                ["its", "CA", path] => ca_path = Some(PathBuf::from(path)),
                ["Web", "chat", url, ..] => web = Some(url.to_string()),
                ["Ctrl-C", ..] => break,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), banner)
        .await
        .expect("devstack up printed its banner");
    let https = https.expect("an `over HTTPS` line");
    assert_eq!(
        web,
        Some(format!("{https}/?user=alice")),
        "the web chat line"
    );
    Up {
        child,
        https,
        ca_path: ca_path.expect("an `its CA` line"),
    }
}

/// A client that trusts only the devstack's CA.
fn client(ca_path: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca_path).expect("the CA file");
    let ca = reqwest::Certificate::from_pem(&pem).expect("a PEM certificate");
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .expect("a client")
}

#[tokio::test]
async fn up_serves_the_page_its_config_tokens_and_the_api_over_https() {
    let cache = std::env::temp_dir().join(format!("devstack-up-test-{}", std::process::id()));
    let web_dir = cache.join("web");
    std::fs::create_dir_all(&web_dir).expect("web dir");
    std::fs::write(
        web_dir.join("index.html"),
        "<!doctype html><title>chat</title>",
    )
    .expect("index.html");

    let mut first = up(&cache, &web_dir).await;
    let http = client(&first.ca_path);
    let page = http.get(format!("{}/", first.https)).send().await;
    let page = page.expect("the page over HTTPS");
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .expect("text")
            .contains("<title>chat</title>")
    );

    let config: Value = http
        .get(format!("{}/config.json", first.https))
        .send()
        .await
        .expect("config.json")
        .json()
        .await
        .expect("JSON");
    assert_eq!(config["auth"], "devstack");
    assert_eq!(
        config["graphqlEndpoint"],
        format!("{}/graphql", first.https)
    );

    let token_url = format!("{}/devstack/token", first.https);
    let refused = http.get(format!("{token_url}?username=a%20b")).send();
    assert_eq!(refused.await.expect("answered").status(), 400);
    let token: Value = http
        .get(format!("{token_url}?username=carol"))
        .send()
        .await
        .expect("a token")
        .json()
        .await
        .expect("JSON");
    let id_token = token["idToken"].as_str().expect("idToken");
    assert_eq!(token["expiresIn"], 3600);

    let ping: Value = http
        .post(config["graphqlEndpoint"].as_str().expect("endpoint"))
        .header("authorization", id_token)
        .body(r#"{"query":"{ ping }"}"#)
        .send()
        .await
        .expect("ping over HTTPS")
        .json()
        .await
        .expect("JSON");
    assert_eq!(ping["data"]["ping"], "ok");

    // A restart keeps the CA, so a browser told to trust it still does.
    let ca = std::fs::read_to_string(&first.ca_path).expect("CA");
    ctrl_c(&mut first.child).await;
    let mut second = up(&cache, &web_dir).await;
    assert_eq!(std::fs::read_to_string(&second.ca_path).expect("CA"), ca);
    ctrl_c(&mut second.child).await;
    let _ = std::fs::remove_dir_all(cache);
}

/// Stops `devstack up` as a user does, with Ctrl-C (SIGINT), so that it
/// stops what it started (the local DynamoDB among them); a kill would leave
/// those running.
async fn ctrl_c(child: &mut tokio::process::Child) {
    let pid = child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("devstack up stops on Ctrl-C")
        .expect("exit status");
}
