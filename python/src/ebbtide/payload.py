"""What a Python task carries, both ways, as bytes in the protocol's ``payload`` and ``output``.

- A task is the function name ``python`` (FUNCTION) with payload ``cloudpickle.dumps((fn_bytes, args,
  kwargs))``, where ``fn_bytes`` is ``cloudpickle.dumps(fn)``: a ``map`` pickles its function once, and a
  task process unpickles each function once (``FunctionCache``), as Dask does.
- A ``done`` result's output is ``cloudpickle.dumps(value)``.
- A ``failed`` result from a Python worker is MAGIC followed by a pickled dict: the exception itself
  when it survives a pickle round trip (else None), its type name, its text and the formatted
  traceback. Any other failed output (from the scheduler, or a non-Python worker) is plain text.
"""

from __future__ import annotations

import pickle
import traceback

import cloudpickle

from .errors import RemoteError, RemoteTraceback

# The task function name Python workers run.
FUNCTION = "python"
# Python tasks require, and Python workers offer, this capability, so that with the default
# `allocate=capability` they never reach a worker that cannot run Python.
CAPABILITY = "python"
MAGIC = b"ebbtide-python-error-1\n"


def dump_function(fn) -> bytes:
    return cloudpickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL)


def dump_call(fn_bytes: bytes, args, kwargs) -> bytes:
    """A task's payload, for a function already pickled with ``dump_function``."""
    return cloudpickle.dumps((fn_bytes, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)


class FunctionCache:
    """Unpickled functions by their pickled bytes, the most recent ``size`` of them."""

    def __init__(self, size: int = 64):
        self._size = size
        self._functions: dict[bytes, object] = {}

    def load_call(self, payload: bytes):
        fn_bytes, args, kwargs = pickle.loads(payload)
        fn = self._functions.pop(fn_bytes, None)
        if fn is None:
            fn = pickle.loads(fn_bytes)
            if len(self._functions) >= self._size:
                del self._functions[next(iter(self._functions))]
        self._functions[fn_bytes] = fn  # most recent last
        return fn, args, kwargs


def dump_value(value) -> bytes:
    return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def dump_error(exc: BaseException) -> bytes:
    """The failed output for an exception raised on a worker (call inside the except block)."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        pickled = cloudpickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(pickled)  # an exception whose __init__ takes other arguments fails here
    except Exception:
        pickled = None
    kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
    envelope = {"exception": pickled, "type": kind, "message": str(exc), "traceback": text}
    return MAGIC + pickle.dumps(envelope, protocol=pickle.HIGHEST_PROTOCOL)


def load_error(output: bytes) -> BaseException:
    """The exception to raise in the caller for a failed result, with the remote traceback chained."""
    if not output.startswith(MAGIC):
        return RemoteError(output.decode("utf-8", "replace") or "the task failed (no reason given)")
    envelope = pickle.loads(output[len(MAGIC):])
    exc = None
    if envelope["exception"] is not None:
        try:
            exc = pickle.loads(envelope["exception"])
        except Exception:  # its class does not exist here
            exc = None
    if not isinstance(exc, BaseException):
        exc = RemoteError(f"{envelope['type']}: {envelope['message']}", envelope["type"], envelope["traceback"])
    exc.__cause__ = RemoteTraceback(envelope["traceback"])
    try:
        exc.remote_traceback = envelope["traceback"]
    except AttributeError:  # a class with __slots__
        pass
    return exc


def load_value(output: bytes):
    """A done result's value; a value that cannot be unpickled here is a RemoteError naming why."""
    try:
        return pickle.loads(output)
    except Exception as e:
        raise RemoteError(
            f"the task's result could not be unpickled here: {type(e).__name__}: {e} (is the module that defines "
            "its type importable in this process?)"
        ) from e
