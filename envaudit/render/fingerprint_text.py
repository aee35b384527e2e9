"""``envaudit fingerprint`` in the terminal: the summary first (``fingerprint.summary``: one row
per fact, how it was determined dimmed after it), then one rich table per section.

Every string goes in through ``_text``: as ``Text``, so a value with brackets is never read as
rich markup, with control characters escaped (a fingerprint file may be anyone's); colors
only repeat what the words say (unavailable fields are dimmed and still say "unavailable").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from envaudit.fingerprint.fields import leaves
from envaudit.fingerprint.guard import is_unavailable
from envaudit.fingerprint.summary import Fact, summarize
from envaudit.fingerprint.types import Fingerprint
from envaudit.render.escape import for_terminal
from envaudit.render.fingerprint_md import SECTION_TITLES, plain_value


def render(fp: Fingerprint) -> Group:
    data = fp.data
    header = Text.assemble(
        ("fingerprint ", "bold"),
        (for_terminal(str(data.get("fingerprint_id"))), "bold cyan"),
        for_terminal(f"  captured {data.get('captured_at')}  envaudit "
                     f"{data.get('envaudit_version')}"),
    )
    parts: list[Any] = [header, summary_table(summarize(fp))]
    for key, title in SECTION_TITLES.items():
        if key in data:
            parts.append(_section(key, title, data[key]))
    return Group(*parts)


def summary_table(facts: Sequence[Fact]) -> Table:
    """The summary: each fact's label, then its value with how it was determined, dimmed."""
    table = Table(title=_text("Summary"), title_justify="left", box=None, show_header=False,
                  expand=False, padding=(0, 1))
    table.add_column(overflow="fold", style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for fact in facts:
        table.add_row(_text(fact.label), Text.assemble(
            _text(fact.value), _text(f"  ({fact.source})", style="dim")))
    return table


def _section(key: str, title: str, section: Any) -> Table:
    if key == "packages" and isinstance(section, Mapping) and not is_unavailable(section):
        table = _table(f"{title} ({len(section)})", "distribution", "version", "provenance")
        for name, info in section.items():
            info = info if isinstance(info, Mapping) else {}
            direct = info.get("direct_url")
            table.add_row(_text(name), _value(info.get("version")),
                          _value(direct) if direct is not None else _text(""))
        return table
    table = _table(title, "variable" if key == "env" else "field", "value")
    if is_unavailable(section):
        table.add_row(_text("(section)"), _value(section))
    elif isinstance(section, Mapping) and not section:
        table.add_row(_text("(none set)" if key == "env" else "(empty)"), _text(""))
    else:
        for path, value in leaves(section):
            table.add_row(_text(path), _value(value))
    return table


def _table(title: str, *columns: str) -> Table:
    # A str title or header would be read as rich markup.
    table = Table(title=_text(title), title_justify="left", box=box.SIMPLE_HEAD, expand=False)
    for column in columns:
        table.add_column(_text(column), overflow="fold")
    return table


def _value(value: Any) -> Text:
    return _text(plain_value(value), style="dim" if is_unavailable(value) else "")


def _text(value: str, style: str = "") -> Text:
    """Every string this table shows: ``Text`` (never markup), control characters escaped."""
    return Text(for_terminal(value), style=style)
