"""Probe: the environment variables that can change numerics, by prefix and by name.

Threading (OMP_, MKL_, KMP_, OPENBLAS_), kernel selection and fusion (TF_, XLA_FLAGS, ONEDNN_,
DNNL_, NPY_ for NumPy's CPU dispatch), reduced precision (NVIDIA_TF32_OVERRIDE,
TORCH_ALLOW_TF32_CUBLAS_OVERRIDE), GPU libraries and determinism (CUDA_, CUDNN_, CUBLAS_, NCCL_),
and what gets loaded (LD_LIBRARY_PATH, LD_PRELOAD). Names that look like credentials are dropped
before anything is recorded; values are kept as they are (the report redacts home paths).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

_PREFIXES = (
    "TF_", "ONEDNN_", "DNNL_", "MKL_", "KMP_", "OMP_", "OPENBLAS_", "GOTO_", "NPY_",
    "CUDA_", "NVIDIA_", "NCCL_", "CUDNN_", "CUBLAS_", "CUBLASLT_",
)
_NAMES = frozenset({
    "XLA_FLAGS", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "LD_LIBRARY_PATH", "LD_PRELOAD",
    "PYTHONHASHSEED",
})
_CREDENTIAL_WORDS = ("SECRET", "TOKEN", "KEY", "PASSWORD", "CREDENTIAL")


def is_recorded(name: str) -> bool:
    """Whether ``name`` is numerics-relevant and does not look like a credential."""
    upper = name.upper()
    if any(word in upper for word in _CREDENTIAL_WORDS):
        return False
    return name in _NAMES or name.startswith(_PREFIXES)


def probe(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    return {name: environ[name] for name in sorted(environ) if is_recorded(name)}
