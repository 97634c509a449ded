#!/usr/bin/env bash
# Regenerates the comparisons of docs/policies.md: each built-in on the bundled workloads, through
# `ebbtide simulate` (deterministic: the same binary and seed give the same figures and charts).
#
#     cargo build --release && docs/policies.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ebbtide=target/release/ebbtide
out=docs/policies
pool='"adapter_id": "pool"'

run() {
    local workload=$1; shift
    echo "## $workload"
    "$ebbtide" --log error simulate --workload "$workload" --out "$out/$workload" "$@" 2>/dev/null
    # Only the capacity chart (and prefill-decode's split chart) is kept in the repository; the rest can
    # be regenerated.
    rm -f "$out/$workload"/{demand,queue_wait,pressure}.png "$out/$workload"/report.html "$out/$workload"/curve-*.csv
}

run burst --policy no --policy 'vanilla:{"upper_task_ratio": 2}' --policy 'capability:{"upper_task_ratio": 2}' \
    --policy 'fixed_elastic:{"upper_task_ratio": 2}' --policy "buffer:{$pool, \"target_buffer\": 2}"
run diurnal --duration 24h --policy 'vanilla:{"upper_task_ratio": 2}' --policy "buffer:{$pool, \"target_buffer\": 2}" \
    --policy "buffer:{$pool, \"target_buffer\": 0, \"min_ready\": 4}"
run spiky --policy 'vanilla:{"upper_task_ratio": 2}' --policy 'capability:{"upper_task_ratio": 2}' \
    --policy "buffer:{$pool, \"target_buffer\": 4}"
run mixed-capabilities --policy 'vanilla:{"upper_task_ratio": 2}' --policy 'capability:{"upper_task_ratio": 2}'
# pd_coordinated without params takes the workload's roles (a TTFT target of 4 s per prefill replica,
# shares within 10-90%): see host/src/simulate/workload.rs, PD_ROLES.
run prefill-decode --policy 'vanilla:{"upper_task_ratio": 2}' --policy 'capability:{"upper_task_ratio": 2}' \
    --policy pd_coordinated
