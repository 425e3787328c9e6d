"""ops.interrupt: the first SIGINT/SIGTERM unwinds the main thread wherever it waits (inside
``Popen.wait`` included) and the stop that follows is not interrupted again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from ops.interrupt import Interrupted, stop_on_signals

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def _signal_self_soon(sig: signal.Signals, after: float = 0.3) -> threading.Timer:
    timer = threading.Timer(after, os.kill, (os.getpid(), sig))
    timer.start()
    return timer


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_popen_wait_unwinds_and_the_child_can_then_be_reaped(
    sig: signal.Signals,
) -> None:
    """The launcher's deadlock: its handler waited for the child the interrupted code was
    already waiting for. Now the wait is left, and a second wait (the stop) reaps the child."""
    child = subprocess.Popen(SLEEPER)  # pylint: disable=consider-using-with  # reaped below
    previous = signal.getsignal(sig)
    try:
        with stop_on_signals():
            _signal_self_soon(sig)
            with pytest.raises(Interrupted) as raised:
                child.wait(timeout=60)
            assert raised.value.signum == sig
            _signal_self_soon(sig, after=0.0).join()  # a second Ctrl-C during the stop: ignored
            child.terminate()
            assert child.wait(timeout=30) == -signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert signal.getsignal(sig) == previous  # the previous handler is back
