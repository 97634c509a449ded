"""``python -m ebbtide.worker ADDRESS``: an ebbtide worker that runs Python tasks.

It joins the scheduler as ``ebbtide worker`` does (the same arguments, so the native adapter starts it
with ``command = ["python3", "-m", "ebbtide.worker"]``): hello, a heartbeat every second carrying its
capabilities (plus ``python``), its group, the tasks it holds and its gauges; then it runs the tasks it
is given one at a time, in a task process (see ``_taskproc``) so that heartbeats go on during a long
task and a cancel kills the task for real. It exits when the scheduler closes the connection, so it
never outlives its scheduler or its group.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import pickle
import signal
import sys
import threading

from . import _taskproc, gauges, payload, protocol

# How often the worker heartbeats: HEARTBEAT_INTERVAL in host/src/scheduler/config.rs.
HEARTBEAT_SECONDS = 1.0


def log(message: str) -> None:
    print(f"ebbtide python worker {os.getpid()}: {message}", file=sys.stderr, flush=True)


class TaskProcess:
    """The child process that runs tasks, and a pump thread that hands its messages to the worker:
    ``on_result(status, output)`` per task, ``on_gauge(name, value)``, and ``on_exit(self)`` once the
    process is gone (killed, or ended by a task)."""

    def __init__(self, on_result, on_gauge, on_exit):
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(target=_taskproc.serve, args=(child,), name="ebbtide-task", daemon=True)
        self.process.start()
        child.close()
        self._callbacks = on_result, on_gauge, on_exit
        threading.Thread(target=self._pump, name="ebbtide-task-pump", daemon=True).start()

    def _pump(self) -> None:
        on_result, on_gauge, on_exit = self._callbacks
        while True:
            try:
                message = self._conn.recv_bytes()
            except (EOFError, OSError):
                self.process.join(5)
                self._conn.close()
                return on_exit(self)
            kind = message[:1]
            if kind == b"G":
                on_gauge(*pickle.loads(message[1:]))
            else:
                on_result("done" if kind == b"D" else "failed", message[1:])

    def send(self, data: bytes) -> None:
        try:
            self._conn.send_bytes(data)
        except OSError:
            pass  # the process is gone; the pump reports it

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()


class Worker:
    """Runs one task at a time, in the order given (the scheduler may send up to its
    ``worker_prefetch`` at once, so the next is here when one ends). The main thread reads the connection and hands a task straight to the
    idle task process (or queues it); the task process's pump thread sends the result and hands over
    the next queued task. A cancel of the running task kills the task process; its pump then starts a
    fresh one, reports the task cancelled and goes on with the queue."""

    def __init__(self, address: str, capabilities: dict[str, int], group: int | None, token: str, connect_timeout: float):
        self.address = address
        self.capabilities = dict(capabilities)
        self.capabilities.setdefault(payload.CAPABILITY, -1)
        self.group = group
        self.token = token
        self.connect_timeout = connect_timeout
        self.gauges: dict[str, float] = {}
        self._lock = threading.Lock()
        self._queue: collections.deque = collections.deque()  # (id, payload), waiting for the task process
        self._running: int | None = None  # the task the task process holds
        self._cancelling: int | None = None  # the running task whose process is being killed
        self._replacing = False  # the task process is being killed and replaced: hand it nothing
        self._stopping = False
        self._process: TaskProcess | None = None

    def _new_process(self) -> TaskProcess:
        return TaskProcess(self._on_result, self._on_gauge, self._on_exit)

    def run(self) -> str | None:
        """Serves until the scheduler closes the connection; returns its reason, if it gave one."""
        self._process = self._new_process()  # starts while we connect
        gauges._sink = self.gauges
        identity = f"python-worker-{os.getpid()}"
        self._conn = protocol.Connection.open(self.address, "worker", identity, self.token, self.connect_timeout)
        log(f"connected to {self.address} as worker {self._conn.peer_id} (group {self.group or 'none'}, capabilities {self.capabilities})")
        threading.Thread(target=self._heartbeats, name="ebbtide-heartbeat", daemon=True).start()
        try:
            return self._serve()
        finally:
            with self._lock:
                self._stopping = True
                process = self._process
            process.kill()
            self._conn.close()

    def _serve(self) -> str | None:
        while True:
            try:
                message = self._conn.recv()
            except (OSError, protocol.ProtocolError) as e:
                return f"the connection failed: {e}"
            if message is None:
                return None
            kind, value = message
            if kind == "taskSubmit":
                task_id, function, data, _caps = value
                if function != payload.FUNCTION:
                    self._send_result(
                        task_id,
                        "failed",
                        f"unknown function {function!r}; this Python worker runs only {payload.FUNCTION!r} (tasks from "
                        "ebbtide.Client); the bundled `ebbtide worker` runs sleep, spin, echo, fail and exec".encode(),
                    )
                    continue
                with self._lock:
                    self._queue.append((task_id, data))
                    self._dispatch()
            elif kind == "taskCancel":
                self._cancel(value)
            elif kind == "goodbye":
                return value

    def _dispatch(self) -> None:
        """With the lock held: hands the next queued task to an idle task process."""
        if self._running is None and not self._replacing and self._queue and not self._stopping:
            self._running, data = self._queue.popleft()
            self._process.send(data)

    def _cancel(self, task_id: int) -> None:
        with self._lock:
            queued = [t for t in self._queue if t[0] == task_id]
            for t in queued:
                self._queue.remove(t)
            if not queued and self._running == task_id and not self._replacing:
                self._cancelling = task_id
                self._replacing = True
                self._process.kill()
        if queued:
            self._send_result(task_id, "cancelled", b"")

    def _on_result(self, status: str, output: bytes) -> None:
        with self._lock:
            task_id, self._running = self._running, None
            self._dispatch()
        if task_id is not None:
            self._send_result(task_id, status, output)

    def _on_exit(self, process: TaskProcess) -> None:
        """The task process is gone: report the task it held, start another, go on with the queue."""
        with self._lock:
            if self._stopping:
                return
            task_id, self._running = self._running, None
            cancelled = task_id is not None and task_id == self._cancelling
            self._cancelling = None
            self._replacing = True
        if task_id is not None:
            if cancelled:
                self._send_result(task_id, "cancelled", b"")
            else:
                self._send_result(
                    task_id,
                    "failed",
                    f"the task process exited with code {process.process.exitcode} while running the task (the task "
                    "ended it, or it was killed)".encode(),
                )
        replacement = self._new_process()
        with self._lock:
            self._process = replacement
            self._replacing = False
            self._dispatch()

    def _send_result(self, task_id: int, status: str, output: bytes) -> None:
        try:
            self._conn.send(protocol.encode_result(task_id, status, output))
        except OSError:
            pass  # the connection is gone; the main loop sees it too

    def _on_gauge(self, name: str, value: float) -> None:
        try:
            gauges.store(self.gauges, name, value)
        except ValueError as e:
            log(str(e))

    def _heartbeats(self) -> None:
        caps = protocol.capabilities_list(self.capabilities)
        stopped = threading.Event()
        while not stopped.is_set():
            with self._lock:
                if self._stopping:
                    return
                assigned = ([self._running] if self._running is not None else []) + [t[0] for t in self._queue]
            reported = [{"name": n, "value": v} for n, v in gauges.snapshot(self.gauges)]
            heartbeat = {"capabilities": caps, "group": self.group or 0, "assigned": assigned, "gauges": reported}
            try:
                self._conn.send(protocol.encode(workerHeartbeat=heartbeat))
            except OSError:
                return
            stopped.wait(HEARTBEAT_SECONDS)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ebbtide.worker",
        description="Run Python tasks (submitted with ebbtide.Client) for an ebbtide scheduler. Takes the "
        "arguments of `ebbtide worker`, so a native adapter can start it: command = [\"python3\", \"-m\", \"ebbtide.worker\"].",
        epilog="examples:\n  python -m ebbtide.worker tcp://127.0.0.1:8516\n  ebbtide-worker tcp://127.0.0.1:8516 --capabilities gpu=1,linux",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("address", help="the scheduler, e.g. tcp://127.0.0.1:8516")
    parser.add_argument(
        "--capabilities",
        default="",
        type=protocol.parse_capabilities,
        help="what this worker offers, e.g. gpu=1,linux (a name alone: present, no quantity); `python` is always added",
    )
    parser.add_argument("--group", type=int, default=None, help="the adapter group this worker belongs to (set by adapters)")
    parser.add_argument("--token", default=os.environ.get("EBBTIDE_TOKEN", ""), help="the scheduler's token (default: $EBBTIDE_TOKEN)")
    parser.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to wait for the scheduler (default 10)")
    parser.add_argument("--allow-exec", action="store_true", help="accepted for compatibility with `ebbtide worker`; Python workers never run `exec`")
    args = parser.parse_args(argv)
    try:
        protocol.parse_address(args.address)
    except ValueError as e:
        parser.error(str(e))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    worker = Worker(args.address, args.capabilities, args.group, args.token, args.connect_timeout)
    try:
        reason = worker.run()
    except ConnectionError as e:
        log(str(e))
        return 1
    log(f"the scheduler closed the connection{': ' + reason if reason else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
