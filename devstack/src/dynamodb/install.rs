//! Place in the data path: beside the stack, before it starts: fetching the
//! DynamoDB-protocol server the devstack runs, once. dynalite (an npm package
//! that implements DynamoDB's JSON protocol on LevelDB, and keeps its data on
//! disk) is installed with npm, at a pinned version, into the cache, and
//! reused while that version stays the same.

use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

/// The dynalite version the devstack runs.
pub const DYNALITE_VERSION: &str = "4.0.0";

/// Why dynalite could not be installed.
#[derive(Debug, Error)]
pub enum InstallError {
    /// The cache directory could not be written.
    #[error("could not prepare {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `npm` is missing or failed (Node 20+ with npm is needed).
    #[error("npm install of dynalite {DYNALITE_VERSION} failed: {0}")]
    Npm(String),
}

/// The entry point of the dynalite package (`index.js`, whose export makes a
/// server) under `cache`, installing it first (with a progress line on
/// stderr) when this version is not there.
///
/// # Errors
/// [`InstallError`] when the cache cannot be written or npm fails.
pub fn ensure_installed(cache: &Path) -> Result<PathBuf, InstallError> {
    let dir = cache.join(format!("dynalite-{DYNALITE_VERSION}"));
    let entry = dir.join("node_modules/dynalite/index.js");
    if entry.is_file() {
        return Ok(entry);
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| InstallError::Io { path, source }
    };
    // Stacks start in parallel (tests, several `devstack up`): one installs
    // while the others wait on the lock, then find its copy.
    std::fs::create_dir_all(cache).map_err(io(cache))?;
    let lock_path = cache.join(format!("dynalite-{DYNALITE_VERSION}.lock"));
    let lock = std::fs::File::create(&lock_path).map_err(io(&lock_path))?;
    lock.lock().map_err(io(&lock_path))?;
    if entry.is_file() {
        return Ok(entry);
    }
    eprintln!(
        "devstack: installing dynalite {DYNALITE_VERSION} (local DynamoDB) into {} (first run only)",
        dir.display()
    );
    let staging = cache.join(format!("dynalite-{DYNALITE_VERSION}.staging"));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    let manifest = format!(
        "{{\"private\": true, \"dependencies\": {{\"dynalite\": \"{DYNALITE_VERSION}\"}}}}\n"
    );
    let package_json = staging.join("package.json");
    std::fs::write(&package_json, manifest).map_err(io(&package_json))?;
    let output = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--no-package-lock"])
        .arg("--loglevel=error")
        .current_dir(&staging)
        .output()
        .map_err(|e| InstallError::Npm(format!("could not run npm: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(InstallError::Npm(format!(
            "{}: {}",
            output.status,
            stderr.trim()
        )));
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&staging, &dir).map_err(io(&dir))?;
    if entry.is_file() {
        Ok(entry)
    } else {
        Err(InstallError::Npm(format!(
            "{} is missing after the install",
            entry.display()
        )))
    }
}
