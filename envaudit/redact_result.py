"""A ``CheckResult`` (and a fingerprint diff) as it may leave the machine, by the one redaction
policy of ``fingerprint.redact``.

The renderers (text, Markdown, HTML, JUnit, JSON) and fleet reports format what this returns, so
each format is redacted the same way without knowing the rules. Constraints: every free-form
string in the result passes through ``Redactor.text`` (a field added later is redacted by
default: the walk is generic over the dataclasses); only the vocabularies listed in
``_VOCABULARY`` are left alone, since a hostname or user name that happens to equal "gpu" or
"drift" must not rewrite a category or a verdict that code keys on. A ``Change`` is redacted by
its fingerprint path (``Redactor.value``), so a secret variable's values become ``[redacted]``
and the hosts in a variable's value ``[host]``, and those values are hidden or rewritten wherever
else they are quoted (cause text and evidence).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from envaudit.fingerprint.redact import Redactor
from envaudit.fingerprint.types import Change, Fingerprint
from envaudit.result import CheckResult

# Field names whose values are fixed vocabularies or program-defined labels, not data.
_VOCABULARY = frozenset({"verdict", "kind", "category", "confidence", "dtype", "timings",
                         "status", "origin", "mode", "moved_modes", "golden_schema", "workload",
                         "input_kind", "sha256", "array_digests", "outcome",
                         "kinds", "advice", "option", "effective",
                         # envaudit compare's fixed words and the array keys of its digests
                         "inputs", "golden_verdict", "current_verdict", "differing",
                         "only_golden", "only_current"})


def redact_result(result: CheckResult, redactor: Redactor) -> CheckResult:
    """A copy of ``result`` with every string redacted by ``redactor``'s policy."""
    quoted = ((change.path, value) for change in result.fingerprint_changes
              for value in (change.golden, change.current))
    return _walk(result, redactor.with_values(quoted))


def shareable(result: CheckResult) -> CheckResult:
    """``result`` redacted by the policy built from both of its fingerprints (what the CLI
    renders unless --no-redact)."""
    trees = [fp for fp in (result.golden_fingerprint, result.current_fingerprint) if fp]
    return redact_result(result, Redactor.for_trees(*trees))


def shareable_diff(a: Fingerprint, b: Fingerprint, changes: Sequence[Change]) -> tuple[
        Fingerprint, Fingerprint, tuple[Change, ...]]:
    """``envaudit diff``'s two fingerprints and their changes, redacted by one policy."""
    redactor = Redactor.for_trees(a, b)
    return (Fingerprint(redactor.tree(a.data)), Fingerprint(redactor.tree(b.data)),
            tuple(redact_change(c, redactor) for c in changes))


def redact_change(change: Change, redactor: Redactor) -> Change:
    """One fingerprint change as it may be shown: path and both values by the policy."""
    return dataclasses.replace(
        change, path=redactor.text(change.path),
        golden=redactor.value(change.path, change.golden),
        current=redactor.value(change.path, change.current),
    )


def _walk(node: Any, redactor: Redactor) -> Any:
    if isinstance(node, Change):
        return redact_change(node, redactor)
    if isinstance(node, Fingerprint):
        return Fingerprint(redactor.tree(node.data))
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return dataclasses.replace(node, **{
            f.name: _walk(getattr(node, f.name), redactor)
            for f in dataclasses.fields(node) if f.init and f.name not in _VOCABULARY
        })
    if isinstance(node, str):
        return redactor.text(node)
    if isinstance(node, tuple):
        return tuple(_walk(item, redactor) for item in node)
    if isinstance(node, list):
        return [_walk(item, redactor) for item in node]
    if isinstance(node, Mapping):
        return {redactor.text(str(k)): _walk(v, redactor) for k, v in node.items()}
    return node
