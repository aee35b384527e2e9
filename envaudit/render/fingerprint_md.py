"""``envaudit report`` and ``envaudit fingerprint --format md``: the fingerprint as Markdown.

Meant to be pasted into a bug report: a heading with the fingerprint id, the summary a
maintainer reads first (``fingerprint.summary``: one line per fact, with how it was determined;
``envaudit report | head -15`` holds it whole), then the full detail folded in one ``<details>``
block: capture time, one pipe table per section, the package list folded once more. With
``redact=True`` the tree is redacted first (``envaudit.fingerprint.redact``: hostname, user, home
paths, GPU UUIDs and serials), and the summary is made from the redacted tree, and the document
ends with a line saying what was redacted.

A fingerprint file may be anyone's, and even this machine's values (a package's URL, an
environment value) are text someone else chose: every value goes in through ``escape`` (as text:
no HTML, no link, one table cell, one line; or as a code span), and the whole document through
``for_document``, so no control character reaches a terminal that shows it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from envaudit.fingerprint.fields import leaves
from envaudit.fingerprint.guard import is_unavailable
from envaudit.fingerprint.summary import Fact, summarize
from envaudit.fingerprint.types import Fingerprint
from envaudit.render.escape import for_document, for_markdown, for_markdown_code

SECTION_TITLES = {
    "python": "Python",
    "os": "Operating system",
    "cpu": "CPU",
    "memory": "Memory",
    "gpu": "GPU (NVML)",
    "tensorflow": "TensorFlow",
    "numerics_libs": "Numerics libraries",
    "env": "Numerics-relevant environment variables",
    "packages": "Installed packages",
}


def render(fp: Fingerprint, redact: bool = False) -> str:
    """The fingerprint as a Markdown document ending in a newline."""
    data: Mapping[str, Any] = fp.data
    if redact:
        from envaudit.fingerprint.redact import REDACTED_FIELDS
        from envaudit.fingerprint.redact import redact as redact_tree

        data = redact_tree(data)
    sections = [key for key in SECTION_TITLES if key in data]
    lines = [
        f"## Environment fingerprint {for_markdown_code(str(data.get('fingerprint_id')))}",
        "",
        *summary_lines(summarize(Fingerprint(data))),
        "",
        f"<details><summary>Full fingerprint: {len(sections)} sections</summary>",
        "",
        f"- captured: {for_markdown(str(data.get('captured_at')))}",
        f"- envaudit: {for_markdown(str(data.get('envaudit_version')))} (schema "
        f"{for_markdown_code(str(data.get('schema')))})",
        "",
    ]
    for key in sections:
        lines += _section(key, SECTION_TITLES[key], data[key])
    lines += ["</details>", ""]
    if redact:
        lines.append(f"redacted: {for_markdown(REDACTED_FIELDS)}")
    return for_document("\n".join(lines).rstrip("\n") + "\n")


def summary_lines(facts: Sequence[Fact]) -> list[str]:
    """The summary as a Markdown list, one line per fact: the fact in bold, its value, and how it
    was determined in italics (shared with the check's Markdown report)."""
    return [f"- **{for_markdown(f.label)}:** {for_markdown(f.value)} — _{for_markdown(f.source)}_"
            for f in facts]


def plain_value(value: Any) -> str:
    """One field value as plain text (shared by the text renderers)."""
    if value is None:
        return "-"
    if is_unavailable(value):
        return f"unavailable: {value['reason']}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(plain_value(item) for item in value) if value else "(none)"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={plain_value(v)}" for k, v in value.items()) or "(none)"
    return str(value)


def _section(key: str, title: str, section: Any) -> list[str]:
    lines = [f"### {title}", ""]
    if is_unavailable(section):
        return lines + [f"_unavailable: {_cell(str(section['reason']))}_", ""]
    if key == "packages" and isinstance(section, Mapping):
        rows = [[name, plain_value(info.get("version")), _provenance(info)]
                for name, info in section.items() if isinstance(info, Mapping)]
        return lines + [
            "<details><summary>"
            f"{len(rows)} installed distributions</summary>",
            "",
            *_table(["distribution", "version", "provenance"], rows),
            "",
            "</details>",
            "",
        ]
    if key == "env" and isinstance(section, Mapping) and not section:
        return lines + ["_none set_", ""]
    rows = [[path, plain_value(value)] for path, value in leaves(section)]
    return lines + _table(["field" if key != "env" else "variable", "value"], rows) + [""]


def _provenance(info: Mapping[str, Any]) -> str:
    direct = info.get("direct_url")
    if not isinstance(direct, Mapping) or is_unavailable(direct):
        return "" if direct is None else plain_value(direct)
    parts = [str(direct.get("url", ""))]
    if direct.get("editable"):
        parts.append("editable")
    if direct.get("vcs"):
        parts.append(f"{direct['vcs']} {direct.get('commit_id') or ''}".strip())
    return " ".join(parts)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows]
    return lines


def _cell(text: str) -> str:
    """Every value of a table: plain text that stays one line and one cell."""
    return for_markdown(str(text))
