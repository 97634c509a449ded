"""The Python worker on the wire, seen from the scheduler's side of its connection: the hello, the
heartbeat's capabilities, group and gauges, and results. A listening socket in the test plays the
scheduler, because what it checks (the gauges a heartbeat carries) is not visible in the scheduler's
/status; the scheduler's own handling of gauges is tested on the Rust side."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from ebbtide import payload, protocol

from conftest import die_with_pytest


def report_twice():
    import ebbtide

    ebbtide.report("queue_depth", 3.5)
    ebbtide.report("ttft_ms", 12.0)
    return "reported"


def report_on_a_timer():
    import threading

    import ebbtide

    def tick():
        for i in range(1, 1000):
            ebbtide.report("ticks", i)
            time.sleep(0.05)

    threading.Thread(target=tick, daemon=True).start()
    return "started"


class FakeSchedulerEnd:
    """The scheduler's end of one worker connection, speaking the real protocol."""

    def __init__(self, tmp_path, *worker_args):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(30)
        port = self.listener.getsockname()[1]
        self.log = tmp_path / "worker.stderr"
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "ebbtide.worker", f"tcp://127.0.0.1:{port}", *worker_args],
            stderr=open(self.log, "wb"),
            preexec_fn=die_with_pytest,
        )
        self.sock, _ = self.listener.accept()
        self.sock.settimeout(30)
        self.reader = protocol.FrameReader(self.sock)

    def recv(self):
        frame = self.reader.read()
        assert frame is not None, f"the worker closed the connection:\n{self.log.read_text()}"
        with protocol.schema.Message.from_bytes(frame) as m:
            return m.which(), m.to_dict()

    def next(self, kind: str, where=lambda value: True, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got, message = self.recv()
            if got == kind and where(message[kind]):
                return message[kind]
        raise AssertionError(f"no {kind} message as expected within {timeout} s")

    def close(self):
        self.sock.close()
        self.listener.close()
        self.worker.wait(10)


@pytest.fixture
def scheduler_end(tmp_path):
    ends = []

    def make(*args):
        ends.append(FakeSchedulerEnd(tmp_path, *args))
        return ends[-1]

    yield make
    for end in ends:
        end.close()


def call(fn, *args) -> bytes:
    return payload.dump_call(payload.dump_function(fn), args, {})


def gauges_of(heartbeat) -> dict:
    return {g["name"]: g["value"] for g in heartbeat.get("gauges", [])}


def test_heartbeats_carry_capabilities_group_and_gauges_reported_in_tasks(scheduler_end):
    end = scheduler_end("--capabilities", "gpu=2,linux", "--group", "7", "--token", "t0k")
    hello = end.next("hello")
    assert hello["role"] == "worker" and hello["protocolVersion"] == protocol.PROTOCOL_VERSION and hello["token"] == "t0k"
    end.sock.sendall(protocol.encode(welcome={"peerId": 42}))
    first = end.next("workerHeartbeat")
    caps = {c["name"]: c["value"] for c in first["capabilities"]}
    assert caps == {"gpu": 2, "linux": -1, "python": -1} and first["group"] == 7

    task = call(report_twice)
    end.sock.sendall(protocol.encode_task(1, payload.FUNCTION, task, []))
    result = end.next("taskResult")
    assert result["id"] == 1 and result["status"] == "done" and payload.load_value(result["output"]) == "reported"
    beat = end.next("workerHeartbeat", lambda hb: "queue_depth" in gauges_of(hb))
    assert gauges_of(beat) == {"queue_depth": 3.5, "ttft_ms": 12.0}

    # A thread a task leaves behind reports on a timer; the values move from heartbeat to heartbeat.
    end.sock.sendall(protocol.encode_task(2, payload.FUNCTION, call(report_on_a_timer), []))
    assert end.next("taskResult")["status"] == "done"
    a = gauges_of(end.next("workerHeartbeat", lambda hb: "ticks" in gauges_of(hb)))["ticks"]
    b = gauges_of(end.next("workerHeartbeat", lambda hb: gauges_of(hb).get("ticks", 0) > a))["ticks"]
    assert b > a

    # Another function than `python` is answered with a failure naming what this worker runs.
    end.sock.sendall(protocol.encode_task(3, "sleep", b"10", []))
    failed = end.next("taskResult")
    assert failed["status"] == "failed" and b"runs only 'python'" in failed["output"]

    # The worker leaves when the scheduler closes the connection.
    end.sock.close()
    assert end.worker.wait(15) == 0


def test_a_cancel_from_the_scheduler_kills_the_running_task_and_reports_it_cancelled(scheduler_end):
    end = scheduler_end()
    end.next("hello")
    end.sock.sendall(protocol.encode(welcome={"peerId": 1}))
    end.next("workerHeartbeat")
    end.sock.sendall(protocol.encode_task(5, payload.FUNCTION, call(time.sleep, 60), []))
    end.next("workerHeartbeat", lambda hb: hb.get("assigned") == [5])
    end.sock.sendall(protocol.encode(taskCancel=5))
    result = end.next("taskResult", timeout=15)
    assert result["id"] == 5 and result["status"] == "cancelled"
    # The worker is free at once, with a fresh task process.
    end.sock.sendall(protocol.encode_task(6, payload.FUNCTION, call(sum, [1, 2]), []))
    result = end.next("taskResult", timeout=15)
    assert result["id"] == 6 and payload.load_value(result["output"]) == 3
