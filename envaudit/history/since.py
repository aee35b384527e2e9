"""The sentence a check shows about its past: when this golden was last identical here, and what
in the fingerprint changed since then (numerics-relevant changes first, as ``diff`` orders them).

Minutiae (capture time, free memory, build detail) change on every run and are left out; at most
``MAX_LISTED`` changes are named, so the sentence stays one line.
"""

from __future__ import annotations

from envaudit.attribute.rank import describe
from envaudit.fingerprint.diff import diff
from envaudit.fingerprint.types import Fingerprint
from envaudit.history.types import Run

# A line, not a table: the check's own environment section lists every change against the golden.
MAX_LISTED = 5
NONE_ON_RECORD = "no identical check against this golden on record"


def since_sentence(last: Run | None, current: Fingerprint | None) -> str:
    if last is None:
        return NONE_ON_RECORD
    when = last.time.strftime("%Y-%m-%d %H:%M:%S UTC")
    return (f"last identical check against this golden: {when} (fingerprint"
            f" {last.fingerprint_id}); changed since then: {_changes(last.fingerprint, current)}")


def _changes(then: Fingerprint | None, now: Fingerprint | None) -> str:
    if then is None or now is None:
        return "not known (a fingerprint is not at hand)"
    try:
        changes = diff(then, now)
    except (TypeError, ValueError, KeyError, AttributeError):  # a row from a hand-edited file
        return "not known (the fingerprint on record is unreadable)"
    listed = [c for c in changes if not c.minutia]
    if not listed:
        return "nothing" if not changes else f"nothing but {len(changes)} minor detail(s)"
    text = "; ".join(describe(c) for c in listed[:MAX_LISTED])
    more = len(listed) - MAX_LISTED
    return text + (f"; and {more} more" if more > 0 else "")
