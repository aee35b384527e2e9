"""``envaudit fleet ... --format md``: the fleet report as Markdown (groups, drift, nodes)."""

from __future__ import annotations

from envaudit.fleet.report import FleetReport
from envaudit.render.formatting import fleet_node_result, printable


def render(report: FleetReport) -> str:
    lines = [f"## envaudit fleet {report.command}", "", _cell(report.headline), ""]
    if report.command == "check":
        lines += [f"Golden `{_cell(report.golden_path)}` (fingerprint "
                  f"`{report.golden_fingerprint_id}`), exit {report.exit_code}.", ""]
    for g in report.groups:
        role = "reference group" if g.reference else "group"
        verdict = f", verdict **{g.verdict}**" if g.verdict else ""
        lines += [f"### Fingerprint {role} `{g.fingerprint_id}`{verdict}", "",
                  "Nodes: " + ", ".join(_cell(n) for n in g.nodes), ""]
        numerics = [c for c in g.changes if c.numerics]
        if numerics:
            lines += ["| config drift | reference | this group |", "| --- | --- | --- |"]
            lines += [f"| `{_cell(c.path)}` | {_cell(str(c.golden))} | {_cell(str(c.current))} |"
                      for c in numerics]
            lines.append("")
        lines += [f"- cause [{c.confidence}] {_cell(c.change)}" for c in g.causes]
        if g.suspects:
            lines.append("- suspected hardware fault: " + ", ".join(_cell(s) for s in g.suspects))
        lines.append("")
    lines += ["### Nodes", "", "| host | device | fingerprint | result | first divergence | time |",
              "| --- | --- | --- | --- | --- | --- |"]
    for n in report.nodes:
        lines.append(f"| {_cell(n.host)} | {_cell(n.device or 'cpu')} | {n.fingerprint_id or '—'}"
                     f" | {_cell(fleet_node_result(n))} | {_cell(n.first_divergence or '—')} |"
                     f" {n.seconds:.1f} s |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return printable(text).replace("|", "\\|")
