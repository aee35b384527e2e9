"""``envaudit config`` as plain text: which file configures this folder, then one aligned line per
key with its value and where the value came from.

Values and paths were written by someone (a file is a stranger's until read): each cell goes
through ``escape.for_terminal``, so none can start a line of its own or drive the terminal. A
value is spelled as the file would write it: ``true``/``false``, a list comma-separated
(semicolons between items that hold commas), ``-`` for none (the option's default is then
envaudit's own behaviour, e.g. every recorded mode).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from envaudit.render.escape import for_terminal

if TYPE_CHECKING:
    from envaudit.config import Effective

HEADER = ("key", "value", "source")


def render(effective: Effective) -> str:
    used = [s for s in effective.sources if s.used]
    if used:
        lines = [f"configuration: {for_terminal(used[0].kind)} ({for_terminal(used[0].path)})"]
    elif effective.root is None:
        lines = [f"configuration: none in {for_terminal(effective.start)} or any folder above"
                 " it; every value is envaudit's default"]
    else:
        lines = [f"configuration: none; the search stopped at the project's folder"
                 f" {for_terminal(effective.root)}; every value is envaudit's default"]
    lines += [f"not read: {for_terminal(s.path)} ({for_terminal(s.note)})"
              for s in effective.sources if not s.used]
    rows = [HEADER] + [(s.key, for_terminal(_spelled(s.value)), for_terminal(s.source))
                       for s in effective.settings]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    table = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    return "\n".join([*lines, "", *table]) + "\n"


def _spelled(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):  # a tolerance holds commas: "; " between those
        return ("; " if any("," in str(v) for v in value) else ", ").join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
