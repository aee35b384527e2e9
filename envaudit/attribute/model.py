"""A ranked explanation of a difference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from envaudit.fingerprint.model import Change
from envaudit.plain import plain

# Strongest first: "confirmed" only after a re-run with the change put back gave golden bits;
# "ruled_out" only after putting it back (a rebuilt environment) changed nothing.
Confidence = Literal["confirmed", "likely", "possible", "ruled_out"]
CONFIDENCES: tuple[Confidence, ...] = get_args(Confidence)


@dataclass(frozen=True)
class Cause:
    """A candidate cause; ``confirmed`` only after a re-run with it put back gave golden bits."""

    change: str  # what changed, e.g. "env.TF_ENABLE_ONEDNN_OPTS: unset -> '0'"
    confidence: Confidence
    evidence: tuple[str, ...]  # sentences a person can check
    path: str | None = None  # the fingerprint path it concerns, if any
    related: tuple[str, ...] = ()  # other changed paths of the same origin (one upgrade, one CPU)

    @property
    def paths(self) -> frozenset[str]:
        return frozenset(p for p in (self.path, *self.related) if p)

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True)
class Unreachable:
    """A change that cannot have moved what moved (it reaches another kind of device)."""

    change: str  # as a cause would show it
    path: str
    reason: str  # "cannot affect: ran on CPU (the arrays that moved were computed on CPU:0 ...)"

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


def describe(change: Change) -> str:
    """A change as a cause names it: ``env.X: unset -> '0'``."""
    def show(value: object) -> str:
        return "unset" if value is None else repr(value) if isinstance(value, str) else str(value)

    return f"{change.path}: {show(change.golden)} -> {show(change.current)}"
