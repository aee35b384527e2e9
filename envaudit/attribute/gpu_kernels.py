"""Kernels known to compute differently from one process to the next, named where training first
differed between fresh processes (``--repeat``).

The table is what TensorFlow's and NVIDIA's determinism notes say: on a GPU, bias-add's backward,
segment sums and reductions add with atomics in whatever order threads finish; cuDNN chooses its
convolution algorithms by timing candidates in each process, and some accumulate with atomics;
``crop_and_resize``'s backward scatters with atomics. Which of them ran is read from the first
array that differed (its part of the step and the variable's kind) and the device that computed
it. A name here is "possible", never "confirmed": the re-run with op determinism on decides, and
a kernel with no deterministic version makes that re-run raise in TensorFlow's own words. NumPy
free, standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KnownKernel:
    kernel: str  # TensorFlow's op names
    why: str  # how it varies, in words
    remedy: str  # the settings that make it deterministic

    def sentence(self) -> str:
        return f"{self.kernel}: {self.why} (deterministic with {self.remedy})"


_DETERMINISTIC_OPS = "TF_DETERMINISTIC_OPS=1 or tf.config.experimental.enable_op_determinism()"
KERNELS = {
    "conv": KnownKernel(
        "Conv2DBackpropFilter, Conv2DBackpropInput (cuDNN)",
        "cuDNN picks an algorithm per process by timing candidates (autotuning), and some"
        " accumulate with atomic adds",
        f"TF_CUDNN_DETERMINISTIC=1, {_DETERMINISTIC_OPS}; TF_CUDNN_USE_AUTOTUNE=0 fixes the"
        " choice"),
    "depthwise": KnownKernel(
        "DepthwiseConv2dNativeBackpropFilter", "sums the filter gradient with atomic adds",
        _DETERMINISTIC_OPS),
    "bias": KnownKernel(
        "BiasAddGrad", "sums the bias gradient over the batch with atomic adds",
        _DETERMINISTIC_OPS),
    "reduction": KnownKernel(
        "Sum, Mean (batch norm's moments), UnsortedSegmentSum",
        "GPU reductions and segment sums add with atomics in the order threads finish",
        _DETERMINISTIC_OPS),
    "matmul": KnownKernel(
        "MatMul (cuBLAS)", "split-K algorithms may accumulate in a different order",
        _DETERMINISTIC_OPS),
    "crop_and_resize": KnownKernel(
        "CropAndResizeGradImage, CropAndResizeGradBoxes",
        "scatter the gradient with atomic adds; op determinism makes them raise instead",
        "no deterministic GPU kernel: run them on the CPU"),
}
_INPUT = KnownKernel(
    "the input pipeline (tf.data)",
    "a parallel map with deterministic=False delivers elements in finishing order, and an"
    " unseeded or stateful random op draws in that order",
    "tf.data.Options().deterministic = True and stateless random ops seeded per step")
# A weight's last name part -> the kernel family that computed its gradient.
_BY_WEIGHT = {"conv": "conv", "pw": "conv", "cls_w": "conv", "box_w": "conv", "dw": "depthwise",
              "cls_b": "bias", "box_b": "bias", "dense_b": "bias", "gamma": "reduction",
              "beta": "reduction", "dense_w": "matmul"}


def suspected(part: str, variable: str | None, device: str | None) -> tuple[str, ...]:
    """The known kernels that may explain a first difference in ``part`` ("batch", "loss",
    "grad", "var") of a step, for ``variable`` (its name with dots), computed on ``device``."""
    if part == "batch":
        return (_INPUT.sentence(),)
    if not (device or "").startswith("GPU"):
        return ()  # the table is of GPU kernels; a CPU's own threads are not in it
    if part == "loss":
        return tuple(KERNELS[k].sentence() for k in ("conv", "reduction"))
    family = _BY_WEIGHT.get((variable or "").rsplit(".", 1)[-1])
    return (KERNELS[family].sentence(),) if family else ()
