"""The errors the client raises, each saying what went wrong and what to do."""

from __future__ import annotations


class EbbtideError(Exception):
    """Base class of ebbtide's own errors."""


class SchedulerUnreachable(EbbtideError, ConnectionError):
    """No scheduler answered at the address (connection refused, timed out, or no hello answer)."""


class SchedulerRefused(EbbtideError, ConnectionError):
    """The scheduler answered the hello with a refusal (a wrong token, another protocol version)."""


class SchedulerLost(EbbtideError, ConnectionError):
    """The connection to the scheduler ended while the task's result was outstanding."""


class PayloadTooLarge(EbbtideError, ValueError):
    """A task (function, arguments) does not fit in one frame of the protocol."""


class RemoteError(EbbtideError):
    """A task failed on a worker and its exception could not be re-created here (it was not picklable,
    or its class does not exist in this process). The message names the remote type and text; the
    remote traceback is in ``remote_traceback`` and in the chained ``RemoteTraceback``."""

    def __init__(self, message: str, remote_type: str = "", remote_traceback: str = ""):
        super().__init__(message)
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback


class RemoteTraceback(Exception):
    """Chained as ``__cause__`` of every exception re-raised from a worker, so that a printed
    traceback shows the worker's one (as concurrent.futures.ProcessPoolExecutor does)."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'
