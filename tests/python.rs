//! The Python package (`python/`): its copy of the schema and constants match the host's, and its pytest
//! suite passes against the real binary with real Python workers.
//!
//! The suite runs in a venv under target/python-venv, made once and reused; each run reinstalls the
//! package from python/ (no network after the first run). Under `CI=true` a missing python3 or venv
//! module fails the test naming it; elsewhere the test says SKIPPED and why.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::workspace_root;

fn package_file(name: &str) -> PathBuf {
    workspace_root().join("python/src/ebbtide").join(name)
}

#[test]
fn packaged_schema_is_a_copy_of_the_host_schema() {
    let host = std::fs::read(workspace_root().join("host/schema/ebbtide.capnp")).unwrap();
    let packaged = std::fs::read(package_file("ebbtide.capnp")).unwrap();
    assert!(
        host == packaged,
        "python/src/ebbtide/ebbtide.capnp differs from host/schema/ebbtide.capnp; copy it over:\n  \
         cp host/schema/ebbtide.capnp python/src/ebbtide/ebbtide.capnp"
    );
}

/// The integer a Python line `NAME = EXPR` gives, where EXPR is `A` or `A << B`.
fn python_constant(source: &str, name: &str) -> u64 {
    let line = source
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} = ")))
        .unwrap_or_else(|| panic!("python/src/ebbtide/protocol.py has no line `{name} = ...`"));
    let expr = line.split('#').next().unwrap().trim();
    match expr.split_once("<<") {
        Some((a, b)) => a.trim().parse::<u64>().unwrap() << b.trim().parse::<u64>().unwrap(),
        None => expr.parse().unwrap_or_else(|_| panic!("{name} = {expr}: expected an integer or A << B")),
    }
}

#[test]
fn python_protocol_constants_match_the_host() {
    let source = std::fs::read_to_string(package_file("protocol.py")).unwrap();
    assert_eq!(python_constant(&source, "MAX_FRAME_BYTES"), ebbtide::protocol::framing::MAX_FRAME_BYTES as u64);
    assert_eq!(python_constant(&source, "MAX_SEGMENTS"), ebbtide::protocol::framing::MAX_SEGMENTS);
    assert_eq!(python_constant(&source, "PROTOCOL_VERSION"), u64::from(ebbtide::protocol::PROTOCOL_VERSION));
}

/// What the venv needs besides the package: its dependencies, pytest, and setuptools to build it offline.
const VENV_PACKAGES: &[&str] = &["pycapnp>=2.0", "cloudpickle>=2.2", "pytest", "setuptools>=61", "wheel"];

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// target/python-venv with the packages above, made on first use.
fn venv(python: &str) -> PathBuf {
    let dir = workspace_root().join("target/python-venv");
    let bin = dir.join("bin/python");
    let stamp = dir.join(".ebbtide-packages");
    let wanted = VENV_PACKAGES.join(" ");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) && bin.exists() {
        return bin;
    }
    let _ = std::fs::remove_dir_all(&dir);
    run(Command::new(python).args(["-m", "venv"]).arg(&dir), "python3 -m venv target/python-venv");
    run(
        Command::new(&bin).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]).args(VENV_PACKAGES),
        "pip install (the Python package's dependencies and pytest)",
    );
    std::fs::write(&stamp, wanted).unwrap();
    bin
}

fn has_venv(python: &str) -> bool {
    Command::new(python).args(["-c", "import venv, ensurepip"]).output().is_ok_and(|o| o.status.success())
}

#[test]
fn pytest_suite_passes_against_the_real_binary_and_python_workers() {
    let python = std::env::var("EBBTIDE_PYTHON").unwrap_or_else(|_| "python3".into());
    if !has_venv(&python) {
        let why =
            format!("{python} with the venv and ensurepip modules is not installed (apt-get install python3-venv)");
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}; the Python tests need it");
        eprintln!("SKIPPED pytest_suite_passes_against_the_real_binary_and_python_workers: {why}");
        return;
    }
    let bin = venv(&python);
    let root = workspace_root();
    run(
        Command::new(&bin)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"])
            .args(["--no-build-isolation", "--force-reinstall"])
            .arg(root.join("python")),
        "pip install ./python",
    );
    let status = Command::new(&bin)
        .current_dir(&root)
        .args(["-m", "pytest", "python/tests", "-q", "-p", "no:cacheprovider", "-o", "console_output_style=classic"])
        .env("EBBTIDE_BIN", env!("CARGO_BIN_EXE_ebbtide"))
        .env_remove("EBBTIDE_TOKEN")
        .status()
        .expect("pytest runs");
    assert!(status.success(), "the pytest suite failed ({status}); its output is above");
}
