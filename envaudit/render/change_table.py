"""The fingerprint change table, shared by ``envaudit check`` and ``envaudit diff``: its words
and its terminal layout.

Nothing here decides anything: which origin a change belongs to, whether it is a minutia and the
order of the groups come with the data (``fingerprint.fields`` and ``fingerprint.diff.group``).
This module spells a group's heading and folded line once for every format, and lays the groups
out in the terminal.

Constraint: a dotted path is broken only after a ".", never inside a segment, at any width where
its longest segment fits. rich wraps a cell at spaces and folds a word that does not fit mid-word,
and its table shrinks the widest column first whatever its content; so ``ChangeTable`` measures
the console itself, fixes every column width, and hands rich each path already split into lines
at dots that fit its column. Values may wrap anywhere: they are not paths.

Paths and values are a stranger's (a fingerprint file names its own keys): both are escaped for
the terminal before they are measured, so the widths are those of what is shown.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from rich.console import Console, ConsoleOptions
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from envaudit.fingerprint.fields import VOLATILE
from envaudit.fingerprint.types import Change, ChangeGroup
from envaudit.render.escape import for_terminal
from envaudit.render.fingerprint_md import plain_value

MARK = "numerics"  # the cell of a numerics-relevant row (the colour only repeats it)
ABSENT = "(absent)"  # a side without the field
INDENT = 2  # rows sit under their group's heading
# When a row does not fit on one line, paths take up to this share of it and the two values wrap
# in the rest: a path over two lines still reads as one name, a version over five does not.
PATH_SHARE = 0.5
MIN_VALUE_WIDTH = 8  # below this a version string breaks on every character


def shown_changes(changes: Sequence[Change], verbose: bool) -> tuple[Change, ...]:
    """The changes a text view counts and lists: without ``verbose``, not the fields that differ
    in any two captures (``fields.VOLATILE``: capture time, free memory), which are no change."""
    return tuple(changes) if verbose else tuple(c for c in changes if c.path not in VOLATILE)


def volatile_phrase(changes: Sequence[Change]) -> str:
    """"only the capture time and free memory differ" for the volatile fields among ``changes``
    ("" when there are none)."""
    words = list(dict.fromkeys(VOLATILE[c.path] for c in changes if c.path in VOLATILE))
    if not words:
        return ""
    listed = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    return f"only the {listed} differ{'s' if len(words) == 1 else ''}"


def heading(group: ChangeGroup) -> str:
    """``"numpy build: 18 fields changed (12 numerics-relevant)"``."""
    n = len(group.changes)
    return f"{group.origin}: {n} field{'s' if n != 1 else ''} changed{_relevance(group)}"


def folded_summary(group: ChangeGroup) -> str:
    """What a group's minutiae are folded into: the group's heading when all of it is minutiae,
    else ``"+ 26 more fields folded (26 numerics-relevant)"`` below its listed rows."""
    if len(group.folded) == len(group.changes):
        return heading(group)
    n = len(group.folded)
    numerics = sum(1 for c in group.folded if c.numerics)
    about = f" ({numerics} numerics-relevant)" if numerics else ""
    return f"+ {n} more field{'s' if n != 1 else ''} folded{about}"


def folded_line(group: ChangeGroup) -> str:
    """The terminal's one line for a group's minutiae without --verbose."""
    folded = ", folded" if len(group.folded) == len(group.changes) else ""
    them = "them" if len(group.folded) > 1 else "it"
    return f"{folded_summary(group)}{folded}: --verbose lists {them}"


def value_text(value: Any) -> str:
    """One side of a change as terminal text (a stranger's value: controls escaped)."""
    return ABSENT if value is None else for_terminal(plain_value(value))


def path_text(change: Change) -> str:
    """A change's dotted path as terminal text (a stranger's fingerprint names its keys)."""
    return for_terminal(change.path)


def path_lines(path: str, width: int) -> list[str]:
    """``path`` in lines of at most ``width`` characters, broken only after a "." (a segment
    longer than ``width`` gets a line of its own, the one case a renderer must fold)."""
    segments = path.split(".")
    pieces = [s + "." for s in segments[:-1]] + segments[-1:]
    lines = [""]
    for piece in pieces:
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines.append("")
        lines[-1] += piece
    return lines


class ChangeTable:
    """The groups as a rich renderable: per group a heading, then its listed changes in aligned
    columns (numerics mark, path, golden, current), then its folded line; ``verbose`` lists the
    minutiae as well. Column widths are chosen for the console it is printed on."""

    def __init__(self, groups: Sequence[ChangeGroup], verbose: bool = False) -> None:
        self.groups = tuple(groups)
        self.verbose = verbose

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Any]:
        shown = [self._rows(g) for g in self.groups]
        widths = _widths([c for rows in shown for c in rows], options.max_width - INDENT)
        if any(shown):
            yield _indented(_table(widths, header=True))
        for group, rows in zip(self.groups, shown, strict=True):
            if not rows:
                yield Text(folded_line(group), style="dim")
                continue
            yield Text(heading(group), style="bold")
            table = _table(widths, header=False)
            for c in rows:
                table.add_row(Text(MARK if c.numerics else "", style="bold" if c.numerics else ""),
                              Text("\n".join(path_lines(path_text(c), widths[1])), no_wrap=True,
                                   overflow="fold"),
                              _value(c.golden), _value(c.current))
            yield _indented(table)
            if not self.verbose and group.folded:
                yield _indented(Text(folded_line(group), style="dim"))

    def _rows(self, group: ChangeGroup) -> tuple[Change, ...]:
        return group.changes if self.verbose else group.listed


