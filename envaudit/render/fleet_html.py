"""``envaudit fleet check --format html``: the fleet report as one self-contained page.

The same content as the Markdown report (findings, the fingerprint groups with their verdict,
causes, config drift and suspected faults, the per-node table), styled like the check's page and
with nothing fetched from anywhere. Every string a node sent is escaped (``_e``: control characters,
then HTML): a node's answer is a stranger's data. No charts: a fleet's picture is its table.
"""

from __future__ import annotations

import html
from typing import Any

from envaudit.fleet.report import FleetReport
from envaudit.render.check_html import STYLE, VERDICT_COLOR
from envaudit.render.escape import for_document, for_terminal
from envaudit.render.formatting import fleet_node_result

FAULT_COLOR = "#c62828"


def render(report: FleetReport) -> str:
    worst = "drift" if report.exit_code else "identical"
    parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>envaudit fleet {_e(report.command)}</title>", f"<style>{STYLE}</style>",
             "</head><body>",
             f"<h1>envaudit fleet {_e(report.command)}: <span class=\"verdict\" style=\"background:"
             f"{VERDICT_COLOR[worst]}\">exit {report.exit_code}</span></h1>",
             f"<p>{_e(report.headline)}</p>"]
    if report.command == "check":
        parts.append(f"<p class=\"note\">golden <code>{_e(report.golden_path)}</code> (fingerprint"
                     f" <code>{_e(report.golden_fingerprint_id)}</code>)</p>")
    if report.findings:
        parts.append("<p>Findings: " + ", ".join(f"<b>{_e(f)}</b>" for f in report.findings)
                     + "</p>")
    for group in report.groups:
        role = "reference group" if group.reference else "group"
        verdict = (f", verdict <span class=\"verdict\" style=\"background:"
                   f"{VERDICT_COLOR.get(group.verdict, '#555')}\">{_e(group.verdict)}</span>"
                   if group.verdict else "")
        parts.append(f"<h2>Fingerprint {role} <code>{_e(group.fingerprint_id)}</code>{verdict}"
                     "</h2>")
        parts.append("<p>Nodes: " + ", ".join(_e(n) for n in group.nodes) + "</p>")
        drift = [c for c in group.changes if c.numerics]
        if drift:
            parts.append(_table(("config drift", "reference", "this group"),
                                [(c.path, c.golden, c.current) for c in drift]))
        if group.causes:
            parts.append("<ul>" + "".join(
                f"<li><span class=\"conf\">{_e(c.label)}</span>: {_e(c.change)}</li>"
                for c in group.causes) + "</ul>")
        if group.suspects:
            parts.append(f"<p style=\"color:{FAULT_COLOR}\">Suspected hardware fault: "
                         + ", ".join(_e(s) for s in group.suspects) + "</p>")
    parts.append("<h2>Nodes</h2>")
    parts.append(_table(("host", "device", "fingerprint", "result", "first divergence", "time"),
                        [(n.host, n.device or "cpu", n.fingerprint_id or "—",
                          fleet_node_result(n), n.first_divergence or "—", f"{n.seconds:.1f} s")
                         for n in report.nodes]))
    parts.append("</body></html>")
    return for_document("\n".join(parts) + "\n")


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _e(value: Any) -> str:
    return html.escape(for_terminal("—" if value is None else str(value)))
