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
roles='{"roles": [{"name": "prefill", "capabilities": {"prefill": 1}, "tasks_per_replica": 2}, {"name": "decode", "capabilities": {"decode": 1}, "tasks_per_replica": 2}], "scale_down_stabilization_ms": 60000}'

run() {
    local workload=$1; shift
    echo "## $workload"
    "$ebbtide" --log error simulate --workload "$workload" --out "$out/$workload" "$@" 2>/dev/null
    # Only the capacity chart is kept in the repository; the rest can be regenerated.
    rm -f "$out/$workload"/{demand,queue_wait}.png "$out/$workload"/report.html "$out/$workload"/curve-*.csv
}

run burst --policy no --policy 'vanilla:{"upper_task_ratio": 2}' --policy 'capability:{"upper_task_ratio": 2}' \
    --policy 'fixed_elastic:{"upper_task_ratio": 2}' --policy "buffer:{$pool, \"target_buffer\": 2}"
run diurnal --duration 24h --policy 'vanilla:{"upper_task_ratio": 2}' --policy "buffer:{$pool, \"target_buffer\": 2}" \
    --policy "buffer:{$pool, \"target_buffer\": 0, \"min_ready\": 4}"
run spiky --policy 'vanilla:{"upper_task_ratio": 2}' --policy 'capability:{"upper_task_ratio": 2}' \
    --policy "buffer:{$pool, \"target_buffer\": 4}"
run mixed-capabilities --policy 'vanilla:{"upper_task_ratio": 2}' --policy 'capability:{"upper_task_ratio": 2}'
run prefill-decode --policy 'vanilla:{"upper_task_ratio": 2}' --policy 'capability:{"upper_task_ratio": 2}' \
    --policy "pd_coordinated:$roles"
