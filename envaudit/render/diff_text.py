"""``envaudit diff`` in the terminal: what changed between two fingerprints.

Numerics-relevant changes first (they decide the exit code), informational ones after, each in
its own table: category, path, golden value, current value. ``(absent)`` marks a side without the
field. Dynamic strings go in as ``Text``, never as markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from envaudit.fingerprint.model import Change, Fingerprint
from envaudit.render.fingerprint_md import plain_value


def render(a: Fingerprint, b: Fingerprint, changes: Sequence[Change]) -> Group:
    numerics = [c for c in changes if c.numerics]
    informational = [c for c in changes if not c.numerics]
    header = Text.assemble(
        ("golden ", "bold"), (a.fingerprint_id, "cyan"), f" ({a.get('captured_at')})",
        ("  ->  current ", "bold"), (b.fingerprint_id, "cyan"), f" ({b.get('captured_at')})",
    )
    if numerics:
        summary = Text(f"{len(numerics)} numerics-relevant change(s), "
                       f"{len(informational)} informational", style="bold yellow")
    elif informational:
        summary = Text(f"no numerics-relevant change; {len(informational)} informational",
                       style="bold green")
    else:
        summary = Text("identical fingerprints", style="bold green")
    parts: list[Any] = [header, summary]
    if numerics:
        parts.append(_table("Numerics-relevant changes", numerics))
    if informational:
        parts.append(_table("Informational changes", informational))
    return Group(*parts)


def _table(title: str, changes: Sequence[Change]) -> Table:
    table = Table(title=f"{title} ({len(changes)})", title_justify="left",
                  box=box.SIMPLE_HEAD, expand=False)
    for column in ("category", "path", "golden", "current"):
        table.add_column(column, overflow="fold")
    for change in changes:
        table.add_row(Text(change.category), Text(change.path),
                      _value(change.golden), _value(change.current))
    return table


def _value(value: Any) -> Text:
    return Text("(absent)", style="dim") if value is None else Text(plain_value(value))
