"""``plain``: the one way a result dataclass becomes JSON-ready data.

Every ``to_dict`` in envaudit is ``plain(self)``, so a field added to a result appears in the JSON
in declaration order without anyone writing it twice. Standard library only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


def plain(value: Any) -> Any:
    """A dataclass (or container of them) as JSON-ready builtins: fields in declaration order,
    tuples as lists; fields whose metadata says ``{"json": False}`` are left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _field(value, f) for f in dataclasses.fields(value)
                if f.metadata.get("json", True)}
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _field(owner: Any, spec: dataclasses.Field) -> Any:
    """One field's JSON value; ``{"json_if_none": X}``: X stands for None (how a JSON schema
    spells an absent value, e.g. a mode that did not run)."""
    value = getattr(owner, spec.name)
    if value is None and "json_if_none" in spec.metadata:
        return spec.metadata["json_if_none"]
    return plain(value)
