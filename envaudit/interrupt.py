"""Ctrl-C is answered, whoever caught it first.

Python turns SIGINT into ``KeyboardInterrupt`` wherever the main thread happens to be, and some
places swallow it: a bare ``except:`` in a library TensorFlow imports, a ``__del__`` or a callback
from C (where Python prints "Exception ignored" and goes on). A user who pressed Ctrl-C while
TensorFlow loaded then got a full report and exit 0. So the handler also remembers that it was
heard: the output is not written and the command ends with 130 however the exception fared.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_heard = False


def heard() -> bool:
    """Whether Ctrl-C reached this command, even if its exception was swallowed on the way."""
    return _heard


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    global _heard
    _heard = True
    raise KeyboardInterrupt


def stop_if_heard() -> None:
    """Raise the swallowed interrupt again before something is written for the user."""
    if _heard:
        raise KeyboardInterrupt


@contextlib.contextmanager
def listening() -> Iterator[None]:
    """SIGINT handled by ``_on_sigint`` for the duration, when Python's own handler was in place
    and this is the main thread (an embedding program's handler is left alone)."""
    global _heard
    _heard = False
    mine = (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    if mine:
        signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        if mine and signal.getsignal(signal.SIGINT) is _on_sigint:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def answered() -> None:
    """Ctrl-C has been answered: a second one during teardown (TensorFlow's libraries unloading)
    would otherwise end the process by the signal instead of exit 130."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
