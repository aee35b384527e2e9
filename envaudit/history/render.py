"""``envaudit history`` and ``envaudit history show ID`` as text or JSON strings.

The text is plain (no colour, no markup): a table of runs, or one run field by field. Every string
read from the database goes in through ``escape.for_terminal`` (a golden path, array names and
causes came from someone's bundle, and the database file itself may have been copied from
elsewhere), so none of it can drive the terminal or start a line of its own.
The JSON is strict (NaN ``null``, infinities ``"inf"``), like the check JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from envaudit.history.types import SCHEMA, Run
from envaudit.render.check_json import plain
from envaudit.render.escape import for_terminal
from envaudit.spelling import number

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
        return f"no checks on record in {for_terminal(where) or 'the history'}\n"
    rows = [HEADER] + [tuple(map(for_terminal, (str(r.id), _when(r), r.command, r.golden_path,
                                                r.fingerprint_id, r.verdict or "—")))
                       for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return "".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                   + "\n" for row in rows)


def render_run(run: Run, fmt: Format = "text") -> str:
    """One run, every field (the whole fingerprint in the JSON; its id in the text)."""
    if fmt == "json":
        return _json({"schema": SCHEMA, **run.to_dict()})
    lines = [f"run {run.id}: {run.command}, {_when(run)}",
             f"golden: {run.golden_path} (manifest sha256 {run.golden_sha})",
             f"fingerprint: {run.fingerprint_id}"
             + ("" if run.fingerprint is None else " (whole fingerprint in --format json)"),
             f"verdict: {run.verdict or '—'}; exit code {run.exit_code}"]
    if run.findings:
        lines.append(f"findings: {', '.join(run.findings)}")
    if run.arrays:
        lines.append("arrays:")
        names = [for_terminal(a.name) for a in run.arrays]  # escaped before they are measured
        width = max(map(len, names))
        lines += [f"  {name.ljust(width)}  {a.kind:<5}  {a.mode:<5}  "
                  f"{a.status:<14}  max rel {number(a.max_rel)}"
                  for name, a in zip(names, run.arrays, strict=True)]
    if run.causes:
        lines.append("causes:")
        lines += [f"  [{c.confidence}] {c.change}" for c in run.causes]
    if run.timings:
        lines.append("timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in run.timings.items()))
    # One field per line, all of it plain text: each line is escaped whole.
    return "".join(for_terminal(line) + "\n" for line in lines)


def _when(run: Run) -> str:
    return run.time.strftime("%Y-%m-%d %H:%M:%S")


def _json(data: object) -> str:
    return json.dumps(plain(data), indent=2, allow_nan=False) + "\n"
