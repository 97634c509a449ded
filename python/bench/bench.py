"""ebbtide against Dask distributed and OpenGRIS Scaler on the same workload, in one run.

Two single-threaded worker processes each. Throughput: 10,000 no-op tasks through `map`, from the first
submission to the last result. Round trip: one no-op task submitted and its result back, repeated.
Figures swing between machines, so compare the ratios of one run.

    python -m venv target/bench-venv
    target/bench-venv/bin/pip install ./python "dask[distributed]" "opengris-scaler==2.9.0"
    cargo build --release
    target/bench-venv/bin/python python/bench/bench.py --ebbtide target/release/ebbtide
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
import json


def noop(x):
    return x


def measure(name, map_all, round_trip, tasks, trips):
    map_all(range(200))  # warm up: imports, connections, caches
    started = time.perf_counter()
    results = map_all(range(tasks))
    elapsed = time.perf_counter() - started
    assert list(results) == list(range(tasks)), f"{name}: wrong results"
    times = []
    for i in range(trips):
        t = time.perf_counter()
        assert round_trip(i) == i
        times.append(time.perf_counter() - t)
    times.sort()
    figures = {
        "name": name,
        "tasks_per_s": tasks / elapsed,
        "rt_median_ms": statistics.median(times) * 1e3,
        "rt_p99_ms": times[int(0.99 * (len(times) - 1))] * 1e3,
    }
    print(
        f"{name:8} {figures['tasks_per_s']:8.0f} tasks/s   round trip median {figures['rt_median_ms']:6.2f} ms, "
        f"p99 {figures['rt_p99_ms']:6.2f} ms",
        flush=True,
    )
    return figures


def bench_ebbtide(binary, tasks, trips):
    from ebbtide import Client

    scheduler = subprocess.Popen(
        [binary, "scheduler", "tcp://127.0.0.1:0", "--admin", "127.0.0.1:0", "--policy-content", "scaling=no"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, EBBTIDE_LOG="warn"),
    )
    workers = []
    try:
        line = scheduler.stdout.readline().decode()
        match = re.match(r"ebbtide scheduler listening on (\S+) \(admin http://([^)]+)\)", line)
        assert match, f"unexpected first line from the scheduler: {line!r}"
        address, admin = match.groups()
        workers = [
            subprocess.Popen([sys.executable, "-m", "ebbtide.worker", address], stderr=subprocess.DEVNULL) for _ in range(2)
        ]
        deadline = time.monotonic() + 30
        while json.load(urllib.request.urlopen(f"http://{admin}/status"))["workers"] < 2:
            assert time.monotonic() < deadline, "the workers did not join"
            time.sleep(0.05)
        with Client(address) as client:
            return measure(
                "ebbtide", lambda xs: list(client.map(noop, xs)), lambda i: client.submit(noop, i).result(), tasks, trips
            )
    finally:
        for p in workers + [scheduler]:
            p.terminate()
            p.wait()


def bench_dask(tasks, trips):
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            return measure(
                "dask",
                lambda xs: client.gather(client.map(noop, xs, pure=False)),
                lambda i: client.submit(noop, i, pure=False).result(),
                tasks,
                trips,
            )


def bench_scaler(tasks, trips):
    from scaler import Client, SchedulerClusterCombo

    # Scaler's processes log to their stdout whatever they are told; give them /dev/null for one.
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    try:
        cluster = SchedulerClusterCombo(n_workers=2, logging_paths=("/dev/null",), logging_level="WARNING")
    finally:
        os.dup2(saved, 1)
    try:
        with Client(address=cluster.get_address()) as client:
            return measure(
                "scaler", lambda xs: client.map(noop, xs), lambda i: client.submit(noop, i).result(), tasks, trips
            )
    finally:
        cluster.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ebbtide", default="target/release/ebbtide", help="the ebbtide binary")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--trips", type=int, default=300, help="single-task round trips")
    parser.add_argument("--only", nargs="*", default=["ebbtide", "dask", "scaler"])
    args = parser.parse_args()
    print(f"{args.tasks} no-op tasks with map, then {args.trips} single-task round trips; 2 single-threaded workers each")
    figures = {}
    if "ebbtide" in args.only:
        figures["ebbtide"] = bench_ebbtide(args.ebbtide, args.tasks, args.trips)
    if "dask" in args.only:
        figures["dask"] = bench_dask(args.tasks, args.trips)
    if "scaler" in args.only:
        figures["scaler"] = bench_scaler(args.tasks, args.trips)
    ours = figures.get("ebbtide")
    for other in ("dask", "scaler"):
        if ours and other in figures:
            theirs = figures[other]
            print(
                f"ebbtide vs {other}: {ours['tasks_per_s'] / theirs['tasks_per_s']:.1f}x the throughput, round trip "
                f"{ours['rt_median_ms'] / theirs['rt_median_ms']:.2f}x (median)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
