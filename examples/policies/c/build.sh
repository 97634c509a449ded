#!/usr/bin/env bash
# Builds queue_depth.wasm here from queue_depth.c. Everything comes from registries on first use,
# into .tools and .venv: wit-bindgen and wasm-tools (crates.io), zig (PyPI) as the C compiler, and
# the WASI preview-1 adapter (crates.io, written out by adapter/).
#   1. wit-bindgen c: the bindings of ../../../wit (world scaling-policy);
#   2. zig cc: a wasm32-wasi (preview 1) core module;
#   3. wasm-tools component new: the component, with the adapter turning preview 1 into 2.
set -euo pipefail
cd "$(dirname "$0")"
tools="$PWD/.tools"
# wit-bindgen and wasm-tools already on PATH are used as they are.
export PATH="$tools/bin:$PATH"
command -v wit-bindgen >/dev/null || cargo install --quiet --locked --root "$tools" wit-bindgen-cli@0.61.1
command -v wasm-tools >/dev/null || cargo install --quiet --locked --root "$tools" wasm-tools@1.243.0
[ -f "$tools/adapter.wasm" ] || cargo run --quiet --release --manifest-path adapter/Cargo.toml --target-dir "$tools/target" -- "$tools/adapter.wasm"
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -m ziglang version >/dev/null 2>&1; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet ziglang==0.15.1
fi
out=$(wit-bindgen c ../../../wit --world scaling-policy --out-dir "$tools/gen" 2>&1) || { echo "$out" >&2; exit 1; }
.venv/bin/python -m ziglang cc -target wasm32-wasi -mexec-model=reactor -O2 -s -I "$tools/gen" \
    queue_depth.c "$tools/gen/scaling_policy.c" "$tools/gen/scaling_policy_component_type.o" -o "$tools/core.wasm"
wasm-tools component new "$tools/core.wasm" --adapt "wasi_snapshot_preview1=$tools/adapter.wasm" -o queue_depth.wasm
echo "wrote $(pwd)/queue_depth.wasm ($(stat -c %s queue_depth.wasm) bytes)"
