"""``envaudit history`` and ``envaudit history show ID`` as text or JSON strings.

The text is plain (no colour, no markup): a table of runs, or one run field by field. Every value
that came from a file or a path is made printable, so a strange golden path cannot drive the
terminal. The JSON is strict (NaN ``null``, infinities ``"inf"``), like the check JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from envaudit.history.model import SCHEMA, Run
from envaudit.render.check_json import plain
from envaudit.render.formatting import number, printable

Format = Literal["text", "json"]
HEADER = ("id", "time", "command", "golden", "fingerprint", "verdict")


def render_runs(runs: Sequence[Run], fmt: Format = "text", path: Path | None = None) -> str:
    """A table of ``runs`` (one line each), or their JSON (without whole fingerprints);
    ``path``, the database, is named when there is nothing to show."""
    where = "" if path is None else str(path)
    if fmt == "json":
        return _json({"schema": SCHEMA, "database": where,
                      "runs": [r.to_dict(with_fingerprint=False) for r in runs]})
    if not runs:
        return f"no checks on record in {printable(where) or 'the history'}\n"
    rows = [HEADER] + [(str(r.id), _when(r), r.command, printable(r.golden_path),
                        printable(r.fingerprint_id), r.verdict or "—") for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return "".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                   + "\n" for row in rows)


def render_run(run: Run, fmt: Format = "text") -> str:
    """One run, every field (the whole fingerprint in the JSON; its id in the text)."""
    if fmt == "json":
        return _json({"schema": SCHEMA, **run.to_dict()})
    lines = [f"run {run.id}: {run.command}, {_when(run)}",
             f"golden: {printable(run.golden_path)} (manifest sha256 {run.golden_sha})",
             f"fingerprint: {printable(run.fingerprint_id)}"
             + ("" if run.fingerprint is None else " (whole fingerprint in --format json)"),
             f"verdict: {run.verdict or '—'}; exit code {run.exit_code}"]
    if run.findings:
        lines.append(f"findings: {', '.join(printable(f) for f in run.findings)}")
    if run.arrays:
        lines.append("arrays:")
        width = max(len(a.name) for a in run.arrays)
        lines += [f"  {printable(a.name).ljust(width)}  {a.kind:<5}  {a.mode:<5}  "
                  f"{a.status:<14}  max rel {number(a.max_rel)}" for a in run.arrays]
    if run.causes:
        lines.append("causes:")
        lines += [f"  [{c.confidence}] {printable(c.change)}" for c in run.causes]
    if run.timings:
        lines.append("timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in run.timings.items()))
    return "\n".join(lines) + "\n"


def _when(run: Run) -> str:
    return run.time.strftime("%Y-%m-%d %H:%M:%S")


def _json(data: object) -> str:
    return json.dumps(plain(data), indent=2, allow_nan=False) + "\n"
