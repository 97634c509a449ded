"""``ebbtide.report(name, value)``: gauges a worker carries in its heartbeat.

The scheduler keeps each worker's latest value of each gauge and gives the policy each group's mean in
``snapshot.metrics``. Inside a task (which runs in the worker's task process) a report goes to the
worker through a pipe; in the worker process it is stored directly. Outside a worker it does nothing.
"""

from __future__ import annotations

import math
import threading

# Bounds on what a worker carries in each heartbeat.
MAX_GAUGES = 64
MAX_GAUGE_NAME = 128

_lock = threading.Lock()
_sink = None  # set by the worker (a dict) or the task process (a function)


def check(name: str, value: float) -> float:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_GAUGE_NAME or not name.isprintable():
        raise ValueError(f"gauge name {name!r}: expected 1 to {MAX_GAUGE_NAME} printable characters, e.g. 'queue_depth'")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"gauge {name!r}: the value must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"gauge {name!r}: the value must be finite, got {value!r}")
    return value


def report(name: str, value: float) -> bool:
    """Sets gauge ``name`` of this worker to ``value`` (a finite number), carried by its next heartbeat.
    Callable inside a task or from any thread of a worker (on a timer, say). Returns False outside a
    worker, where there is nothing to report to. A worker carries at most MAX_GAUGES (64) names."""
    value = check(name, value)
    sink = _sink
    if sink is None:
        return False
    if callable(sink):
        sink(name, value)
    else:
        store(sink, name, value)
    return True


def store(gauges: dict, name: str, value: float) -> None:
    with _lock:
        if name not in gauges and len(gauges) >= MAX_GAUGES:
            raise ValueError(f"gauge {name!r}: a worker reports at most {MAX_GAUGES} gauges (MAX_GAUGES); it has {sorted(gauges)}")
        gauges[name] = value


def snapshot(gauges: dict) -> list[tuple[str, float]]:
    with _lock:
        return list(gauges.items())
