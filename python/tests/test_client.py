"""The client against the real scheduler and two real Python workers: results, exceptions, limits."""

from __future__ import annotations

import concurrent.futures
import os
import time

import pytest

import ebbtide
from ebbtide import (
    Client,
    PayloadTooLarge,
    RemoteError,
    RemoteTraceback,
    SchedulerLost,
    SchedulerRefused,
    SchedulerUnreachable,
)

from conftest import scheduler_args


def square(x):
    return x * x


def add(a, b, *, scale=1):
    return (a + b) * scale


def test_submit_map_and_gather_return_values(two_workers):
    with Client(two_workers.address) as client:
        assert client.submit(add, 2, 3, scale=10).result(timeout=30) == 50
        assert list(client.map(square, range(200), timeout=60)) == [x * x for x in range(200)]
        assert list(client.map(add, [1, 2, 3], [10, 20, 30])) == [11, 22, 33]
        futures = [client.submit(square, x) for x in range(20)]
        done, not_done = concurrent.futures.wait(futures, timeout=60)
        assert not not_done
        assert sorted(f.result() for f in concurrent.futures.as_completed(futures)) == sorted(x * x for x in range(20))
        # A closure and a lambda travel by value.
        offset = 7
        assert client.submit(lambda y: y + offset, 1).result(timeout=30) == 8


def test_both_workers_take_part(two_workers):
    with Client(two_workers.address) as client:
        pids = set(client.map(lambda _: (time.sleep(0.05), os.getppid())[1], range(20), timeout=60))
    assert len(pids) == 2, f"tasks ran on {pids}"


class Unpicklable(Exception):
    def __init__(self, code, detail):  # pickling re-creates it with one argument, which fails
        super().__init__(f"code {code}: {detail}")


class Custom(Exception):
    pass


def nested_failure(n):
    def inner_helper():
        raise ValueError(f"bad value {n}")

    return inner_helper()


def test_exceptions_keep_their_type_and_the_remote_traceback(two_workers):
    with Client(two_workers.address) as client:
        with pytest.raises(ValueError, match="bad value 7") as raised:
            client.submit(nested_failure, 7).result(timeout=30)
        cause = raised.value.__cause__
        assert isinstance(cause, RemoteTraceback)
        assert "inner_helper" in cause.text and "nested_failure" in cause.text and "ValueError: bad value 7" in cause.text
        assert raised.value.remote_traceback == cause.text

        with pytest.raises(Custom, match="mine"):
            client.submit(lambda: (_ for _ in ()).throw(Custom("mine"))).result(timeout=30)

        # An exception that cannot be re-created here still arrives, named, with its traceback.
        def raise_unpicklable():
            raise Unpicklable(3, "no pickle")

        with pytest.raises(RemoteError, match="Unpicklable: code 3: no pickle") as raised:
            client.submit(raise_unpicklable).result(timeout=30)
        assert "raise_unpicklable" in raised.value.remote_traceback
        assert raised.value.remote_type.endswith("Unpicklable")

        # A task that ends its own process is a failure, and the worker carries on.
        with pytest.raises(RemoteError, match="exited with code 3"):
            client.submit(os._exit, 3).result(timeout=30)
        assert client.submit(square, 4).result(timeout=30) == 16


def test_a_payload_over_the_frame_limit_is_refused_naming_the_limit(two_workers):
    with Client(two_workers.address) as client:
        with pytest.raises(PayloadTooLarge, match=r"16,777,216 bytes \(16 MiB, MAX_FRAME_BYTES"):
            client.submit(len, b"x" * (ebbtide.MAX_FRAME_BYTES + 1))
        # A result over the limit fails on the worker with the same explanation.
        with pytest.raises(PayloadTooLarge, match="MAX_FRAME_BYTES"):
            client.submit(lambda: b"y" * (17 << 20)).result(timeout=60)
        # Large payloads under the limit go through both ways.
        data = os.urandom(6 << 20)
        assert client.submit(lambda d: d[::-1], data).result(timeout=60) == data[::-1]


def test_an_unreachable_scheduler_is_named():
    with pytest.raises(SchedulerUnreachable, match=r"tcp://127\.0\.0\.1:1 .*is `ebbtide scheduler`"):
        Client("tcp://127.0.0.1:1", connect_timeout=2)
    with pytest.raises(ValueError, match="expected tcp://HOST:PORT"):
        Client("127.0.0.1:8516")


def test_the_token_is_required_and_used(cluster_factory):
    cluster = cluster_factory(*scheduler_args("--token", "s3cret", "--policy-content", "scaling=no"))
    with pytest.raises(SchedulerRefused, match="token"):
        Client(cluster.address, token="wrong")
    cluster.worker("--token", "s3cret")
    with Client(cluster.address, token="s3cret") as client:
        assert client.submit(square, 9).result(timeout=30) == 81


def test_shutdown_waits_and_refuses_new_work(two_workers):
    client = Client(two_workers.address)
    futures = [client.submit(lambda i=i: (time.sleep(0.2), i)[1]) for i in range(4)]
    client.shutdown(wait=True)
    assert all(f.done() for f in futures) and [f.result() for f in futures] == [0, 1, 2, 3]
    with pytest.raises(RuntimeError, match="after shutdown"):
        client.submit(square, 1)


def test_report_sets_a_gauge_inside_a_task_and_does_nothing_outside(two_workers):
    assert ebbtide.report("load", 0.5) is False  # not in a worker
    with Client(two_workers.address) as client:
        assert client.submit(ebbtide.report, "load", 0.75).result(timeout=30) is True
        with pytest.raises(ValueError, match="finite"):
            client.submit(ebbtide.report, "load", float("nan")).result(timeout=30)


def test_map_timeout_cancels_what_is_left_and_a_lost_scheduler_fails_outstanding_futures(cluster_factory):
    cluster = cluster_factory(*scheduler_args("--policy-content", "scaling=no"))
    cluster.worker()
    cluster.wait_workers(1)
    with Client(cluster.address) as client:
        results = client.map(time.sleep, [0, 30, 30], timeout=3)
        assert next(results) is None
        with pytest.raises(concurrent.futures.TimeoutError):
            next(results)
        outstanding = client.submit(time.sleep, 30)
        cluster.scheduler.stop()
        with pytest.raises(SchedulerLost, match="closed the connection"):
            outstanding.result(timeout=30)
        with pytest.raises(SchedulerLost):
            client.submit(time.sleep, 0)
