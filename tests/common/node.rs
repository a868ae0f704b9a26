//! Node.js programs the tests drive (Amplify JS, the web page's build,
//! Playwright): finding Node and installing a pinned `package.json` under
//! `target/`, once per version of that file.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
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
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(manifest.as_str()) {
        return dir;
    }
    let staging = repo()
        .join("target")
        .join(format!("{name}.{}", std::process::id()));
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
    if std::fs::rename(&staging, &dir).is_err() {
        // Another run moved its copy in first; use that one.
        let _ = std::fs::remove_dir_all(&staging);
    }
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
    let temporary = dir.join(format!("{}.{}", name.to_string_lossy(), std::process::id()));
    std::fs::copy(source, &temporary).unwrap_or_else(|e| panic!("copy {}: {e}", source.display()));
    std::fs::rename(&temporary, &target).expect("copy into place");
    target
}
