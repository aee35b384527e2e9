"""``envaudit fleet check|fingerprint`` in the terminal: headline, the fingerprint groups with
the config drift between them, each group's verdict and causes, the suspected faults, and one row
per node.

Everything a node sent (host, device, fingerprint id, errors, array names, values) is a
stranger's: every string goes in through ``_t``, as ``Text`` (never read as rich markup) with
control characters escaped (``escape.for_terminal``)."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from envaudit.fleet.report import FleetGroup, FleetReport
from envaudit.render.escape import for_terminal
from envaudit.render.formatting import fleet_node_result


def render(report: FleetReport) -> Group:
    style = "bold green" if report.exit_code == 0 else (
        "bold red" if report.exit_code == 2 else "bold yellow")
    parts: list[Any] = [_t(report.headline, style)]
    if report.command == "check":
        parts.append(_t(f"golden {report.golden_path} (fingerprint "
                        f"{report.golden_fingerprint_id}); exit {report.exit_code}", "dim"))
    parts.append(Text())
    for group in report.groups:
        parts += _group(group, report)
    parts.append(_nodes(report))
    return Group(*parts)


def _group(group: FleetGroup, report: FleetReport) -> list[Any]:
    role = "reference group" if group.reference else "group"
    verdict = f", verdict {group.verdict.replace('_', ' ')}" if group.verdict else ""
    parts: list[Any] = [_t(f"Fingerprint {role} {group.fingerprint_id}: {len(group.nodes)} "
                           f"node(s){verdict}", "bold"),
                        _t("  nodes: " + ", ".join(group.nodes))]
    numerics = [c for c in group.changes if c.numerics]
    if numerics:
        parts.append(_t("  config drift from the reference group:", "yellow"))
        parts += [_t(f"    {c.path}: {_value(c.golden)} -> {_value(c.current)}")
                  for c in numerics]
    for cause in group.causes:
        parts.append(_t(f"  cause [{cause.label}] {cause.change}"))
    if group.suspects:
        parts.append(_t("  peers disagree bit for bit: suspected hardware fault on "
                        + ", ".join(group.suspects), "red"))
    for node in report.nodes:
        if node.suspect is not None and node.label in group.suspects:
            parts.append(_t(f"    {node.label}: {len(node.suspect.arrays)} array(s)"
                            f" differ ({', '.join(node.suspect.arrays[:4])}"
                            f"{', ...' if len(node.suspect.arrays) > 4 else ''}); "
                            f"{node.suspect.classification}"))
    parts.append(Text())
    return parts


def _nodes(report: FleetReport) -> Table:
    table = Table(title=_t("Nodes"), title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False, padding=(0, 1, 0, 0))
    for column in ("host", "device", "fingerprint", "result", "first divergence", "time"):
        table.add_column(_t(column), overflow="fold")
    for n in report.nodes:
        table.add_row(_t(n.host), _t(n.device or "cpu"), _t(n.fingerprint_id or "—"),
                      _t(fleet_node_result(n)), _t(n.first_divergence or "—"),
                      _t(f"{n.seconds:.1f} s"))
    return table


def _t(value: str, style: str = "") -> Text:
    """Every string this report shows goes in here (see the module docstring)."""
    return Text(for_terminal(str(value)), style=style)


def _value(value: Any) -> str:
    return "(unset)" if value is None else str(value)
