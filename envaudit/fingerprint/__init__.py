"""Environment fingerprints: capture one, load one, compare two.

``capture()`` runs one guarded probe per source (python_env, os_env, cpu, memory, gpu,
tensorflow_build, numerics_libs, env_vars, packages) and never imports TensorFlow. ``fields``
holds the single definition of which fields are numerics-relevant, shared by ``identity``
(fingerprint_id) and ``diff``. ``redact`` prepares a tree for a bug report.
"""

from envaudit.fingerprint.capture import capture
from envaudit.fingerprint.diff import diff
from envaudit.fingerprint.load import load_fingerprint
from envaudit.fingerprint.types import CATEGORIES, SCHEMA, Change, Fingerprint

__all__ = ["CATEGORIES", "SCHEMA", "Change", "Fingerprint", "capture", "diff", "load_fingerprint"]
