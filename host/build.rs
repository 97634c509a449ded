//! Compiles the six built-in policies for `wasm32-wasip2` and embeds their components in the binary.
//!
//! The guests are built by a nested `cargo build` into their own target directory (`target/guests`),
//! shared by every profile of the host, so a debug and a release build compile them once. When the
//! `wasm32-wasip2` target is missing it is installed with rustup, so a fresh machine needs nothing
//! beyond the README's two commands.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
/// (built-in name, crate name).
const BUILTINS: &[(&str, &str)] = &[
    ("no", "ebbtide-policy-no"),
    ("vanilla", "ebbtide-policy-vanilla"),
    ("capability", "ebbtide-policy-capability"),
    ("fixed_elastic", "ebbtide-policy-fixed-elastic"),
    ("pd_coordinated", "ebbtide-policy-pd-coordinated"),
    ("buffer", "ebbtide-policy-buffer"),
];

/// Variables the outer cargo sets that must not leak into the nested build: they would retarget it,
/// move its output or apply host-only flags to WebAssembly code.
const SCRUBBED_ENV: &[&str] = &[
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTFLAGS",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_PRIMARY_PACKAGE",
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("host/ lives inside the workspace root").to_path_buf();
    for watched in ["sdk", "policies", "wit", "Cargo.toml", "Cargo.lock"] {
        println!("cargo::rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo::rerun-if-changed=build.rs");

    ensure_target(&root);
    let guest_dir = root.join("target").join("guests");
    build_guests(&root, &guest_dir);
    write_table(&guest_dir);
    write_sdk_sources(&root);
    pack_relative_relocations();
}

/// Links the `ebbtide` binary with compact relative relocations (DT_RELR). A position-independent
/// binary of this size carries 1.3 MB of them, which the dynamic loader reads at every start and
/// which then stay resident: about 1.2 MiB of an idle scheduler's 19 MiB. Linkers older than
/// binutils 2.38 ignore the flag with a warning, and a C library without DT_RELR support (glibc
/// before 2.36) makes the linker fall back to ordinary relocations.
fn pack_relative_relocations() {
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Installs `wasm32-wasip2` through rustup when the toolchain lacks it.
fn ensure_target(root: &Path) {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if sysroot.is_some_and(|s| s.join("lib/rustlib").join(TARGET).exists()) {
        return;
    }
    println!(
        "cargo::warning=installing the {TARGET} target with `rustup target add {TARGET}` (the built-in policies are compiled for it)"
    );
    let status = Command::new("rustup").args(["target", "add", TARGET]).current_dir(root).status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "the {TARGET} target is missing and `rustup target add {TARGET}` failed ({s}); run that command yourself, then build again"
        ),
        Err(e) => panic!(
            "the {TARGET} target is missing and rustup could not be run ({e}); install the {TARGET} target for your Rust toolchain (with rustup: `rustup target add {TARGET}`), then build again"
        ),
    }
}

fn build_guests(root: &Path, guest_dir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root).args(["build", "--profile", "guest", "--target", TARGET, "--target-dir"]).arg(guest_dir);
    for (_, krate) in BUILTINS {
        cmd.args(["-p", krate]);
    }
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    // 4 MiB of linear memory from the start (the linker's default is what the stack and data need,
    // about 1.1 MiB): deciding a large snapshot then never grows memory, and each growth is an
    // mprotect on the host, undone when the pooled slot is reused. A fresh instance decides the
    // large sample in 72 us instead of 83 (`policy bench capability --size large`). Pages a guest
    // never touches cost nothing.
    cmd.env("CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS", format!("-C link-arg=--initial-memory={}", 4 << 20));
    let status = cmd.status().unwrap_or_else(|e| panic!("could not run cargo to build the built-in policies: {e}"));
    assert!(status.success(), "building the built-in policies for {TARGET} failed ({status}); see the errors above");
}

/// Writes `builtins.rs`: `(name, component bytes)` for each built-in.
fn write_table(guest_dir: &Path) {
    let mut table = String::from("/// `(name, component)` of each built-in policy, compiled by build.rs.\n");
    table.push_str("pub const BUILTIN_COMPONENTS: &[(&str, &[u8])] = &[\n");
    for (name, krate) in BUILTINS {
        let file = guest_dir.join(TARGET).join("guest").join(format!("{}.wasm", krate.replace('-', "_")));
        assert!(file.exists(), "the built-in policy {name} was built but {} is missing", file.display());
        table.push_str(&format!("    ({name:?}, include_bytes!({:?})),\n", file.display().to_string()));
    }
    table.push_str("];\n");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("builtins.rs");
    std::fs::write(&out, table).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}

/// Writes `sdk_sources.rs`: `(path under sdk/, text)` of every source file of the SDK, so that
/// `policy new --lang rust` gives each project its own copy and the project builds wherever it is moved.
fn write_sdk_sources(root: &Path) {
    let sdk = root.join("sdk");
    let mut files = Vec::new();
    let mut dirs = vec![sdk.join("src")];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())).path();
            if path.is_dir() { dirs.push(path) } else { files.push(path) }
        }
    }
    files.sort();
    let mut table = String::from("/// `(path under sdk/, text)` of each SDK source file, listed by build.rs.\n");
    table.push_str("pub const SDK_SOURCES: &[(&str, &str)] = &[\n");
    for file in files {
        let relative = file.strip_prefix(&sdk).expect("found under sdk/").to_string_lossy().replace('\\', "/");
        table.push_str(&format!("    ({relative:?}, include_str!({:?})),\n", file.display().to_string()));
    }
    table.push_str("];\n");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("sdk_sources.rs");
    std::fs::write(&out, table).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
