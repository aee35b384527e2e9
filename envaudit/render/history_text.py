"""``envaudit history`` and ``envaudit history show ID`` as plain text.

A history format (``render/formats.py``, report "history") has two members: ``render(runs,
path)``, the runs on record, and ``render_run(run)``, one run. Here: a table of runs, one line
each, or one run field by field; no colour, no markup. Every string read from the database goes
in through ``escape.for_terminal`` (a golden path, array names and causes came from someone's
bundle, and the database file itself may have been copied from elsewhere), so none of it can drive
the terminal or start a line of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from envaudit.history.types import Run
from envaudit.render.escape import for_terminal
from envaudit.spelling import number

HEADER = ("id", "time", "command", "golden", "fingerprint", "verdict")


def render(runs: Sequence[Run], path: Path | None = None) -> str:
    """A table of ``runs``, one line each; ``path``, the database, is named when there is
    nothing to show."""
    if not runs:
        where = "" if path is None else str(path)
        return f"no checks on record in {for_terminal(where) or 'the history'}\n"
    rows = [HEADER] + [tuple(map(for_terminal, (str(r.id), _when(r), r.command, r.golden_path,
                                                r.fingerprint_id, r.verdict or "—")))
                       for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return "".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                   + "\n" for row in rows)


def render_run(run: Run) -> str:
    """One run, every field (the fingerprint by its id: the whole of it is in the JSON)."""
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
