"""Which device computed each array: the evidence that a change can or cannot reach it.

TensorFlow places each op on the first visible GPU when it has a GPU kernel, else on the CPU. The
device an array was computed on is read from the tensor TensorFlow returns (``Tensor.device``,
e.g. ``/job:localhost/replica:0/task:0/device:GPU:0``) and kept short: ``CPU:0``, ``GPU:0``. An
array handed back as NumPy by a library (Keras ``predict``) gets the device TensorFlow would place
it on: the first GPU when one is visible, else the CPU. ``names`` says which GPU ``GPU:N`` is.
"""

from __future__ import annotations

import re

import tensorflow as tf

_DEVICE = re.compile(r"device:([A-Z_]+):(\d+)$")


def short(device: str) -> str:
    """``/job:localhost/replica:0/task:0/device:GPU:0`` -> ``GPU:0``; an empty or unknown device
    string (an op TensorFlow did not place) -> ``CPU:0``, where such work runs."""
    match = _DEVICE.search(device or "")
    if not match:
        return "CPU:0"
    kind = "GPU" if match.group(1) == "GPU" else "CPU"
    return f"{kind}:{match.group(2)}"


def of(tensor: object) -> str:
    """The short device of a TensorFlow tensor (``CPU:0`` for a NumPy array)."""
    return short(getattr(tensor, "device", "") or "")


def default() -> str:
    """Where an op with a GPU kernel runs in this process."""
    return "GPU:0" if tf.config.list_logical_devices("GPU") else "CPU:0"


def names() -> dict[str, str]:
    """``GPU:N`` -> the device's name, for every visible GPU (empty without one)."""
    found = {}
    for index, gpu in enumerate(tf.config.list_physical_devices("GPU")):
        try:
            details = tf.config.experimental.get_device_details(gpu)
        except (ValueError, RuntimeError):
            details = {}
        found[f"GPU:{index}"] = str(details.get("device_name") or gpu.name)
    return found
