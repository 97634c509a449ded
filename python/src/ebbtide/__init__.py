"""ebbtide for Python: submit functions to an ebbtide scheduler and run them on Python workers.

``Client`` is a ``concurrent.futures.Executor``; ``python -m ebbtide.worker ADDRESS`` (or ``ebbtide-worker``)
runs tasks; ``report(name, value)`` sets a gauge the worker carries in its heartbeat. See docs/python.md.
"""

from .client import Client, Future
from .errors import (
    EbbtideError,
    PayloadTooLarge,
    RemoteError,
    RemoteTraceback,
    SchedulerLost,
    SchedulerRefused,
    SchedulerUnreachable,
)
from .gauges import report
from .protocol import MAX_FRAME_BYTES

__all__ = [
    "Client",
    "Future",
    "report",
    "MAX_FRAME_BYTES",
    "EbbtideError",
    "PayloadTooLarge",
    "RemoteError",
    "RemoteTraceback",
    "SchedulerLost",
    "SchedulerRefused",
    "SchedulerUnreachable",
]
