"""The data a fingerprint is made of: ``Fingerprint`` and ``Change``.

A fingerprint is a JSON tree (sections -> fields), wrapped in a frozen dataclass so that it crosses
module boundaries as one typed value. JSON for it is produced here and nowhere else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from envaudit.errors import EnvauditError

SCHEMA = "envaudit.fingerprint/1"

# Categories of a change (see DESIGN.md). Order is the display order.
CATEGORIES = (
    "driver", "cuda", "cudnn", "tensorflow", "cpu", "gpu", "os", "python",
    "numerics-env", "packages", "info",
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
        if "fingerprint_id" not in data:
            raise EnvauditError(f"{source} has no fingerprint_id; re-capture it with envaudit")
        return cls(data=data)

    @classmethod
    def from_json(cls, text: str, source: str = "<json>") -> Fingerprint:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise EnvauditError(
                f"{source} is not valid JSON ({exc.msg} at line {exc.lineno});"
                " pass a file written by 'envaudit fingerprint --format json'"
            ) from None
        return cls.from_dict(data, source)


@dataclass(frozen=True)
class Change:
    """One field that differs between two fingerprints."""

    path: str  # dotted: "env.TF_ENABLE_ONEDNN_OPTS", "tensorflow.version", "gpu.driver_version"
    golden: Any  # None when absent on that side
    current: Any
    category: str  # one of CATEGORIES
    numerics: bool  # whether it can change the numbers a model produces

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "golden": self.golden,
            "current": self.current,
            "category": self.category,
            "numerics": self.numerics,
        }
