"""``envaudit fleet ... --format md``: the fleet report as Markdown (groups, drift, nodes).

Everything a node sent (host, device, fingerprint id, errors, values) is a stranger's: each string
goes in through ``escape`` as text (``_md``: no HTML, no link, one table cell, one line) or as a
code span (``_code``), and the whole document through ``for_document``."""

from __future__ import annotations

from envaudit.fleet.report import FleetReport
from envaudit.render.escape import for_document, for_markdown, for_markdown_code
from envaudit.render.formatting import fleet_node_result


def render(report: FleetReport) -> str:
    lines = [f"## envaudit fleet {_md(report.command)}", "", _md(report.headline), ""]
    if report.command == "check":
        lines += [f"Golden {_code(report.golden_path)} (fingerprint "
                  f"{_code(report.golden_fingerprint_id)}), exit {report.exit_code}.", ""]
    for g in report.groups:
        role = "reference group" if g.reference else "group"
        verdict = f", verdict **{_md(g.verdict)}**" if g.verdict else ""
        lines += [f"### Fingerprint {role} {_code(g.fingerprint_id)}{verdict}", "",
                  "Nodes: " + ", ".join(_md(n) for n in g.nodes), ""]
        numerics = [c for c in g.changes if c.numerics]
        if numerics:
            lines += ["| config drift | reference | this group |", "| --- | --- | --- |"]
            lines += [f"| {_code(c.path)} | {_md(str(c.golden))} | {_md(str(c.current))} |"
                      for c in numerics]
            lines.append("")
        lines += [f"- cause [{_md(c.label)}] {_md(c.change)}" for c in g.causes]
        if g.suspects:
            lines.append("- suspected hardware fault: " + ", ".join(_md(s) for s in g.suspects))
        lines.append("")
    lines += ["### Nodes", "", "| host | device | fingerprint | result | first divergence | time |",
              "| --- | --- | --- | --- | --- | --- |"]
    for n in report.nodes:
        lines.append(f"| {_md(n.host)} | {_md(n.device or 'cpu')} | {_md(n.fingerprint_id or '—')}"
                     f" | {_md(fleet_node_result(n))} | {_md(n.first_divergence or '—')} |"
                     f" {n.seconds:.1f} s |")
    return for_document("\n".join(lines) + "\n")


def _md(text: str) -> str:
    return for_markdown(str(text))


def _code(text: str) -> str:
    return for_markdown_code(str(text))
