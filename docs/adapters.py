#!/usr/bin/env python3
"""Measures the figures of docs/adapters.md ("What it costs").

- Burst to first task running: a fresh `ebbtide up` with one adapter (native, then Slurm; groups of 2
  workers, at most 8 groups), 32 `sleep 2000` tasks submitted, /status polled every 5 ms until a task
  runs. Each run starts from an empty fleet.
- Slurm commands per decision and per liveness interval: the Slurm adapter logs every command it runs
  (`slurm command: ...`, debug level); they are counted over the burst's decision, over the idle
  intervals while the tasks run, and over the scale-down.

Needs a release build (target/release/ebbtide) and a running Slurm (`.ci/slurm.sh start`).
Usage: docs/adapters.py [RUNS]   (default 5)
"""

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "ebbtide")
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5

SCHEDULER = """[scheduler]
address = "tcp://127.0.0.1:0"
admin_address = "127.0.0.1:0"
policy_content = "allocate=capability; scaling=vanilla"
tick_ms = 500

[scaling.params]
upper_task_ratio = 2
max_shutdowns_per_tick = 8
"""

ADAPTERS = {
    "native": '[[adapter]]\ntype = "native"\nid = "n"\nmax_worker_groups = 8\nworkers_per_group = 2\ngrace_ms = 1000\n',
    "slurm": '[[adapter]]\ntype = "slurm"\nid = "figures"\nmax_worker_groups = 8\nworkers_per_group = 2\n'
    'grace_ms = 1000\n[adapter.slurm]\npoll_ms = 1000\n',
}


def status(admin):
    with urllib.request.urlopen(f"http://{admin}/status", timeout=5) as r:
        return json.load(r)


def wait(what, check, timeout=60, every=0.005):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(every)


def one_run(kind, workdir):
    config = os.path.join(workdir, f"{kind}.toml")
    with open(config, "w") as f:
        f.write(SCHEDULER + "\n" + ADAPTERS[kind])
    log = open(os.path.join(workdir, f"{kind}.log"), "w+")
    env = dict(os.environ, EBBTIDE_LOG="info,ebbtide::adapter::slurm=debug", NO_COLOR="1")
    up = subprocess.Popen([BIN, "up", config], stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    line = up.stdout.readline()
    m = re.search(r"listening on (\S+) \(admin http://([^)]+)\)", line)
    if not m:
        raise SystemExit(f"no address in {line!r}")
    address, admin = m.group(1), m.group(2)
    wait("the adapter", lambda: len(status(admin)["adapters"]) == 1, every=0.05)
    time.sleep(1.5)  # a liveness interval or so with nothing to watch
    marks = {"burst": os.path.getsize(log.name)}
    start = time.monotonic()
    subprocess.run([BIN, "submit", address, "--function", "sleep", "--payload", "2000", "--count", "32"],
                   check=True, stdout=subprocess.DEVNULL)
    wait("a running task", lambda: status(admin)["tasks"]["running"] > 0)
    first = time.monotonic() - start
    time.sleep(0.5)
    marks["running"] = os.path.getsize(log.name)
    busy_from = time.monotonic()
    wait("every task done", lambda: status(admin)["tasks"]["done"] == 32, every=0.05)
    marks["busy_s"] = time.monotonic() - busy_from
    marks["done"] = os.path.getsize(log.name)
    wait("the fleet back to zero", lambda: sum(status(admin)["groups"].values()) == 0, every=0.05)
    marks["zero"] = os.path.getsize(log.name)
    up.terminate()
    up.wait(timeout=60)
    with open(log.name) as f:
        text = f.read()
    return first, text, marks


def commands(text):
    return re.findall(r"slurm command: (\w+)", text)


def main():
    workdir = tempfile.mkdtemp(prefix="ebbtide-adapters-")
    results = {}
    for kind in ("native", "slurm"):
        times = []
        for _ in range(RUNS):
            first, text, marks = one_run(kind, workdir)
            times.append(first * 1000)
            if kind == "slurm":
                burst = commands(text[marks["burst"]:marks["running"]])
                running = commands(text[marks["running"]:marks["done"]])
                busy_s = marks["busy_s"]
                down = commands(text[marks["done"]:marks["zero"]])
        results[kind] = times
        print(f"{kind}: burst to first task running, ms: median {statistics.median(times):.0f}, "
              f"min {min(times):.0f}, max {max(times):.0f} ({RUNS} runs: {', '.join(f'{t:.0f}' for t in times)})")
    count = lambda cs: {c: cs.count(c) for c in sorted(set(cs))}
    print(f"slurm, last run: the burst's decision and the next 0.5 s: {count(burst)}")
    print(f"slurm, last run: while the tasks ran ({busy_s:.1f} s, poll_ms 1000): {count(running)}")
    print(f"slurm, last run: scale-down to zero: {count(down)}")


if __name__ == "__main__":
    main()
