"""``envaudit diff --format json``: the changes between two fingerprints as one JSON document.

``{"schema": "envaudit.diff/1", "golden": {...}, "current": {...}, "numerics_changed": bool,
"changes": [{path, golden, current, category, numerics, origin, minutia}, ...]}``; changes keep
``diff``'s order (numerics-relevant first). ``null`` marks a side without the field. JSON lists
every change: ``origin`` and ``minutia`` say how the text table groups and folds each one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from envaudit.fingerprint.types import Change, Fingerprint

SCHEMA = "envaudit.diff/1"


def render(a: Fingerprint, b: Fingerprint, changes: Sequence[Change]) -> str:
    document = {
        "schema": SCHEMA,
        "golden": {"fingerprint_id": a.fingerprint_id, "captured_at": a.get("captured_at")},
        "current": {"fingerprint_id": b.fingerprint_id, "captured_at": b.get("captured_at")},
        "numerics_changed": any(c.numerics for c in changes),
        "counts": {
            "numerics": sum(1 for c in changes if c.numerics),
            "informational": sum(1 for c in changes if not c.numerics),
        },
        "changes": [c.to_dict() for c in changes],
    }
    return json.dumps(document, indent=2, default=str) + "\n"
