"""The numerics settings a confirmation re-run may put back, and the values each may take.

A golden bundle's fingerprint is data from someone else: its checksums prove that nobody changed
it, not who wrote it. A re-run's child process therefore gets this process's own environment with
at most the variables named here changed, each to a value its rule accepts (or removed). Anything
else the golden fingerprint records -- ``LD_PRELOAD``, ``LD_LIBRARY_PATH``, ``PYTHONPATH``,
``PYTHONWARNINGS``, ``BROWSER``, ``CUDA_VISIBLE_DEVICES``, a flag that names a file -- chooses code,
libraries, files or devices rather than arithmetic, so it is reported as "not restored" and never
applied. Values are checked against a pattern per variable (no paths, no spaces, no shell
metacharacters), so an allowed name cannot smuggle a file name in either.

Add a setting -> add its name and value rule here, with what it changes. Standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BOOL = r"(?i:0|1|true|false|yes|no|on|off)"
_COUNT = r"[1-9][0-9]{0,3}"  # a thread count: 1..9999
_ISA = (r"(?i:ALL|DEFAULT|AVX10_1_512_AMX_FP16|AVX10_1_512_AMX|AVX10_1_512|AVX512_CORE_AMX_FP16"
        r"|AVX512_CORE_AMX|AVX512_CORE_FP16|AVX512_CORE_BF16|AVX512_CORE_VNNI|AVX512_CORE"
        r"|AVX2_VNNI_2|AVX2_VNNI|AVX2|AVX|SSE41)")
_FPMATH = r"(?i:STRICT|BF16|F16|TF32|ANY)"
_WORD = r"[A-Za-z0-9_]{1,40}"
# Flag names that write or read files, or load code, are never restored even inside XLA_FLAGS.
_FILE_FLAG = re.compile(r"dump|dir|path|file|_to$|cache|plugin|profile|log|so_name|library")
_FLAG_VALUE = r"[A-Za-z0-9_.,:+-]{0,200}"


@dataclass(frozen=True)
class Setting:
    name: str
    value: str  # a regular expression the whole value must match
    why: str  # what it changes, for the next editor


SETTINGS: tuple[Setting, ...] = (
    Setting("TF_ENABLE_ONEDNN_OPTS", _BOOL, "oneDNN or Eigen kernels on the CPU"),
    Setting("TF_DETERMINISTIC_OPS", _BOOL, "deterministic kernels"),
    Setting("TF_CUDNN_DETERMINISTIC", _BOOL, "deterministic cuDNN algorithms"),
    Setting("TF_CUDNN_USE_AUTOTUNE", _BOOL, "cuDNN algorithm autotuning"),
    Setting("TF_CUDNN_USE_FRONTEND", _BOOL, "cuDNN frontend API (other algorithms)"),
    Setting("TF_CUDNN_USE_RUNTIME_FUSION", _BOOL, "cuDNN runtime-fused kernels"),
    Setting("TF_USE_CUDNN_BATCHNORM_SPATIAL_PERSISTENT", _BOOL, "cuDNN batch-norm kernel"),
    Setting("TF_ENABLE_CUBLAS_TENSOR_OP_MATH_FP32", _BOOL, "TF32 tensor cores for cuBLAS"),
    Setting("TF_ENABLE_CUDNN_TENSOR_OP_MATH_FP32", _BOOL, "TF32 tensor cores for cuDNN"),
    Setting("TF_ENABLE_CUDNN_RNN_TENSOR_OP_MATH_FP32", _BOOL, "TF32 tensor cores for RNNs"),
    Setting("TF_ENABLE_TF32", _BOOL, "TF32 math"),
    Setting("NVIDIA_TF32_OVERRIDE", r"[01]", "TF32 math on NVIDIA GPUs, forced on or off"),
    Setting("TF_ENABLE_AUTO_MIXED_PRECISION", _BOOL, "automatic mixed precision rewrite"),
    Setting("TF_ENABLE_AUTO_MIXED_PRECISION_GRAPH_REWRITE", _BOOL, "mixed precision rewrite"),
    Setting("TF_AUTO_MIXED_PRECISION_GRAPH_REWRITE_LEVEL", _WORD, "mixed precision op lists"),
    Setting("TF_SET_ONEDNN_FPMATH_MODE", _FPMATH, "oneDNN reduced-precision fp32 math"),
    Setting("ONEDNN_DEFAULT_FPMATH_MODE", _FPMATH, "oneDNN reduced-precision fp32 math"),
    Setting("DNNL_DEFAULT_FPMATH_MODE", _FPMATH, "oneDNN reduced-precision fp32 math"),
    Setting("ONEDNN_MAX_CPU_ISA", _ISA, "the instruction set oneDNN kernels may use"),
    Setting("DNNL_MAX_CPU_ISA", _ISA, "the instruction set oneDNN kernels may use"),
    Setting("ONEDNN_CPU_ISA_HINTS", r"(?i:NO_HINTS|PREFER_YMM)", "oneDNN vector width"),
    Setting("DNNL_CPU_ISA_HINTS", r"(?i:NO_HINTS|PREFER_YMM)", "oneDNN vector width"),
    Setting("TF_NUM_INTRAOP_THREADS", _COUNT, "threads per op: summation order"),
    Setting("TF_NUM_INTEROP_THREADS", _COUNT, "ops run at once"),
    Setting("OMP_NUM_THREADS", rf"{_COUNT}(,{_COUNT}){{0,3}}", "OpenMP threads: summation order"),
    Setting("MKL_NUM_THREADS", _COUNT, "MKL threads: summation order"),
    Setting("OPENBLAS_NUM_THREADS", _COUNT, "OpenBLAS threads: summation order"),
    Setting("OMP_DYNAMIC", _BOOL, "OpenMP thread count adjustment"),
    Setting("OMP_PROC_BIND", r"(?i:true|false|close|spread|master|primary)(,[a-z]{1,8}){0,3}",
            "OpenMP thread placement"),
    Setting("KMP_BLOCKTIME", r"[0-9]{1,6}|(?i:infinite)", "Intel OpenMP spin time"),
    Setting("KMP_AFFINITY", r"[A-Za-z0-9,=:._-]{1,100}", "Intel OpenMP thread placement"),
    Setting("OPENBLAS_CORETYPE", _WORD, "the OpenBLAS kernel family (float64 twin)"),
    Setting("OPENBLAS_L2_SIZE", r"[0-9]{1,10}", "OpenBLAS blocking"),
    Setting("NPY_DISABLE_CPU_FEATURES", r"[A-Za-z0-9_, ]{0,200}", "NumPy's SIMD dispatch"),
    Setting("CUBLAS_WORKSPACE_CONFIG", r"(:[0-9]{1,8}:[0-9]{1,4}){1,4}", "cuBLAS determinism"),
    Setting("PYTHONHASHSEED", r"random|[0-9]{1,10}", "hash order (set iteration)"),
    Setting("XLA_FLAGS", "", "XLA code generation (checked flag by flag)"),
    Setting("TF_XLA_FLAGS", "", "XLA auto-clustering (checked flag by flag)"),
)
_BY_NAME = {s.name: s for s in SETTINGS}
_FLAG_PREFIX = {"XLA_FLAGS": "--xla_", "TF_XLA_FLAGS": "--tf_xla_"}


def refusal(name: str, value: str | None) -> str | None:
    """Why ``name`` may not be set to ``value`` (None: removed) in a re-run, or None if it may."""
    setting = _BY_NAME.get(name)
    if setting is None:
        return (f"not restored: {name} is not a numerics setting envaudit puts back (it may"
                " choose code, libraries, files or devices)")
    if value is None:
        return None
    if not isinstance(value, str):
        return f"not restored: the golden value of {name} is not text"
    if name in _FLAG_PREFIX:
        return _flag_refusal(name, value)
    if not re.fullmatch(setting.value, value):
        return f"not restored: {_shown(value)} is not a valid value of {name}"
    return None


def _flag_refusal(name: str, value: str) -> str | None:
    for token in value.split():
        flag, _sep, argument = token.partition("=")
        if not (flag.startswith(_FLAG_PREFIX[name]) and re.fullmatch(r"--[a-z0-9_]{1,100}", flag)
                and re.fullmatch(_FLAG_VALUE, argument)):
            return f"not restored: {_shown(token)} in {name} is not a plain numerics flag"
        if _FILE_FLAG.search(flag):
            return f"not restored: {flag} in {name} names files or code, not arithmetic"
    return None


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")
