//! Shared helpers for the integration tests: building test guests from source, the binary's path.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ is inside the workspace").to_path_buf()
}

/// Builds a test guest crate under tests/guests/ for wasm32-wasip2 (once per test process) and
/// returns its component. Guests are built from source, never committed as binaries.
pub fn guest(package: &str, artifact: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let root = workspace_root();
    let target_dir = root.join("target").join("guests");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .args(["build", "--quiet", "--profile", "guest", "--target", "wasm32-wasip2", "-p", package, "--target-dir"])
        .arg(&target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building test guest {package} failed");
    let path = target_dir.join("wasm32-wasip2").join("guest").join(artifact);
    assert!(path.exists(), "{} was not produced", path.display());
    path
}

pub fn hostile() -> Vec<u8> {
    std::fs::read(guest("ebbtide-test-guest-hostile", "ebbtide_test_guest_hostile.wasm")).expect("guest is readable")
}

/// A test that needs `tool`, which is missing here, calls this and returns when it returns: under
/// `CI=true` it fails naming the tool (CI must install it, see .ci/run); elsewhere it prints a
/// visible SKIPPED line, so a skip is never mistaken for a pass.
pub fn tool_missing(tool: &str, what_for: &str) {
    let message = format!("{tool} is not installed here; it is needed for {what_for}");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}. CI=true: .ci/run must install it");
    }
    eprintln!("SKIPPED: {message} (under CI=true this fails)");
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = workspace_root().join("target").join("test-tmp").join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
/// A new build of the same component: `bytes` with a custom section naming `tag` appended, so the
/// digest differs and the behaviour does not.
pub fn tagged(bytes: &[u8], tag: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            out.push(if n == 0 { byte } else { byte | 0x80 });
            if n == 0 {
                break;
            }
        }
    }
    let name = b"ebbtide-build";
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0); // custom section
    leb(payload.len(), &mut out);
    out.extend(payload);
    out
}

pub mod browser;
pub mod cluster;