def _relevance(group: ChangeGroup) -> str:
    numerics = group.numerics_count
    if not numerics:
        return " (informational)"
    if numerics == len(group.changes):
        return " (numerics-relevant)" if numerics == 1 else " (all numerics-relevant)"
    return f" ({numerics} numerics-relevant)"


def _widths(rows: Sequence[Change], width: int) -> tuple[int, int, int, int]:
    """Mark, path, golden and current column widths that fit ``width`` with the gaps between."""
    if not rows:
        return len(MARK), 1, 1, 1
    mark = len(MARK)
    room = width - mark - 3  # one space after each of the first three columns
    # Never narrower than the column titles: a title folds like any word.
    path = max(len("path"), *(len(path_text(c)) for c in rows))
    segment = max(len(p) for c in rows for p in path_lines(path_text(c), 1))
    golden = max(len("golden"), *(_longest_line(value_text(c.golden)) for c in rows))
    current = max(len("current"), *(_longest_line(value_text(c.current)) for c in rows))
    if path + golden + current <= room:
        return mark, path, golden, current
    path = min(path, max(segment, int(room * PATH_SHARE), room - golden - current))
    rest = max(room - path, 2 * MIN_VALUE_WIDTH)
    # The shorter side keeps its length where it can; the longer one wraps in what is left.
    golden = min(golden, max(MIN_VALUE_WIDTH, rest - current, rest // 2))
    return mark, path, golden, max(MIN_VALUE_WIDTH, rest - golden)


def _longest_line(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def _table(widths: tuple[int, int, int, int], header: bool) -> Table:
    """A table with fixed column widths; the header alone (no rows) heads the whole change table,
    so every group's rows line up under it."""
    table = Table(box=None, show_header=header, header_style="dim", show_edge=False,
                  pad_edge=False, padding=(0, 1, 0, 0), expand=False)
    for title, width in zip(("", "path", "golden", "current"), widths, strict=True):
        table.add_column(title, width=width, overflow="fold")
    return table


def _indented(renderable: Any) -> Padding:
    return Padding(renderable, (0, 0, 0, INDENT), expand=False)


def _value(value: Any) -> Text:
    return Text(value_text(value), style="dim" if value is None else "")
