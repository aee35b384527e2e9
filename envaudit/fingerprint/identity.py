"""``fingerprint_id``: a hash of the numerics-relevant fields only.

``fields.classify`` decides which fields count (one definition, shared with ``diff``). Hostname,
capture time, free memory, paths, the kernel, clocks and GPU serials never change the id; nor
do the subtrees only a process with TensorFlow imported can observe (``fields.PROCESS_DEPENDENT``),
so ``envaudit fingerprint`` and a check on the same machine agree. An unreadable field counts as
"unavailable" whatever the reason text says.

The id is ``"fp-"`` + the first 16 hex digits of SHA-256 over the canonical JSON of the sorted
``(path, value)`` pairs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from envaudit.fingerprint.fields import classify_leaf, is_process_dependent, leaves
from envaudit.fingerprint.guard import is_unavailable


def identity_fields(data: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The sorted ``(path, value)`` pairs that ``fingerprint_id`` hashes."""
    pairs = []
    for path, value in leaves(data):
        if is_process_dependent(path) or not classify_leaf(path, value)[1]:
            continue
        pairs.append((path, "unavailable" if is_unavailable(value) else value))
    return sorted(pairs, key=lambda pair: pair[0])


def fingerprint_id(data: Mapping[str, Any]) -> str:
    canonical = json.dumps(
        identity_fields(data), sort_keys=True, separators=(",", ":"), default=str
    )
    return "fp-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
