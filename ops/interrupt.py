"""Ctrl-C and SIGTERM for the long-running commands (``churnops run``, ``churnops watch``).

A signal handler runs in the main thread between two bytecodes of whatever it interrupted, so it
must not wait for anything that code may hold: ``churnops run`` once stopped its children from the
handler while the interrupted code was inside ``Popen.wait()`` on one of them, and the handler's
own ``wait()`` blocked forever on the lock that call held. Here the handler only raises
:class:`Interrupted` where the main thread is; the code unwinds (releasing what it held) and
stops its work in an ``except``/``finally``. Later signals are ignored while that stop runs.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """The first SIGINT or SIGTERM received inside :func:`stop_on_signals`."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, the first SIGINT/SIGTERM raises :class:`Interrupted` in the main thread
    and the next ones are ignored (the stop in progress finishes); the previous handlers are put
    back on exit. SIGINT is set explicitly: a process started with SIGINT ignored (a background
    job, some CI runners) must still stop on Ctrl-C / ``kill -INT``."""
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        del frame
        if received:
            return
        received.append(signum)
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
