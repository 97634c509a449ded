//! `write-wasi-adapter PATH`: the adapter that lets `wasm-tools component new` turn a WASI
//! preview-1 core module (what zig and clang build) into a preview-2 component.
fn main() {
    let path = std::env::args().nth(1).expect("usage: write-wasi-adapter PATH");
    std::fs::write(&path, wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER)
        .unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
}
