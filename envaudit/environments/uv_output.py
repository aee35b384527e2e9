"""uv's error output as one line for a cause's evidence. Standard library only.

uv (``--color never``, not a terminal) reports a failure as ``error: <what>``, then one
``cause: <why>`` line per level of its error chain (``Caused by:`` in older releases; ``×`` and
``╰─▶`` when it draws), then ``hint: ...`` lines. The line kept is what failed, the URL it could
not fetch, the innermost cause and the first hint:
``uv pip install failed: Failed to fetch: http://host/simple/numpy/: Connection refused``.
Progress lines (``Resolved``, ``Downloading``, ``warning:``) are never the reason.
"""

from __future__ import annotations

import re

MAX_CHARS = 500  # evidence is read by a person; uv's hints can list dozens of platforms
_DRAWING = re.compile(r"^[\s×╰─▶│├┬└|]+")
_CAUSE = ("cause:", "caused by:")
_PROGRESS = ("using python", "using cpython", "resolved", "prepared", "installed", "uninstalled",
             "downloading", "downloaded", "creating virtual environment", "activate with",
             "audited", "warning:", "+ ", "- ")


def one_line(text: str) -> str:
    """``text`` with its whitespace runs (newlines included) made single spaces, shortened."""
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_CHARS else flat[: MAX_CHARS - 3] + "..."


def uv_reason(output: str) -> str:
    """The one line that says why uv failed, from its stderr ("" when it printed nothing)."""
    lines = [_classify(raw) for raw in output.splitlines()]
    lines = [(kind, text) for kind, text in lines if text]
    start = next((i for i, (kind, _) in enumerate(lines) if kind == "error"), None)
    if start is None:
        meaningful = [text for _, text in lines if not text.lower().startswith(_PROGRESS)]
        return one_line(meaningful[-1]) if meaningful else ""
    head = lines[start][1]
    causes: list[str] = []
    hints: list[str] = []
    for kind, text in lines[start + 1:]:
        if kind == "cause":
            causes.append(text)
        elif kind == "hint":
            hints.append(text)
        elif hints:
            hints[-1] += " " + text
        elif causes:
            causes[-1] += " " + text  # a long cause wrapped, or "And because ..."
        else:
            head += " " + text
    parts = [head.rstrip(":")]
    fetch = next((c for c in causes if c.lower().startswith("failed to fetch")), None)
    if fetch and fetch not in head:
        parts.append(fetch)
    if causes and causes[-1] not in parts:
        parts.append(causes[-1])
    text = ": ".join(part.rstrip(":") for part in parts)
    if hints:
        text += f" (hint: {hints[0]})"
    return one_line(text)


def _classify(raw: str) -> tuple[str, str]:
    """``(kind, text)`` of one output line: error, cause, hint or other."""
    stripped = raw.strip()
    if stripped.startswith("×"):
        return "error", _DRAWING.sub("", stripped)
    if stripped.startswith(("╰─▶", "├─▶")):
        return "cause", _DRAWING.sub("", stripped)
    text = _DRAWING.sub("", stripped)
    lower = text.lower()
    for kind, prefixes in (("error", ("error:",)), ("cause", _CAUSE), ("hint", ("hint:",))):
        prefix = next((p for p in prefixes if lower.startswith(p)), None)
        if prefix:
            return kind, text[len(prefix):].strip()
    return "other", text
