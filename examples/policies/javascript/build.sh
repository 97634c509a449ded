#!/usr/bin/env bash
# Builds queue_depth.wasm here from app.js.
#   default:   componentize-js (SpiderMonkey), installed from npm into node_modules on first use;
#   QUICKJS=1: componentize-qjs (QuickJS), installed with cargo into .tools on first use: much smaller.
set -euo pipefail
cd "$(dirname "$0")"
if [ -n "${QUICKJS:-}" ]; then
    [ -x .tools/bin/componentize-qjs ] || cargo install --quiet --locked --root .tools componentize-qjs-cli@"$(cat qjs-version)"
    # --sync: the component-model async ABI is not enabled in the scheduler's runtime.
    .tools/bin/componentize-qjs --wit ../../../wit --world scaling-policy --js app.js --sync --output queue_depth.wasm >/dev/null
else
    # npm install, not npm ci: the lock pins the versions, and npm ci refuses a lock whose optional
    # per-platform packages were resolved on another machine.
    [ -d node_modules/@bytecodealliance/componentize-js ] || npm install --no-audit --no-fund --loglevel=error
    node build.mjs
fi
echo "wrote $(pwd)/queue_depth.wasm ($(stat -c %s queue_depth.wasm) bytes)"
