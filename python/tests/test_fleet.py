"""Python workers in a fleet: capability routing, cancel, a killed worker, and a native adapter of
Python workers scaled from zero and back by the real scheduler."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from ebbtide import Client

from conftest import scheduler_args, wait_for


def worker_pid():
    return os.getppid()  # tasks run in a child of the worker


def test_tasks_requiring_a_capability_run_only_on_workers_offering_it(cluster_factory):
    cluster = cluster_factory(*scheduler_args("--policy-content", "allocate=capability; scaling=no"))
    gpu = cluster.worker("--capabilities", "gpu=1")
    cluster.worker()
    cluster.wait_workers(2)
    with Client(cluster.address) as client:
        pids = {f.result(timeout=60) for f in [client.submit(worker_pid, capabilities={"gpu": 1}) for _ in range(12)]}
        assert pids == {gpu.pid}
        assert set(client.map(lambda _: (time.sleep(0.05), os.getppid())[1], range(12), capabilities={"gpu": 1})) == {gpu.pid}


def mark_and_sleep(path, seconds):
    """Appends 'worker-pid task-pid' to path, then sleeps."""
    with open(path, "a") as f:
        f.write(f"{os.getppid()} {os.getpid()}\n")
    time.sleep(seconds)
    return "slept"


def marks(path: Path) -> list[tuple[int, int]]:
    if not path.exists():
        return []
    return [tuple(map(int, line.split())) for line in path.read_text().splitlines() if line.strip()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (not reaped yet) has stopped running too.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_cancel_of_a_running_task_cancels_its_future(cluster_factory, tmp_path):
    cluster = cluster_factory(*scheduler_args("--policy-content", "scaling=no"))
    cluster.worker()
    cluster.wait_workers(1)
    marker = tmp_path / "marks"
    with Client(cluster.address) as client:
        future = client.submit(mark_and_sleep, str(marker), 60)
        wait_for("the task to start", lambda: marks(marker))
        assert future.cancel() and future.cancelled()
        with pytest.raises(Exception) as raised:
            future.result(timeout=1)
        assert raised.type.__name__ == "CancelledError"
        assert not future.cancel() or future.cancelled()


def test_cancel_stops_the_running_function_and_frees_the_worker(cluster_factory, tmp_path):
    cluster = cluster_factory(*scheduler_args("--policy-content", "scaling=no"))
    cluster.worker()
    cluster.wait_workers(1)
    marker = tmp_path / "marks"
    with Client(cluster.address) as client:
        future = client.submit(mark_and_sleep, str(marker), 60)
        wait_for("the task to start", lambda: marks(marker))
        (_, task_pid), = marks(marker)
        assert future.cancel()
        wait_for("the cancelled task's process to end", lambda: not alive(task_pid), timeout=15)
        # The worker takes the next task at once, not after the 60 s sleep.
        assert client.submit(lambda: "next").result(timeout=15) == "next"


def test_a_task_whose_worker_is_killed_completes_on_another(cluster_factory, tmp_path):
    cluster = cluster_factory(*scheduler_args("--policy-content", "scaling=no"))
    cluster.worker()
    cluster.worker()
    cluster.wait_workers(2)
    marker = tmp_path / "marks"
    with Client(cluster.address) as client:
        future = client.submit(mark_and_sleep, str(marker), 1.5)
        wait_for("the task to start", lambda: marks(marker))
        (first_worker, first_task), = marks(marker)
        os.kill(first_worker, signal.SIGKILL)
        assert future.result(timeout=60) == "slept"
    runs = marks(marker)
    assert len(runs) == 2 and runs[1][0] != first_worker, f"runs (worker pid, task pid): {runs}"
    # The killed worker's task process died with it.
    wait_for("the killed worker's task process to end", lambda: not alive(first_task), timeout=10)


def test_a_burst_scales_a_native_adapter_of_python_workers_from_zero_and_back(cluster_factory, tmp_path):
    log = tmp_path / "decisions.jsonl"
    config = tmp_path / "python.toml"
    command = json.dumps([sys.executable, "-m", "ebbtide.worker"])
    config.write_text(
        f"""[scheduler]
address = "tcp://127.0.0.1:0"
admin_address = "127.0.0.1:0"
policy_content = "allocate=capability; scaling=vanilla"
tick_ms = 200
decision_log = "{log}"

[scaling.params]
upper_task_ratio = 2
max_shutdowns_per_tick = 8

[[adapter]]
type = "native"
id = "python"
max_worker_groups = 4
workers_per_group = 1
grace_ms = 2000
command = {command}
"""
    )
    cluster = cluster_factory("up", str(config))
    assert cluster.workers() == 0
    with Client(cluster.address) as client:
        results = list(client.map(lambda i: (time.sleep(0.3), i * i)[1], range(8), timeout=120))
    assert results == [i * i for i in range(8)]

    decisions = [json.loads(line) for line in log.read_text().splitlines()]
    starts = [[c for c in d["commands"] if "start" in c] for d in decisions]
    first = next(s for s in starts if s)
    assert len(first) == 4, f"the first decision with starts started {len(first)} groups, not 4 (8 tasks / ratio 2)"
    assert sum(map(len, starts)) == 4, f"later decisions started more: {[len(s) for s in starts]}"
    wait_for("every group to be shut down", lambda: sum(cluster.status()["groups"].values()) == 0, timeout=60)
    assert cluster.workers() == 0


def test_ebbtide_adapter_native_starts_python_workers_with_command(cluster_factory):
    cluster = cluster_factory(*scheduler_args("--policy-content", "scaling=vanilla", "--tick-ms", "200"))
    adapter = cluster.start(
        "adapter", "native", cluster.address, "--max-groups", "2", "--grace-ms", "2000",
        "--command", f"{sys.executable} -m ebbtide.worker",
    )
    wait_for("the adapter to connect", lambda: cluster.status()["adapters"])
    with Client(cluster.address) as client:
        pids = set(client.map(lambda _: (time.sleep(0.2), os.getppid())[1], range(6), timeout=120))
    assert pids and adapter.pid not in pids
    # The workers are Python workers the adapter started: children of the adapter.
    for pid in pids:
        assert int(Path(f"/proc/{pid}/stat").read_text().split(") ")[1].split()[1]) == adapter.pid
    wait_for("every group to be shut down", lambda: sum(cluster.status()["groups"].values()) == 0, timeout=60)
