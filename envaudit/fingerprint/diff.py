"""``diff(a, b)``: every field that differs between two fingerprints, labelled; ``group``: those
changes as the change tables show them.

``a`` is the golden (reference) side, ``b`` the current one. Each ``Change`` carries the dotted
path, both values (``None`` where a side lacks the field), the category and whether it can change
numerics, both from ``fields.describe`` (the definition ``fingerprint_id`` uses too), and the
origin and minutia flag of the same rule. Lists of scalars (``cpu.flags``, compute capabilities,
SIMD extensions) differ per element: one change per added or removed element, at
``<list path>.<element>``, so the change names the flag. Sorted:
numerics-relevant first, then by category (``CATEGORIES`` order), then by path.

``group`` decides once, for every renderer, how a change table reads: one group per origin;
groups with a listed numerics-relevant change first, then groups whose numerics-relevant changes
are all minutiae, then informational groups, each rank in ``ORIGINS`` order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from envaudit.fingerprint.fields import describe_leaf, is_process_dependent, leaves
from envaudit.fingerprint.guard import is_unavailable
from envaudit.fingerprint.types import CATEGORIES, ORIGINS, Change, ChangeGroup, Fingerprint

# Fields computed from the others: their change says nothing the other changes do not.
DERIVED = frozenset({"fingerprint_id"})


def diff(a: Fingerprint, b: Fingerprint) -> tuple[Change, ...]:
    golden = dict(leaves(a.data))
    current = dict(leaves(b.data))
    seen_golden, seen_current = _observed_roots(golden), _observed_roots(current)
    changes: list[Change] = []
    for path in list(golden) + [p for p in current if p not in golden]:
        if path in DERIVED:
            continue
        old, new = golden.get(path), current.get(path)
        if old == new and (old is None or (path in golden and path in current)):
            continue  # equal, or null on one side and absent on the other
        if _is_list_or_absent(old) and _is_list_or_absent(new):
            changes.extend(_list_changes(path, old, new))
            continue
        changes.append(_change(path, old, new, seen_golden, seen_current))
    return tuple(sorted(changes, key=_order))


def _is_list_or_absent(value: Any) -> bool:
    return value is None or isinstance(value, list)


def _list_changes(path: str, old: list[Any] | None, new: list[Any] | None) -> list[Change]:
    kind = describe_leaf(path, old or new)
    labels = (kind.category, kind.numerics, kind.origin, kind.minutia)
    old_items, new_items = old or [], new or []
    # Membership through canonical JSON keys: linear in the list sizes (a fingerprint file from
    # someone else can hold any number of flags) and fine for unhashable items too.
    old_keys, new_keys = set(map(_key, old_items)), set(map(_key, new_items))
    removed = [item for item in old_items if _key(item) not in new_keys]
    added = [item for item in new_items if _key(item) not in old_keys]
    if not removed and not added:  # same elements in another order, or [] against no list
        return [Change(path, old, new, *labels)]  # None stays None: that side has no list
    return [Change(f"{path}.{item}", item, None, *labels) for item in removed] + [
        Change(f"{path}.{item}", None, item, *labels) for item in added
    ]


def _key(item: Any) -> str:
    return json.dumps(item, sort_keys=True, default=str)


def _change(path: str, old: Any, new: Any, seen_golden: set[str],
            seen_current: set[str]) -> Change:
    kind = describe_leaf(path, new if old is None else old)
    numerics = kind.numerics
    if is_unavailable(old) and is_unavailable(new):
        numerics = False  # still unreadable on both sides; only the reason text changed
    elif is_process_dependent(path) and not ({_root(path)} <= seen_golden & seen_current):
        numerics = False  # one side's process did not have TensorFlow loaded
    return Change(path, old, new, kind.category, numerics, kind.origin, kind.minutia)


def _observed_roots(side: dict[str, Any]) -> set[str]:
    """The process-dependent subtrees that ``side`` observed (holds at least one field of)."""
    return {_root(path) for path in side if is_process_dependent(path)}


def _root(path: str) -> str:
    parts = path.split(".")
    return next(p for p in (".".join(parts[: i + 1]) for i in range(len(parts)))
                if is_process_dependent(p))


def _order(change: Change) -> tuple[bool, int, str]:
    rank = CATEGORIES.index(change.category) if change.category in CATEGORIES else len(CATEGORIES)
    return (not change.numerics, rank, change.path)


def group(changes: Iterable[Change]) -> tuple[ChangeGroup, ...]:
    """``changes`` as one ``ChangeGroup`` per origin, in the order every change table shows."""
    by_origin: dict[str, list[Change]] = {}
    for change in changes:
        by_origin.setdefault(change.origin, []).append(change)
    groups = [ChangeGroup(origin, tuple(sorted(members, key=lambda c: (not c.numerics, c.path))))
              for origin, members in by_origin.items()]
    return tuple(sorted(groups, key=_group_order))


def _group_order(g: ChangeGroup) -> tuple[int, int, str]:
    # A numerics-relevant change a person reads first beats one only counted in a folded line.
    rank = 0 if any(c.numerics for c in g.listed) else 1 if g.numerics_count else 2
    index = ORIGINS.index(g.origin) if g.origin in ORIGINS else len(ORIGINS)
    return (rank, index, g.origin)
