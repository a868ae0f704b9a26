//! Place in the data path: beside it, from a test's side: a Python virtual
//! environment with pinned packages (e.g. botocore), for the tests where a
//! real AWS SDK other than Rust's is the client.

use std::path::PathBuf;
use std::process::Command;

use super::node::repo;

/// The Python of a virtual environment at `target/<name>` holding exactly
/// `packages` (`name==version` pins), made on first use and kept: a stamp
/// lists what it holds, and a lock lets one test process make it while the
/// others wait. Needs `python3` with `venv` and `pip` (a fresh machine has
/// them).
pub fn venv(name: &str, packages: &[&str]) -> PathBuf {
    for package in packages {
        assert!(
            package.contains("=="),
            "{package} must be pinned as name==version"
        );
    }
    let dir = repo().join("target").join(name);
    let python = dir.join("bin/python");
    let stamp = dir.join(".pins");
    let want = packages.join(" ");
    let ready =
        || python.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&want);
    if ready() {
        return python;
    }
    let lock = std::fs::File::create(repo().join("target").join(format!("{name}.lock")))
        .expect("lock file");
    lock.lock().expect("lock");
    if ready() {
        return python;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&dir)
        .status()
        .expect("python3 runs");
    assert!(made.success(), "python3 -m venv failed ({made})");
    let installed = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(packages)
        .status()
        .expect("pip runs");
    assert!(
        installed.success(),
        "pip install {want} failed ({installed})"
    );
    std::fs::write(&stamp, &want).expect("stamp");
    python
}
