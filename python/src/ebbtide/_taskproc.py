"""The task process: a child of the worker that runs tasks one at a time.

Running the function here, not in the worker, keeps the worker's heartbeats going whatever the
function does, and lets a cancel stop it for real: the worker kills this process and starts another.
It dies with the worker (parent-death signal), so a killed worker leaves nothing running.

Pipe messages, child to worker: ``D`` + pickled value (done), ``F`` + error output (failed), ``G`` +
pickled (name, value) (a gauge from ebbtide.report).
"""

from __future__ import annotations

import ctypes
import pickle
import signal
import sys
import threading

from . import gauges, payload
from .errors import PayloadTooLarge
from .protocol import MAX_FRAME_BYTES

# Room left in a frame for the result's other fields and the segment table.
FRAME_OVERHEAD = 1024


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


_functions = payload.FunctionCache()


def run_one(data: bytes) -> bytes:
    """Runs one task's call; returns the message for the worker (``D...`` or ``F...``)."""
    fn = None
    try:
        fn, args, kwargs = _functions.load_call(data)
        out = b"D" + payload.dump_value(fn(*args, **kwargs))
    except BaseException as e:  # SystemExit and KeyboardInterrupt from a task are its failures too
        return b"F" + payload.dump_error(e)
    if len(out) > MAX_FRAME_BYTES - FRAME_OVERHEAD:
        name = getattr(fn, "__qualname__", repr(fn))
        try:
            raise PayloadTooLarge(
                f"the result of {name}(...) is {len(out) - 1:,} bytes once pickled; a result must fit in one frame of "
                f"at most {MAX_FRAME_BYTES:,} bytes (16 MiB, MAX_FRAME_BYTES in the protocol). Return a reference "
                "(a path or URL) to large data instead."
            )
        except PayloadTooLarge as e:
            return b"F" + payload.dump_error(e)
    return out


def serve(conn) -> None:
    """The task process's main loop over a multiprocessing Connection."""
    _die_with_parent()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    send_lock = threading.Lock()
    reported: dict[str, float] = {}

    def to_worker(name: str, value: float) -> None:
        gauges.store(reported, name, value)  # the same bound as the worker's, raised in the task
        with send_lock:
            conn.send_bytes(b"G" + pickle.dumps((name, value)))

    gauges._sink = to_worker
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        out = run_one(data)
        with send_lock:
            conn.send_bytes(out)
