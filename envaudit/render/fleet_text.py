"""``envaudit fleet check|fingerprint`` in the terminal: headline, the fingerprint groups with
the config drift between them, each group's verdict and causes, the suspected faults, and one row
per node. Everything a node wrote goes in as ``Text`` with control characters escaped."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from envaudit.fleet.report import FleetGroup, FleetReport
from envaudit.render.formatting import fleet_node_result, printable


def render(report: FleetReport) -> Group:
    style = "bold green" if report.exit_code == 0 else (
        "bold red" if report.exit_code == 2 else "bold yellow")
    parts: list[Any] = [Text(printable(report.headline), style=style)]
    if report.command == "check":
        parts.append(Text(f"golden {printable(report.golden_path)} (fingerprint "
                          f"{report.golden_fingerprint_id}); exit {report.exit_code}",
                          style="dim"))
    parts.append(Text())
    for group in report.groups:
        parts += _group(group, report)
    parts.append(_nodes(report))
    return Group(*parts)


def _group(group: FleetGroup, report: FleetReport) -> list[Any]:
    role = "reference group" if group.reference else "group"
    verdict = f", verdict {group.verdict.replace('_', ' ')}" if group.verdict else ""
    parts: list[Any] = [Text(f"Fingerprint {role} {group.fingerprint_id}: {len(group.nodes)} "
                             f"node(s){verdict}", style="bold"),
                        Text("  nodes: " + ", ".join(printable(n) for n in group.nodes))]
    numerics = [c for c in group.changes if c.numerics]
    if numerics:
        parts.append(Text("  config drift from the reference group:", style="yellow"))
        parts += [Text(f"    {printable(c.path)}: {printable(_value(c.golden))} -> "
                       f"{printable(_value(c.current))}") for c in numerics]
    for cause in group.causes:
        parts.append(Text(f"  cause [{cause.confidence}] {printable(cause.change)}"))
    if group.suspects:
        parts.append(Text("  peers disagree bit for bit: suspected hardware fault on "
                          + ", ".join(printable(s) for s in group.suspects), style="red"))
    for node in report.nodes:
        if node.suspect is not None and node.label in group.suspects:
            parts.append(Text(f"    {printable(node.label)}: {len(node.suspect.arrays)} array(s)"
                              f" differ ({printable(', '.join(node.suspect.arrays[:4]))}"
                              f"{', ...' if len(node.suspect.arrays) > 4 else ''}); "
                              f"{node.suspect.classification}"))
    parts.append(Text())
    return parts


def _nodes(report: FleetReport) -> Table:
    table = Table(title="Nodes", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False, padding=(0, 1, 0, 0))
    for column in ("host", "device", "fingerprint", "result", "first divergence", "time"):
        table.add_column(column, overflow="fold")
    for n in report.nodes:
        table.add_row(Text(printable(n.host)), Text(printable(n.device or "cpu")),
                      Text(n.fingerprint_id or "—"), Text(fleet_node_result(n)),
                      Text(printable(n.first_divergence or "—")), Text(f"{n.seconds:.1f} s"))
    return table


def _value(value: Any) -> str:
    return "(unset)" if value is None else str(value)
