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
from envaudit.fingerprint.model import Change, Fingerprint
from envaudit.render.change_table import ChangeTable, shown_changes, volatile_phrase
from envaudit.render.escape import for_terminal


def render(a: Fingerprint, b: Fingerprint, changes: Sequence[Change],
           verbose: bool = False, quiet: bool = False) -> Group:
    """The ids, the count line and the change table; ``quiet``: the count line alone."""
    volatile = volatile_phrase(changes)
    changes = shown_changes(changes, verbose)
    numerics = sum(1 for c in changes if c.numerics)
    informational = len(changes) - numerics
    # Both files are someone else's: their ids and times are escaped like every value.
    header = Text.assemble(
        ("golden ", "bold"), (for_terminal(str(a.fingerprint_id)), "cyan"),
        for_terminal(f" ({a.get('captured_at')})"),
        ("  ->  current ", "bold"), (for_terminal(str(b.fingerprint_id)), "cyan"),
        for_terminal(f" ({b.get('captured_at')})"),
    )
    if numerics:
        summary = Text(f"{numerics} numerics-relevant change(s), {informational} informational",
                       style="bold yellow")
    elif informational:
        summary = Text(f"no numerics-relevant change; {informational} informational",
                       style="bold green")
    else:
        # Two captures of one machine always differ in these; saying "1 field changed" is noise.
        summary = Text("identical fingerprints" + (f" ({volatile})" if volatile else ""),
                       style="bold green")
    if quiet:
        return Group(summary)
    parts: list[Any] = [header, summary]
    if changes:
        parts += [Text(), ChangeTable(group(changes), verbose)]
    return Group(*parts)
