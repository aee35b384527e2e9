"""Probe: the environment variables that can change numerics, by name and by library family.

What is recorded is read from the table of numerics settings (``envaudit/settings.py``): every
variable listed there by name (TensorFlow's own: kernel selection, fusion, determinism, reduced
precision, threads, devices and memory, the cluster, Keras, logging; ``XLA_FLAGS``,
``NVIDIA_TF32_OVERRIDE``, what gets loaded: ``LD_LIBRARY_PATH``, ``LD_PRELOAD``) and every family
(``TF_CUDNN_``, ``ONEDNN_``, ``OMP_``, ``CUDA_``, ...). Never the bare ``TF_`` prefix: Terraform's
variables share it (``TF_VAR_*``, ``TF_CLI_ARGS*``, ``TF_TOKEN_*``, ...), and none of them is
TensorFlow's; nor ``NVIDIA_``, which NVIDIA's services use for keys and endpoints. A test holds
that the table lists neither. To record a new variable, add its record to the table.

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
from envaudit.settings import RECORDED_FAMILIES, RECORDED_NAMES

# Prefixes whose every variable belongs to one numerics library, and the single names.
FAMILIES = RECORDED_FAMILIES
NAMES = RECORDED_NAMES


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
