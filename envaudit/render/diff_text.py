"""``envaudit diff`` in the terminal: what changed between two fingerprints.

The two fingerprint ids, a count line (numerics-relevant changes decide the exit code), then the
change table of ``render.change_table``: one group per origin, numerics-relevant groups first,
build details and other minutiae folded into one line per group unless ``verbose``; the fields
that differ in any two captures (capture time, free memory) only with ``verbose``. ``(absent)``
marks a side without the field. Dynamic strings go in as ``Text``, never as markup, with control
characters escaped (``escape.for_terminal``): the two files may be anyone's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Group
from rich.text import Text

from envaudit.fingerprint.diff import group
from envaudit.fingerprint.types import Change, Fingerprint
from envaudit.render.change_table import ChangeTable, shown_changes, volatile_phrase
from envaudit.render.escape import for_terminal


def render(a: Fingerprint, b: Fingerprint, changes: Sequence[Change],
           verbose: bool = False) -> Group:
    """The two ids, the count line and the change table."""
    # Both files are someone else's: their ids and times are escaped like every value.
    header = Text.assemble(
        ("golden ", "bold"), (for_terminal(str(a.fingerprint_id)), "cyan"),
        for_terminal(f" ({a.get('captured_at')})"),
        ("  ->  current ", "bold"), (for_terminal(str(b.fingerprint_id)), "cyan"),
        for_terminal(f" ({b.get('captured_at')})"),
    )
    parts: list[Any] = [header, summary(changes, verbose)]
    shown = shown_changes(changes, verbose)
    if shown:
        parts += [Text(), ChangeTable(group(shown), verbose)]
    return Group(*parts)


def summary(changes: Sequence[Change], verbose: bool = False) -> Text:
    """The count line (alone, it is ``diff -q``): numerics-relevant changes decide the exit
    code; the fields any two captures differ in count only with ``verbose``."""
    shown = shown_changes(changes, verbose)
    numerics = sum(1 for c in shown if c.numerics)
    informational = len(shown) - numerics
    if numerics:
        return Text(f"{numerics} numerics-relevant change(s), {informational} informational",
                    style="bold yellow")
    if informational:
        return Text(f"no numerics-relevant change; {informational} informational",
                    style="bold green")
    # Two captures of one machine always differ in these; saying "1 field changed" is noise.
    volatile = volatile_phrase(changes)
    return Text("identical fingerprints" + (f" ({volatile})" if volatile else ""),
                style="bold green")
