#!/usr/bin/env bash
# Builds queue_depth.wasm here with cargo (installing the wasm32-wasip2 target if it is missing).
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --quiet --release --target wasm32-wasip2
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/queue_depth.wasm" queue_depth.wasm
echo "wrote $(pwd)/queue_depth.wasm ($(stat -c %s queue_depth.wasm) bytes)"
