//! Place in the data path: the client end, when the client is JavaScript.
//! Node.js programs the tests drive (Amplify JS, the web page's build,
//! Playwright): finding Node, installing a pinned `package.json` under
//! `target/` once per version of that file, and running a driver script that
//! reports what it saw as JSON lines.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The repository's root (the devstack crate's parent directory).
pub fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Node's major version; panics with what to do when Node 20+ or npm is
/// missing (`switch` names the variable that skips the calling tests).
pub fn node_major(switch: &str) -> u32 {
    let version = output("node", &["--version"], switch);
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or_default();
    assert!(major >= 20, "Node 20+ is needed, found {version}");
    output("npm", &["--version"], switch);
    major
}

/// The arguments Node needs for a global `WebSocket` (built in from 22).
pub fn websocket_args(major: u32) -> Vec<String> {
    if major < 22 {
        vec!["--experimental-websocket".to_owned()]
    } else {
        Vec::new()
    }
}

fn output(program: &str, args: &[&str], switch: &str) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("`{program}` is needed (Node 20+ with npm): {e}; set {switch}=skip to skip")
        });
    assert!(
        output.status.success(),
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Installs the dependencies of `package_json` (which must pin exact
/// versions) into `target/<name>`, unless that directory already holds an
/// install of the same file. Returns the directory.
///
/// The install happens beside the final place and is then moved there, so a
/// concurrent run never sees a half-installed directory.
pub fn install(package_json: &Path, name: &str) -> PathBuf {
    let manifest = std::fs::read_to_string(package_json)
        .unwrap_or_else(|e| panic!("{}: {e}", package_json.display()));
    assert_exact_pins(&manifest, package_json);
    let dir = repo().join("target").join(name);
    let marker = dir.join(".installed-package.json");
    let installed = || std::fs::read_to_string(&marker).ok().as_deref() == Some(manifest.as_str());
    if installed() {
        return dir;
    }
    // Tests run in parallel threads and processes: one installs while the
    // others wait on the lock, then find its copy.
    let lock = std::fs::File::create(repo().join("target").join(format!("{name}.lock")))
        .expect("lock file");
    lock.lock().expect("lock");
    if installed() {
        return dir;
    }
    let staging = repo().join("target").join(format!("{name}.staging"));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).expect("staging directory");
    std::fs::write(staging.join("package.json"), &manifest).expect("package.json");
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--no-package-lock"])
        .arg("--loglevel=error")
        .current_dir(&staging)
        .status()
        .expect("npm runs");
    assert!(
        status.success(),
        "npm install for {} failed ({status})",
        package_json.display()
    );
    std::fs::write(staging.join(".installed-package.json"), &manifest).expect("marker");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&staging, &dir).expect("install moved into place");
    dir
}

/// Every dependency is an exact version, so an install is repeatable.
fn assert_exact_pins(manifest: &str, path: &Path) {
    let manifest: serde_json::Value = serde_json::from_str(manifest).expect("package.json is JSON");
    for field in ["dependencies", "devDependencies"] {
        let Some(deps) = manifest[field].as_object() else {
            continue;
        };
        for (name, version) in deps {
            let version = version.as_str().unwrap_or_default();
            assert!(
                !version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.'),
                "{}: {name} must be pinned to an exact version, not {version:?}",
                path.display()
            );
        }
    }
}

/// Copies `source` into `dir` under its own file name, through a temporary
/// name (tests in parallel each copy it); returns the copy's path.
pub fn copy_script(source: &Path, dir: &Path) -> PathBuf {
    let name = source.file_name().expect("a file name");
    let target = dir.join(name);
    static COPIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let copy = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temporary = dir.join(format!(
        "{}.{}.{copy}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::copy(source, &temporary).unwrap_or_else(|e| panic!("copy {}: {e}", source.display()));
    std::fs::rename(&temporary, &target).expect("copy into place");
    target
}

/// A Node program a test drives: `node [args] script scenario`, which prints
/// one JSON object a line with an `event` field on stdout (diagnostics on
/// stderr, passed through) and exits 0 when its scenario passed.
pub struct Driver {
    /// Node's own arguments (see [`websocket_args`]).
    pub args: Vec<String>,
    /// The driver script (`.mjs`), copied beside its installed packages.
    pub script: PathBuf,
    /// How long one run may take.
    pub timeout: std::time::Duration,
}

impl Driver {
    /// Runs `scenario` with `env` added; `on_event` sees every event as it
    /// arrives and may answer with a line for the program's stdin. Returns
    /// the events and whether the program succeeded.
    pub async fn run(
        &self,
        scenario: &str,
        env: &[(&str, String)],
        mut on_event: impl FnMut(&Value) -> Option<String>,
    ) -> (Vec<Value>, bool) {
        use std::process::Stdio;
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

        let mut command = tokio::process::Command::new("node");
        command
            .args(&self.args)
            .arg(&self.script)
            .arg(scenario)
            .env_remove("NODE_OPTIONS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let name = self
            .script
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        let mut child = command.spawn().expect("node runs");
        let mut stdin = child.stdin.take().expect("stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut events = Vec::new();
        let reading = async {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{name} {scenario}: {line}");
                let Ok(event) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if event.get("event").is_none() {
                    continue;
                }
                if let Some(answer) = on_event(&event) {
                    stdin
                        .write_all(format!("{answer}\n").as_bytes())
                        .await
                        .expect("written to the program");
                }
                events.push(event);
            }
            child.wait().await.expect("the program ends")
        };
        let status = tokio::time::timeout(self.timeout, reading)
            .await
            .unwrap_or_else(|_| panic!("{name} {scenario} timed out"));
        (events, status.success())
    }
}

/// The events named `name`.
pub fn events<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

/// The one event named `name`; fails when there is none or several.
pub fn one<'a>(all: &'a [Value], name: &str) -> &'a Value {
    let found = events(all, name);
    assert_eq!(found.len(), 1, "one `{name}` event in {all:#?}");
    found[0]
}
