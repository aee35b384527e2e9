"""``diff(a, b)``: every field that differs between two fingerprints, labelled.

``a`` is the golden (reference) side, ``b`` the current one. Each ``Change`` carries the dotted
path, both values (``None`` where a side lacks the field), the category and whether it can change
numerics, both from ``fields.classify`` (the definition ``fingerprint_id`` uses too). Lists of
scalars (``cpu.flags``, compute capabilities, SIMD extensions) differ per element: one change per
added or removed element, at ``<list path>.<element>``, so the change names the flag. Sorted:
numerics-relevant first, then by category (``CATEGORIES`` order), then by path.
"""

from __future__ import annotations

from typing import Any

from envaudit.fingerprint.fields import classify_leaf, is_process_dependent, leaves
from envaudit.fingerprint.guard import is_unavailable
from envaudit.fingerprint.model import CATEGORIES, Change, Fingerprint

# Fields computed from the others: their change says nothing the other changes do not.
DERIVED = frozenset({"fingerprint_id"})


def diff(a: Fingerprint, b: Fingerprint) -> tuple[Change, ...]:
    golden = dict(leaves(a.data))
    current = dict(leaves(b.data))
    changes: list[Change] = []
    for path in list(golden) + [p for p in current if p not in golden]:
        if path in DERIVED:
            continue
        old, new = golden.get(path), current.get(path)
        if old == new and (old is None or (path in golden and path in current)):
            continue  # equal, or null on one side and absent on the other
        if _is_list_or_absent(old) and _is_list_or_absent(new):
            changes.extend(_list_changes(path, old or [], new or []))
            continue
        changes.append(_change(path, old, new, golden, current))
    return tuple(sorted(changes, key=_order))


def _is_list_or_absent(value: Any) -> bool:
    return value is None or isinstance(value, list)


def _list_changes(path: str, old: list[Any], new: list[Any]) -> list[Change]:
    category, numerics = classify_leaf(path, old or new)
    removed = [item for item in old if item not in new]
    added = [item for item in new if item not in old]
    if not removed and not added:  # same elements, other order
        return [Change(path, old, new, category, numerics)]
    return [Change(f"{path}.{item}", item, None, category, numerics) for item in removed] + [
        Change(f"{path}.{item}", None, item, category, numerics) for item in added
    ]


def _change(
    path: str, old: Any, new: Any, golden: dict[str, Any], current: dict[str, Any]
) -> Change:
    category, numerics = classify_leaf(path, new if old is None else old)
    if is_unavailable(old) and is_unavailable(new):
        numerics = False  # still unreadable on both sides; only the reason text changed
    elif is_process_dependent(path) and not (
        _observed(path, golden) and _observed(path, current)
    ):
        numerics = False  # one side's process did not have TensorFlow loaded
    return Change(path, old, new, category, numerics)


def _observed(path: str, side: dict[str, Any]) -> bool:
    """Whether ``side`` observed the process-dependent subtree that ``path`` belongs to."""
    root = next(p for p in _ancestors(path) if is_process_dependent(p))
    return any(p == root or p.startswith(root + ".") for p in side)


def _ancestors(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _order(change: Change) -> tuple[bool, int, str]:
    rank = CATEGORIES.index(change.category) if change.category in CATEGORIES else len(CATEGORIES)
    return (not change.numerics, rank, change.path)
