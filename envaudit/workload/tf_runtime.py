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
from collections.abc import Iterator


def quiet() -> None:
    if "tensorflow" in sys.modules:
        return
    with silenced_stderr():
        import tensorflow as tf

        tf.config.list_logical_devices()  # device start-up logs too
        tf.get_logger().setLevel("ERROR")


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
