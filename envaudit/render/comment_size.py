"""Fitting a Markdown report into one pull-request comment.

GitHub refuses a comment body longer than ``COMMENT_LIMIT`` characters; a folded ``<details>``
block counts as much as visible text. A renderer first makes its document shorter itself (fewer
rows: ``check_md`` lists only what differs), and only what is still too long is cut here: at a
line, with every ``<details>`` left open closed again, and one line saying how long the report
was, from which section on it was cut, and where the whole report is.

Constraint: pure string functions; the note's words are fixed here, the renderer says only where
the full report is.
"""

from __future__ import annotations

COMMENT_LIMIT = 65_536  # GitHub's limit on a comment body, in characters
# What a report aims under: room for what a person or a bot adds around it (a heading, a link).
TARGET = 60_000
SECTION_CHARS = 80  # the longest section name the note quotes (room is kept for it)


def fits(document: str) -> bool:
    return len(document) <= TARGET


def cut(document: str, full_report: str, target: int = TARGET) -> str:
    """``document`` cut at a line so that it, the closing tags of its open ``<details>`` and
    the note saying what was cut stay within ``target`` characters (unchanged when it fits)."""
    if len(document) <= target:
        return document
    lines = document.rstrip("\n").split("\n")
    note = _note(len(document), "", full_report)
    budget = target - len(note) - SECTION_CHARS - 100  # the section's name, the closing tags
    kept: list[str] = []
    size = 0
    for line in lines:
        if size + len(line) + 1 > budget:
            break
        kept.append(line)
        size += len(line) + 1
    section = _section_of(lines, len(kept))
    opened = sum(line.count("<details>") - line.count("</details>") for line in kept)
    closing = ["", "</details>"] * max(opened, 0)
    return "\n".join([*kept, *closing, "", _note(len(document), section, full_report)]) + "\n"


def _section_of(lines: list[str], first_cut: int) -> str:
    """The heading the first line left out belongs to ("" when none)."""
    for line in reversed(lines[: first_cut + 1]):
        if line.startswith("#"):
            name = line.lstrip("#").strip()
            return name if len(name) <= SECTION_CHARS else name[: SECTION_CHARS - 1] + "…"
    return ""


def _note(length: int, section: str, full_report: str) -> str:
    where = f" from within \u201c{section}\u201d on" if section else ""
    return (f"_Cut here: this report has {length:,} characters, more than a pull-request comment"
            f" holds ({COMMENT_LIMIT:,}); the rest{where} is left out. The whole report:"
            f" {full_report}._")
