"""The op probes' inputs, shared by the TensorFlow probes and their float64 references.

Every input is generated from integer arithmetic (``fixed_values``), so it is the same float32 bits
on every machine and NumPy version. ``probes.py`` feeds these arrays to TensorFlow and
``probe_reference.py`` to NumPy in float64: one definition, so a reference can never describe
another input than the probe's. The resize output sizes live here for the same reason.

Constraints for the next editor:
- NumPy only (``probe_reference`` must not import TensorFlow, and it imports this).
- Changing a seed, a shape or a range changes the recorded probes: bump ``WORKLOAD_VERSION``.
"""

from __future__ import annotations

import math

import numpy as np


def fixed_values(count: int, seed: int, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    """``count`` float32 values in [low, high) from a 64-bit LCG: identical bits everywhere."""
    state = (np.arange(count, dtype=np.uint64) + np.uint64(seed)) * np.uint64(6364136223846793005)
    state = state + np.uint64(1442695040888963407)
    state ^= state >> np.uint64(29)
    state *= np.uint64(0xBF58476D1CE4E5B9)
    state ^= state >> np.uint64(32)
    unit = (state >> np.uint64(40)).astype(np.float64) / float(1 << 24)
    return (low + (high - low) * unit).astype(np.float32)


def _values(seed: int, shape: tuple[int, ...], low: float = -1.0,
            high: float = 1.0) -> np.ndarray:
    return fixed_values(math.prod(shape), seed, low, high).reshape(shape)


def transcendental_input() -> np.ndarray:
    """[4096] in [-6, 6): the argument of exp, tanh, sigmoid, erf, gelu and softplus."""
    return _values(1, (4096,), -6.0, 6.0)


def log_input() -> np.ndarray:
    """[4096] in [1e-3, 100): the argument of log."""
    return _values(2, (4096,), 1e-3, 100.0)


def conv_image() -> np.ndarray:
    """[1, 16, 16, 8] NHWC: the input of every convolution probe."""
    return _values(3, (1, 16, 16, 8))


def conv3x3_kernel() -> np.ndarray:
    """[3, 3, 8, 16] HWIO: conv3x3, conv_strided and conv_dilated."""
    return _values(4, (3, 3, 8, 16))


def conv1x1_kernel() -> np.ndarray:
    """[1, 1, 8, 16] HWIO."""
    return _values(5, (1, 1, 8, 16))


def depthwise_kernel() -> np.ndarray:
    """[3, 3, 8, 1]: one filter per channel (channel multiplier 1)."""
    return _values(6, (3, 3, 8, 1))


# The resize probes' output sizes (square): 32 -> 21 bilinear and bicubic, 32 -> 13 area.
RESIZE_INTERPOLATED_SIZE = 21
RESIZE_AREA_SIZE = 13


def resize_pixels() -> np.ndarray:
    """[1, 32, 32, 3] in [0, 255): the image every resize probe shrinks."""
    return _values(7, (1, 32, 32, 3), 0.0, 255.0)


def long_sum_input() -> np.ndarray:
    """[2**20]: summed to one scalar by reduce_sum_long."""
    return _values(8, (1 << 20,))


def mean_rows_input() -> np.ndarray:
    """[64, 4096]: averaged along each row by reduce_mean_rows."""
    return _values(9, (64, 4096))


def matmul_square_operands() -> tuple[np.ndarray, np.ndarray]:
    """[64, 64] @ [64, 64]."""
    return _values(10, (64, 64)), _values(11, (64, 64))


def matmul_long_inner_operands() -> tuple[np.ndarray, np.ndarray]:
    """[8, 8192] @ [8192, 8]: few outputs, each a long dot product."""
    return _values(12, (8, 8192)), _values(13, (8192, 8))


def matmul_wide_operands() -> tuple[np.ndarray, np.ndarray]:
    """[96, 24] @ [24, 96]: many outputs, each a short dot product."""
    return _values(14, (96, 24)), _values(15, (24, 96))


def softmax_logits() -> np.ndarray:
    """[64, 100] in [-8, 8): softmax along each row."""
    return _values(16, (64, 100), -8.0, 8.0)
