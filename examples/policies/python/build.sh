#!/usr/bin/env bash
# Builds queue_depth.wasm here with componentize-py (installed from PyPI into .venv on first use).
set -euo pipefail
cd "$(dirname "$0")"
wit=../../../wit
if [ ! -x .venv/bin/componentize-py ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet -r requirements.txt
fi
.venv/bin/componentize-py --wit-path "$wit" --world scaling-policy componentize app --output queue_depth.wasm
echo "wrote $(pwd)/queue_depth.wasm ($(stat -c %s queue_depth.wasm) bytes)"
