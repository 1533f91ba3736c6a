"""SIGINT and SIGTERM during training: finish the step, save, exit 130 or 143.

Clusters send SIGTERM before killing a preempted job, and Ctrl-C sends SIGINT;
either way the step in flight completes and a checkpoint is written, so
``--resume auto`` continues exactly. A second signal stops at once.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    def __init__(self):
        self.signal_number: int | None = None

    def __bool__(self) -> bool:
        return self.signal_number is not None

    def _handle(self, number, frame) -> None:
        self.signal_number = number
        for each in STOP_SIGNALS:  # a second signal takes the default action: stop now
            signal.signal(each, signal.SIG_DFL)


@contextmanager
def stop_requests():
    """Yield a ``StopRequest`` that becomes true when a stop signal arrives (main thread only)."""
    request = StopRequest()
    previous = {each: signal.getsignal(each) for each in STOP_SIGNALS}
    for each in STOP_SIGNALS:
        signal.signal(each, request._handle)
    try:
        yield request
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)
