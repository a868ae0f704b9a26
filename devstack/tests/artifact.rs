//! The function as `sam deploy` uploads it: `scripts/build-function` builds
//! `target/lambda/bootstrap/bootstrap` with cargo-lambda (the `function`
//! profile, Zig as the linker), and `devstack chat --function` runs exactly
//! that file as the Lambda stand-in's function and streams a whole turn
//! through it.
//!
//! The build installs cargo-lambda and Zig from the Python package index on
//! its first run, and compiles the resolver once more in its own profile.

use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
}

#[test]
fn the_deployable_artifact_streams_a_whole_turn() {
    let build = Command::new(repo().join("scripts/build-function"))
        .arg("x86_64")
        .output()
        .expect("scripts/build-function runs");
    let stderr = String::from_utf8_lossy(&build.stderr);
    assert!(build.status.success(), "the build failed:\n{stderr}");
    let zip_bytes: u64 = String::from_utf8_lossy(&build.stdout)
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("the zip's size on the last line");
    let bootstrap = repo().join("target/lambda/bootstrap/bootstrap");
    let header = std::fs::read(&bootstrap).expect("the bootstrap exists");
    // An x86-64 ELF executable (e_machine 62), as Lambda's x86_64 runtime runs.
    assert_eq!(&header[..4], b"\x7fELF");
    assert_eq!(u16::from_le_bytes([header[18], header[19]]), 62);
    assert!(
        zip_bytes > 0 && zip_bytes < header.len() as u64,
        "the zip ({zip_bytes} B) is smaller than the binary ({} B)",
        header.len()
    );

    let cache = std::env::temp_dir().join(format!("devstack-artifact-{}", std::process::id()));
    let prompt = "What does sam deploy upload?";
    let output = Command::new(env!("CARGO_BIN_EXE_devstack"))
        .args(["chat", "--function"])
        .arg(&bootstrap)
        .args([
            "--model",
            "scripted",
            "--scripted-rate",
            "0",
            "--max-tokens",
            "16",
            prompt,
        ])
        .env("DEVSTACK_CACHE_DIR", &cache)
        .output()
        .expect("devstack runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    let (expected, _) = devstack::bedrock::scripted_answer(prompt, Some(16));
    assert_eq!(stdout.trim_end(), expected.trim_end());
    assert!(stderr.contains("16 output tokens"), "{stderr}");
    let _ = std::fs::remove_dir_all(cache);
}
