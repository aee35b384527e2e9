"""The data a fingerprint is made of: ``Fingerprint`` and ``Change``.

A fingerprint is a JSON tree (sections -> fields), wrapped in a frozen dataclass so that it crosses
module boundaries as one typed value. JSON for it is produced here and nowhere else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from envaudit import untrusted
from envaudit.errors import EnvauditError
from envaudit.fingerprint.guard import is_unavailable
from envaudit.plain import plain

SCHEMA = "envaudit.fingerprint/1"

# Categories of a change (docs/design.md, "Fingerprint JSON"). Order is the display order.
CATEGORIES = (
    "driver", "cuda", "cudnn", "tensorflow", "cpu", "gpu", "os", "python",
    "numerics-env", "packages", "info",
)

# Where a change comes from, as the change tables group it (``fields`` assigns each path one).
# Order is the display order among groups of the same rank (see ``diff.group``): settings a
# person chose first, then the GPU stack, the framework and its libraries, the machine, the rest.
ORIGINS = (
    "environment variables", "driver", "cuda libraries", "gpu", "tensorflow", "tensorflow build",
    "numpy", "numpy build", "openblas runtime", "cpu", "cpu flags", "os", "python", "packages",
    "memory", "envaudit", "other",
)


@dataclass(frozen=True)
class Fingerprint:
    """A captured environment. ``data`` is the whole JSON tree, schema and id included."""

    data: Mapping[str, Any]

    @property
    def fingerprint_id(self) -> str:
        return str(self.data["fingerprint_id"])

    @property
    def schema(self) -> str:
        return str(self.data["schema"])

    def get(self, path: str, default: Any = None) -> Any:
        """The value at a dotted path (``"tensorflow.version"``), or ``default``."""
        node: Any = self.data
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.to_json())

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.data, indent=indent, sort_keys=False, default=str) + "\n"

    @classmethod
    def from_dict(cls, data: Any, source: str = "<data>") -> Fingerprint:
        if not isinstance(data, Mapping) or not str(data.get("schema", "")).startswith(
            "envaudit.fingerprint/"
        ):
            raise EnvauditError(
                f"{source} is not an envaudit fingerprint (no 'schema': 'envaudit.fingerprint/N');"
                " create one with 'envaudit fingerprint --format json -o FILE'"
            )
        if data["schema"] != SCHEMA:
            raise EnvauditError(
                f"{source} has fingerprint schema {data['schema']!r}, this envaudit reads"
                f" {SCHEMA!r};"
                " re-capture it with this version of envaudit"
            )
        if not isinstance(data.get("fingerprint_id"), str):
            raise EnvauditError(f"{source} has no fingerprint_id; re-capture it with envaudit")
        _require_shape(data, source)
        return cls(data=data)

    @classmethod
    def from_json(cls, text: str, source: str = "<json>") -> Fingerprint:
        try:
            data = untrusted.loads(text)
        except untrusted.Refused as exc:
            raise EnvauditError(f"{source} {exc}; pass a file written by 'envaudit fingerprint"
                                " --format json'") from None
        return cls.from_dict(data, source)


# A fingerprint read from a file or a bundle was written by someone else. These are the fields
# that decisions read (instruction-set caps, core pinning, restored variables, redacted names), with
# the type each must have; anything else is only compared and shown, whatever its type.
# The sections every capture writes (a probe that fails still writes its section, as a marker).
SECTIONS = ("captured_at", "envaudit_version", "python", "os", "cpu", "memory", "gpu",
            "tensorflow", "numerics_libs", "env", "packages")
MAX_DEPTH = 12  # the deepest real path is gpu.devices.N.mig_devices.M.uuid: 6 levels
_TYPED_FIELDS: tuple[tuple[str, str], ...] = (
    ("os.hostname", "str"),
    ("cpu.flags", "list[str]"),
    ("cpu.usable_cores", "int"),
    ("env", "dict[str, str]"),
)


def _require_shape(data: Mapping[str, Any], source: str) -> None:
    """Refuse a tree without every section a capture writes, nested deeper than any fingerprint,
    or whose decision fields have the wrong type (an unavailable marker or an absent field is
    fine: probes record failures that way)."""
    missing = [key for key in SECTIONS if key not in data]
    if missing:
        raise EnvauditError(f"{source} lacks the fingerprint sections {', '.join(missing)};"
                            " re-capture it with 'envaudit fingerprint --format json'")
    odd = [key for key in SECTIONS[2:] if not isinstance(data[key], Mapping)]
    if odd:  # a probe that fails still writes its section, as an unavailable marker
        raise EnvauditError(f"{source}: the fingerprint sections {', '.join(odd)} are not"
                            " objects; re-capture it with 'envaudit fingerprint --format json'")
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:  # iterative: a hostile file must not exhaust the recursion limit
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise EnvauditError(f"{source} is nested deeper than any envaudit fingerprint"
                                f" ({MAX_DEPTH} levels); re-capture it with envaudit")
        children = node.values() if isinstance(node, Mapping) else node \
            if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children)
    probe = Fingerprint(data)
    for path, kind in _TYPED_FIELDS:
        value = probe.get(path)
        if value is None or is_unavailable(value) or _has_type(value, kind):
            continue
        raise EnvauditError(f"{source}: field {path} should be {kind}, not"
                            f" {type(value).__name__}; re-capture it with envaudit")


def _has_type(value: Any, kind: str) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "list[str]":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, Mapping) and all(isinstance(v, str) for v in value.values())


@dataclass(frozen=True)
class Change:
    """One field that differs between two fingerprints."""

    path: str  # dotted: "env.TF_ENABLE_ONEDNN_OPTS", "tensorflow.version", "gpu.driver_version"
    golden: Any  # None when absent on that side
    current: Any
    category: str  # one of CATEGORIES
    numerics: bool  # whether it can change the numbers a model produces
    origin: str = "other"  # one of ORIGINS: the group a change table shows it under
    minutia: bool = False  # a detail the text tables fold behind --verbose

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True)
class ChangeGroup:
    """The changes of one origin, in the order a change table shows them (``diff.group``)."""

    origin: str
    changes: tuple[Change, ...]  # numerics-relevant first, then by path

    @property
    def numerics_count(self) -> int:
        """How many of the changes can change numbers (folded ones included)."""
        return sum(1 for c in self.changes if c.numerics)

    @property
    def listed(self) -> tuple[Change, ...]:
        """The changes a table shows row by row without --verbose."""
        return tuple(c for c in self.changes if not c.minutia)

    @property
    def folded(self) -> tuple[Change, ...]:
        """The minutiae a table summarizes in one line without --verbose."""
        return tuple(c for c in self.changes if c.minutia)
