"""Probe: the environment variables that can change numerics, by name and by library family.

What is recorded: TensorFlow's own variables, by name (``TENSORFLOW``: kernel selection, fusion,
determinism, reduced precision, threads, devices and memory, the cluster, Keras, logging), a few
TensorFlow families whose every member is TensorFlow's (``TF_CUDNN_``, ``TF_ONEDNN_``, ...), the
families of numerics libraries (``FAMILIES``: oneDNN, MKL, OpenMP, OpenBLAS, NumPy, CUDA, cuDNN,
cuBLAS, NCCL) and a few single names (``XLA_FLAGS``, ``NVIDIA_TF32_OVERRIDE``, what gets loaded:
``LD_LIBRARY_PATH``, ``LD_PRELOAD``). Never the bare ``TF_`` prefix: Terraform's variables share
it (``TF_VAR_*`` holds the inputs of a plan, passwords included; ``TF_CLI_ARGS*`` command lines;
``TF_TOKEN_*`` credentials; ``TF_LOG*``, ``TF_WORKSPACE``, ``TF_IN_AUTOMATION``, ...), and none of
them is TensorFlow's. Nor ``NVIDIA_``, which NVIDIA's services use for keys and endpoints. A
family is listed only where no other tool writes variables with that prefix; a new TensorFlow
variable is added by name. Every setting a re-run may put back (``attribute.settings``) must be
recorded (a test holds that).

Constraint: a fingerprint never holds a secret, even one written with --no-redact, so the rules
of ``credentials`` apply here, before anything is recorded: a variable whose name looks secret is
not recorded at all, URL userinfo and URL tokens in a value are masked, and a value that contains
a long random token is recorded as ``[redacted]``. Everything else is kept as it is (home paths,
host names: those are for the redaction of what leaves the machine, see ``redact``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from envaudit.fingerprint.credentials import (
    REDACTED,
    has_token,
    looks_secret_name,
    mask_url_credentials,
    mask_url_tokens,
)

# TensorFlow's variables, by name (read from TensorFlow's sources and its shared libraries).
TENSORFLOW = frozenset({
    # CPU kernels: oneDNN or Eigen, and oneDNN's reduced-precision fp32 math
    "TF_ENABLE_ONEDNN_OPTS", "TF_ENABLE_ONEDNN_SPMM", "TF_ENABLE_ZENDNN_OPTS", "TF_DISABLE_MKL",
    "TF_SET_ONEDNN_FPMATH_MODE",
    # determinism
    "TF_DETERMINISTIC_OPS", "TF_DETERMINISTIC_ORDER", "TF_DETERMINISTIC_ALLOCATOR",
    "TF_DISABLE_SCATTER_OP_DETERMINISM", "TF_USE_DETERMINISTIC_SEGMENT_REDUCTIONS",
    "TF_DISABLE_SEGMENT_REDUCTION_OP_DETERMINISM_EXCEPTIONS",
    # GPU kernel selection and autotuning
    "TF_USE_CUDNN", "TF_USE_CUDNN_BATCHNORM_SPATIAL_PERSISTENT", "TF_USE_CUBLASLT",
    "TF_USE_DEEP_CONV2D", "TF_USE_DEFAULT_CONV_ALGO", "TF_USE_ROCM_NHWC", "TF_AVGPOOL_USE_CUDNN",
    "TF_ENABLE_WINOGRAD_NONFUSED", "TF_ENABLE_MAXPOOL_NANPROP", "TF_ENABLE_FFT_TILING_FORWARD",
    "TF_AUTOTUNE_THRESHOLD", "TF_AUTOTUNE_MIN_WARMUP_ITERATIONS", "TF_MATMUL_AUTOTUNE_ENABLE",
    "TF_MATMUL_AUTOTUNE_MAX_ALGORITHMS", "TF_CUBLAS_WORKSPACE_LIMIT_IN_MB",
    "TF_CUFFT_WORKSPACE_LIMIT_IN_MB", "TF_DEBUG_CUDNN_RNN", "TF_DEBUG_CUDNN_RNN_ALGO",
    "TF_DEBUG_CUDNN_RNN_USE_TENSOR_OPS",
    # reduced precision: TF32 and mixed precision
    "TF_ENABLE_TF32", "TF_ENABLE_CUBLAS_TENSOR_OP_MATH_FP32",
    "TF_ENABLE_CUDNN_TENSOR_OP_MATH_FP32", "TF_ENABLE_CUDNN_RNN_TENSOR_OP_MATH_FP32",
    "TF_ENABLE_AUTO_MIXED_PRECISION", "TF_ENABLE_AUTO_MIXED_PRECISION_GRAPH_REWRITE",
    "TF_CONV2D_USE_FP16_ACCUMULATE", "TF_FP16_CONV_USE_FP32_COMPUTE",
    "TF_FP16_MATMUL_USE_FP32_COMPUTE", "TF_FP16_RNN_USE_FP32_COMPUTE",
    # threads: summation order
    "TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_OVERRIDE_GLOBAL_THREADPOOL",
    "TF_USE_EIGEN_PARALLEL_FOR_IN_WORK_SHARDER",
    # XLA and compilation
    "TF_XLA_FLAGS", "TF_FUNCTION_JIT_COMPILE_DEFAULT", "TF_JIT_COMPILE_REWRITE",
    "TF_DISABLE_JIT_KERNELS",
    # devices and memory: which device runs an op
    "TF_GPU_ALLOCATOR", "TF_FORCE_GPU_ALLOW_GROWTH", "TF_GPU_THREAD_MODE", "TF_GPU_THREAD_COUNT",
    "TF_GPU_HOST_MEM_LIMIT_IN_MB", "TF_FORCE_UNIFIED_MEMORY", "TF_ENABLED_DEVICE_TYPES",
    "TF_MIN_GPU_MULTIPROCESSOR_COUNT", "TF_CUDA_PLATFORM_GPU_DEVICE_SCHEDULE",
    "TF_PER_DEVICE_MEMORY_LIMIT_MB",
    # the cluster of a distributed run (its hosts are hidden by the redaction), and Keras 2 or 3
    "TF_CONFIG", "TF_USE_LEGACY_KERAS",
})
# Prefixes whose every variable belongs to one numerics library, and that no other tool uses.
# TF_CPP_ is TensorFlow's logging: informational (``fields``), but it explains a report's logs.
FAMILIES = (
    "TF_CUDNN_", "TF_ONEDNN_", "TF_MKL_", "TF_AUTO_MIXED_PRECISION_", "TF_CPP_",
    "ONEDNN_", "DNNL_", "MKL_", "KMP_", "OMP_", "OPENBLAS_", "GOTO_", "NPY_",
    "CUDA_", "CUDNN_", "CUBLAS_", "CUBLASLT_", "NCCL_",
)
NAMES = TENSORFLOW | {
    "XLA_FLAGS", "NVIDIA_TF32_OVERRIDE", "NVIDIA_VISIBLE_DEVICES",
    "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "LD_LIBRARY_PATH", "LD_PRELOAD", "PYTHONHASHSEED",
}


def is_recorded(name: str) -> bool:
    """Whether ``name`` is numerics-relevant and does not look like a credential."""
    if looks_secret_name(name):
        return False
    return name in NAMES or name.startswith(FAMILIES)


def recorded_value(value: str) -> str:
    """``value`` as a fingerprint may hold it: token values hidden, URL userinfo and URL tokens
    masked."""
    if has_token(value):
        return REDACTED
    return mask_url_tokens(mask_url_credentials(value))


def probe(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    return {name: recorded_value(environ[name]) for name in sorted(environ) if is_recorded(name)}
