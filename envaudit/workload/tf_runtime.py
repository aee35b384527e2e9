"""Importing TensorFlow quietly.

TensorFlow's C++ start-up chatter (oneDNN notices, "could not find cuda drivers", cuInit errors on
machines without a GPU) goes straight to file descriptor 2, where it would bury envaudit's one-line
messages. Setting TF_CPP_MIN_LOG_LEVEL from inside Python does not reach that logger, and setting
it for the user would change their environment, so the import and device start-up (and XLA's
first compile, see ``silenced_stderr``) run with fd 2 pointed at a temporary file instead. If
they fail, what TensorFlow said is replayed; if the user interrupts them (Ctrl-C), it is not: the
start-up chatter explains nothing about an interrupt and would bury envaudit's one line.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any


def quiet() -> None:
    if "tensorflow" in sys.modules:
        return
    with silenced_stderr():
        import tensorflow as tf

        _grow_gpu_memory(tf)
        tf.config.list_logical_devices()  # device start-up logs too
        tf.get_logger().setLevel("ERROR")


def _grow_gpu_memory(tf: Any) -> None:
    """Memory growth on every GPU, before any is initialized, unless the user chose
    (``TF_FORCE_GPU_ALLOW_GROWTH``). TensorFlow otherwise takes nearly all of a GPU's memory at
    start-up, and a confirmation child started beside this process would get too little: a
    failed start, or other cuDNN algorithms for want of workspace -- a false "not confirmed".
    Growth changes where memory comes from, not what is computed."""
    if "TF_FORCE_GPU_ALLOW_GROWTH" in os.environ:
        return
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)


def gpus_visible() -> bool:
    """Whether TensorFlow sees a GPU in this process (imports TensorFlow quietly)."""
    quiet()
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def warm_up(run: Callable[[], object]) -> float:
    """Run ``run`` once and discard what it computed when a GPU is visible, and return the
    seconds it took (0.0 on the CPU, where it is not run). A GPU's first run compiles kernels
    from PTX where the wheel carries none for this GPU (minutes on a new architecture) and lets
    cuDNN and XLA autotune by timing; the run that is kept then measures arithmetic, not start-up,
    in the golden and the check alike."""
    if not gpus_visible():
        return 0.0
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


class _Silence:
    """The one redirection of file descriptor 2 in this process, shared by every thread that asks
    for it: the first to enter points fd 2 at a temporary file, the last to leave points it back.
    Two threads that each saved and restored fd 2 themselves (the probes compile in one while the
    user's model runs in another) would hand fd 2 back to the terminal while the other was still
    running, and TensorFlow's start-up chatter would reach the user."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.saved = -1
        self.capture: Any = None

    def enter(self) -> tuple[Any, int]:
        with self.lock:
            if self.depth == 0:
                sys.stderr.flush()
                self.saved = os.dup(2)
                self.capture = tempfile.TemporaryFile()
                os.dup2(self.capture.fileno(), 2)
            self.depth += 1
            return self.capture, os.lseek(2, 0, os.SEEK_CUR)

    def leave(self, replay_from: int | None) -> None:
        """Undo one ``enter``; ``replay_from``: write what fd 2 received since that offset to the
        real stderr (a failure: what TensorFlow said explains it)."""
        with self.lock:
            if replay_from is not None:
                end = os.lseek(2, 0, os.SEEK_CUR)
                said = os.pread(self.capture.fileno(), max(0, end - replay_from), replay_from)
                os.write(self.saved, said.decode(errors="replace").encode())
            self.depth -= 1
            if self.depth == 0:
                os.dup2(self.saved, 2)
                os.close(self.saved)
                self.capture.close()


_SILENCE = _Silence()


@contextlib.contextmanager
def silenced_stderr() -> Iterator[None]:
    """File descriptor 2 pointed at a temporary file for the duration (XLA logs "Compiled cluster
    using XLA!" and its service start-up there on the first compile), for every thread of the
    process at once (``_Silence``); what it received meanwhile is replayed if the body raises, so
    a failure still says what TensorFlow said (not on Ctrl-C: see the module)."""
    _capture, start = _SILENCE.enter()
    replay: int | None = None
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        raise  # what TensorFlow said stays unsaid
    except BaseException:
        replay = start
        raise
    finally:
        _SILENCE.leave(replay)
