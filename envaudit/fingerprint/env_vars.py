"""Probe: the environment variables that can change numerics, by prefix and by name.

Threading (OMP_, MKL_, KMP_, OPENBLAS_), kernel selection and fusion (TF_, XLA_FLAGS, ONEDNN_,
DNNL_, NPY_ for NumPy's CPU dispatch), reduced precision (NVIDIA_TF32_OVERRIDE,
TORCH_ALLOW_TF32_CUBLAS_OVERRIDE), GPU libraries and determinism (CUDA_, CUDNN_, CUBLAS_, NCCL_),
and what gets loaded (LD_LIBRARY_PATH, LD_PRELOAD).

Constraint: a fingerprint never holds a secret, even one written with --no-redact, so the rules
of ``credentials`` apply here, before anything is recorded: a variable whose name looks secret is
not recorded at all, URL userinfo in a value is masked, and a value that contains a long random
token is recorded as ``[redacted]``. Everything else is kept as it is (home paths, host names:
those are for the redaction of what leaves the machine, see ``redact``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from envaudit.fingerprint.credentials import (
    REDACTED,
    has_token,
    looks_secret_name,
    mask_url_credentials,
)

_PREFIXES = (
    "TF_", "ONEDNN_", "DNNL_", "MKL_", "KMP_", "OMP_", "OPENBLAS_", "GOTO_", "NPY_",
    "CUDA_", "NVIDIA_", "NCCL_", "CUDNN_", "CUBLAS_", "CUBLASLT_",
)
_NAMES = frozenset({
    "XLA_FLAGS", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "LD_LIBRARY_PATH", "LD_PRELOAD",
    "PYTHONHASHSEED",
})


def is_recorded(name: str) -> bool:
    """Whether ``name`` is numerics-relevant and does not look like a credential."""
    if looks_secret_name(name):
        return False
    return name in _NAMES or name.startswith(_PREFIXES)


def recorded_value(value: str) -> str:
    """``value`` as a fingerprint may hold it: token values hidden, URL userinfo masked."""
    if has_token(value):
        return REDACTED
    return mask_url_credentials(value)


def probe(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    return {name: recorded_value(environ[name]) for name in sorted(environ) if is_recorded(name)}
