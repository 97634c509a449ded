//! The committed Rust code for `host/schema/ebbtide.capnp` must be what capnpc generates from it.
//!
//! Users build with cargo alone, so the generated code is committed (as capnp-rust does). This test
//! regenerates it wherever the `capnp` tool is installed (`.ci/run` installs it) and fails when the
//! committed copy is stale. To regenerate after editing the schema:
//!
//!     EBBTIDE_REGENERATE=1 cargo test --release -p ebbtide --test protocol_schema

mod common;

use std::path::Path;
use std::process::Command;

const COMMITTED: &str = "host/src/protocol/ebbtide_capnp.rs";

#[test]
fn committed_generated_code_matches_the_schema() {
    if Command::new("capnp").arg("--version").output().is_err() {
        return common::tool_missing("the capnp tool (Debian package capnproto)", "checking the generated code");
    }
    let root = common::workspace_root();
    let out = common::temp_dir("capnp-gen");
    capnpc::CompilerCommand::new()
        .src_prefix(root.join("host/schema"))
        .file(root.join("host/schema/ebbtide.capnp"))
        .default_parent_module(vec!["protocol".into()])
        .output_path(&out)
        .run()
        .expect("capnp compile");
    let fresh = std::fs::read_to_string(out.join("ebbtide_capnp.rs")).expect("generated file");
    let committed_path = root.join(COMMITTED);
    if std::env::var_os("EBBTIDE_REGENERATE").is_some() {
        std::fs::write(&committed_path, &fresh).expect("write generated code");
        eprintln!("regenerated {}", committed_path.display());
        return;
    }
    let committed = std::fs::read_to_string(Path::new(&committed_path)).unwrap_or_default();
    assert!(
        committed == fresh,
        "{COMMITTED} is stale: it does not match host/schema/ebbtide.capnp. Regenerate it with\n  \
         EBBTIDE_REGENERATE=1 cargo test --release -p ebbtide --test protocol_schema"
    );
}
