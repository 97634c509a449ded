"""``Client``: a ``concurrent.futures.Executor`` whose tasks run on ebbtide workers.

One connection to the scheduler. ``submit`` encodes the call and writes it at once; ``map`` writes its
tasks in batches (many frames in one ``sendall``). A reader thread turns results into future outcomes.
``Future.cancel()`` sends a ``taskCancel`` to the scheduler, which stops the task on its worker.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import threading
import time

from . import payload, protocol
from .errors import PayloadTooLarge, SchedulerLost
from .protocol import MAX_FRAME_BYTES

# map() writes this many tasks per sendall.
MAP_BATCH = 512


class Future(concurrent.futures.Future):
    """A task's future. ``cancel()`` also cancels the task in the scheduler (and on its worker)."""

    def __init__(self, client: "Client", task_id: int):
        super().__init__()
        self._client = client
        self.task_id = task_id

    def cancel(self) -> bool:
        if self.done():
            return False
        self._client._cancel(self.task_id)
        return super().cancel()


class Client(concurrent.futures.Executor):
    """Runs Python functions on the workers of the ebbtide scheduler at ``address``.

    >>> with Client("tcp://127.0.0.1:8516") as client:
    ...     squares = list(client.map(pow, range(10), [2] * 10))
    ...     gpu = client.submit(train, data, capabilities={"gpu": 1})

    ``token``: the scheduler's shared token (default: ``$EBBTIDE_TOKEN``). ``connect_timeout``: seconds to
    wait for the connection and the scheduler's welcome. Every task requires the ``python`` capability
    (which Python workers offer) plus the ``capabilities`` given to ``submit`` or ``map``.
    """

    def __init__(self, address: str, *, token: str | None = None, connect_timeout: float = 10.0, identity: str | None = None):
        token = os.environ.get("EBBTIDE_TOKEN", "") if token is None else token
        identity = identity or f"python-client-{os.getpid()}"
        self.address = address
        self._connection = protocol.Connection.open(address, "client", identity, token, connect_timeout)
        self._lock = threading.Lock()
        self._futures: dict[int, Future] = {}
        self._ids = itertools.count(1)
        self._closed = False
        self._lost: str | None = None
        self._reader = threading.Thread(target=self._read, name="ebbtide-client-reader", daemon=True)
        self._reader.start()

    # --- the Executor interface ---------------------------------------------------------------------

    def submit(self, fn, /, *args, capabilities: dict[str, int] | None = None, **kwargs) -> Future:
        """Runs ``fn(*args, **kwargs)`` on a worker offering ``capabilities`` (e.g. ``{"gpu": 1}``)."""
        caps = self._capabilities(capabilities)
        future, frame = self._prepare(fn, self._function(fn), args, kwargs, caps)
        self._send([future], frame)
        return future

    def map(self, fn, *iterables, capabilities: dict[str, int] | None = None, timeout: float | None = None, chunksize: int = 1):
        """Like ``Executor.map``: submits ``fn`` for every item at once and returns an iterator over the
        results in order; ``timeout`` (seconds, from this call) bounds the wait for each of them.
        ``chunksize`` is accepted for compatibility; each call is one task."""
        deadline = None if timeout is None else time.monotonic() + timeout
        caps = self._capabilities(capabilities)
        fn_bytes = self._function(fn)
        futures: list[Future] = []
        batch: list[Future] = []
        frames: list[bytes] = []
        for args in zip(*iterables):
            future, frame = self._prepare(fn, fn_bytes, args, {}, caps)
            batch.append(future)
            frames.append(frame)
            if len(batch) >= MAP_BATCH:
                self._send(batch, b"".join(frames))
                futures += batch
                batch, frames = [], []
        if batch:
            self._send(batch, b"".join(frames))
            futures += batch

        def results():
            try:
                futures.reverse()  # pop() from the end yields them in order
                while futures:
                    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                    value = futures[-1].result(remaining)
                    futures.pop()
                    yield value
            finally:  # a timeout, a failure or an abandoned iterator cancels what is left
                for f in futures:
                    f.cancel()

        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more submissions. ``cancel_futures``: cancel every task not finished yet. ``wait``: wait for
        every outstanding result. Then the connection is closed (outstanding tasks are abandoned)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            outstanding = list(self._futures.values())
        if cancel_futures:
            for f in outstanding:
                f.cancel()
        if wait:
            concurrent.futures.wait(outstanding)
        self._connection.close()
        if wait:
            self._reader.join()

    # --- internals ----------------------------------------------------------------------------------

    @staticmethod
    def _capabilities(capabilities):
        caps = dict(capabilities or {})
        caps.setdefault(payload.CAPABILITY, -1)
        return protocol.capabilities_list(caps)

    @staticmethod
    def _function(fn) -> bytes:
        if not callable(fn):
            raise TypeError(f"{fn!r} is not callable")
        return payload.dump_function(fn)

    def _prepare(self, fn, fn_bytes, args, kwargs, caps) -> tuple[Future, bytes]:
        task_id = next(self._ids)
        frame = protocol.encode_task(task_id, payload.FUNCTION, payload.dump_call(fn_bytes, args, kwargs), caps)
        if len(frame) > MAX_FRAME_BYTES:
            name = getattr(fn, "__qualname__", repr(fn))
            raise PayloadTooLarge(
                f"the task {name}(...) is {len(frame):,} bytes once pickled and encoded; the scheduler accepts "
                f"frames of at most {MAX_FRAME_BYTES:,} bytes (16 MiB, MAX_FRAME_BYTES in the protocol). Pass large "
                "data by reference (a path or URL the workers can read) instead of as an argument."
            )
        return Future(self, task_id), frame

    def _send(self, futures: list[Future], frames: bytes) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit after shutdown")
            if self._lost is not None:
                raise SchedulerLost(self._lost)
            for f in futures:
                self._futures[f.task_id] = f
        try:
            self._connection.send(frames)
        except OSError as e:
            self._fail_all(f"cannot send to the scheduler at {self.address}: {e}")
            raise SchedulerLost(f"cannot send to the scheduler at {self.address}: {e}") from None

    def _cancel(self, task_id: int) -> None:
        with self._lock:
            if self._futures.pop(task_id, None) is None or self._lost is not None:
                return
        try:
            self._connection.send(protocol.encode(taskCancel=task_id))
        except OSError:
            pass  # the connection is gone: the scheduler drops the client's tasks' results anyway

    def _read(self) -> None:
        reason = f"the scheduler at {self.address} closed the connection"
        try:
            while True:
                message = self._connection.recv()
                if message is None:
                    break
                kind, value = message
                if kind == "taskResult":
                    self._resolve(*value)
                elif kind == "goodbye":
                    reason = f"the scheduler at {self.address} closed the connection: {value}"
        except (OSError, protocol.ProtocolError) as e:
            if self._closed:
                return
            reason = f"the connection to the scheduler at {self.address} failed: {e}"
        self._fail_all(reason)

    def _resolve(self, task_id: int, status: str, output: bytes) -> None:
        with self._lock:
            future = self._futures.pop(task_id, None)
        if future is None:
            return  # cancelled here already
        try:
            if status == "done":
                try:
                    future.set_result(payload.load_value(output))
                except Exception as e:
                    future.set_exception(e)
            elif status == "cancelled":
                concurrent.futures.Future.cancel(future)
            else:
                future.set_exception(payload.load_error(output))
        except concurrent.futures.InvalidStateError:
            pass  # cancelled meanwhile

    def _fail_all(self, reason: str) -> None:
        with self._lock:
            self._lost = reason
            futures, self._futures = list(self._futures.values()), {}
        for f in futures:
            try:
                f.set_exception(SchedulerLost(f"{reason}; the task's result is lost"))
            except concurrent.futures.InvalidStateError:
                pass

    def __repr__(self) -> str:
        return f"<ebbtide.Client {self.address} outstanding={len(self._futures)}>"
