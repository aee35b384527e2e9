"""``envaudit history --format json`` and ``envaudit history show ID --format json``.

A history format (``render/formats.py``, report "history") has two members: ``render(runs,
path)``, the runs on record (without their whole fingerprints), and ``render_run(run)``, one run
with every field. Strict JSON like the check's (``check_json.plain``: NaN ``null``, infinities
``"inf"``), under the history's own ``schema``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from envaudit.history.types import SCHEMA, Run
from envaudit.render.check_json import plain


def render(runs: Sequence[Run], path: Path | None = None) -> str:
    """The runs and the database they came from (``path``; "" when not given)."""
    return _json({"schema": SCHEMA, "database": "" if path is None else str(path),
                  "runs": [r.to_dict(with_fingerprint=False) for r in runs]})


def render_run(run: Run) -> str:
    """One run, every field, the whole fingerprint included."""
    return _json({"schema": SCHEMA, **run.to_dict()})


def _json(data: object) -> str:
    return json.dumps(plain(data), indent=2, allow_nan=False) + "\n"
