"""Fixtures: the real `ebbtide` binary (EBBTIDE_BIN, set by tests/python.rs) and real Python workers.

Functions defined in these test modules are pickled by value (cloudpickle.register_pickle_by_value),
since the workers cannot import the test modules.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cloudpickle
import pytest

REPO = Path(__file__).resolve().parents[2]


def binary() -> str:
    path = os.environ.get("EBBTIDE_BIN") or str(REPO / "target" / "release" / "ebbtide")
    if not os.path.exists(path):
        message = f"the ebbtide binary {path} does not exist; build it (cargo build --release) or set EBBTIDE_BIN"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def pytest_collection_modifyitems(items):
    for item in items:
        if item.module is not None:
            cloudpickle.register_pickle_by_value(item.module)


def die_with_pytest() -> None:
    """In the child before exec: the kernel kills it if pytest dies (a timeout, ^C), so no scheduler or
    worker is left behind."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Proc:
    """A process killed at teardown (or when pytest dies); stderr goes to a file shown when a test fails."""

    def __init__(self, args, log: Path, stdout=subprocess.DEVNULL, env=None):
        self.log = log
        self.popen = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=open(log, "wb"),
            env=env,
            start_new_session=True,
            preexec_fn=die_with_pytest,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def wait_for(what: str, check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Cluster:
    """A scheduler (`ebbtide scheduler` or `ebbtide up CONFIG`) and the workers a test starts."""

    def __init__(self, tmp: Path, args: list[str], env=None):
        self.tmp = tmp
        self.procs: list[Proc] = []
        env = dict(os.environ if env is None else env, EBBTIDE_LOG="info")
        env.pop("EBBTIDE_TOKEN", None)
        self.scheduler = Proc([binary(), *args], tmp / "scheduler.stderr", stdout=subprocess.PIPE, env=env)
        self.procs.append(self.scheduler)
        self.address, self.admin = self._listening()

    def _listening(self):
        for line in self.scheduler.popen.stdout:
            line = line.decode()
            match = re.match(r"ebbtide scheduler listening on (\S+)(?: \(admin http://([^)]+)\))?", line)
            if match:
                # Keep draining stdout so the scheduler never blocks on a full pipe.
                threading.Thread(target=lambda: [None for _ in self.scheduler.popen.stdout], daemon=True).start()
                return match.group(1), match.group(2)
        raise AssertionError(f"the scheduler exited before listening:\n{self.scheduler.stderr()}")

    def start(self, *args: str) -> Proc:
        """Another `ebbtide` process (an adapter, say), stopped with the cluster."""
        proc = Proc([binary(), *args], self.tmp / f"{args[0]}-{len(self.procs)}.stderr")
        self.procs.append(proc)
        return proc

    def worker(self, *args: str, env=None) -> Proc:
        n = len(self.procs)
        proc = Proc(
            [sys.executable, "-m", "ebbtide.worker", self.address, *args], self.tmp / f"worker-{n}.stderr", env=env
        )
        self.procs.append(proc)
        return proc

    def status(self) -> dict:
        with urllib.request.urlopen(f"http://{self.admin}/status", timeout=10) as r:
            return json.load(r)

    def workers(self) -> int:
        return int(self.status()["workers"])

    def wait_workers(self, n: int) -> None:
        wait_for(f"{n} workers to join", lambda: self.workers() >= n)

    def logs(self) -> str:
        return "\n".join(f"--- {p.log.name}\n{p.stderr()[-4000:]}" for p in self.procs)

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()


@pytest.fixture
def cluster_factory(tmp_path, request):
    made: list[Cluster] = []

    def make(*args: str) -> Cluster:
        cluster = Cluster(tmp_path, list(args))
        made.append(cluster)
        return cluster

    yield make
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for c in made:
        if failed:
            print(c.logs())
        c.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report


def scheduler_args(*extra: str) -> list[str]:
    return ["scheduler", "tcp://127.0.0.1:0", "--admin", "127.0.0.1:0", *extra]


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    """A scheduler with no adapters (policy `no`) and two unmanaged Python workers, shared by a module."""
    cluster = Cluster(tmp_path_factory.mktemp("two"), scheduler_args("--policy-content", "scaling=no"))
    try:
        cluster.worker()
        cluster.worker()
        cluster.wait_workers(2)
        yield cluster
    finally:
        cluster.stop()
