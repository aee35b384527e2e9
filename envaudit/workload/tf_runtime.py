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


@contextlib.contextmanager
def silenced_stderr() -> Iterator[None]:
    """File descriptor 2 pointed at a temporary file for the duration (XLA logs "Compiled cluster
    using XLA!" and its service start-up there on the first compile); replayed if the body
    raises, so a failure still says what TensorFlow said (not on Ctrl-C: see the module)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        except (KeyboardInterrupt, SystemExit):
            raise  # the finally below restores fd 2; what TensorFlow said stays unsaid
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
