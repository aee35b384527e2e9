"""TensorFlow's TF32 switch, set per envaudit's ``--tf32`` option, and read back.

``switched(option)`` sets ``tf.config.experimental.enable_tensor_float_32_execution`` before the
body's first TensorFlow op and puts the previous value back after it: the switch is process-wide,
and a user's own process that calls ``envaudit.check(tf32="off")`` keeps its own setting
afterwards. ``default`` touches nothing (TensorFlow's own choice: on). ``reading()`` is what a
recording keeps: the switch as the body ran under it and each visible GPU's compute capability as
TensorFlow reports it; ``envaudit/tf32.py`` decides from them whether TF32 applied.

Imports TensorFlow (quietly, ``tf_runtime.quiet``), so only when called.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from envaudit.tf32 import Tf32Option


def _tensorflow() -> Any:
    from envaudit.workload import tf_runtime

    tf_runtime.quiet()
    import tensorflow as tf

    return tf


@contextlib.contextmanager
def switched(option: Tf32Option) -> Iterator[None]:
    """TF32 on or off as ``option`` says for the duration (``default``: left alone)."""
    if option == "default":
        yield
        return
    experimental = _tensorflow().config.experimental
    before = experimental.tensor_float_32_execution_enabled()
    experimental.enable_tensor_float_32_execution(option == "on")
    try:
        yield
    finally:
        experimental.enable_tensor_float_32_execution(before)


def reading() -> tuple[bool, dict[str, str | None]]:
    """TensorFlow's TF32 switch now, and ``GPU:N`` -> its compute capability ("8.0"; None when
    TensorFlow does not say) for every GPU it sees (the order ``workload/devices.py`` names)."""
    tf = _tensorflow()
    capabilities: dict[str, str | None] = {}
    for index, gpu in enumerate(tf.config.list_physical_devices("GPU")):
        try:
            details = tf.config.experimental.get_device_details(gpu)
        except (ValueError, RuntimeError):
            details = {}
        cc = details.get("compute_capability")
        capabilities[f"GPU:{index}"] = f"{cc[0]}.{cc[1]}" if isinstance(cc, tuple) else None
    return bool(tf.config.experimental.tensor_float_32_execution_enabled()), capabilities
